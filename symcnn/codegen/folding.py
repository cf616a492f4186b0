"""A normalization folded into the layer before it, in evaluation mode (issue #19: fusion across layers).

In evaluation mode batch norm is, per channel, an affine map of its input, ``Y[n, c, i, j] =
scale[c] * X[n, c, i, j] + shift[c]``, with ``scale[c] = gamma[c] / sqrt(var[c] + epsilon)`` and
``shift[c] = beta[c] - mu[c] * scale[c]``. After a layer that alone feeds it and whose output is, per
output channel, linear in its weight plus its bias, ``X[n, c, ...] = sum W[c, ...] * ... + b[c]`` (a
convolution, grouped or depthwise), the two compose into that layer with ``W'[c, ...] = scale[c] * W[c, ...]``
and ``b'[c] = scale[c] * b[c] + shift[c]``: one kernel and one pass over the activation instead of two.

Everything here is read off the formulas, not off op names: ``scale`` is the derivative of the
normalization's evaluation-mode formula in its input and ``shift`` its value at 0 (so the map is affine
when the derivative no longer reads the input, and both depend on the channel only); the layer before
qualifies when every read of its weight starts with its output-channel index, its formula is of degree
one in the weight, and its bias, if any, enters as ``b[c]``. The generated kernels are the scale and the
shift (``bn1_eval_scale``, ``bn1_eval_shift``, printed from those two expressions) and the layer's forward
pass with a bias (``conv1_folded_forward``: its own formula with its ``bias`` setting on); the runtime
scales the parameters along the weight's first axis (:meth:`symcnn.runtime.network.Network._forward`).
Training passes, and evaluation passes whose gradients are taken, run unfolded (the backward pass reads
the layer's own output).

Example:
    >>> from symcnn.spec import load_spec
    >>> folds(load_spec("resnet-mini"))["stem_bn"]
    'stem'
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import sympy
from sympy import Expr, Indexed, Sum

from symcnn import registry
from symcnn.codegen.lower import layer_formula
from symcnn.codegen.winograd_kernels import forward_kernel
from symcnn.spec import LayerSpec, NetworkSpec
from symcnn.symbolic import ops

__all__ = ["affine_coefficients", "scales_per_output_channel", "folds", "fold_kernels", "folded_layer", "folded_title",
           "titled", "FOLDED_FORWARD"]

#: What the layer's forward kernel with a bias, for its folded parameters, is called after its label.
FOLDED_FORWARD = "folded_forward"


def affine_coefficients(formula: ops.IndexFormula) -> Optional[tuple[Expr, Expr]]:
    """``(scale, shift)`` when ``formula`` is ``scale * X[indices] + shift`` with both depending on the
    channel (the second index) alone, else None.

    >>> from symcnn.symbolic.normalization import batchnorm2d_evaluation
    >>> scale, shift = affine_coefficients(batchnorm2d_evaluation())
    >>> scale
    gamma[c]/sqrt(epsilon + sigma2_run[c])
    """
    try:
        x = formula.operand("input").base
    except KeyError:
        return None
    if len(formula.indices) < 2:
        return None
    read = x[formula.indices]
    if {node for node in formula.rhs.atoms(Indexed) if node.base == x} != {read}:
        return None
    scale, shift = sympy.diff(formula.rhs, read), formula.rhs.xreplace({read: 0})
    other_indices = set(formula.indices) - {formula.indices[1]}
    for coefficient in (scale, shift):
        if coefficient.has(x) or coefficient.free_symbols & other_indices:
            return None
    return scale, shift


def _weight_degree(expr: Expr, weight) -> Optional[int]:
    """The degree of ``expr`` in the reads of ``weight`` (None: not a polynomial of them we can read)."""
    if not expr.has(weight):
        return 0
    if isinstance(expr, Indexed):
        return 1 if expr.base == weight and not any(index.has(weight) for index in expr.indices) else None
    if isinstance(expr, Sum):
        if any(bound.has(weight) for limit in expr.limits for bound in limit[1:]):
            return None
        return _weight_degree(expr.function, weight)
    if isinstance(expr, sympy.Mul):
        degrees = [_weight_degree(factor, weight) for factor in expr.args]
        return None if None in degrees else sum(degrees)
    if isinstance(expr, sympy.Add):
        degrees = {_weight_degree(term, weight) for term in expr.args}
        return degrees.pop() if len(degrees) == 1 else None
    return None


def scales_per_output_channel(formula: ops.IndexFormula) -> bool:
    """Whether scaling the weight's reads ``W[c, ...]`` and the bias ``b[c]`` by ``s[c]`` scales the output
    ``Y[n, c, ...]`` by ``s[c]``: every weight read starts with the output channel index, the formula is of
    degree one in the weight, and a bias enters only as ``+ b[c]``.

    >>> scales_per_output_channel(ops.conv2d()), scales_per_output_channel(ops.conv_transpose2d())
    (True, False)
    """
    roles = {tensor.role: tensor.base for tensor in formula.operands}
    if "weight" not in roles or len(formula.indices) < 2:
        return False
    weight, channel = roles["weight"], formula.indices[1]
    if any(node.indices[0] != channel for node in formula.rhs.atoms(Indexed) if node.base == weight):
        return False
    rest = formula.rhs
    if "bias" in roles:
        bias = roles["bias"]
        if {node for node in formula.rhs.atoms(Indexed) if node.base == bias} != {bias[channel]}:
            return False
        rest = formula.rhs - bias[channel]
        if rest.has(bias):
            return False
    return _weight_degree(rest, weight) == 1


def folded_layer(layer: LayerSpec) -> Optional[LayerSpec]:
    """The layer as it would be with a bias (itself when it has one), or None when its op has no bias setting:
    the layer whose forward pass a fold's kernel computes."""
    if any(name.endswith(".bias") for name in layer.parameter_shapes()):
        return layer
    op = registry.get(layer.kind)
    if "bias" not in {setting.key for setting in op.settings}:
        return None
    return replace(layer, settings={**layer.settings, "bias": True})


