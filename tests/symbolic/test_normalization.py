"""Batch and layer normalization (document 003): the derived gradients, proved by expansion, and
equal to the document's four-line backward pass.

The gradients come from differentiating the forward index formula (symcnn.symbolic.adjoint), the
mean and variance written as nested sums; nothing of the backward pass is typed in except, here,
the document's own lines, to compare against.
"""

from __future__ import annotations

import pytest
import sympy

from symcnn.symbolic import normalization, ops
from symcnn.symbolic.adjoint import derive_gradient, gradients_of
from symcnn.symbolic.derive import LayerConfig, derive
from symcnn.symbolic.tensors import indices_of, symbol_array, upstream_array
from symcnn.symbolic.verify import expand_gradient, mismatches

EPSILON = ops.epsilon
#: Stands for sqrt(sigma^2 + epsilon) of a channel, so that both sides compare as polynomials.
ROOT = sympy.Symbol("S", positive=True)


def channel_values(array, channel):
    """A channel's m = N*H*W values of an (N, C, H, W) array, in row-major order."""
    return [array[index] for index in indices_of(array.shape) if index[1] == channel]


def statistics(values):
    m = len(values)
    mean = sympy.Add(*values) / m
    variance = sympy.Add(*[(value - mean) ** 2 for value in values]) / m
    return mean, variance


def in_terms_of_root(expr, variance):
    """``expr`` with every power of ``sigma^2 + epsilon`` written as a power of ``ROOT``; checked."""
    def rewrite(power):
        assert sympy.expand(power.base - (variance + EPSILON)) == 0, power.base
        return ROOT ** (2 * power.exp)

    return sympy.sympify(expr).replace(lambda node: node.is_Pow and node.base.has(EPSILON), rewrite)


def document_backward(x, g, gamma):
    """Document 003's backward pass for one channel's values ``x`` and upstream gradients ``g``, line
    by line, with ``sqrt(sigma^2 + epsilon)`` as ``ROOT``; also returns its ``-2/m sum(x - mu)``."""
    m = len(x)
    mean, _ = statistics(x)
    grad_normalized = [gi * gamma for gi in g]  # dL/dx̂_i = dL/dy_i · γ
    grad_variance = sympy.Add(*[dxh * (xi - mean) for dxh, xi in zip(grad_normalized, x)]) \
        * sympy.Rational(-1, 2) * ROOT ** -3  # dL/dσ² = Σ dL/dx̂_i (x_i − μ) (−1/2)(σ² + ε)^{-3/2}
    zero_term = sympy.Rational(-2, m) * sympy.Add(*[xi - mean for xi in x])
    grad_mean = sympy.Add(*[dxh * (-1 / ROOT) for dxh in grad_normalized]) + grad_variance * zero_term
    grad_input = [dxh / ROOT + grad_variance * 2 * (xi - mean) / m + grad_mean / m
                  for dxh, xi in zip(grad_normalized, x)]
    return grad_input, zero_term


@pytest.mark.parametrize("shape", [(2, 1, 1, 2), (2, 2, 1, 2), (1, 1, 2, 2)])
def test_derived_input_gradient_is_the_documents_four_line_backward(shape):
    forward = normalization.batchnorm2d()
    arrays = {"input": symbol_array("x", shape), "weight": symbol_array("w", (shape[1],)),
              "bias": symbol_array("b", (shape[1],))}
    upstream = upstream_array(shape)
    derived = expand_gradient(derive_gradient(forward, "input"), arrays, upstream, {})
    for channel in range(shape[1]):
        x, g = channel_values(arrays["input"], channel), channel_values(upstream, channel)
        _, variance = statistics(x)
        expected, zero_term = document_backward(x, g, arrays["weight"][channel])
        assert sympy.expand(zero_term) == 0  # the document's −2/m Σ(x_i − μ): the deviations sum to zero
        for derived_value, document_value in zip(channel_values(derived, channel), expected):
            assert sympy.expand(in_terms_of_root(derived_value, variance) - document_value) == 0


