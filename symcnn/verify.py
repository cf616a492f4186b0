"""Proof by expansion: a general gradient formula, instantiated at a small configuration,
equals the element-wise derivative of the expanded forward pass, exactly.

Example:
    >>> from symcnn import ops
    >>> from symcnn.tensors import symbol_array
    >>> arrays = {"input": symbol_array("x", (1, 1, 4, 3)), "weight": symbol_array("w", (1, 1, 2, 2))}
    >>> parameters = {"stride_h": 2, "stride_w": 1, "padding_h": 1, "padding_w": 0, "dilation_h": 1, "dilation_w": 1}
    >>> mismatches(ops.conv2d(bias=False), arrays, parameters)
    {'input': [], 'weight': []}
"""

from __future__ import annotations

from typing import Mapping

import sympy
from sympy import Array

from symcnn.adjoint import GradientFormula, gradients_of
from symcnn.derive import vjp
from symcnn.expand import evaluate
from symcnn.ops import IndexFormula
from symcnn.tensors import indices_of, upstream_array

__all__ = ["expand_gradient", "elementwise_gradients", "mismatches", "exactly_equal"]


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
    for role, gradient in gradients.items():
        general = expand_gradient(gradient, arrays, upstream, parameters)
        result[role] = [
            tuple(index) for index in indices_of(general.shape)
            if not exactly_equal(general[index], oracle[role][index])
        ]
    return result
