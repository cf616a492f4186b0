"""Expression nodes that only printers read, and how the printers read conditions.

:class:`Iverson` (a display node: ``[conditions] * term``) is built by :func:`symcnn.printing.text.readable`
and by the report's rewrites; :class:`FloorDiv` (a code node: an exact integer division of an index)
by the kernel lowering. Both the text and the LaTeX printer order conditions as document 000 does
(:func:`ordered_conditions`) and print divisibility ``Eq(Mod(a, s), 0)`` as ``s | a``.

Example:
    >>> from sympy import Eq, Mod, symbols
    >>> k, s = symbols("k s")
    >>> divisibility(Eq(Mod(k + 1, s), 0))
    (k + 1, s)
"""

from __future__ import annotations

import sympy
from sympy import Eq, Expr, Mod, Piecewise

__all__ = ["Iverson", "FloorDiv", "is_iverson", "divisibility", "ordered_conditions"]


class Iverson(Expr):
    """Display only: ``[c_1 and c_2 ...] * term``, conditions kept as written.

    (``And`` would rewrite each comparison into SymPy's canonical form, ``H_out >= 1 + i``,
    which is not how the documents state a range.)
    """

    def __new__(cls, term, conditions):
        return Expr.__new__(cls, term, sympy.Tuple(*conditions))

    @property
    def term(self):
        return self.args[0]

    @property
    def conditions(self):
        return tuple(self.args[1])


class FloorDiv(Expr):
    """Integer division ``a // b`` of an index, exact where its conditions hold (code only)."""

    def __new__(cls, numerator, denominator):
        return Expr.__new__(cls, sympy.sympify(numerator), sympy.sympify(denominator))

    def _sympystr(self, printer):
        return f"({printer._print(self.args[0])}) // {printer._print(self.args[1])}"


def is_iverson(expr: Piecewise) -> bool:
    """Whether ``expr`` is ``Piecewise((term, condition), (0, True))``: a term times a condition."""
    return len(expr.args) == 2 and expr.args[1].cond == sympy.true and expr.args[1].expr == 0


def divisibility(expr) -> tuple[Expr, Expr] | None:
    """``(numerator, divisor)`` when ``expr`` is ``Eq(Mod(numerator, divisor), 0)``."""
    if isinstance(expr, Eq) and isinstance(expr.lhs, Mod) and expr.rhs == 0:
        return expr.lhs.args
    return None


def _condition_kind(condition) -> int:
    if divisibility(condition) is not None:
        return 0
    if isinstance(condition, sympy.Rel) and condition.lhs == 0:
        return 1  # a lower bound, 0 <= index
    return 2


def ordered_conditions(conditions):
    """Divisibility first, then lower bounds, then upper bounds: document 000's order."""
    return sorted(conditions, key=lambda c: (_condition_kind(c), sympy.default_sort_key(c)))
