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

from typing import Mapping, Optional

import sympy
from sympy import Eq, Expr, Mod, Piecewise, Symbol
from sympy.printing.latex import LatexPrinter
from sympy.printing.pycode import PythonCodePrinter
from sympy.printing.str import StrPrinter

__all__ = ["SymcnnLatexPrinter", "SymcnnStrPrinter", "NumbaPrinter", "FloorDiv", "Iverson", "latex", "text",
           "readable", "import_lines", "OUT_SIZE_NAMES"]

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


#: A width symbol's height twin. An expression in the width only prints its terms in the order its height
#: twin's print: ``W_out = W_in - K_w + 1`` beside ``H_out = H_in - K_h + 1``, not ``-K_w + W_in + 1``
#: (SymPy orders terms by their symbols' names, and ``K`` sorts before ``W`` but after ``H``).
HEIGHT_TWINS = {"W_in": "H_in", "W_out": "H_out", "K_w": "K_h", "s_w": "s_h", "p_w": "p_h", "d_w": "d_h"}


def _in_twin_order(expr, ordered_terms) -> Optional[list]:
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


class SymcnnStrPrinter(StrPrinter):
    """Plain text: ``[condition] * term`` for a condition, ``s | a`` for divisibility."""

    def _as_ordered_terms(self, expr, order=None):
        parent = super()._as_ordered_terms
        return _in_twin_order(expr, lambda twin: parent(twin, order)) or parent(expr, order)

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

    def _as_ordered_terms(self, expr, order=None):
        parent = super()._as_ordered_terms
        return _in_twin_order(expr, lambda twin: parent(twin, order)) or parent(expr, order)

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

    def imports(self) -> frozenset:
        """``(module, name)`` of every function the printed code calls (``("math", "exp")``)."""
        return frozenset((module, name) for module, names in self.module_imports.items() for name in names)


def import_lines(imports) -> list[str]:
    """``from math import exp, log`` lines for a set of ``(module, name)``."""
    modules: dict[str, set] = {}
    for module, name in imports:
        modules.setdefault(module, set()).add(name)
    return [f"from {module} import {', '.join(sorted(names))}" for module, names in sorted(modules.items())]
