"""Rewrites before printing: what a kernel computes differently from what a reader reads.

:mod:`symcnn.codegen.lower` applies these to a formula specialized to a layer's sizes, then prints
the result with :class:`~symcnn.printing.numba.NumbaPrinter`; the printer itself rewrites nothing.

- an index ``(k + 1 - u)/2``, exact under its divisibility condition, becomes ``(k + 1 - u) // 2``
  (:func:`integer_indices`);
- a read of a zero-padded input gets its bounds as conditions (:func:`padding_conditions`);
- a range condition on a loop variable with a unit coefficient becomes that loop's bound
  (:func:`fold_bound`), and one that every value of its indices meets is dropped (:func:`always_holds`:
  a depthwise convolution's channel ``c_out + c_in < 32`` with ``c_in`` in ``range(1)``);
- max pooling's routing indicator ``[(u, v) = first argmax]`` becomes a test of the window's
  argmax offset, which the forward kernel records (document 001's "switch variables";
  :func:`switch_test`);
- ``sum_j exp(z_j)`` is computed as ``exp(m) * sum_j exp(z_j - m)`` with ``m = max_j z_j``, so that
  large scores do not overflow (log-sum-exp; :func:`shifted_exponential_sum`);
- the logistic's derivative ``exp(a)/(exp(a) + 1)**2`` is computed as ``1/((exp(a) + 1)(exp(-a) + 1))``,
  the same function, which a large ``|a|`` sends to 0 where the first form gives inf/inf
  (:func:`bounded_logistic_slope`).

Example:
    >>> k, u = sympy.symbols("k u", integer=True, nonnegative=True)
    >>> integer_index((k + 1 - u) / 2)
    (k - u + 1) // 2
"""

from __future__ import annotations

import functools
from typing import Mapping, Optional

import sympy
from sympy import Expr, Indexed, IndexedBase, Sum, Symbol

from symcnn.printing.nodes import FloorDiv
from symcnn.symbolic.functions import FirstArgmax, MaxOver

__all__ = ["integer_index", "integer_indices", "padding_conditions", "fold_bound", "window_offset", "switch_test",
           "shifted_exponential_sum", "bounded_logistic_slope", "for_kernels", "always_holds"]


# Cached: a kernel prints the same indices for every lane, block value and unrolled tap (a register
# block's reads), and sympy.together, which this calls on each, took a third of a package's generation.
@functools.lru_cache(maxsize=1 << 16)
def integer_index(expr: Expr) -> Expr:
    """An integer-valued index with rational coefficients as a floor division (exact by its conditions);
    ``floor(a/b)`` and ``ceiling(a/b)`` of an integer ``a`` and a positive integer ``b`` as the floor
    divisions ``a // b`` and ``(a + b - 1) // b`` (an adaptive window's bounds), in integers."""
    expr = sympy.sympify(expr)
    if isinstance(expr, (sympy.floor, sympy.ceiling)):
        numerator, denominator = sympy.fraction(sympy.together(expr.args[0]))
        if denominator == 1:
            return integer_index(numerator)
        if isinstance(expr, sympy.floor):
            return FloorDiv(integer_index(numerator), denominator)
        if not (denominator.is_Integer and denominator > 0):
            return expr  # no exact integer form known: left to the printer
        return FloorDiv(integer_index(sympy.expand(numerator + denominator - 1)), denominator)
    if isinstance(expr, sympy.Mod):
        return sympy.Mod(integer_index(expr.args[0]), expr.args[1], evaluate=False)
    if isinstance(expr, (sympy.Add, sympy.Mul)):
        numerator, denominator = sympy.fraction(sympy.together(expr))
        if denominator != 1 and denominator.is_Integer:
            return FloorDiv(sympy.expand(numerator), denominator)
        if any(arg.has(sympy.floor, sympy.ceiling, sympy.Mod) for arg in expr.args):
            return expr.func(*[integer_index(arg) for arg in expr.args], evaluate=False)
    return expr


