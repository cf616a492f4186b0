"""symcnn's symbolic layers, at random numbers, against two independent references.

Hypothesis draws small configurations (stride 1-3, padding 0-2, dilation 1-2, 1-3 channels,
batch 1-2, non-square inputs and kernels, only where the dilated kernel fits the padded
input); symcnn expands each op symbolically and differentiates it (:func:`symcnn.symbolic.derive.derive`,
:func:`symcnn.symbolic.derive.vjp`); random float values are then substituted for every symbol (input,
weight, bias and the upstream gradient) and the output and every gradient are compared with

(a) ``tests/numpy_reference.py``, explicit loops written from the math, and
(b) PyTorch's ``torch.nn.functional`` with autograd in float64 (skipped without PyTorch).

The NumPy reference is itself checked against PyTorch, so that a shared mistake of symcnn
and the reference cannot go unnoticed where PyTorch is installed.
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sympy import Array

from tests import numpy_reference as ref
from symcnn.symbolic import layers
from symcnn.symbolic.derive import LayerConfig, derive, gradient, vjp
from symcnn.symbolic.tensors import symbol_array

RTOL, ATOL = 1e-9, 1e-12
MAX_TERMS = 1500  # keeps each symbolic expansion well under a second

seeds = st.integers(min_value=0, max_value=2**32 - 1)


# --- helpers ------------------------------------------------------------------------------------


def numbers_for(symbols: Array, values: np.ndarray) -> dict:
    """``{symbol: value}`` by position: ``symbols[idx] -> values[idx]``."""
    assert tuple(symbols.shape) == values.shape
    return {symbols[idx]: sympy.Float(float(values[idx])) for idx in np.ndindex(values.shape)}


def evaluate(array, substitution: dict) -> np.ndarray:
    """A SymPy array (or scalar) with numbers substituted, as a float64 NumPy array."""
    if not isinstance(array, sympy.NDimArray):
        return np.array(float(sympy.sympify(array).xreplace(substitution)))
    shape = tuple(array.shape)
    flat = [float(array[idx].xreplace(substitution)) for idx in np.ndindex(shape)]
    return np.array(flat, dtype=np.float64).reshape(shape)


def assert_close(actual, expected, what: str) -> None:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=what)


def tensor(torch, values, grad=True):
    return torch.tensor(np.asarray(values, np.float64), dtype=torch.float64, requires_grad=grad)


class Case:
    """One configuration with random values for every tensor of its derivation."""

    def __init__(self, config: LayerConfig, seed: int):
        self.config = config
        self.derivation = derive(config)
        rng = np.random.default_rng(seed)
        self.values = {role: rng.uniform(-2.0, 2.0, size=tuple(symbols.shape))
                       for role, symbols in self.derivation.tensors.items()}
        self.substitution = {}
        for role, symbols in self.derivation.tensors.items():
            self.substitution.update(numbers_for(symbols, self.values[role]))

    def symcnn(self) -> dict[str, np.ndarray]:
        results = {"output": evaluate(self.derivation.output, self.substitution)}
        for name, array in self.derivation.gradients.items():
            results[name] = evaluate(array, self.substitution)
        return results

    def __getitem__(self, role):
        return self.values.get(role)


# --- strategies ---------------------------------------------------------------------------------


@st.composite
def conv_configs(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    low_h = max(1, dh * (kh - 1) + 1 - 2 * ph)  # the smallest input the dilated kernel fits
    low_w = max(1, dw * (kw - 1) + 1 - 2 * pw)
    h, w = draw(st.integers(low_h, low_h + 3)), draw(st.integers(low_w, low_w + 3))
    config = LayerConfig(
        "conv2d",
        input_size=(h, w),
        kernel=(kh, kw),
        channels_in=draw(st.integers(1, 3)),
        channels_out=draw(st.integers(1, 3)),
        stride=(sh, sw),
        padding=(ph, pw),
        dilation=(dh, dw),
        batch=draw(st.integers(1, 2)),
        bias=draw(st.booleans()),
    )
    assume(config.expansion_terms <= MAX_TERMS)
    return config


@st.composite
def pool_configs(draw, op):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h, w = draw(st.integers(kh, kh + 3)), draw(st.integers(kw, kw + 3))
    config = LayerConfig(op, input_size=(h, w), kernel=(kh, kw), stride=(sh, sw),
                         channels_in=draw(st.integers(1, 3)), batch=draw(st.integers(1, 2)))
    assume(config.expansion_terms <= MAX_TERMS)
    return config


@st.composite
def dense_configs(draw):
    return LayerConfig("dense", input_size=draw(st.integers(1, 5)), channels_out=draw(st.integers(1, 4)),
                       batch=draw(st.integers(1, 2)), bias=draw(st.booleans()))


def nchw_shapes():
    return st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4))


# --- convolution --------------------------------------------------------------------------------


def conv_arguments(config: LayerConfig) -> dict:
    return {"stride": config.stride, "padding": config.padding, "dilation": config.dilation}


@settings(max_examples=40)
@given(config=conv_configs(), seed=seeds)
def test_conv2d_output_and_gradients_match_numpy_reference(config, seed):
    case = Case(config, seed)
    got = case.symcnn()
    assert got["output"].shape == config.output_shape
    expected = ref.conv2d(case["input"], case["weight"], case["bias"], **conv_arguments(config))
    assert_close(got["output"], expected, "output")
    gx, gw, gb = ref.conv2d_backward(case["input"], case["weight"], case["grad_output"], **conv_arguments(config))
    assert_close(got["grad_input"], gx, "grad_input")
    assert_close(got["grad_weight"], gw, "grad_weight")
    if config.bias:
        assert_close(got["grad_bias"], gb, "grad_bias")
    else:
        assert "grad_bias" not in got


@settings(max_examples=40)
@given(config=conv_configs(), seed=seeds)
def test_conv2d_output_and_gradients_match_torch(torch, config, seed):
    F = torch.nn.functional
    case = Case(config, seed)
    got = case.symcnn()
    x, w = tensor(torch, case["input"]), tensor(torch, case["weight"])
    b = tensor(torch, case["bias"]) if config.bias else None
    y = F.conv2d(x, w, b, **conv_arguments(config))
    y.backward(tensor(torch, case["grad_output"], grad=False))
    assert_close(got["output"], y.detach().numpy(), "output")
    assert_close(got["grad_input"], x.grad.numpy(), "grad_input")
    assert_close(got["grad_weight"], w.grad.numpy(), "grad_weight")
    if config.bias:
        assert_close(got["grad_bias"], b.grad.numpy(), "grad_bias")


@settings(max_examples=25)
@given(config=conv_configs(), seed=seeds)
def test_conv2d_layer_on_numbers_matches_numpy_reference(config, seed):
    """``layers.conv2d`` on numeric arrays (no symbols), with ``(h, w)`` pairs for every argument."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, config.input_shape)
    w = rng.uniform(-2, 2, config.weight_shape)
    b = rng.uniform(-2, 2, (config.channels_out,)) if config.bias else None
    y = layers.conv2d(x, w, None if b is None else list(b), **conv_arguments(config))
    assert_close(evaluate(y, {}), ref.conv2d(x, w, b, **conv_arguments(config)), "output")


