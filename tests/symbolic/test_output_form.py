"""An element-wise gradient written in the layer's output (symcnn.symbolic.output_form), checked by numbers."""

import numpy as np
import pytest
import sympy

from symcnn.symbolic import ops
from symcnn.symbolic.adjoint import derive_gradient
from symcnn.symbolic.output_form import gradient_from_output


def _as_function(gradient, read):
    """The gradient's right-hand side as a NumPy function of ``read`` (X or Y) and dL/dY, at one element."""
    element, upstream = sympy.symbols("element upstream")
    rhs = gradient.rhs.xreplace({read.base[gradient.indices]: element,
                                 gradient.grad_output.base[gradient.indices]: upstream})
    assert not rhs.atoms(sympy.Indexed), rhs
    return sympy.lambdify((element, upstream), rhs, "numpy")


@pytest.mark.parametrize("formula, activation", [
    (ops.tanh(), np.tanh),
    (ops.sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (ops.tanh(rank=2), np.tanh),
    (ops.elu(sympy.Float(0.5)), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
])
def test_the_output_form_equals_the_derived_gradient(formula, activation):
    derived = derive_gradient(formula, "input")
    rewritten = gradient_from_output(derived)
    assert rewritten is not None
    reads = {read.base for read in rewritten.rhs.atoms(sympy.Indexed)}
    assert reads == {formula.output.base, derived.grad_output.base}  # Y and dL/dY, never X
    assert not rewritten.rhs.atoms(sympy.exp, sympy.tanh)
    rng = np.random.default_rng(0)
    x, upstream = rng.uniform(-6, 6, 2000), rng.standard_normal(2000)
    from_input = _as_function(derived, formula.operands[0])(x, upstream)
    from_output = _as_function(rewritten, formula.output)(activation(x), upstream)
    np.testing.assert_allclose(from_output, from_input, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("formula, activation, alpha", [
    (ops.relu(), lambda x: np.maximum(x, 0), None),
    (ops.leaky_relu(), lambda x: np.where(x > 0, x, 0.125 * x), 0.125),
])
def test_masks_read_the_output_at_the_same_cost(formula, activation, alpha):
    """ReLU's ``[X > 0]`` is ``[Y > 0]`` (LeakyReLU's too, for a positive slope): no call saved, but a gradient
    that reads no X lets the training pass fuse the layer into the one before. Equal at 0 and on both sides."""
    derived = derive_gradient(formula, "input")
    settings = {} if alpha is None else {next(s for s in derived.rhs.free_symbols if s.name == "alpha"): alpha}
    rewritten = gradient_from_output(derived, settings)
    assert {read.base for read in rewritten.rhs.atoms(sympy.Indexed)} == {formula.output.base, derived.grad_output.base}
    x = np.concatenate([np.random.default_rng(1).uniform(-3, 3, 1000), [0.0, -0.0]])
    upstream = np.random.default_rng(2).standard_normal(x.size)
    from_input = _as_function(derived.substitute(settings), formula.operands[0])(x, upstream)
    from_output = _as_function(rewritten.substitute(settings), formula.output)(activation(x), upstream)
    np.testing.assert_array_equal(from_output, from_input)


def test_a_leaky_relu_with_a_negative_slope_keeps_its_input_mask():
    """With ``alpha < 0``, ``Y > 0`` also where ``X < 0``: the form is refused at that setting."""
    derived = derive_gradient(ops.leaky_relu(), "input")
    alpha = next(symbol for symbol in derived.rhs.free_symbols if symbol.name == "alpha")
    assert gradient_from_output(derived, {alpha: sympy.Float(-0.5)}) is None


@pytest.mark.parametrize("formula", [ops.conv2d(), ops.maxpool2d()])
def test_gradients_of_ops_that_are_not_element_wise_stay_as_derived(formula):
    assert gradient_from_output(derive_gradient(formula, "input")) is None


def test_a_form_that_calls_more_functions_is_refused():
    """``Y = X^3 + X``: ``3 X^2 + 1`` in Y needs the cubic's root (several calls): the derived form is kept."""
    cubic = ops.elementwise("cubic", lambda x: x**3 + x)
    assert gradient_from_output(derive_gradient(cubic, "input")) is None


def test_a_form_is_checked_at_the_layers_settings():
    """ELU's ``Y > 0`` for ``X > 0`` and ``(Y + alpha) dL/dY`` hold for a positive alpha only."""
    derived = derive_gradient(ops.elu(), "input")
    alpha = next(symbol for symbol in derived.rhs.free_symbols if symbol.name == "alpha")
    assert gradient_from_output(derived, {alpha: sympy.Float(0.5)}) is not None
    assert gradient_from_output(derived, {alpha: sympy.Float(-0.5)}) is None


def test_an_inverse_right_on_one_side_of_0_only_is_refused():
    """``Y = cosh(X)``: its derivative ``sinh(X)`` is ``+-sqrt(Y - 1) sqrt(Y + 1)``, the sign that of X;
    no form in Y alone holds on both sides, and the sample points see it."""
    cosh = ops.elementwise("cosh", sympy.cosh)
    assert gradient_from_output(derive_gradient(cosh, "input")) is None
