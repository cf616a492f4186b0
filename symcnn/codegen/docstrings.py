"""A generated kernel's docstring: its formula as ``symcnn formula`` prints it, and the constants it was
specialized to.

Example:
    >>> from symcnn.codegen.lower import layer_formula
    >>> from symcnn.spec import load_spec
    >>> formula, values = layer_formula(load_spec("digits").layers[1])
    >>> print(kernel_docstring(formula, None, values).splitlines()[0])
    relu: forward pass
"""

from __future__ import annotations

from typing import Optional

from symcnn.symbolic import ops
from symcnn.symbolic.adjoint import GradientFormula
from symcnn.views.formula import FormulaView

__all__ = ["kernel_docstring"]


def kernel_docstring(formula: ops.IndexFormula, gradient: Optional[GradientFormula], values: dict) -> str:
    """The kernel's formula as ``symcnn formula`` prints it, and the constants it was specialized to."""
    wrt = gradient.wrt if gradient is not None else "forward"
    equation = gradient.equation() if gradient is not None else formula.equation()
    view = FormulaView(formula.op, wrt, equation, formula, gradient, {})
    constants = ", ".join(f"{symbol} = {value}" for symbol, value in
                          sorted(values.items(), key=lambda item: str(item[0])))
    return f"{view.text()}\n\nwith {constants}." if constants else view.text()
