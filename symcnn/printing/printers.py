"""SymPy printer subclasses: the notation of the documents, and nothing else.

Printers only override ``_print_<Class>``; rewrites (naming the output sizes ``H_out``) happen
before printing, in :func:`readable`.

- gradient tensors print as the documents write them: ``dL/dX[n, c, k, l]`` in text and
  ``\\frac{\\partial L}{\\partial X_{n, c, k, l}}`` in LaTeX;
- a condition ``Piecewise((term, cond), (0, True))`` prints as an Iverson bracket;
- divisibility ``Eq(Mod(a, s), 0)`` prints as ``s | a``.

Example:
    >>> from sympy import IndexedBase, Mod, Eq, symbols
    >>> k, s = symbols("k s")
    >>> latex(IndexedBase("dL/dX")[k])
    '\\\\frac{\\\\partial L}{\\\\partial X_{k}}'
    >>> text(Eq(Mod(k + 1, s), 0))
    's | k + 1'
"""

from __future__ import annotations

from typing import Mapping

import sympy
from sympy import Basic, Eq, Expr, Mod, Piecewise, Symbol
from sympy.printing.latex import LatexPrinter
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import PythonCodePrinter
from sympy.printing.str import StrPrinter

__all__ = ["SymcnnLatexPrinter", "SymcnnStrPrinter", "NumbaPrinter", "FloorDiv", "OrderedSum", "Assign", "Guard",
           "Iverson", "latex", "text", "readable", "import_lines", "OUT_SIZE_NAMES"]

#: Display names for the derived output sizes.
OUT_SIZE_NAMES = {"out_height": Symbol("H_out", integer=True, positive=True),
                  "out_width": Symbol("W_out", integer=True, positive=True)}


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


def _gradient_name(base) -> str | None:
    name = str(base.label)
    return name[4:] if name.startswith("dL/d") else None


def _is_iverson(expr: Piecewise) -> bool:
    return len(expr.args) == 2 and expr.args[1].cond == sympy.true and expr.args[1].expr == 0


def _divisibility(expr) -> tuple[Expr, Expr] | None:
    """``(numerator, divisor)`` when ``expr`` is ``Eq(Mod(numerator, divisor), 0)``."""
    if isinstance(expr, Eq) and isinstance(expr.lhs, Mod) and expr.rhs == 0:
        return expr.lhs.args
    return None


class SymcnnStrPrinter(StrPrinter):
    """Plain text: ``[condition] * term`` for a condition, ``s | a`` for divisibility."""

    def _print_Iverson(self, expr):
        conditions = " and ".join(self._print(c) for c in _ordered_conditions(expr.conditions))
        return f"[{conditions}]" + ("" if expr.term == 1 else f" * {self.parenthesize(expr.term, 50)}")

    def _print_Piecewise(self, expr):
        if _is_iverson(expr):
            term, condition = expr.args[0]
            return f"[{self._print(condition)}]" + ("" if term == 1 else f" * {self.parenthesize(term, 50)}")
        if len(expr.args) == 2 and expr.args[1].cond == sympy.true:
            (first, condition), (otherwise, _) = expr.args
            return f"({self._print(first)} if {self._print(condition)} else {self._print(otherwise)})"
        return self._print_Basic(expr)

    def _print_Equality(self, expr):
        divisibility = _divisibility(expr)
        if divisibility:
            numerator, divisor = divisibility
            return f"{self._print(divisor)} | {self._print(numerator)}"
        return super()._print_Relational(expr)

    def _print_And(self, expr):
        return " and ".join(self._print(arg) for arg in _ordered_conditions(expr.args))

    def _print_Sum(self, expr):
        limits = ", ".join(f"{self._print(v)}={self._print(lo)}..{self._print(hi)}" for v, lo, hi in expr.limits)
        return f"sum_{{{limits}}} {self.parenthesize(expr.function, 50)}"


class SymcnnLatexPrinter(LatexPrinter):
    """LaTeX in the documents' notation."""

    def _print_Iverson(self, expr):
        conditions = r" \,\land\, ".join(self._print(c) for c in _ordered_conditions(expr.conditions))
        return _latex_bracket(self.parenthesize(expr.term, 50), conditions)

    def _print_Indexed(self, expr):
        gradient = _gradient_name(expr.base)
        indices = ", ".join(self._print(index) for index in expr.indices)
        if gradient:
            return r"\frac{\partial L}{\partial %s_{%s}}" % (gradient, indices)
        return super()._print_Indexed(expr)

    def _print_Piecewise(self, expr):
        if _is_iverson(expr):
            term, condition = expr.args[0]
            return _latex_bracket(self.parenthesize(term, 50), self._print(condition))
        return super()._print_Piecewise(expr)

    def _print_Equality(self, expr):
        divisibility = _divisibility(expr)
        if divisibility:
            numerator, divisor = divisibility
            return r"%s \mid \left(%s\right)" % (self._print(divisor), self._print(numerator))
        return super()._print_Relational(expr)

    def _print_And(self, expr):
        return r" \,\land\, ".join(self._print(arg) for arg in _ordered_conditions(expr.args))


def _latex_bracket(term: str, conditions: str) -> str:
    """``term [conditions]``; a bracket alone when the term is 1 (the indicator itself)."""
    bracket = r"\left[%s\right]" % conditions
    return bracket if term == "1" else f"{term} {bracket}"


