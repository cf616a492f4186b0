"""Generated kernels of grouped and transposed convolutions: rungs 3 and 4 of the ladder, and the adjoint.

Two small specs, each generated once per dtype:

- ``conv-up``: conv2d, ReLU, then conv_transpose2d with conv2d's weight shape and the output padding
  that gives back conv2d's input shape (so that the two are adjoint), then a second
  conv_transpose2d whose output padding is allowed by its dilation only, flatten, dense;
- ``grouped``: conv2d with groups = 2 (4 -> 6 channels), a depthwise conv2d (groups = C_in, two
  outputs per channel), a 1x1 conv2d (with the depthwise one, a depthwise-separable block), flatten, dense.

The kernels equal the symbolic expansion (float64), PyTorch autograd and the NumPy reference
(float64 and float32: forward, loss, every gradient) and central finite differences (float64);
conv_transpose2d's forward kernel equals conv2d's input-gradient kernel, and passes the dot test.
"""

from __future__ import annotations

import ast
import importlib
import re

import numpy as np
import pytest

from symcnn.bench.bench import forward_flops
from symcnn.bench.numpy_network import NumpyNetwork
from symcnn.runtime.loader import load_kernels
from symcnn.symbolic.verify import symbolic_network_gradients
from tests.kernels_helpers import assert_central_differences, network_for, random_params, torch_loss_and_grads

CONV_UP = {
    "name": "conv-up",
    "input": [2, 8, 7],
    "layers": [
        {"type": "conv2d", "name": "conv", "out_channels": 3, "kernel": [3, 2], "stride": [2, 3], "padding": [1, 0],
         "dilation": [1, 2]},
        {"type": "relu"},
        # conv's adjoint: output (4 - 1)*2 - 2 + 2 + 1 + 1 = 8 rows, (2 - 1)*3 + 2 + 1 + 1 = 7 columns
        {"type": "conv_transpose2d", "name": "up", "out_channels": 2, "kernel": [3, 2], "stride": [2, 3],
         "padding": [1, 0], "dilation": [1, 2], "output_padding": [1, 1]},
        # an output padding of the stride, below the dilation (PyTorch's rule allows it)
        {"type": "conv_transpose2d", "name": "spread", "out_channels": 2, "kernel": 2, "dilation": 2,
         "padding": 1, "output_padding": 1, "bias": False},
        {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 3},
    ],
}

GROUPED = {
    "name": "grouped",
    "input": [4, 5, 4],
    "layers": [
        {"type": "conv2d", "name": "conv", "out_channels": 6, "kernel": 3, "padding": 1, "groups": 2},
        {"type": "relu"},
        {"type": "conv2d", "name": "depthwise", "out_channels": 12, "kernel": [3, 2], "stride": [2, 1],
         "padding": [1, 0], "groups": 6, "bias": False},
        {"type": "conv2d", "name": "pointwise", "out_channels": 5, "kernel": 1},
        {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 3},
    ],
}

SPECS = {spec["name"]: spec for spec in (CONV_UP, GROUPED)}


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """Each spec's network per dtype, generated once into the session's cache."""
    directory = tmp_path_factory.mktemp("specs")
    return {(name, dtype): network_for(spec, directory, dtype) for name, spec in SPECS.items()
            for dtype in ("float64", "float32")}


def _case(net, seed: int, dtype="float64", batch=3):
    rng = np.random.default_rng(seed)
    params = {name: value.astype(dtype) for name, value in random_params(net, rng).items()}
    net.load_params(params)
    x = rng.standard_normal((batch, *net.spec.input_shape)).astype(dtype)
    return params, x, np.array([0, 2, 1][:batch])


@pytest.mark.parametrize("name", SPECS)
def test_kernels_equal_the_symbolic_expansion(networks, name):
    net = networks[name, "float64"]
    params, x, labels = _case(net, 7, batch=2)  # every element a SymPy expression: a small batch
    loss, grads = net.loss_and_grads(x, labels)
    expected = symbolic_network_gradients(net.spec, params, x, labels)
    assert loss == pytest.approx(expected["loss"], rel=1e-12, abs=1e-12)
    for key in list(params) + ["input"]:
        np.testing.assert_allclose(grads[key], expected[key], rtol=1e-10, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-10), ("float32", 2e-4)])
