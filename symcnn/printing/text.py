"""Plain text in the documents' notation, and the display rewrite every view applies first.

:class:`SymcnnStrPrinter` subclasses SymPy's ``StrPrinter`` and only overrides ``_print_<Class>``:

- a condition ``Piecewise((term, cond), (0, True))`` prints as an Iverson bracket ``[cond] * term``, as
  does a formula's :class:`~symcnn.symbolic.functions.Bracket` factor (after :func:`readable`);
- divisibility ``Eq(Mod(a, s), 0)`` prints as ``s | a``.

:func:`readable` rewrites an expression for display before printing (names the output sizes
``H_out``, keeps comparisons as stated); the LaTeX printer (:mod:`symcnn.printing.latex`) prints
its result too.

Example:
    >>> from sympy import Eq, Mod, symbols
    >>> k, s = symbols("k s")
    >>> text(Eq(Mod(k + 1, s), 0))
    's | k + 1'
"""

from __future__ import annotations

from typing import Mapping

import sympy
from sympy import Expr, Piecewise, Symbol
from sympy.printing.str import StrPrinter

from symcnn.printing.nodes import Iverson, divisibility, in_twin_order, is_iverson, ordered_conditions
from symcnn.symbolic.adjoint import lift_conditions
from symcnn.symbolic.functions import Bracket

__all__ = ["SymcnnStrPrinter", "text", "readable", "OUT_SIZE_NAMES"]

#: Display names for the derived output sizes.
OUT_SIZE_NAMES = {"out_height": Symbol("H_out", integer=True, positive=True),
                  "out_width": Symbol("W_out", integer=True, positive=True)}


class SymcnnStrPrinter(StrPrinter):
    """Plain text: ``[condition] * term`` for a condition, ``s | a`` for divisibility."""

    def _as_ordered_terms(self, expr, order=None):
        parent = super()._as_ordered_terms
        return in_twin_order(expr, lambda twin: parent(twin, order)) or parent(expr, order)

    def _print_Iverson(self, expr):
        conditions = " and ".join(self._print(c) for c in ordered_conditions(expr.conditions))
        return f"[{conditions}]" + ("" if expr.term == 1 else f" * {self.parenthesize(expr.term, 50)}")

    def _print_Piecewise(self, expr):
        if is_iverson(expr):
            term, condition = expr.args[0]
            return f"[{self._print(condition)}]" + ("" if term == 1 else f" * {self.parenthesize(term, 50)}")
        if len(expr.args) == 2 and expr.args[1].cond == sympy.true:
            (first, condition), (otherwise, _) = expr.args
            return f"({self._print(first)} if {self._print(condition)} else {self._print(otherwise)})"
        return self._print_Basic(expr)

    def _print_Equality(self, expr):
        parts = divisibility(expr)
        if parts:
            numerator, divisor = parts
            return f"{self._print(divisor)} | {self._print(numerator)}"
        return super()._print_Relational(expr)

    def _print_And(self, expr):
        return " and ".join(self._print(arg) for arg in ordered_conditions(expr.args))

    def _print_Sum(self, expr):
        limits = ", ".join(f"{self._print(v)}={self._print(lo)}..{self._print(hi)}" for v, lo, hi in expr.limits)
        return f"sum_{{{limits}}} {self.parenthesize(expr.function, 50)}"


def text(expr) -> str:
    return SymcnnStrPrinter().doprint(expr)


def readable(expr, parameters: Mapping[str, Expr]):
    """``expr`` rewritten for display, not for computing: the derived output sizes named
    ``H_out`` and ``W_out``, every comparison written ``a <= b`` (or ``a < b``) as stated,
    and fractions of indices collected (``(k - u)/2``, not ``k/2 - u/2``). Build conditions
    as :class:`~symcnn.printing.nodes.Iverson` brackets rather than ``And`` to keep them as stated.
    """
    replacements = {}
    for role, name in OUT_SIZE_NAMES.items():
        size = parameters.get(role)
        if size is not None and not sympy.sympify(size).is_Integer:
            replacements[sympy.sympify(size) - 1] = name - 1
            replacements[sympy.sympify(size)] = name
    return _rebuild(sympy.sympify(expr), replacements)


def _rebuild(expr, replacements):
    if expr in replacements:
        return replacements[expr]
    if not expr.args or isinstance(expr, (sympy.Symbol, sympy.Number)):
        return expr
    if isinstance(expr, Piecewise) and is_iverson(expr):
        (term, condition), _ = expr.args
        conditions = condition.args if isinstance(condition, sympy.And) else (condition,)
        return Iverson(_rebuild(term, replacements), [_rebuild(c, replacements) for c in conditions])
    if isinstance(expr, (sympy.Mul, Bracket)) and expr.has(Bracket):  # a formula's bracket: [conditions] * term
        conditions, term = lift_conditions(expr)
        if conditions:
            return Iverson(_rebuild(term, replacements), [_rebuild(c, replacements) for c in conditions])
    args = [_rebuild(arg, replacements) for arg in expr.args]
    if isinstance(expr, sympy.Rel):
        lhs, rhs = (sympy.factor_terms(side) for side in args)
        if isinstance(expr, (sympy.GreaterThan, sympy.StrictGreaterThan)):  # a >= b  ->  b <= a
            lhs, rhs = rhs, lhs
            relation = sympy.LessThan if isinstance(expr, sympy.GreaterThan) else sympy.StrictLessThan
        else:
            relation = expr.func
        if relation in (sympy.LessThan, sympy.StrictLessThan):
            return relation(lhs, rhs, evaluate=False)
        return relation(lhs, rhs)
    if isinstance(expr, sympy.Indexed):
        return expr.func(*[sympy.factor_terms(arg) if isinstance(arg, Expr) else arg for arg in args])
    if all(new is old for new, old in zip(args, expr.args)):
        return expr
    if isinstance(expr, (sympy.And, Piecewise)):
        return expr.func(*args, evaluate=False)
    return expr.func(*args)