@settings(max_examples=60)
@given(config=conv_configs(), seed=seeds)
def test_numpy_reference_conv2d_matches_torch(torch, config, seed):
    """The reference itself, against PyTorch (cheap: no SymPy)."""
    F = torch.nn.functional
    rng = np.random.default_rng(seed)
    x, w = rng.normal(size=config.input_shape), rng.normal(size=config.weight_shape)
    b = rng.normal(size=config.channels_out)
    g = rng.normal(size=config.output_shape)
    tx, tw, tb = tensor(torch, x), tensor(torch, w), tensor(torch, b)
    ty = F.conv2d(tx, tw, tb, **conv_arguments(config))
    ty.backward(tensor(torch, g, grad=False))
    assert_close(ref.conv2d(x, w, b, **conv_arguments(config)), ty.detach().numpy(), "output")
    gx, gw, gb = ref.conv2d_backward(x, w, g, **conv_arguments(config))
    assert_close(gx, tx.grad.numpy(), "grad_input")
    assert_close(gw, tw.grad.numpy(), "grad_weight")
    assert_close(gb, tb.grad.numpy(), "grad_bias")


def test_conv2d_padding_only_windows_give_the_bias(torch):
    """Padding 2 with a 1x1 kernel: the border outputs read only zeros, so they equal the bias."""
    config = LayerConfig("conv2d", input_size=(2, 3), kernel=1, padding=2, channels_out=2)
    case = Case(config, seed=7)
    got = case.symcnn()
    assert got["output"].shape == (1, 2, 6, 7)
    assert_close(got["output"][0, :, 0, 0], case["bias"], "border output")
    F = torch.nn.functional
    y = F.conv2d(tensor(torch, case["input"], False), tensor(torch, case["weight"], False),
                 tensor(torch, case["bias"], False), padding=2)
    assert_close(got["output"], y.numpy(), "output")