def test_kernels_and_the_numpy_reference_equal_pytorch(torch, networks, name, dtype, tolerance):
    net = networks[name, dtype]
    params, x, labels = _case(net, 11, dtype)
    loss, grads = net.loss_and_grads(x, labels)
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    expected_loss, expected_logits, expected = torch_loss_and_grads(net.spec, params, x, labels, torch_dtype)
    reference_loss, reference = NumpyNetwork(net.spec, {k: v.copy() for k, v in params.items()}).loss_and_grads(
        x, labels)
    assert loss == pytest.approx(expected_loss, rel=tolerance)
    assert reference_loss == pytest.approx(expected_loss, rel=tolerance)
    np.testing.assert_allclose(net.forward(x), expected_logits, rtol=tolerance, atol=tolerance)
    assert set(grads) == set(expected) == set(reference)
    for key, value in expected.items():
        scale = np.abs(value).max()
        np.testing.assert_allclose(grads[key], value, rtol=tolerance, atol=tolerance * scale, err_msg=key)
        np.testing.assert_allclose(reference[key], value, rtol=tolerance, atol=tolerance * scale, err_msg=key)


@pytest.mark.parametrize("name", SPECS)
def test_gradients_equal_central_finite_differences(networks, name):
    net = networks[name, "float64"]
    params, x, labels = _case(net, 13)
    # a small step: one of 1e-5 takes a ReLU input across 0 at one of these coordinates
    assert_central_differences(net, x, labels, np.random.default_rng(17), step=1e-6, samples=3, rel=1e-6, abs=1e-8)


def _kernel(net, module: str, name: str):
    return getattr(importlib.import_module(f"{load_kernels(net.spec).__name__}.{module}"), name)


def test_the_transposed_kernel_is_the_convolutions_input_gradient_kernel(networks):
    """up_forward (conv_transpose2d, bias 0) and conv_grad_input (derived from conv2d) on the same weight
    and the same values give the same array; and <conv(z), y> = <z, up(y)> (the dot test)."""
    net = networks["conv-up", "float64"]
    rng = np.random.default_rng(3)
    weight = rng.standard_normal(net.spec.layers[0].parameter_shapes()["conv.weight"])
    assert weight.shape == net.spec.layers[2].parameter_shapes()["up.weight"]
    y = rng.standard_normal((2, *net.spec.layers[0].output_shape))
    z = rng.standard_normal((2, *net.spec.input_shape))
    transposed, gradient = np.empty_like(z), np.empty_like(z)
    _kernel(net, "up", "up_forward")(y, weight, np.zeros(2), transposed)
    _kernel(net, "conv", "conv_grad_input")(y, weight, gradient)
    np.testing.assert_allclose(transposed, gradient, rtol=1e-12, atol=1e-12)
    convolved = np.empty_like(y)
    _kernel(net, "conv", "conv_forward")(z, weight, np.zeros(3), convolved)
    assert np.vdot(convolved, y) == pytest.approx(np.vdot(z, transposed), rel=1e-12)


def test_grouped_kernels_compute_their_channel_maps_in_integers(networks):
    """The group's first input channel, c_out // (C_out/G) * (C_in/G), as Python parses the kernel: an
    integer division inside the product (``2*(c_out) // 3`` would be ``(2*c_out) // 3``), no float floor."""
    net = networks["grouped", "float64"]
    module = importlib.import_module(f"{load_kernels(net.spec).__name__}.conv")
    tree = ast.parse(open(module.__file__, encoding="utf-8").read())
    for function in (node for node in tree.body if isinstance(node, ast.FunctionDef)):
        function.body = function.body[1:]  # the docstring: the formula, in SymPy's notation
    code = ast.unparse(tree)
    assert "x[n, c_in + 2 * (c_out // 3), i + u - 1, j + v - 1]" in code
    assert "if 0 <= c - 2 * (c_out // 3) and c - 2 * (c_out // 3) <= 1:" in code  # the input gradient's group
    assert "floor" not in code and not re.search(r"[^/]/[^/]", code)  # integer divisions only


def test_flop_counts_read_the_groups_and_the_transposed_taps(networks):
    grouped, conv_up = networks["grouped", "float64"].spec, networks["conv-up", "float64"].spec
    assert forward_flops(grouped) == 2 * (6 * 5 * 4 * 2 * 9 + 12 * 3 * 3 * 1 * 6 + 5 * 3 * 3 * 12 + 3 * 5 * 3 * 3)
    up, spread = conv_up.layers[2], conv_up.layers[3]
    assert forward_flops(conv_up) == 2 * (3 * 4 * 2 * 2 * 6 + 3 * 4 * 2 * 2 * 6 + 2 * 8 * 7 * 2 * 4
                                          + 3 * int(np.prod(spread.output_shape)))
    assert up.output_shape == (2, 8, 7) and spread.output_shape == (2, 9, 8)


# Long runs (numba compiling several specs, or several processes): `pytest -m slow` (pyproject.toml).
pytestmark = pytest.mark.slow
