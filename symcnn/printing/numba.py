"""Kernel arithmetic for numba: :class:`NumbaPrinter`, SymPy's ``PythonCodePrinter`` with array reads by
their Python names and integer index maps (:class:`~symcnn.printing.nodes.FloorDiv`).

Strict: an expression it cannot print exactly is an error, never wrong code.

Example:
    >>> from sympy import IndexedBase, exp, symbols
    >>> X, k = IndexedBase("X"), symbols("k", integer=True)
    >>> printer = NumbaPrinter({X: "x"})
    >>> printer.doprint(exp(X[k]))
    'exp(x[k])'
    >>> import_lines(printer.imports())
    ['from symcnn.runtime.vector_math import exp']
"""

from __future__ import annotations

from typing import Mapping

import sympy
from sympy.printing.precedence import PRECEDENCE
from sympy.printing.pycode import PythonCodePrinter

from symcnn.printing.nodes import FloorDiv

__all__ = ["NumbaPrinter", "import_lines", "VECTOR_MATH"]

#: The module whose ``exp`` and ``tanh`` the kernels call: arithmetic that LLVM vectorizes, where ``math.exp``
#: is a libm call per element (:mod:`symcnn.runtime.vector_math`).
VECTOR_MATH = "symcnn.runtime.vector_math"


class NumbaPrinter(PythonCodePrinter):
    """Kernel arithmetic for numba: array reads by their Python names, integer index maps.

    Strict: an expression it cannot print exactly is an error, never wrong code.

    >>> from sympy import IndexedBase, symbols
    >>> from symcnn.printing.nodes import FloorDiv
    >>> X, k = IndexedBase("X"), symbols("k", integer=True)
    >>> NumbaPrinter({X: "x"}).doprint(X[FloorDiv(k + 1, 2)])
    'x[(k + 1) // 2]'
    """

    def __init__(self, array_names: Mapping, symbol_names: Mapping = {}):
        super().__init__({"fully_qualified_modules": False, "strict": True})
        self.array_names = dict(array_names)
        self.symbol_names = {sympy.sympify(key): value for key, value in symbol_names.items() if key is not None}

    def _print_exp(self, expr):
        """``exp`` of :data:`VECTOR_MATH`, which LLVM vectorizes (``math.exp`` it cannot)."""
        self.module_imports[VECTOR_MATH].add("exp")
        return f"exp({self._print(expr.args[0])})"

    def _print_tanh(self, expr):
        """``tanh`` of :data:`VECTOR_MATH`: vector arithmetic, in float32 for a float32 argument (libm's
        ``tanh`` is a call per element, about 16 ns)."""
        self.module_imports[VECTOR_MATH].add("tanh")
        return f"tanh({self._print(expr.args[0])})"

    def _print_Indexed(self, expr):
        indices = ", ".join(self._print(index) for index in expr.indices)
        return f"{self._print(expr.base)}[{indices}]"

    def _print_IndexedBase(self, expr):
        """The array's name in the kernel (a tensor without one is an error, never a guessed name)."""
        if expr not in self.array_names:
            raise ValueError(f"no array name for tensor {expr}")
        return self.array_names[expr]

    def _print_Symbol(self, expr):
        if expr in self.symbol_names:
            return self.symbol_names[expr]
        name = expr.name.replace("'", "_p")
        if not name.isidentifier():
            raise ValueError(f"symbol {expr.name!r} has no Python name")
        return name

    def _print_FloorDiv(self, expr):
        """``(numerator) // denominator``, the denominator in parentheses unless it is a name or a
        number: Python reads ``a // b*c`` as ``(a // b)*c`` and ``a // b // c`` as ``(a // b) // c``.

        >>> from sympy import symbols
        >>> from symcnn.printing.nodes import FloorDiv
        >>> a, b, c = symbols("a b c", integer=True)
        >>> printer = NumbaPrinter({})
        >>> printer.doprint(FloorDiv(a, b * c)), printer.doprint(FloorDiv(a, FloorDiv(b, c)))
        ('(a) // (b*c)', '(a) // ((b) // c)')
        """
        numerator, denominator = expr.args
        printed = self._print(denominator)
        if not denominator.is_Atom:
            printed = f"({printed})"
        return f"({self._print(numerator)}) // {printed}"

    def _print_Float(self, expr):
        """The double nearest the number, in its shortest exact form (``1.3333333333333333``; SymPy's
        own 15 digits would round a constant such as dropout's ``1/(1 - p)`` off its double)."""
        return repr(float(expr))
    def _print_Mul(self, expr):
        """A product with a floor division in parentheses: ``2*((c_out) // 3)``; Python reads
        ``2*(c_out) // 3`` as ``(2*c_out) // 3``.

        >>> from sympy import Mul, symbols
        >>> from symcnn.printing.nodes import FloorDiv
        >>> c = symbols("c")
        >>> NumbaPrinter({}).doprint(Mul(2, FloorDiv(c, 3), evaluate=False))
        '2*((c) // 3)'
        >>> NumbaPrinter({}).doprint(4 + Mul(-2, FloorDiv(c, 3), evaluate=False))
        '4 - 2*((c) // 3)'
        >>> NumbaPrinter({}).doprint(-FloorDiv(5*c, 3) + FloorDiv(5*c + 7, 3))
        '-((5*c) // 3) + (5*c + 7) // 3'
        """
        if not any(isinstance(factor, FloorDiv) for factor in expr.args):
            return super()._print_Mul(expr)
        factors, sign = list(expr.args), ""
        if factors[0].is_Number and factors[0] < 0:  # printed "-2*(...)": an Add prints it "- 2*(...)"
            sign, factors[0] = "-", -factors[0]
        factors = [factor for factor in factors if factor != 1]
        level = PRECEDENCE["Mul"]
        return sign + "*".join(f"({self._print(factor)})" if isinstance(factor, FloorDiv)
                               else self.parenthesize(factor, level) for factor in factors)

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
