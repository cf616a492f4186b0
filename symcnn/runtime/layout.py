"""The names a Network's passes give each layer's arrays, worked out once per layer.

Why: a pass visits every layer, and at batch 1 building the same strings and tuples for each layer at each
step (``conv1.weight``, ``grad_weight``, ``conv1.grad_input``, ...) took a sizeable part of a step's time
besides the kernels. Nothing here depends on the batch or the mode.

Example:
    >>> from symcnn.spec import load_spec
    >>> spec = load_spec("digits")
    >>> layer = spec.layers[0]
    >>> gradients = LayerGradients.of(layer, spec.parameter_shapes())
    >>> gradients.parameters[0], gradients.inputs
    (('weight', 'conv1.weight', 'grad_weight'), (('grad_input', 'input', 'conv1.grad_input'),))
"""

from __future__ import annotations

from operator import itemgetter
from typing import Callable, NamedTuple

from symcnn import registry
from symcnn.runtime.fanouts import input_names
from symcnn.spec import LayerSpec

__all__ = ["LayerGradients", "arguments_getter"]


class LayerGradients(NamedTuple):
    """A layer's arrays as the passes name them: its gradients (the backward pass) and its inputs' arguments
    (both passes)."""

    parameters: tuple[tuple[str, str, str], ...]  # (role, PyTorch name, gradient's argument): its weight, bias
    inputs: tuple[tuple[str, str, str], ...]  # (gradient's argument, the input's label, its internal array)
    input_arrays: tuple[str, ...]  # the arguments its inputs are passed as: x, and an add's x2, ...

    @classmethod
    def of(cls, layer: LayerSpec, parameter_shapes: dict) -> "LayerGradients":
        """``layer``'s names, among a network's ``parameter_shapes`` (``NetworkSpec.parameter_shapes``)."""
        weight, bias = f"{layer.name}.weight", f"{layer.name}.bias"  # a bias only beside a weight
        roles = (() if weight not in parameter_shapes
                 else ("weight", "bias") if bias in parameter_shapes else ("weight",))
        parameters = tuple((role, f"{layer.name}.{role}", f"grad_{role}") for role in roles)
        gradients = (f"grad_{registry.input_role(number)}" for number in range(1, len(layer.inputs) + 1))
        inputs = tuple((name, source, f"{layer.label}.{name}") for name, source in zip(gradients, layer.inputs))
        return cls(parameters, inputs, input_names(len(layer.inputs)))


def arguments_getter(names: tuple[str, ...]) -> Callable[[dict], tuple]:
    """A function of a dict of arrays that returns the ones ``names`` names, in order (a kernel's arguments).

    >>> arguments_getter(("x", "out"))({"out": 2, "x": 1, "mask": 3})
    (1, 2)
    >>> arguments_getter(("x",))({"x": 1})
    (1,)
    """
    if len(names) == 1:  # itemgetter of one name returns the value itself, not a tuple
        (name,) = names
        return lambda arrays: (arrays[name],)
    return itemgetter(*names)
