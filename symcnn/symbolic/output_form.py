"""An element-wise layer's input gradient written in its output, where that saves a function call.

tanh's derivative is ``1 - tanh(X)^2``, and ``tanh(X)`` is the layer's output ``Y``: the gradient
``dL/dX = dL/dY - tanh(X)^2 dL/dY`` is also ``dL/dY - Y^2 dL/dY``, which reads ``Y`` (kept from the
forward pass) and computes no ``exp``. The sigmoid's ``exp(-X) dL/dY / (1 + exp(-X))^2`` is ``Y (1 - Y)
dL/dY``. PyTorch's ``tanh_backward`` and ``sigmoid_backward`` take the output for the same reason.

:func:`gradient_from_output` finds that form from the formula, for any element-wise op ``Y = f(X)``: it
replaces ``f(X)`` by ``Y`` where it appears, then any ``X`` left by an inverse of ``f`` that SymPy solves
for, and simplifies. A piecewise op is rewritten branch by branch, its conditions ``X > a`` becoming
``Y > f(a)``: ELU's gradient is ``dL/dY`` where ``Y > 0``, else ``(Y + alpha) dL/dY``. The form is kept
only where it reads no ``X``, calls no more functions (``exp``, ``tanh``, ...) than the derived one, and
equals it at sample points on both sides of 0 and of each threshold ``a``, at the layer's settings (a
check of SymPy's inverse, which may be a complex branch, and of the conditions, which hold where ``f``
increases). ReLU's ``[X > 0] dL/dY`` becomes ``[Y > 0] dL/dY`` and LeakyReLU's likewise: the same cost, but
a gradient that reads no ``X`` lets a training pass store ``Y`` straight from the kernel of the layer
before (:mod:`symcnn.runtime.evaluation`), so that ``X`` is never written. A form that calls more
functions than the derived one is not kept: ``Y = X^3 + X``'s ``3 X^2 + 1`` written in ``Y`` takes roots.

The derivations (``symcnn derive``, the reports) show the gradient as derived; the kernels compute this
form, and their docstrings show it.

Example:
    >>> from symcnn.symbolic import ops
    >>> from symcnn.symbolic.adjoint import derive_gradient
    >>> gradient_from_output(derive_gradient(ops.tanh(), "input")).rhs
    -Y[n, c, i, j]**2*dL/dY[n, c, i, j] + dL/dY[n, c, i, j]
    >>> gradient_from_output(derive_gradient(ops.relu(), "input")).rhs
    Piecewise((dL/dY[n, c, i, j], Y[n, c, i, j] > 0), (0, True))
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Mapping, Optional

import sympy
from sympy import Dummy, Expr, Indexed, Piecewise, Sum

from symcnn.symbolic.adjoint import GradientFormula

__all__ = ["gradient_from_output"]

#: Where the derived and the rewritten gradient must agree (relative 1e-9): both signs, and 0.
SAMPLE_POINTS = (-2.25, -0.625, 0.0, 0.375, 1.875)

# An element of the input and of the output, as real scalars: the same two for every formula, so that
# _rewritten's cache serves each op's layers after the first.
_X, _Y = Dummy("x", real=True), Dummy("y", real=True)


def gradient_from_output(gradient: GradientFormula, values: Optional[Mapping] = None) -> Optional[GradientFormula]:
    """``gradient`` (an element-wise op's, with respect to its input) with every read of the input
    ``X`` replaced by reads of the output ``Y``, where that calls no more functions; else ``None``. A
    form is checked at the settings in ``values`` (ELU's ``alpha``; 1.25 for one not given): ELU's
    holds for a positive ``alpha`` only."""
    forward = gradient.forward
    if gradient.wrt != "input" or len(forward.operands) != 1 or forward.rhs.has(Sum):
        return None
    (operand,) = forward.operands
    element = operand.base[forward.indices]
    if tuple(operand.shape) != tuple(forward.output.shape) or forward.rhs.atoms(Indexed) != {element}:
        return None
    if any(term.limits or term.conditions for term in gradient.terms):
        return None
    at = dict(zip(forward.indices, gradient.indices))
    own_input, own_output = element.xreplace(at), forward.output.base[tuple(gradient.indices)]
    if any(read.base == operand.base and read != own_input
           for term in gradient.terms for read in term.body.atoms(Indexed)):
        return None
    x, y = _X, _Y
    function = forward.rhs.xreplace({element: x})
    derived = [term.body.xreplace({own_input: x}) for term in gradient.terms]
    symbols = forward.rhs.free_symbols | gradient.rhs.free_symbols
    settings = tuple(sorted(((sympy.sympify(key), sympy.sympify(value)) for key, value in (values or {}).items()
                             if sympy.sympify(key) in symbols), key=lambda pair: str(pair[0])))
    bodies = [_rewritten(function, body, x, y, settings) if body.has(x) else body for body in derived]
    if any(body is None for body in bodies) or sum(map(_calls, bodies)) > sum(map(_calls, derived)):
        return None
    return replace(gradient, terms=tuple(replace(term, body=body.xreplace({y: own_output}))
                                         for term, body in zip(gradient.terms, bodies)))


@functools.lru_cache(maxsize=256)
def _rewritten(function: Expr, body: Expr, x: Dummy, y: Dummy, settings: tuple) -> Optional[Expr]:
    """``body`` (a function of ``x``) as a function of ``y = function(x)`` alone, calling the fewest
    functions of the forms found, or ``None``. (SymPy's solve and substitutions raise various errors
    on a piecewise function, NaN comparisons among them: no form, then.)"""
    if isinstance(function, Piecewise):
        return _branchwise(function, body, x, y, settings)
    try:
        candidates = [body.subs(function, y)]
        if candidates[0].has(x):  # each inverse, simplified as it is and in exponentials (sinh(log(z)))
            substituted = [candidates[0].subs(x, inverse) for inverse in sympy.solve(sympy.Eq(y, function), x)]
            candidates = [sympy.simplify(form) for expr in substituted for form in (expr, expr.rewrite(sympy.exp))]
        found = [sympy.expand(candidate) for candidate in candidates
                 if not candidate.has(x) and _agree(body, candidate, x, y, function, settings)]
    except (NotImplementedError, ValueError, TypeError):
        return None
    return min(found, key=_calls, default=None)


def _branchwise(function: Piecewise, body: Expr, x: Dummy, y: Dummy, settings: tuple) -> Optional[Expr]:
    """A piecewise ``body`` over the conditions of a piecewise ``function`` (ELU's ``X > 0``, then the
    rest) in ``y``: each branch rewritten by its branch of ``function``, each condition ``X > a`` as
    ``Y > f(a)`` (true where ``f`` increases; the sample points, ``a``'s neighbours among them, check it)."""
    if not isinstance(body, Piecewise) or [c for _, c in body.args] != [c for _, c in function.args]:
        return None
    branches, thresholds = [], []
    for (value, condition), (derivative, _) in zip(function.args, body.args):
        rewritten = _rewritten(value, derivative, x, y, settings) if derivative.has(x) else derivative
        if condition != sympy.true:
            if not (isinstance(condition, sympy.core.relational.Relational) and condition.lhs == x
                    and condition.rhs.is_number):
                return None
            thresholds.append(float(condition.rhs))
            condition = condition.func(y, value.subs(x, condition.rhs))
        if rewritten is None:
            return None
        branches.append((rewritten, condition))
    candidate = Piecewise(*branches)
    return candidate if _agree(body, candidate, x, y, function, settings, thresholds) else None


def _calls(expr: Expr) -> int:
    """How many function applications ``expr`` evaluates: ``exp``, ``tanh``, ``Piecewise``, ..., and powers
    other than integer ones (a root, ``Y**(2/3)``, is a ``pow`` call; ``Y**2`` is a multiplication)."""
    return sum(1 for node in sympy.preorder_traversal(expr)
               if isinstance(node, sympy.Function) or (isinstance(node, sympy.Pow) and not node.exp.is_Integer))


def _agree(body: Expr, candidate: Expr, x: Dummy, y: Dummy, function: Expr, settings: tuple, thresholds=()) -> bool:
    """Whether ``body`` at ``x`` equals ``candidate`` at ``y = function(x)``, at every sample point and
    on either side of each of ``thresholds`` (the ``settings`` given, every other symbol and the
    upstream gradient's reads set to 1.25)."""
    others = {symbol: sympy.Float(1.25) for symbol in (body.free_symbols | candidate.free_symbols) - {x, y}}
    others |= dict(settings)
    others |= {read: sympy.Float(1.25) for read in (body.atoms(Indexed) | candidate.atoms(Indexed))}
    for point in (*SAMPLE_POINTS, *(threshold + side for threshold in thresholds for side in (-0.5, 0.5))):
        value = sympy.Float(point, 30)
        expected = complex(body.xreplace(others).xreplace({x: value}).evalf(30))
        output = function.xreplace(others).xreplace({x: value}).evalf(30)
        got = complex(candidate.xreplace(others).xreplace({y: output}).evalf(30))
        if not abs(got - expected) <= 1e-9 * max(1.0, abs(expected)):
            return False
    return True