def test_derived_weight_and_bias_gradients_are_the_sums_the_document_omits():
    shape = (2, 2, 1, 2)
    forward = normalization.batchnorm2d()
    arrays = {"input": symbol_array("x", shape), "weight": symbol_array("w", (2,)), "bias": symbol_array("b", (2,))}
    upstream = upstream_array(shape)
    grad_weight = expand_gradient(derive_gradient(forward, "weight"), arrays, upstream, {})
    grad_bias = expand_gradient(derive_gradient(forward, "bias"), arrays, upstream, {})
    for channel in range(2):
        x, g = channel_values(arrays["input"], channel), channel_values(upstream, channel)
        mean, variance = statistics(x)
        normalized = [(xi - mean) / ROOT for xi in x]  # x̂_i
        expected_weight = sympy.Add(*[gi * xh for gi, xh in zip(g, normalized)])  # dL/dγ = Σ dL/dy_i x̂_i
        assert sympy.expand(in_terms_of_root(grad_weight[channel], variance) - expected_weight) == 0
        assert sympy.expand(grad_bias[channel] - sympy.Add(*g)) == 0  # dL/dβ = Σ dL/dy_i


def test_the_documents_zero_term_vanishes_for_every_shape():
    """``Σ_i (x_i − μ)`` over a channel, with the formula's own mean, is 0 for symbolic N, H, W: the
    ``∂L/∂σ² · (−2/m) Σ(x_i − μ)`` part of the document's ``∂L/∂μ`` contributes nothing."""
    forward = normalization.batchnorm2d()
    mean_sum = next(node for node in forward.rhs.atoms(sympy.Sum) if node.limits[0][0] == ops.q)
    mean = mean_sum / (ops.N * ops.H_in * ops.W_in)
    deviations = sympy.Sum(ops.X[ops.r, ops.c, ops.u, ops.v] - mean,
                           (ops.r, 0, ops.N - 1), (ops.u, 0, ops.H_in - 1), (ops.v, 0, ops.W_in - 1))
    assert deviations != 0
    renamed = deviations.doit().xreplace({ops.r: ops.q, ops.u: ops.k, ops.v: ops.l})  # same sum, same names
    assert sympy.simplify(renamed).doit() == 0


@pytest.mark.parametrize("factory, shape, parameter_shape", [
    (normalization.batchnorm2d, (2, 2, 1, 2), (2,)),
    (normalization.batchnorm2d_evaluation, (2, 2, 2, 1), (2,)),
    (lambda: normalization.layernorm(rank=4), (2, 2, 1, 2), (2, 1, 2)),
    (lambda: normalization.layernorm(rank=2), (2, 3), (3,)),
])
def test_general_gradients_equal_the_elementwise_derivatives(factory, shape, parameter_shape):
    forward = factory()
    arrays = {"input": symbol_array("x", shape), "weight": symbol_array("w", parameter_shape),
              "bias": symbol_array("b", parameter_shape)}
    if forward.op == "batchnorm2d" and "running_mean" in {t.role for t in forward.operands}:
        arrays.update(running_mean=symbol_array("m", (shape[1],)), running_var=symbol_array("s", (shape[1],)))
    assert set(gradients_of(forward)) == {"input", "weight", "bias"}
    assert mismatches(forward, arrays) == {"input": [], "weight": [], "bias": []}


def test_derive_expands_batch_norm_over_the_batch_and_keeps_epsilon_a_symbol():
    result = derive(LayerConfig("batchnorm2d", input_size=(1, 2), batch=2))
    upstream, inputs = result.tensors["grad_output"], result.tensors["input"]
    assert result.gradients["grad_bias"][0] == sympy.Add(*[upstream[index] for index in indices_of(upstream.shape)])
    assert EPSILON in result.output[0, 0, 0, 0].free_symbols
    # normalized over the batch: every output of the channel reads every input of it
    assert result.output[0, 0, 0, 0].free_symbols >= {inputs[index] for index in indices_of(inputs.shape)}


def test_derive_refuses_one_value_per_channel_in_training_mode():
    with pytest.raises(ValueError, match="more than one value per channel"):
        LayerConfig("batchnorm2d", input_size=(1, 1), batch=1)
    LayerConfig("layernorm", input_size=(1, 1), channels_in=2, batch=1)  # layer norm normalizes over channels
