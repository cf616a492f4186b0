"""One tap per output element: a gather whose window taps are each fixed by a divisibility condition.

A pooling window as wide as its stride (a 2x2 max pool at stride 2) tiles its input: each input
element lies in exactly one window, at one tap. Its input gradient, as derived, still runs over
every tap and tests each (``[2 | k - u and 2 | l - v and 0 <= (k - u)/2 ...]``: 4 taps, 6 tests
each). The condition ``s | e - u`` with ``u`` running over ``s`` consecutive values ``u_0 ..
u_0 + s - 1`` holds for one ``u`` alone, ``u = e - s*floor((e - u_0)/s)``; substituted, the sum over
``u`` and its test go, and the quotient ``(e - u)/s`` is ``floor((e - u_0)/s)`` (``k // 2``). A
range test that every output element passes is dropped. Exact, for any formula; applied only where
no sum is left (an element-wise gather), since a kernel that still sums keeps the phases rewrite
(:mod:`symcnn.codegen.phases`) and the vector schedules it leads to.

Example (a 1-D max-pool gradient at stride 2 over 8 inputs):
    >>> from sympy import Eq, IndexedBase, Le, Mod
    >>> from symcnn.printing.numba import NumbaPrinter
    >>> G = IndexedBase("G")
    >>> k, u = (Symbol(name, integer=True, nonnegative=True) for name in "ku")
    >>> term = GatherTerm(((u, 0, 1),), (Eq(Mod(k - u, 2), 0), Le(0, (k - u)/2), Le((k - u)/2, 3)), u * G[(k - u)/2])
    >>> tapped = one_tap(term, {k: (0, 7)})
    >>> tapped.limits, tapped.conditions, NumbaPrinter({G: "G"}).doprint(tapped.body)
    ((), (), '(k - 2*((k) // 2))*G[(k) // 2]')
"""

from __future__ import annotations

import itertools
from typing import Mapping, Optional

import sympy
from sympy import Expr, Symbol

from symcnn.printing.nodes import FloorDiv, divisibility
from symcnn.symbolic.adjoint import GatherTerm

__all__ = ["one_tap", "one_tap_terms"]

#: A range test is checked at every combination of the output indices it reads, up to this many.
MAX_CHECKED = 1 << 16


def _solve(term: GatherTerm, condition) -> Optional[tuple[Symbol, Expr, Symbol, Expr]]:
    """``(u, value, q, quotient)`` when ``condition`` is ``s | e - u`` (or ``s | u - e``) with ``u`` a
    summation index over ``s`` consecutive values from ``u_0`` and ``e`` free of summation indices: the one
    ``u`` that passes is ``value = e - s*q``, ``q`` a placeholder for ``quotient = (e - u_0) // s``."""
    parts = divisibility(condition)
    if parts is None or not parts[1].is_Integer or parts[1] < 2:
        return None
    numerator, divisor = parts
    summed = {var: (sympy.sympify(low), sympy.sympify(high)) for var, low, high in term.limits}
    for var, (low, high) in summed.items():
        coefficient = numerator.coeff(var)
        if coefficient not in (1, -1) or not (low.is_Integer and high.is_Integer) or high - low + 1 != divisor:
            continue
        rest = -coefficient * (numerator - coefficient * var)  # numerator = -coefficient*(rest - var)
        if rest.free_symbols & set(summed):
            continue
        quotient = Symbol(f"_q_{var}", integer=True)
        return var, rest - divisor * quotient, quotient, FloorDiv(rest - low, divisor)
    return None


def _always(condition, ranges: Mapping[Symbol, tuple[int, int]]) -> bool:
    """Whether ``condition`` holds at every value of the output indices it reads (each in ``ranges``)."""
    variables = sorted(condition.free_symbols, key=str)
    if not all(var in ranges for var in variables):
        return False
    values = [range(ranges[var][0], ranges[var][1] + 1) for var in variables]
    if sympy.prod([len(axis) for axis in values]) > MAX_CHECKED:
        return False
    check = sympy.lambdify(variables, condition.replace(
        lambda node: isinstance(node, FloorDiv), lambda node: sympy.floor(node.args[0] / node.args[1])))
    return all(bool(check(*point)) for point in itertools.product(*values))


def one_tap(term: GatherTerm, ranges: Mapping[Symbol, tuple[int, int]]) -> GatherTerm:
    """``term`` with each tap that a divisibility condition fixes substituted, when no sum is left;
    else ``term`` as it is. ``ranges``: each output index's first and last value."""
    conditions, body, limits = list(term.conditions), term.body, list(term.limits)
    quotients = {}
    for condition in term.conditions:
        solved = _solve(GatherTerm(tuple(limits), (), body), condition)
        if solved is None:
            continue
        var, value, quotient, floor = solved
        conditions.remove(condition)
        limits = [limit for limit in limits if limit[0] != var]
        conditions = [c.xreplace({var: value}) for c in conditions]
        body = body.xreplace({var: value})
        quotients[quotient] = floor
    if limits or not quotients:
        return term
    conditions = [c.xreplace(quotients) for c in conditions]  # (e - u)/s is now q: its quotient
    kept = tuple(c for c in conditions if c is not sympy.true and not _always(c, ranges))
    return GatherTerm((), kept, body.xreplace(quotients))


def one_tap_terms(terms, indices, shape) -> list[GatherTerm]:
    """:func:`one_tap` of each of a kernel's terms (output ``indices`` of constant extents ``shape``)."""
    ranges = {var: (0, int(size) - 1) for var, size in zip(indices, shape) if size.is_Integer}
    return [one_tap(term, ranges) for term in terms]