def integer_indices(expr: Expr) -> Expr:
    """Every array index, every comparison of indices and every ``floor`` or ``ceiling`` in ``expr``
    with integer arithmetic (a loop bound folded from a grouped convolution's channel condition, an
    adaptive window's bounds)."""
    def rewrite(node):
        if isinstance(node, sympy.floor):
            return integer_index(node)
        if isinstance(node, Indexed):
            return node.base[tuple(integer_index(index) for index in node.indices)]
        if isinstance(node, sympy.Rel) and not any(isinstance(a, Indexed) or a.has(Indexed) for a in node.args):
            return node.func(integer_index(node.lhs), integer_index(node.rhs), evaluate=False)
        if isinstance(node, (sympy.floor, sympy.ceiling)):
            return integer_index(node)
        return None

    return _replace(expr, rewrite)


def _replace(expr, rewrite):
    """Rewrite ``expr``'s outermost nodes that ``rewrite`` takes (it returns ``None`` for the others),
    leaving unevaluated the nodes it rebuilds (printer-ready)."""
    new = rewrite(expr)
    if new is not None:
        return new
    if not expr.args or isinstance(expr, (Symbol, sympy.Number, IndexedBase)):
        return expr
    args = [_replace(arg, rewrite) for arg in expr.args]
    if all(a is b for a, b in zip(args, expr.args)):
        return expr
    try:
        return expr.func(*args, evaluate=False)
    except TypeError:
        return expr.func(*args)


def padding_conditions(expr: Expr, padded: Mapping[IndexedBase, tuple]) -> list:
    """Bounds of every read of a zero-padded tensor: the read counts only inside the tensor."""
    conditions = []
    for read in sorted(expr.atoms(Indexed), key=sympy.default_sort_key):
        if read.base not in padded:
            continue
        for index, size in zip(read.indices, padded[read.base]):
            if index.is_Symbol or index.is_Integer:
                continue  # a loop index over the tensor's own axis, or a constant: in range
            conditions += [sympy.Le(0, index, evaluate=False), sympy.Lt(index, size, evaluate=False)]
    return conditions


def window_offset(position, limits) -> Expr:
    """The row-major offset of ``position`` in the window ``limits``, from its first element: ``u*K_w + v``
    for a pool's window from 0, ``(k - k_0)*(l_1 - l_0 + 1) + l - l_0`` for one from ``(k_0, l_0)`` to
    ``(k_1, l_1)`` (an adaptive window). The forward kernel records it as the switch; the gradient tests it.

    >>> u, v = sympy.symbols("u v", integer=True, nonnegative=True)
    >>> window_offset((u, v), ((u, 0, 1), (v, 0, 2)))
    3*u + v
    """
    offset, extent = sympy.S.Zero, sympy.S.One
    for coordinate, (_, low, high) in reversed(list(zip(position, limits))):
        offset += (coordinate - low) * extent
        extent *= high - low + 1
    return offset


def switch_test(node: FirstArgmax, switch: IndexedBase, window: MaxOver, indices) -> Expr:
    """``[(u, v) = first argmax of window (i, j)]`` as ``switch[n, c, i, j] == u*K_w + v``.

    ``window`` is the forward's ``MaxOver`` at output ``indices``; the output position whose window
    ``node`` scans (``(k - u)/s_h`` for a pool, ``i`` itself for an adaptive pool) is solved by matching
    the two windows' reads and bounds, and checked: a window that matches no output is an error.
    """
    renamed = window.xreplace({var: limit[0] for (var, _, _), limit in zip(window.limits, node.limits)})
    pairs = list(zip(renamed.function.atoms(Indexed).pop().indices, node.function.atoms(Indexed).pop().indices))
    pairs += [pair for mine, theirs in zip(renamed.limits, node.limits) for pair in zip(mine[1:], theirs[1:])]
    position = {}
    for expected, actual in pairs:
        difference = sympy.expand(expected.xreplace(position) - actual)
        unknown = [index for index in indices if index not in position and difference.has(index)]
        if len(unknown) == 1 and not difference.has(sympy.floor, sympy.ceiling) and sympy.Poly(
                difference, unknown[0]).degree() == 1:
            coefficient = difference.coeff(unknown[0])
            position[unknown[0]] = -(difference - coefficient * unknown[0]) / coefficient
    matched = renamed.xreplace(position)
    if any(sympy.expand(mine - theirs) != 0 for mine, theirs in zip(
            (matched.function, *[bound for limit in matched.limits for bound in limit[1:]]),
            (node.function, *[bound for limit in node.limits for bound in limit[1:]]))):
        raise ValueError(f"no output of the forward pass has the window of {node}")
    origin = tuple(position.get(index, index) for index in indices)
    return sympy.Eq(switch[origin], window_offset(node.position, node.limits), evaluate=False)


