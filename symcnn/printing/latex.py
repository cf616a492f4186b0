"""LaTeX in the documents' notation: :class:`SymcnnLatexPrinter`, SymPy's ``LatexPrinter`` with a few
``_print_<Class>`` overrides.

- gradient tensors print as the documents write them: ``\\frac{\\partial L}{\\partial X_{n, c, k, l}}``;
- a condition ``Piecewise((term, cond), (0, True))`` prints as an Iverson bracket ``term \\left[cond\\right]``;
- divisibility ``Eq(Mod(a, s), 0)`` prints as ``s \\mid (a)``.

Example:
    >>> from sympy import IndexedBase, symbols
    >>> k = symbols("k")
    >>> latex(IndexedBase("dL/dX")[k])
    '\\\\frac{\\\\partial L}{\\\\partial X_{k}}'
"""

from __future__ import annotations

from sympy.printing.latex import LatexPrinter

from symcnn.printing.nodes import divisibility, in_twin_order, is_iverson, ordered_conditions

__all__ = ["SymcnnLatexPrinter", "latex"]


def _gradient_name(base) -> str | None:
    name = str(base.label)
    return name[4:] if name.startswith("dL/d") else None


class SymcnnLatexPrinter(LatexPrinter):
    """LaTeX in the documents' notation."""

    def _as_ordered_terms(self, expr, order=None):
        parent = super()._as_ordered_terms
        return in_twin_order(expr, lambda twin: parent(twin, order)) or parent(expr, order)

    def _print_Iverson(self, expr):
        conditions = r" \,\land\, ".join(self._print(c) for c in ordered_conditions(expr.conditions))
        return _latex_bracket(self.parenthesize(expr.term, 50), conditions)

    def _print_Indexed(self, expr):
        gradient = _gradient_name(expr.base)
        indices = ", ".join(self._print(index) for index in expr.indices)
        if gradient:
            return r"\frac{\partial L}{\partial %s_{%s}}" % (gradient, indices)
        return super()._print_Indexed(expr)

    def _print_Piecewise(self, expr):
        if is_iverson(expr):
            term, condition = expr.args[0]
            return _latex_bracket(self.parenthesize(term, 50), self._print(condition))
        return super()._print_Piecewise(expr)

    def _print_Equality(self, expr):
        parts = divisibility(expr)
        if parts:
            numerator, divisor = parts
            return r"%s \mid \left(%s\right)" % (self._print(divisor), self._print(numerator))
        return super()._print_Relational(expr)

    def _print_And(self, expr):
        return r" \,\land\, ".join(self._print(arg) for arg in ordered_conditions(expr.args))


def _latex_bracket(term: str, conditions: str) -> str:
    """``term [conditions]``; a bracket alone when the term is 1 (the indicator itself)."""
    bracket = r"\left[%s\right]" % conditions
    return bracket if term == "1" else f"{term} {bracket}"


def latex(expr) -> str:
    return SymcnnLatexPrinter().doprint(expr)