# --- pooling ------------------------------------------------------------------------------------


def pool_case(config: LayerConfig, seed: int, integer_values: bool = False):
    """(input values, upstream values, symcnn output, symcnn dL/dX) with the input substituted by
    ``derive(values=...)``: after differentiation, as the routing rule requires."""
    rng = np.random.default_rng(seed)
    if integer_values:
        x = rng.integers(0, 3, size=config.input_shape).astype(np.float64)
        values = Array(x.astype(int).tolist())
    else:
        x = rng.uniform(-2.0, 2.0, size=config.input_shape)  # ties have probability zero
        values = Array([sympy.Float(float(v)) for v in x.ravel()], x.shape)
    result = derive(config, values=values)
    upstream_symbols = result.tensors["grad_output"]
    g = rng.uniform(-2.0, 2.0, size=tuple(upstream_symbols.shape))
    substitution = numbers_for(upstream_symbols, g)
    return x, g, evaluate(result.output, substitution), evaluate(result.gradients["grad_input"], substitution)


POOL_REFERENCES = {
    "maxpool2d": (ref.maxpool2d, ref.maxpool2d_backward),
    "avgpool2d": (ref.avgpool2d, ref.avgpool2d_backward),
}


@pytest.mark.parametrize("op", ["maxpool2d", "avgpool2d"])
@settings(max_examples=40)
@given(data=st.data(), seed=seeds)
def test_pool_output_and_gradient_match_numpy_reference(op, data, seed):
    config = data.draw(pool_configs(op))
    x, g, y, gx = pool_case(config, seed)
    forward, backward = POOL_REFERENCES[op]
    assert_close(y, forward(x, config.kernel, config.stride), "output")
    assert_close(gx, backward(x, g, config.kernel, config.stride), "grad_input")


@pytest.mark.parametrize("op", ["maxpool2d", "avgpool2d"])
@settings(max_examples=40)
@given(data=st.data(), seed=seeds)
def test_pool_output_and_gradient_match_torch(torch, op, data, seed):
    config = data.draw(pool_configs(op))
    x, g, y, gx = pool_case(config, seed)
    function = {"maxpool2d": torch.nn.functional.max_pool2d, "avgpool2d": torch.nn.functional.avg_pool2d}[op]
    tx = tensor(torch, x)
    ty = function(tx, kernel_size=config.kernel, stride=config.stride)
    ty.backward(tensor(torch, g, grad=False))
    assert_close(y, ty.detach().numpy(), "output")
    assert_close(gx, tx.grad.numpy(), "grad_input")


@settings(max_examples=40)
@given(data=st.data(), seed=seeds)
def test_maxpool_ties_route_to_first_maximum_like_torch(torch, data, seed):
    """Inputs from {0, 1, 2}: most windows hold a tie; symcnn, the reference and PyTorch agree."""
    config = data.draw(pool_configs("maxpool2d"))
    x, g, y, gx = pool_case(config, seed, integer_values=True)
    tx = tensor(torch, x)
    ty = torch.nn.functional.max_pool2d(tx, kernel_size=config.kernel, stride=config.stride)
    ty.backward(tensor(torch, g, grad=False))
    assert_close(y, ty.detach().numpy(), "output")
    assert_close(gx, tx.grad.numpy(), "grad_input")
    assert_close(gx, ref.maxpool2d_backward(x, g, config.kernel, config.stride), "grad_input (reference)")


TIED_MAP = [[3, 3, 1], [3, 3, 3], [0, 3, 3]]  # every 2x2 window (stride 1) holds several 3s


def test_maxpool_tie_in_a_window_sends_gradient_to_first_in_row_major_order():
    """Overlapping 2x2 windows (stride 1) over a map with several equal maxima."""
    result = derive(LayerConfig("maxpool2d", input_size=3, kernel=2, stride=1), values=Array([[TIED_MAP]]))
    a, b, c, d = (sympy.Symbol(name, real=True) for name in "abcd")
    # Window (0,0) -> x00, (0,1) -> x01, (1,0) -> x10, (1,1) -> x11: the first 3 of each window.
    assert result.output.tolist() == [[[[3, 3], [3, 3]]]]
    assert result.gradients["grad_input"].tolist() == [[[[a, b, 0], [c, d, 0], [0, 0, 0]]]]


