"""The claim model: a claimed formula, parsed into SymPy, as equations ``target = value`` with an
optional where-clause (definitions, parameter constraints, ranges); and the conventions for the
names in it (a gradient ``dL/dX``, layer and name tags ``W^[1]``, ``W_fc``).

:mod:`symcnn.checking.parse` reads a claim from LaTeX (:mod:`symcnn.checking.parse_latex`) or SymPy
syntax (:mod:`symcnn.checking.parse_sympy`).

Example:
    >>> gradient_name("X"), is_gradient_name("dL/dX"), base_name("W^[1]"), base_name("W_fc")
    ('dL/dX', True, 'W', 'W')
    >>> tensor_base("b")[0], tensor_base("b").label.is_real
    (b[0], True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

from sympy import Expr, IndexedBase, Symbol

__all__ = ["ClaimSyntaxError", "reject", "Equation", "Claim", "MatrixValue", "OPEN", "gradient_name",
           "is_gradient_name", "base_name", "tensor_base"]

#: Bounds of a sum written without them (``\sum_{m}``): resolved from the tensors the variable indexes.
OPEN = (Symbol("?lo"), Symbol("?hi"))


class ClaimSyntaxError(ValueError):
    """A formula that cannot be parsed; its message is one line naming the problem."""


def reject(message: str) -> NoReturn:
    """Refuse a formula: raise :class:`ClaimSyntaxError` with ``message`` (one line)."""
    raise ClaimSyntaxError(message)


def gradient_name(name: str) -> str:
    """The name of the gradient of tensor ``name``: ``dL/dX``."""
    return "dL/d" + name


def is_gradient_name(name: str) -> bool:
    return name.startswith("dL/d")


def tensor_base(name: str) -> IndexedBase:
    """The ``IndexedBase`` of a claim's tensor. Its label is a *real* symbol, so that it never
    collides with an index of the same name (document 000 calls the batch index ``b``, like the bias)."""
    return IndexedBase(Symbol(name, real=True))


def base_name(name: str) -> str:
    """A tensor name without its layer or name tags: ``W^[1]`` and ``W_fc`` are ``W``."""
    return re.split(r"[\^_]", name, maxsplit=1)[0]


@dataclass(frozen=True)
class MatrixValue:
    """A matrix written in the claim (``\\begin{bmatrix}``): rows of entries."""

    rows: tuple[tuple[Expr, ...], ...]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.rows[0])


@dataclass(frozen=True)
class Equation:
    """``lhs = rhs``. ``lhs`` is a tensor read (``Indexed``), a whole tensor (``IndexedBase``) or a
    name (``Symbol``: a parameter such as ``H_out``, or an element such as ``y01``)."""

    lhs: Expr
    rhs: object  # Expr or MatrixValue


@dataclass(frozen=True)
class Claim:
    """A parsed claim: its equations (a chain ``a = b = c`` gives ``a = b`` and ``a = c``) and the
    ``where`` clause: ``definitions`` (equations) and ``ranges`` (``u in {0, 1}``)."""

    text: str
    syntax: str  # "latex" or "sympy"
    equations: tuple[Equation, ...]
    definitions: tuple[Equation, ...] = ()
    ranges: tuple[tuple[Symbol, int, int], ...] = ()

    @property
    def tensor_names(self) -> set[str]:
        names = set()
        for equation in self.equations + self.definitions:
            for side in (equation.lhs, equation.rhs):
                for expr in _entries(side):
                    names |= {str(base.label) for base in expr.atoms(IndexedBase)}
        return names


def _entries(value) -> list:
    if isinstance(value, MatrixValue):
        return [entry for row in value.rows for entry in row]
    return [value]
