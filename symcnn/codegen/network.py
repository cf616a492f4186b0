"""Every kernel of a layer, and of a network: each layer's forward and gradient kernels (:mod:`symcnn.codegen.lower`),
its kernel of all gradients at once where they share statistics (:mod:`symcnn.codegen.backward`), the gradient
sums at fan-outs and the loss's kernels, by module.

Example:
    >>> from symcnn.spec import load_spec
    >>> kernels = layer_kernels(load_spec("digits").layers[0])
    >>> [kernel.name for kernel in kernels]
    ['conv1_forward', 'conv1_grad_input', 'conv1_grad_weight', 'conv1_grad_bias']
"""

from __future__ import annotations

from dataclasses import replace

from symcnn import registry
from symcnn.codegen.backward import backward_kernel
from symcnn.codegen.kernel_ir import Kernel
from symcnn.codegen.parameter_fusion import weight_and_bias_kernel
from symcnn.codegen.saved_statistics import saved_kernels
from symcnn.codegen.lower import computed_gradient, forward_kernel, kernel_name, layer_formula, loss_kernels
from symcnn.codegen.winograd_kernels import forward_kernel as layer_forward_kernel, gradient_kernel
from symcnn.registry import differentiable
from symcnn.spec import LayerSpec, NetworkSpec

__all__ = ["EVALUATION_PREFIX", "FANOUT_MODULE", "layer_kernels", "fanout_join", "fanout_kernels", "network_kernels"]


#: The prefix of an op's evaluation-mode kernels (``bn1_eval_forward``), where its modes differ.
EVALUATION_PREFIX = "eval_"


def layer_kernels(layer: LayerSpec) -> list[Kernel]:
    """The forward kernel and one kernel per gradient of ``layer``, and where its gradients read the same
    statistics, one kernel for all of them (``<label>_backward``, :mod:`symcnn.codegen.backward`); where its bias
    gradient sums what its weight gradient copies, one for both (``<label>_grad_weight_and_bias``,
    :mod:`symcnn.codegen.parameter_fusion`); where its training forward pass computes statistics, that kernel
    keeping them and the backward kernel reading them (:mod:`symcnn.codegen.saved_statistics`); for an op
    whose evaluation mode differs (batch norm), the same again in evaluation mode, named ``<label>_eval_...``.

    They depend on the layer's op, shapes and settings only; its label names them (what
    :func:`network_kernels` relies on to lower repeated layers once).
    """
    kernels = []
    modes = ("training", "evaluation") if registry.get(layer.kind).evaluation is not None else ("training",)
    for mode in modes:
        prefix = EVALUATION_PREFIX if mode == "evaluation" else ""
        formula, values = layer_formula(layer, mode)
        kernels.append(layer_forward_kernel(layer, formula, values, f"{prefix}forward"))
        gradients = [computed_gradient(formula, tensor.role, values) for tensor in formula.operands
                     if differentiable(tensor.role)]
        separate = [gradient_kernel(layer, gradient, values, prefix) for gradient in gradients]
        kernels += separate
        backward = backward_kernel(layer, gradients, values, separate, prefix)
        kernels += [backward] if backward is not None else []
        parameters = weight_and_bias_kernel(layer, gradients, values, separate) if not prefix else None
        kernels += [parameters] if parameters is not None else []
        kernels += saved_kernels(layer, gradients, separate) if mode == "training" else []
    return kernels


#: The module of the gradient sums at fan-outs (a reserved label: no layer takes it).
FANOUT_MODULE = "fanout"


def fanout_kernels(spec: NetworkSpec) -> list[Kernel]:
    """One kernel per tensor that several layers read (a residual block's input): the sum of the
    gradients they send back, ``fanout_<label>(x, x2, ..., out)``, from the ``add`` formula (the chain
    rule through a fan-out is a sum). The network's own input, when several layers read it, is
    ``fanout_input``."""
    shapes = {"input": spec.input_shape} | {layer.label: layer.output_shape for layer in spec.layers}
    kernels = []
    for label, readers in spec.consumers().items():
        if len(readers) < 2:
            continue
        join = fanout_join(label, shapes[label], len(readers))
        formula, values = layer_formula(join)
        kernels.append(replace(forward_kernel(join, formula, values), name=f"{FANOUT_MODULE}_{label}"))
    return kernels


def fanout_join(label: str, shape: tuple, readers: int) -> LayerSpec:
    """The ``add`` of the ``readers`` gradients sent back to tensor ``label`` (of ``shape``): its fan-out's sum."""
    return LayerSpec("add", -1, shape, shape, None, {}, (label,) * readers, (shape,) * readers)


def network_kernels(spec: NetworkSpec) -> dict[str, list[Kernel]]:
    """Every kernel of ``spec``, by module (layer label, ``fanout`` where a graph has one, and ``loss``).

    A layer of the same op, shapes and settings as an earlier one (a VGG stage's convolutions, the
    ReLU after each) is lowered once: its kernels are the earlier layer's, under its own names.
    """
    modules: dict[str, list[Kernel]] = {}
    lowered: dict[str, tuple[str, list[Kernel]]] = {}
    for layer in spec.layers:
        key = repr((layer.kind, layer.input_shapes, layer.output_shape, sorted(layer.settings.items()), layer.winograd))
        if key in lowered:
            label, kernels = lowered[key]
            modules[layer.label] = [replace(kernel, name=_renamed(kernel.name, label, layer.label),
                                            blocks_of=_renamed(kernel.blocks_of, label, layer.label))
                                    for kernel in kernels]
        else:
            modules[layer.label] = layer_kernels(layer)
            lowered[key] = (layer.label, modules[layer.label])
    fanouts = fanout_kernels(spec)
    if fanouts:
        modules[FANOUT_MODULE] = fanouts
    modules["loss"] = loss_kernels(spec)
    return modules


def _renamed(kernel: str, label: str, new_label: str) -> str:
    """``kernel`` of layer ``label`` (or ""), named for ``new_label``: ``conv1_forward``, ``conv2_forward``."""
    return kernel and kernel_name(new_label, kernel[len(label) + 1:])