def test_maxpool_tie_routing_matches_torch(torch):
    x = TIED_MAP
    result = derive(LayerConfig("maxpool2d", input_size=3, kernel=2, stride=1), values=Array([[x]]))
    upstream = np.array([[[[1.0, 10.0], [100.0, 1000.0]]]])
    tx = tensor(torch, np.array([[x]], dtype=np.float64))
    torch.nn.functional.max_pool2d(tx, 2, 1).backward(tensor(torch, upstream, grad=False))
    substitution = numbers_for(result.tensors["grad_output"], upstream)
    assert_close(evaluate(result.gradients["grad_input"], substitution), tx.grad.numpy(), "tie routing")


def test_maxpool_tie_later_strictly_larger_value_wins():
    """A tie followed by a strictly larger value: the larger value takes the gradient."""
    result = derive(LayerConfig("maxpool2d", input_size=(1, 3), kernel=(1, 3)), values=Array([[[[2, 2, 5]]]]))
    assert result.output.tolist() == [[[[5]]]]
    g = result.tensors["grad_output"][0, 0, 0, 0]
    assert result.gradients["grad_input"].tolist() == [[[[0, 0, g]]]]


# --- global average pooling and flatten ---------------------------------------------------------


@given(shape=nchw_shapes(), seed=seeds)
def test_global_avgpool_matches_torch_and_reference(torch, shape, seed):
    rng = np.random.default_rng(seed)
    x_values = rng.uniform(-2, 2, shape)
    x = symbol_array("x", shape)
    y = layers.global_avgpool(x)
    g = symbol_array("g", tuple(y.shape))
    g_values = rng.uniform(-2, 2, tuple(y.shape))
    substitution = {**numbers_for(x, x_values), **numbers_for(g, g_values)}
    grad = vjp(y, g, {"x": x})["x"]
    tx = tensor(torch, x_values)
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, 1)
    ty.backward(tensor(torch, g_values, grad=False))
    assert_close(evaluate(y, substitution), ty.detach().numpy(), "output")
    assert_close(evaluate(grad, substitution), tx.grad.numpy(), "grad_input")
    assert_close(evaluate(y, substitution), ref.global_avgpool(x_values), "output (reference)")
    assert_close(evaluate(grad, substitution), ref.global_avgpool_backward(x_values, g_values), "grad (reference)")


@given(shape=nchw_shapes(), seed=seeds)
def test_flatten_matches_torch_and_reference(torch, shape, seed):
    rng = np.random.default_rng(seed)
    x_values = rng.uniform(-2, 2, shape)
    x = symbol_array("x", shape)
    y = layers.flatten(x)
    assert tuple(y.shape) == (shape[0], shape[1] * shape[2] * shape[3])
    g = symbol_array("g", tuple(y.shape))
    g_values = rng.uniform(-2, 2, tuple(y.shape))
    substitution = {**numbers_for(x, x_values), **numbers_for(g, g_values)}
    grad = vjp(y, g, {"x": x})["x"]
    tx = tensor(torch, x_values)
    ty = torch.flatten(tx, 1)
    ty.backward(tensor(torch, g_values, grad=False))
    assert_close(evaluate(y, substitution), ty.detach().numpy(), "output")
    assert_close(evaluate(grad, substitution), tx.grad.numpy(), "grad_input")
    assert_close(evaluate(y, substitution), ref.flatten(x_values), "output (reference)")
    assert_close(evaluate(grad, substitution), ref.flatten_backward(shape, g_values), "grad (reference)")


def test_flatten_order_is_chw():
    x = symbol_array("x", (1, 2, 2, 3))
    y = layers.flatten(x)
    names = [str(y[0, k]) for k in range(y.shape[1])]
    assert names == ["x000", "x001", "x002", "x010", "x011", "x012", "x100", "x101", "x102", "x110", "x111", "x112"]


# --- dense --------------------------------------------------------------------------------------