def shifted_exponential_sum(reduction: Expr, peak: Symbol) -> Optional[tuple[MaxOver, Sum]]:
    """``sum_j exp(z_j)`` as ``exp(peak) * sum_j exp(z_j - peak)`` with ``peak = max_j z_j``: the
    two reductions ``(max_j z_j, sum_j exp(z_j - peak))``, or ``None`` when ``reduction`` is not a
    sum of one exponential. No term of the shifted sum exceeds 1, so none overflows (log-sum-exp).

    >>> z, j = IndexedBase("z"), Symbol("j")
    >>> shifted_exponential_sum(Sum(sympy.exp(z[j]), (j, 0, 9)), Symbol("m"))
    (max_{j}(z[j]), Sum(exp(-m + z[j]), (j, 0, 9)))
    """
    if not isinstance(reduction, Sum):
        return None
    exponentials = list(reduction.function.atoms(sympy.exp))
    if len(exponentials) != 1 or reduction.function != exponentials[0]:
        return None
    exponent = exponentials[0].args[0]
    return MaxOver(exponent, *reduction.limits), Sum(sympy.exp(exponent - peak), *reduction.limits)


def bounded_logistic_slope(expr: Expr) -> Expr:
    """Every ``exp(a)*(exp(a) + 1)**-2`` of ``expr`` (the sigmoid's derivative, as SymPy differentiates
    ``1/(1 + exp(-x))``) as ``1/((exp(a) + 1)*(exp(-a) + 1))``: the same function (multiply above and
    below by ``exp(-a)``). In float32 ``exp(a)`` overflows for ``a`` above 88.7 (float64: 709.8), and
    the first form is then inf/inf, NaN, where the gradient is 0 (about 1e-39): the second form's
    denominator is inf, the value 0. No subtraction, so no precision lost anywhere.

    >>> x = Symbol("x")
    >>> bounded_logistic_slope(sympy.diff(1 / (1 + sympy.exp(-x)), x))
    1/((1 + exp(-x))*(exp(x) + 1))
    """
    def rewrite(product: sympy.Mul) -> Expr:
        factors = list(product.args)
        for exponential in [factor for factor in factors if isinstance(factor, sympy.exp)]:
            square = (exponential + 1) ** -2
            if square in factors:
                factors.remove(exponential)
                factors.remove(square)
                argument = exponential.args[0]
                slope = 1 / ((sympy.exp(argument) + 1) * (sympy.exp(-argument) + 1))
                return rewrite(sympy.Mul(*factors, slope, evaluate=False)) if factors else slope
        return product

    if not expr.has(sympy.exp):  # nothing to rewrite: skip replace's walk over every product
        return expr
    return expr.replace(lambda node: isinstance(node, sympy.Mul), rewrite)


def for_kernels(expr: Expr) -> Expr:
    """The rewrites of a kernel's arithmetic, before printing: :func:`bounded_logistic_slope`, then
    :func:`integer_indices`. (``tanh`` is printed as it is, a call of the kernels' vector ``tanh``:
    :mod:`symcnn.runtime.vector_math`.)"""
    return integer_indices(bounded_logistic_slope(expr))


