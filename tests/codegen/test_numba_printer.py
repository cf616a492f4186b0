"""The numba printer's integer index arithmetic (the kernels' code), evaluated as Python reads it, against
SymPy's meaning of the expression."""

from __future__ import annotations

import sympy
from hypothesis import assume, given
from hypothesis import strategies as st

from symcnn.printing.nodes import FloorDiv
from symcnn.printing.numba import NumbaPrinter

A, B, C = sympy.symbols("a b c", integer=True)


def _floor(numerator, denominator):
    return sympy.floor(numerator / denominator)


# index maps built from floor divisions, products, sums and powers, nested either way
SHAPES = [
    lambda a, b, c, div: div(a, b * c),
    lambda a, b, c, div: div(a, div(b, c)),
    lambda a, b, c, div: div(div(a, b), c),
    lambda a, b, c, div: a * div(b, c),
    lambda a, b, c, div: div(a, b) ** 2,
    lambda a, b, c, div: -div(a, b) + c,
    lambda a, b, c, div: div(a + b, c) * div(a, c),
    lambda a, b, c, div: div(a, b + c),
    lambda a, b, c, div: -div(a, b),
    lambda a, b, c, div: div(a, b) % c,
    lambda a, b, c, div: c - 2 * div(-a, b),
]


@given(st.sampled_from(SHAPES), st.integers(-30, 30), st.integers(1, 6), st.integers(1, 6))
def test_printed_floor_divisions_mean_what_the_expression_means(shape, a, b, c):
    expression = shape(A, B, C, FloorDiv)
    expected = shape(sympy.Integer(a), sympy.Integer(b), sympy.Integer(c), _floor)
    assume(expected.is_finite)  # a // (b // c) with b < c divides by zero
    values = {"a": a, "b": b, "c": c}
    printed = NumbaPrinter({}).doprint(expression)
    assert eval(printed, {}, values) == int(expected), printed