@given(config=dense_configs(), seed=seeds)
def test_dense_output_and_gradients_match_numpy_reference(config, seed):
    case = Case(config, seed)
    got = case.symcnn()
    assert_close(got["output"], ref.dense(case["input"], case["weight"], case["bias"]), "output")
    gx, gw, gb = ref.dense_backward(case["input"], case["weight"], case["grad_output"])
    assert_close(got["grad_input"], gx, "grad_input")
    assert_close(got["grad_weight"], gw, "grad_weight")
    if config.bias:
        assert_close(got["grad_bias"], gb, "grad_bias")
    else:
        assert "grad_bias" not in got


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@given(data=st.data(), seed=seeds)
def test_dense_output_and_gradients_match_torch(torch, bias, data, seed):
    config = data.draw(dense_configs().map(lambda c: LayerConfig(
        "dense", input_size=c.input_size, channels_out=c.channels_out, batch=c.batch, bias=bias)))
    case = Case(config, seed)
    got = case.symcnn()
    x, w = tensor(torch, case["input"]), tensor(torch, case["weight"])
    b = tensor(torch, case["bias"]) if bias else None
    y = torch.nn.functional.linear(x, w, b)
    y.backward(tensor(torch, case["grad_output"], grad=False))
    assert_close(got["output"], y.detach().numpy(), "output")
    assert_close(got["grad_input"], x.grad.numpy(), "grad_input")
    assert_close(got["grad_weight"], w.grad.numpy(), "grad_weight")
    if bias:
        assert_close(got["grad_bias"], b.grad.numpy(), "grad_bias")
    else:
        assert "grad_bias" not in got


# --- activations --------------------------------------------------------------------------------

ALPHAS = [sympy.Rational(1, 100), sympy.Rational(1, 5), sympy.Rational(1, 2), sympy.Integer(1), sympy.Rational(3, 2)]

# Values with exact zeros among them: the non-differentiable point of every activation.
activation_values = st.one_of(st.just(0.0), st.floats(-3, 3, allow_nan=False, allow_infinity=False))
activation_shapes = st.one_of(
    st.tuples(st.integers(1, 2), st.integers(1, 4)),
    st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 2), st.integers(1, 3)),
)


def activation_case(draw, name):
    shape = draw(activation_shapes)
    size = int(np.prod(shape))
    x_values = np.array(draw(st.lists(activation_values, min_size=size, max_size=size)), np.float64).reshape(shape)
    g_values = np.array(draw(st.lists(st.floats(-2, 2), min_size=size, max_size=size)), np.float64).reshape(shape)
    alpha = draw(st.sampled_from(ALPHAS))
    x = symbol_array("x", shape)
    layer = {"relu": lambda t: layers.relu(t), "leaky_relu": lambda t: layers.leaky_relu(t, alpha),
             "elu": lambda t: layers.elu(t, alpha)}[name]
    y = layer(x)
    g = symbol_array("g", shape)
    grad = vjp(y, g, {"x": x})["x"]
    substitution = {**numbers_for(x, x_values), **numbers_for(g, g_values)}
    return x_values, g_values, float(alpha), evaluate(y, substitution), evaluate(grad, substitution)


ACTIVATION_REFERENCES = {
    "relu": (lambda x, alpha: ref.relu(x), lambda x, alpha: ref.relu_grad(x)),
    "leaky_relu": (ref.leaky_relu, ref.leaky_relu_grad),
    "elu": (ref.elu, ref.elu_grad),
}


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu"])
@given(data=st.data())
def test_activation_matches_numpy_reference(name, data):
    x, g, alpha, y, grad = activation_case(data.draw, name)
    forward, derivative = ACTIVATION_REFERENCES[name]
    assert_close(y, forward(x, alpha), "output")
    assert_close(grad, g * derivative(x, alpha), "grad_input")


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu"])
@given(data=st.data())
def test_activation_matches_torch(torch, name, data):
    x, g, alpha, y, grad = activation_case(data.draw, name)
    F = torch.nn.functional
    function = {"relu": lambda t: F.relu(t), "leaky_relu": lambda t: F.leaky_relu(t, alpha),
                "elu": lambda t: F.elu(t, alpha)}[name]
    tx = tensor(torch, x)
    ty = function(tx)
    ty.backward(tensor(torch, g, grad=False))
    assert_close(y, ty.detach().numpy(), "output")
    assert_close(grad, tx.grad.numpy(), "grad_input")


@pytest.mark.parametrize(
    "name, alpha, expected",
    [("relu", None, 0.0), ("leaky_relu", 0.2, 0.2), ("elu", 0.5, 0.5), ("elu", 1.0, 1.0)],
)
def test_activation_derivative_at_exactly_zero(torch, name, alpha, expected):
    """ReLU'(0) = 0; LeakyReLU'(0) = alpha; ELU'(0) = alpha (= f(0) + alpha), as PyTorch."""
    x = symbol_array("x", (1, 1))
    if name == "relu":
        y, function = layers.relu(x), torch.nn.functional.relu
    elif name == "leaky_relu":
        y = layers.leaky_relu(x, sympy.nsimplify(alpha))
        function = lambda t: torch.nn.functional.leaky_relu(t, alpha)  # noqa: E731
    else:
        y = layers.elu(x, sympy.nsimplify(alpha))
        function = lambda t: torch.nn.functional.elu(t, alpha)  # noqa: E731
    derivative = gradient(y[0, 0], x)[0, 0].xreplace({x[0, 0]: sympy.S.Zero})
    assert derivative == sympy.nsimplify(expected)
    assert y[0, 0].xreplace({x[0, 0]: sympy.S.Zero}) == 0
    tx = tensor(torch, [[0.0]])
    function(tx).sum().backward()
    assert float(derivative) == tx.grad.item()


