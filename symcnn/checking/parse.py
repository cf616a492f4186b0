"""Read a claim: LaTeX (:mod:`symcnn.checking.parse_latex`) when it holds a backslash or a brace,
else SymPy syntax (:mod:`symcnn.checking.parse_sympy`), into a :class:`~symcnn.checking.claims.Claim`.

Example:
    >>> claim = parse_claim(r"\\frac{\\partial L}{\\partial w_{00}} = a x_{00} + b \\cdot x_{01}", elements=True)
    >>> claim.equations[0].lhs, claim.equations[0].rhs
    (dL/dw00, a*x00 + b*x01)
    >>> claim = parse_claim(r"Y_{i} = \\sum_{m} W_{m} X_{i+m}", tensors={"X", "W", "Y"})
    >>> claim.equations[0].rhs
    Sum(W[m]*X[i + m], (m, ?lo, ?hi))
    >>> parse_claim("Y[i] = X[i + 1]").syntax
    'sympy'
"""

from __future__ import annotations

import functools
from typing import Iterable

import sympy

from symcnn.checking.claims import Claim, reject
from symcnn.checking.limits import check_text
from symcnn.checking.parse_latex import looks_like_latex, parse_latex_claim
from symcnn.checking.parse_sympy import parse_sympy_claim
from symcnn.checking.sizes import check_claim

__all__ = ["parse_claim"]


def parse_claim(text: str, tensors: Iterable[str] = (), elements: bool = False) -> Claim:
    """Parse ``text`` (LaTeX when it holds a backslash or a brace, else SymPy syntax) into a :class:`Claim`.

    ``tensors`` names the tensors (a name read with a single index, like ``z_i``, is a tensor only
    when named here; with two or more it always is). ``elements=True`` reads every subscript as
    part of a name (``x_{00}`` is the symbol ``x00``), for claims about a worked example's entries.
    Raises :class:`~symcnn.checking.claims.ClaimSyntaxError` (a ``ValueError``) with a one-line message,
    also for a formula beyond the checker's limits (:mod:`symcnn.checking.limits`).
    """
    return _parse_cached(text, frozenset(tensors), elements)


@functools.lru_cache(maxsize=256)
def _parse_cached(text: str, tensors: frozenset, elements: bool) -> Claim:
    if not isinstance(text, str) or not text.strip():
        reject("the formula is empty")
    check_text(text)
    try:
        if looks_like_latex(text):  # SymPy syntax has no braces
            claim = parse_latex_claim(text, set(tensors), elements)
        else:
            claim = parse_sympy_claim(text, set(tensors), elements)
    except RecursionError:  # the last line of defence: check_text bounds the nesting
        reject("nested too deeply")
    for equation in claim.equations:
        for side in (equation.lhs, equation.rhs):
            if isinstance(side, sympy.logic.boolalg.Boolean) and not isinstance(side, sympy.Symbol):
                reject(f"{side} is a condition, not a value (an indicator is \\mathbf{{1}}(...))")
    check_claim(claim)
    return claim
