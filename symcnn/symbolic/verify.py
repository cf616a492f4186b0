"""Proof by expansion: a general gradient formula, instantiated at a small configuration,
equals the element-wise derivative of the expanded forward pass, exactly.

Example:
    >>> from symcnn.symbolic import ops
    >>> from symcnn.symbolic.tensors import symbol_array
    >>> arrays = {"input": symbol_array("x", (1, 1, 4, 3)), "weight": symbol_array("w", (1, 1, 2, 2))}
    >>> parameters = {"stride_h": 2, "stride_w": 1, "padding_h": 1, "padding_w": 0, "dilation_h": 1, "dilation_w": 1}
    >>> mismatches(ops.conv2d(bias=False), arrays, parameters)
    {'input': [], 'weight': []}
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import sympy
from sympy import Array

from symcnn import registry
from symcnn.registry import input_number, input_role, is_input_role
from symcnn.symbolic import layers

from symcnn.symbolic.adjoint import GradientFormula, gradients_of
from symcnn.symbolic.derive import gradient, vjp
from symcnn.symbolic.expand import evaluate
from symcnn.symbolic.instances import evaluate_layer
from symcnn.symbolic.ops import IndexFormula
from symcnn.symbolic.tensors import indices_of, symbol_array, upstream_array

__all__ = ["expand_gradient", "elementwise_gradients", "mismatches", "exactly_equal", "symbolic_network_gradients"]


def _canonical(expr):
    """``expr`` rebuilt node by node with SymPy's evaluation, so that conditions built with
    ``evaluate=False`` (max-pool routing) compare structurally with evaluated ones."""
    if not expr.args:
        return expr
    return expr.func(*[_canonical(arg) for arg in expr.args])


def exactly_equal(first: sympy.Expr, second: sympy.Expr) -> bool:
    """Exact equality of two expressions: their difference expands (or cancels) to zero."""
    difference = sympy.sympify(first) - sympy.sympify(second)
    if difference == 0 or sympy.expand(difference) == 0:
        return True
    if difference.has(sympy.Piecewise):
        difference = _canonical(sympy.sympify(first)) - _canonical(sympy.sympify(second))
        if sympy.expand(difference) == 0:
            return True
    if difference.has(sympy.Piecewise):  # g*Piecewise((1, c), (0, True)) vs Piecewise((g, c), (0, True))
        folded = sympy.piecewise_fold(sympy.expand(difference))
        if isinstance(folded, sympy.Piecewise):
            return all(exactly_equal(branch, 0) for branch, _ in folded.args)
        return sympy.expand(folded) == 0
    return sympy.cancel(sympy.together(difference)) == 0


def expand_gradient(gradient: GradientFormula, arrays: Mapping[str, Array], upstream, parameters) -> Array:
    """The general formula evaluated at concrete arrays: every element of ``dL/dT``."""
    operands = dict(arrays)
    if gradient.grad_output is not None:
        operands["grad_output"] = upstream
    return evaluate(gradient.as_index_formula(), operands, parameters)


def elementwise_gradients(forward: IndexFormula, arrays, parameters, roles):
    """The oracle: expand the forward pass, then differentiate element by element (the VJP)."""
    output = evaluate(forward, arrays, parameters)
    if isinstance(output, sympy.NDimArray):
        upstream = upstream_array(output.shape)
        return upstream, vjp(output, upstream, {role: arrays[role] for role in roles})
    return None, vjp(Array([output]), Array([sympy.S.One]), {role: arrays[role] for role in roles})


def mismatches(forward: IndexFormula, arrays: Mapping[str, Array], parameters: Mapping[str, int] = {}):
    """For each differentiable operand, the indices where the general formula and the element-wise
    derivative differ (empty lists when the formula is proved at this configuration)."""
    gradients = gradients_of(forward)
    upstream, oracle = elementwise_gradients(forward, arrays, parameters, list(gradients))
    result = {}
    for role, formula in gradients.items():
        general = expand_gradient(formula, arrays, upstream, parameters)
        result[role] = [
            tuple(index) for index in indices_of(general.shape)
            if not exactly_equal(general[index], oracle[role][index])
        ]
    return result


def _symbolic_layer(layer, inputs):
    """One layer expanded symbolically on fresh symbols (its inputs, each parameter and a drawn mask),
    through its registered formula; returns the output and the operand arrays by role."""
    operands = {input_role(number): symbol_array(f"in{layer.index}_{number}_" if number > 1 else f"in{layer.index}_",
                                                 value.shape) for number, value in enumerate(inputs, 1)}
    for name, shape in layer.parameter_shapes().items():
        role = name.rsplit(".", 1)[1]
        operands[role] = symbol_array(f"{role[0]}{layer.index}_", shape)
    if registry.get(layer.kind).mask_drop is not None:
        operands["mask"] = symbol_array(f"m{layer.index}_", inputs[0].shape)
    return evaluate_layer(layer.kind, operands, layer.settings), operands


def _substitution(operands, numbers):
    values = {}
    for role, array in operands.items():
        for index in np.ndindex(*numbers[role].shape):
            values[array[index]] = sympy.Float(float(numbers[role][index]), 30)
    return values


def _numeric(array, values) -> np.ndarray:
    shape = tuple(int(size) for size in array.shape)
    return np.array([float(array[index].xreplace(values)) for index in np.ndindex(*shape)]).reshape(shape)


def symbolic_network_gradients(spec, params: dict, x, labels, masks: Mapping[str, np.ndarray] = {}) -> dict:
    """Loss and every gradient of a network (spec) by the symbolic layers, for numeric values.

    Layer by layer: expand the layer's registered index formula on fresh symbols
    (symcnn.symbolic.instances), evaluate it with the numbers substituted, and backpropagate with
    the vector-Jacobian product of the expansion (symcnn.symbolic.derive.vjp). This is the oracle
    the generated kernels are checked against; keep the spec small (every element is a SymPy
    expression). ``masks`` holds each dropout layer's mask by label (a training pass's,
    :meth:`symcnn.runtime.network.Network.masks`). Returns ``{"loss": float, "<layer>.weight": array,
    ..., "input": array}``.
    """
    records, tensors = [], {"input": x}
    for layer in spec.layers:
        inputs = [tensors[source] for source in layer.inputs]
        output, operands = _symbolic_layer(layer, inputs)
        numbers = {input_role(number): value for number, value in enumerate(inputs, 1)}
        if "mask" in operands:
            if layer.label not in masks:
                raise ValueError(f"masks: {layer.label} draws a mask; give it (Network.masks)")
            numbers["mask"] = masks[layer.label]
        for role in [role for role in operands if role != "mask" and not is_input_role(role)]:
            numbers[role] = params[f"{layer.name}.{role}"]
        values = _substitution(operands, numbers)
        records.append((layer, output, operands, values))
        tensors[layer.label] = _numeric(output, values)
    value = tensors[spec.layers[-1].label]
    scores = symbol_array("z", value.shape)
    targets = np.zeros(value.shape)
    targets[np.arange(len(labels)), labels] = 1
    loss = layers.softmax_cross_entropy(scores, sympy.Array(targets.astype(int).tolist()))
    values = _substitution({"z": scores}, {"z": value})
    result = {"loss": float(loss.xreplace(values))}
    # each tensor's gradient, summed over the layers that read it (a fan-out), by label
    upstream_of = {spec.layers[-1].label: _numeric(gradient(loss, scores), values)}
    for layer, output, operands, values in reversed(records):
        learned = {role: array for role, array in operands.items() if role != "mask"}  # a mask is drawn
        grads = vjp(output, sympy.Array(upstream_of.pop(layer.label).tolist()), learned)
        for role in learned:
            if is_input_role(role):
                source = layer.inputs[input_number(role) - 1]
                upstream_of[source] = upstream_of.get(source, 0) + _numeric(grads[role], values)
            else:
                result[f"{layer.name}.{role}"] = _numeric(grads[role], values)
    result["input"] = upstream_of["input"]
    return result