def fold_bound(condition, bounds: dict, order: list, outer: set) -> bool:
    """Fold ``condition`` into ``bounds[var] = [start, stop)`` when it bounds one loop variable with
    an integer coefficient by what is known before that loop; ``True`` when folded.

    ``0 <= i + u - 1`` starts ``u`` at ``max(0, 1 - i)``, so that the inner loops test nothing
    they need not. A strided window's ``0 <= 2*i + u - 1`` (coefficient 2) starts ``i`` at
    ``max(0, (2 - u) // 2)``, the least integer ``i`` with ``2*i >= 1 - u`` (Python's ``//`` floors).
    """
    difference = _at_most_zero(condition)
    if difference is None:
        return False
    candidates = [var for var in order if difference.has(var)]
    if not candidates:
        return False
    variable = candidates[-1]  # bound the innermost loop; the outer ones are known there
    coefficient = difference.coeff(variable)
    rest = sympy.expand(difference - coefficient * variable)
    known = outer | set(order[:order.index(variable)])
    if not coefficient.is_Integer or coefficient == 0 or rest.has(variable) or not all(
            symbol in known or not _is_index(symbol) for symbol in rest.free_symbols):
        return False
    if not all(term.is_integer for term in sympy.Add.make_args(rest)):
        return False
    start, stop = bounds[variable]
    step = abs(coefficient)
    if coefficient > 0:  # step*variable + rest <= 0: variable <= floor(-rest/step)
        bounds[variable][1] = sympy.Min(stop, _floor_division(-rest, step) + 1)
    else:  # rest - step*variable <= 0: variable >= ceil(rest/step)
        bounds[variable][0] = sympy.Max(start, _floor_division(rest + step - 1, step))
    return True


def _floor_division(numerator: Expr, step: int) -> Expr:
    """``floor(numerator / step)``: a number when ``numerator`` is one, else printed with ``//``."""
    if step == 1:
        return numerator
    if numerator.is_Integer:
        return sympy.Integer(numerator // step)
    return FloorDiv(numerator, step)


def _at_most_zero(condition) -> Optional[Expr]:
    """An integer inequality as ``d`` with ``d <= 0`` meaning the condition holds; None for others."""
    if not isinstance(condition, (sympy.LessThan, sympy.StrictLessThan, sympy.GreaterThan,
                                  sympy.StrictGreaterThan)) or condition.has(sympy.Mod, Indexed):
        return None
    if isinstance(condition, (sympy.GreaterThan, sympy.StrictGreaterThan)):
        difference = condition.rhs - condition.lhs  # rhs - lhs <= 0 (or < 0)
    else:
        difference = condition.lhs - condition.rhs
    if isinstance(condition, (sympy.StrictLessThan, sympy.StrictGreaterThan)):
        difference = difference + 1  # integers: d < 0 is d + 1 <= 0
    return sympy.expand(difference)


def always_holds(condition, ranges: Mapping[Symbol, tuple[int, int]]) -> bool:
    """Whether the linear integer inequality ``condition`` holds for every value of its symbols in
    ``ranges`` (``symbol -> (low, high)``, inclusive): its largest violation over that box, each
    symbol at the end its coefficient's sign picks, is not positive. False when unsure (a symbol
    without a range, a product of symbols, a ``Mod``).

    >>> c, u = sympy.symbols("c u", integer=True, nonnegative=True)
    >>> always_holds(c + u < 32, {c: (0, 31), u: (0, 0)}), always_holds(c + u < 32, {c: (0, 31), u: (0, 1)})
    (True, False)
    """
    difference = _at_most_zero(condition)
    if difference is None:
        return False
    worst = sympy.Integer(0)
    for term in sympy.Add.make_args(difference):
        coefficient, symbols = term.as_coeff_Mul()
        if not coefficient.is_Rational:
            return False
        if symbols == 1:
            worst += coefficient
        elif symbols in ranges:
            low, high = ranges[symbols]
            worst += coefficient * (high if coefficient > 0 else low)
        else:  # a product or a power of symbols, a function of them, a symbol without a range
            return False
    return bool(worst <= 0)


def _is_index(symbol) -> bool:
    """Index variables are nonnegative integers that are not shape parameters (sizes are positive)."""
    return bool(symbol.is_integer and symbol.is_nonnegative and not symbol.is_positive)
