"""The objects of a sheet: an exercise's givens, its question, its answer and the working behind it.

An :class:`Exercise` is format-neutral: prose is the report's markup (``$math$``, ```code```), math
is LaTeX printed by symcnn's printers from SymPy objects. The sheet and the key
(:mod:`~symcnn.teaching.documents`), the grader (:mod:`~symcnn.teaching.grading`) and the Moodle export
(:mod:`~symcnn.teaching.moodle`) all read the same objects.

Example:
    >>> answer = Answer("number", sympy.Integer(7))
    >>> answer.latex(), answer.text()
    ('7', '7')
    >>> Answer("shape", (16, 15, 15)).text()
    '16x15x15'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import sympy
from sympy import Array

from symcnn.printing.latex import latex
from symcnn.printing.text import text as plain_text

__all__ = ["KINDS", "Answer", "Given", "Working", "Setup", "Exercise", "matrix_rows", "bmatrix"]

#: What an answer is: a number, a matrix of numbers or expressions, one expression, a shape
#: (integers), or the letter of a choice.
KINDS = ("number", "matrix", "expression", "shape", "choice")


def matrix_rows(array: Array) -> tuple[tuple[sympy.Expr, ...], ...]:
    """A tensor's entries as the rows of a matrix: leading axes of size 1 dropped, a vector one row; a batch
    of single-row maps one sample a row (its other axes of size 1 dropped too).

    >>> matrix_rows(Array([[[[1, 2], [3, 4]]]]))
    ((1, 2), (3, 4))
    >>> matrix_rows(Array([[[[1, 2]]], [[[3, 4]]]]))
    ((1, 2), (3, 4))
    """
    shape = [size for size in array.shape]
    while len(shape) > 2 and shape[0] == 1:
        shape.pop(0)
    if len(shape) > 2:
        shape = [size for size in shape if size > 1] or [1]
    flat = [sympy.sympify(value) for value in Array(array).reshape(len(array)).tolist()] if array.shape else [array]
    if len(shape) == 1:
        return (tuple(flat),)
    if len(shape) != 2:
        raise ValueError(f"answer: a tensor of shape {tuple(array.shape)} is not drawn as a matrix")
    rows, columns = shape
    return tuple(tuple(flat[row * columns:(row + 1) * columns]) for row in range(rows))


def bmatrix(rows) -> str:
    r"""Rows of SymPy values as a LaTeX ``bmatrix``: ``\begin{bmatrix} 1 & 2 \end{bmatrix}``."""
    body = r" \\ ".join(" & ".join(latex(sympy.sympify(value)) for value in row) for row in rows)
    return r"\begin{bmatrix} %s \end{bmatrix}" % body


@dataclass(frozen=True)
class Answer:
    """The key's answer: its ``kind`` (one of :data:`KINDS`) and value.

    ``number`` and ``expression``: a SymPy expression; ``matrix``: rows of expressions; ``shape``: a
    tuple of ints; ``choice``: a letter. ``definitions`` name quantities an expression may be written
    with (a normalization's ``mu`` and ``sigma2``), each as an expression in the givens' symbols: the
    grader puts them in, in the student's answer and in the key, before comparing.
    """

    kind: str
    value: Any
    definitions: tuple[tuple[sympy.Symbol, sympy.Expr], ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind: must be one of {', '.join(KINDS)}, got {self.kind!r}")

    def latex(self) -> str:
        if self.kind == "matrix":
            return bmatrix(self.value)
        if self.kind == "shape":
            return r" \times ".join(str(size) for size in self.value)
        if self.kind == "choice":
            return r"\text{%s}" % self.value
        return latex(self.value)

    def text(self) -> str:
        """The answer as an answers file may write it (SymPy syntax; rows separated by ``;``)."""
        if self.kind == "matrix":
            return "; ".join(", ".join(plain_text(value) for value in row) for row in self.value)
        if self.kind == "shape":
            return "x".join(str(size) for size in self.value)
        if self.kind == "choice":
            return str(self.value)
        return plain_text(self.value)


@dataclass(frozen=True)
class Given:
    """A given tensor, drawn as a matrix: its LaTeX name and its entries (numbers or symbols)."""

    name: str
    rows: tuple[tuple[sympy.Expr, ...], ...]

    def latex(self) -> str:
        return f"{self.name} = {bmatrix(self.rows)}"


@dataclass(frozen=True)
class Working:
    """One step of the key's working: a heading and aligned LaTeX rows (``lhs &= rhs``)."""

    title: str
    rows: tuple[str, ...]
    note: str = ""  # prose under the heading


@dataclass(frozen=True)
class Setup:
    """What an exercise computes, for tests that check the key independently: the layers (op and
    ``LayerConfig`` fields), the numbers by role (``input``, ``weight``, ``bias``, ``grad_output``; empty
    for a symbolic exercise) and the gradient asked (``grad_weight``) with its entry's index, or
    ``None`` for the whole tensor (``output``: the layer's output, asked in a forward exercise)."""

    layers: tuple[tuple[str, Mapping[str, Any]], ...]
    values: Mapping[str, Array] = field(default_factory=dict)
    asked: str = ""
    index: Optional[tuple[int, ...]] = None
    constants: Mapping[str, Any] = field(default_factory=dict)  # a formula's symbols given values (epsilon: 0)


@dataclass(frozen=True)
class Exercise:
    """One exercise: what is given and asked, the answer, and the working that leads to it."""

    number: int
    topic: str
    title: str
    statement: str  # prose markup: the layer, its settings, its rules
    givens: tuple[Given, ...]
    question: str  # prose markup: what to compute
    answer: Answer
    working: tuple[Working, ...]
    setup: Setup
    choices: tuple[str, ...] = ()  # LaTeX of each choice (A, B, C, ...), for a choice answer