def folds(spec: NetworkSpec) -> dict[str, str]:
    """The layers folded in evaluation mode: normalization label -> the label of the layer it folds into
    (that layer's output read by the normalization alone; see the module's docstring)."""
    readers: dict[str, int] = {}
    for layer in spec.layers:
        for source in layer.inputs:
            readers[source] = readers.get(source, 0) + 1
    by_label = {layer.label: layer for layer in spec.layers}
    folded = {}
    for layer in spec.layers:
        if (registry.get(layer.kind).evaluation is None or len(layer.inputs) != 1
                or layer.inputs[0] not in by_label or readers.get(layer.inputs[0]) != 1):
            continue
        producer = by_label[layer.inputs[0]]
        if registry.get(producer.kind).merges or folded_layer(producer) is None:
            continue
        if affine_coefficients(layer_formula(layer, "evaluation")[0]) is None:
            continue
        if scales_per_output_channel(layer_formula(folded_layer(producer))[0]):
            folded[layer.label] = producer.label
    return folded


def fold_kernels(spec: NetworkSpec) -> dict[str, list]:
    """The kernels of the folds, by module (layer label): each normalization's ``eval_scale`` and
    ``eval_shift``, each producer's ``folded_forward``."""
    by_label = {layer.label: layer for layer in spec.layers}
    kernels: dict[str, list] = {}
    for norm_label, producer_label in folds(spec).items():
        norm, producer = by_label[norm_label], by_label[producer_label]
        formula, values = layer_formula(norm, "evaluation")
        scale, shift = affine_coefficients(formula)
        channel = formula.indices[1]
        channels = formula.output.shape[1]
        for what, rhs in (("eval_scale", scale), ("eval_shift", shift)):
            name = what.removeprefix("eval_")
            coefficient = ops.IndexFormula(
                formula.op, ops.Tensor("output", sympy.IndexedBase(name), (channels,)), (channel,), rhs,
                tuple(tensor for tensor in formula.operands if rhs.has(tensor.base)), formula.parameters)
            kernel = forward_kernel(norm, coefficient, values, what)
            kernels.setdefault(norm_label, []).append(replace(
                titled(kernel, f"{formula.op}: evaluation mode's {name} per channel, folded into the layer before it"),
                output_loops=tuple(replace(loop, parallel=False) for loop in kernel.output_loops)))  # a few values
        biased = folded_layer(producer)
        producer_formula, producer_values = layer_formula(biased)
        kernel = forward_kernel(biased, producer_formula, producer_values, FOLDED_FORWARD)
        kernels.setdefault(producer_label, []).append(titled(kernel, folded_title(producer, norm)))
    return kernels


def folded_title(producer: LayerSpec, norm: LayerSpec) -> str:
    """The first line of the docstring of ``producer``'s folded kernel (``norm`` folded into it)."""
    return (f"{producer.kind}: forward pass with a bias, on the parameters folded with the {norm.kind} after it "
            "(evaluation mode)")


def titled(kernel, title: str):
    """``kernel`` with its docstring's first line (``batchnorm2d: forward pass``) replaced by ``title``."""
    return replace(kernel, formula=f"{title}\n{kernel.formula.partition(chr(10))[2]}")