# --- softmax and cross-entropy ------------------------------------------------------------------


@st.composite
def classification(draw, batch=2):
    classes = draw(st.integers(2, 5))
    seed = draw(seeds)
    rng = np.random.default_rng(seed)
    z = rng.uniform(-3, 3, (batch, classes))
    labels = np.array(draw(st.lists(st.integers(0, classes - 1), min_size=batch, max_size=batch)))
    return z, labels


def one_hot(labels, classes) -> Array:
    return Array([[1 if k == label else 0 for k in range(classes)] for label in labels])


def symcnn_softmax_cross_entropy(z_values, labels):
    z = symbol_array("z", z_values.shape)
    loss = layers.softmax_cross_entropy(z, one_hot(labels, z_values.shape[1]))
    grad = gradient(loss, z)
    substitution = numbers_for(z, z_values)
    return float(evaluate(loss, substitution)), evaluate(grad, substitution)


@given(case=classification())
def test_softmax_cross_entropy_matches_numpy_reference(case):
    z, labels = case
    loss, grad = symcnn_softmax_cross_entropy(z, labels)
    assert loss == pytest.approx(ref.softmax_cross_entropy(z, labels), rel=RTOL, abs=ATOL)
    assert_close(grad, ref.softmax_cross_entropy_grad(z, labels), "dL/dz = (p - y)/N")


@given(case=classification())
def test_softmax_cross_entropy_matches_torch_mean_reduction(torch, case):
    z, labels = case
    loss, grad = symcnn_softmax_cross_entropy(z, labels)
    tz = tensor(torch, z)
    tloss = torch.nn.functional.cross_entropy(tz, torch.tensor(labels, dtype=torch.long))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=RTOL, abs=ATOL)
    assert_close(grad, tz.grad.numpy(), "dL/dz")


@settings(max_examples=20)
@given(case=classification(batch=1))
def test_softmax_cross_entropy_of_one_image_is_documents_loss(case):
    """Batch 1: L = -log p_label and dL/dz = p - y, document 004 without the batch mean."""
    z, labels = case
    loss, grad = symcnn_softmax_cross_entropy(z, labels)
    p = ref.softmax(z)
    assert loss == pytest.approx(-np.log(p[0, labels[0]]), rel=RTOL)
    y = np.zeros_like(p)
    y[0, labels[0]] = 1.0
    assert_close(grad, p - y, "p - y")


@given(case=classification(), seed=seeds)
def test_softmax_and_its_vjp_match_torch(torch, case, seed):
    z_values, _ = case
    z = symbol_array("z", z_values.shape)
    p = layers.softmax(z)
    g = symbol_array("g", z_values.shape)
    g_values = np.random.default_rng(seed).uniform(-2, 2, z_values.shape)
    substitution = {**numbers_for(z, z_values), **numbers_for(g, g_values)}
    tz = tensor(torch, z_values)
    tp = torch.nn.functional.softmax(tz, dim=1)
    tp.backward(tensor(torch, g_values, grad=False))
    assert_close(evaluate(p, substitution), tp.detach().numpy(), "softmax")
    assert_close(evaluate(p, substitution), ref.softmax(z_values), "softmax (reference)")
    assert_close(evaluate(vjp(p, g, {"z": z})["z"], substitution), tz.grad.numpy(), "softmax vjp")


@given(case=classification())
def test_cross_entropy_of_probabilities_is_batch_mean(case):
    z, labels = case
    p_values = ref.softmax(z)
    p = symbol_array("p", p_values.shape)
    loss = layers.cross_entropy(p, one_hot(labels, p_values.shape[1]))
    expected = -np.mean([np.log(p_values[n, labels[n]]) for n in range(len(labels))])
    assert float(evaluate(loss, numbers_for(p, p_values))) == pytest.approx(expected, rel=RTOL)