def _condition_kind(condition) -> int:
    if _divisibility(condition) is not None:
        return 0
    if isinstance(condition, sympy.Rel) and condition.lhs == 0:
        return 1  # a lower bound, 0 <= index
    return 2


def _ordered_conditions(conditions):
    """Divisibility first, then lower bounds, then upper bounds: document 000's order."""
    return sorted(conditions, key=lambda c: (_condition_kind(c), sympy.default_sort_key(c)))


def text(expr) -> str:
    return SymcnnStrPrinter().doprint(expr)


def latex(expr) -> str:
    return SymcnnLatexPrinter().doprint(expr)


def readable(expr, parameters: Mapping[str, Expr]):
    """``expr`` rewritten for display, not for computing: the derived output sizes named
    ``H_out`` and ``W_out``, every comparison written ``a <= b`` (or ``a < b``) as stated,
    and fractions of indices collected (``(k - u)/2``, not ``k/2 - u/2``). Build conditions
    as :class:`Iverson` brackets rather than ``And`` to keep them as stated.
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
    if isinstance(expr, Piecewise) and _is_iverson(expr):
        (term, condition), _ = expr.args
        conditions = condition.args if isinstance(condition, sympy.And) else (condition,)
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


class FloorDiv(Expr):
    """Integer division ``a // b`` of an index, exact where its conditions hold (code only)."""

    def __new__(cls, numerator, denominator):
        return Expr.__new__(cls, sympy.sympify(numerator), sympy.sympify(denominator))

    def _sympystr(self, printer):
        return f"({printer._print(self.args[0])}) // {printer._print(self.args[1])}"


class OrderedSum(Expr):
    """``a + b + c`` added left to right, in the order given (code only): ``(a + b) + c``, so that
    the rounding is that order's. SymPy's ``Add`` would sort its terms.

    >>> from sympy import symbols
    >>> z, a = symbols("z a")
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
    >>> value, best = symbols("value best")
    >>> NumbaPrinter({}).doprint(Guard(value > best)), NumbaPrinter({}).doprint(value > best)
    ('value > best', '(value > best)')
    """

    def __new__(cls, condition):
        return Basic.__new__(cls, sympy.sympify(condition))

    @property
    def condition(self):
        return self.args[0]


class NumbaPrinter(PythonCodePrinter):
    """Kernel arithmetic for numba: array reads by their Python names, integer index maps.

    Strict: an expression it cannot print exactly is an error, never wrong code.

    >>> from sympy import IndexedBase, symbols
    >>> X, k = IndexedBase("X"), symbols("k", integer=True)
    >>> NumbaPrinter({X: "x"}).doprint(X[FloorDiv(k + 1, 2)])
    'x[(k + 1) // 2]'
    """

    def __init__(self, array_names: Mapping, symbol_names: Mapping = {}):
        super().__init__({"fully_qualified_modules": False, "strict": True})
        self.array_names = dict(array_names)
        self.symbol_names = {sympy.sympify(key): value for key, value in symbol_names.items() if key is not None}

    def _print_Indexed(self, expr):
        if expr.base not in self.array_names:
            raise ValueError(f"no array name for tensor {expr.base}")
        indices = ", ".join(self._print(index) for index in expr.indices)
        return f"{self.array_names[expr.base]}[{indices}]"

    def _print_Symbol(self, expr):
        if expr in self.symbol_names:
            return self.symbol_names[expr]
        name = expr.name.replace("'", "_p")
        if not name.isidentifier():
            raise ValueError(f"symbol {expr.name!r} has no Python name")
        return name

    def _print_FloorDiv(self, expr):
        numerator, denominator = expr.args
        return f"({self._print(numerator)}) // {self._print(denominator)}"

    def _print_Rational(self, expr):
        return f"{expr.p}/{expr.q}" if expr.q != 1 else str(expr.p)

    # The generated modules import numpy as np.
    def _print_Infinity(self, expr):
        return "np.inf"

    def _print_NegativeInfinity(self, expr):
        return "-np.inf"

    def _print_WindowMax(self, expr):
        """Python's ``max`` keeps the first of equal arguments, as :class:`WindowMax` does."""
        return "max(%s)" % ", ".join(self._print(arg) for arg in expr.args)

    def _print_OrderedSum(self, expr):
        return expr._sympystr(self)

    def _print_Assign(self, expr):
        return expr._sympystr(self)

    def _print_Guard(self, expr):
        condition = expr.condition
        if not isinstance(condition, sympy.Rel):
            return self._print(condition)
        level = PRECEDENCE["Relational"]
        return f"{self.parenthesize(condition.lhs, level)} {condition.rel_op} {self.parenthesize(condition.rhs, level)}"

    def imports(self) -> frozenset:
        """``(module, name)`` of every function the printed code calls (``("math", "exp")``)."""
        return frozenset((module, name) for module, names in self.module_imports.items() for name in names)


def import_lines(imports) -> list[str]:
    """``from math import exp, log`` lines for a set of ``(module, name)``."""
    modules: dict[str, set] = {}
    for module, name in imports:
        modules.setdefault(module, set()).add(name)
    return [f"from {module} import {', '.join(sorted(names))}" for module, names in sorted(modules.items())]
