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

from typing import Optional

import sympy
from sympy import Basic, Eq, Expr, Mod, Piecewise, Symbol
from sympy.printing.precedence import PRECEDENCE

__all__ = ["Iverson", "FloorDiv", "OrderedSum", "Assign", "Guard", "is_iverson", "divisibility", "ordered_conditions",
           "is_lower_bound", "HEIGHT_TWINS", "in_twin_order"]


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

    is_commutative = True  # a number: a product prints it among the factors, a quotient's denominator as such
    #: Just below a product's (SymPy's printers read this attribute): a product or power around it
    #: parenthesizes it, since Python reads ``a*(b) // c`` as ``(a*b) // c``.
    precedence = PRECEDENCE["Mul"] - 1

    def __new__(cls, numerator, denominator):
        return Expr.__new__(cls, sympy.sympify(numerator), sympy.sympify(denominator))

    def _sympystr(self, printer):
        denominator = printer._print(self.args[1])  # parenthesized as NumbaPrinter does: a // (b*c)
        return f"({printer._print(self.args[0])}) // {denominator if self.args[1].is_Atom else f'({denominator})'}"

    def _numpycode(self, printer):
        """For ``sympy.lambdify`` on integer arrays: exact, where ``floor(k/49)`` computes ``(1/49)*k`` in floats."""
        return f"numpy.floor_divide({printer._print(self.args[0])}, {printer._print(self.args[1])})"


def is_iverson(expr: Piecewise) -> bool:
    """Whether ``expr`` is ``Piecewise((term, condition), (0, True))``: a term times a condition."""
    return len(expr.args) == 2 and expr.args[1].cond == sympy.true and expr.args[1].expr == 0


def divisibility(expr) -> tuple[Expr, Expr] | None:
    """``(numerator, divisor)`` when ``expr`` is ``Eq(Mod(numerator, divisor), 0)``."""
    if isinstance(expr, Eq) and isinstance(expr.lhs, Mod) and expr.rhs == 0:
        return expr.lhs.args
    return None


def is_lower_bound(condition) -> bool:
    """Whether ``condition`` bounds an index from below: ``0 <= (k - u)/s``, or ``a <= k`` with the bare
    index on the right (an adaptive window's ``floor(H_in*i/H_out) <= k``).

    >>> from sympy import Le, floor, symbols
    >>> k, i = symbols("k i", integer=True, nonnegative=True)
    >>> is_lower_bound(Le(floor(5*i/3), k)), is_lower_bound(Le(k, 2*i + 1))
    (True, False)
    """
    if not isinstance(condition, (sympy.LessThan, sympy.StrictLessThan)):
        return isinstance(condition, sympy.Rel) and condition.lhs == 0
    return condition.lhs == 0 or (condition.rhs.is_Symbol and not condition.lhs.is_Symbol)


def _condition_kind(condition) -> int:
    if divisibility(condition) is not None:
        return 0
    if is_lower_bound(condition):
        return 1  # a lower bound, 0 <= index
    return 2


def ordered_conditions(conditions):
    """Divisibility first, then lower bounds, then upper bounds: document 000's order."""
    return sorted(conditions, key=lambda c: (_condition_kind(c), sympy.default_sort_key(c)))

#: A width symbol's height twin. An expression in the width only prints its terms in the order its height
#: twin's print: ``W_out = W_in - K_w + 1`` beside ``H_out = H_in - K_h + 1``, not ``-K_w + W_in + 1``
#: (SymPy orders terms by their symbols' names, and ``K`` sorts before ``W`` but after ``H``).
HEIGHT_TWINS = {"W_in": "H_in", "W_out": "H_out", "K_w": "K_h", "s_w": "s_h", "p_w": "p_h", "d_w": "d_h"}


def in_twin_order(expr, ordered_terms) -> Optional[list]:
    """The terms of the sum ``expr`` in the order ``ordered_terms`` gives its height twin's, or ``None``
    when ``expr`` is not in the width only."""
    names = {symbol.name for symbol in expr.free_symbols if isinstance(symbol, Symbol)}
    if not names & HEIGHT_TWINS.keys() or names & set(HEIGHT_TWINS.values()):
        return None
    twin = {symbol: Symbol(HEIGHT_TWINS[symbol.name], **symbol.assumptions0)
            for symbol in expr.free_symbols if isinstance(symbol, Symbol) and symbol.name in HEIGHT_TWINS}
    by_twin = {term.xreplace(twin): term for term in expr.args}
    if len(by_twin) != len(expr.args):
        return None
    try:
        return [by_twin[term] for term in ordered_terms(sympy.Add(*by_twin))]
    except KeyError:
        return None


class OrderedSum(Expr):
    """``a + b + c`` added left to right, in the order given (code only): ``(a + b) + c``, so that
    the rounding is that order's. SymPy's ``Add`` would sort its terms.

    >>> from sympy import symbols
    >>> z, a = symbols("z a")
    >>> from symcnn.printing.numba import NumbaPrinter
    >>> NumbaPrinter({}).doprint(OrderedSum(z, a + 1, 2*a))
    'z + (a + 1) + 2*a'
    """

    def __new__(cls, *terms):
        return Expr.__new__(cls, *map(sympy.sympify, terms))

    def _sympystr(self, printer):
        return " + ".join(printer.parenthesize(term, PRECEDENCE["Add"]) for term in self.args)


class Assign(Basic):
    """The statement ``target = value`` (code only).

    A ``value`` that is ``target + rest`` (an unevaluated ``Add`` of two terms, the target first,
    as :func:`symcnn.symbolic.functions.reduction_step` builds a sum's step) prints as
    ``target += rest``: the same addition, in Python's notation for it.

    >>> from sympy import Add, symbols
    >>> acc, x = symbols("acc x")
    >>> from symcnn.printing.numba import NumbaPrinter
    >>> printer = NumbaPrinter({})
    >>> printer.doprint(Assign(acc, Add(acc, x, evaluate=False))), printer.doprint(Assign(acc, 2*x))
    ('acc += x', 'acc = 2*x')
    """

    def __new__(cls, target, value):
        return Basic.__new__(cls, sympy.sympify(target), sympy.sympify(value))

    @property
    def target(self) -> Expr:
        return self.args[0]

    @property
    def value(self) -> Expr:
        return self.args[1]

    def increment(self):
        """``rest`` when the value is ``target + rest``, else ``None``."""
        value = self.value
        if isinstance(value, sympy.Add) and len(value.args) == 2 and value.args[0] == self.target:
            return value.args[1]
        return None

    def _sympystr(self, printer):
        increment = self.increment()
        if increment is not None:
            return f"{printer._print(self.target)} += {printer._print(increment)}"
        return f"{printer._print(self.target)} = {printer._print(self.value)}"


class Guard(Basic):
    """The test of an ``if`` statement (code only): a comparison printed bare, without the
    parentheses that it takes inside an expression.

    >>> from sympy import symbols
    >>> from symcnn.printing.numba import NumbaPrinter
    >>> value, best = symbols("value best")
    >>> NumbaPrinter({}).doprint(Guard(value > best)), NumbaPrinter({}).doprint(value > best)
    ('value > best', '(value > best)')
    """

    def __new__(cls, condition):
        return Basic.__new__(cls, sympy.sympify(condition))

    @property
    def condition(self):
        return self.args[0]
