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


@pytest.mark.parametrize("formula", [ops.relu(), ops.leaky_relu(), ops.conv2d(), ops.maxpool2d()])
def test_gradients_that_gain_nothing_from_the_output_stay_as_derived(formula):
    """ReLU's mask and LeakyReLU's slope cost no call either way; a convolution is not element-wise."""
    assert gradient_from_output(derive_gradient(formula, "input")) is None


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
