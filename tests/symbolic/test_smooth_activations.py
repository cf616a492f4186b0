"""sigmoid and tanh: their derived gradients are the textbook ones (document 003), entry by entry."""

import pytest
import sympy

from symcnn.symbolic.derive import LayerConfig, derive
from symcnn.views.formula import general_formula


@pytest.mark.parametrize("op, derivative", [
    ("sigmoid", lambda y: y * (1 - y)),       # σ' = σ(1 − σ)
    ("tanh", lambda y: 1 - y ** 2),           # tanh' = 1 − tanh²
])
def test_each_entry_is_the_upstream_gradient_times_the_textbook_derivative(op, derivative):
    result = derive(LayerConfig(op, input_size=(2, 3), channels_in=2))
    output, grad_input = result.output, result.gradients["grad_input"]
    upstream = result.tensors["grad_output"]
    for index in [(0, 0, 0, 0), (0, 1, 1, 2)]:
        expected = upstream[index] * derivative(output[index])
        assert sympy.simplify((grad_input[index] - expected).rewrite(sympy.exp)) == 0, index


def test_the_general_formulas_are_derived():
    assert "tanh" in general_formula("tanh", "input").text()
    assert "exp" in general_formula("sigmoid", "input").text()
