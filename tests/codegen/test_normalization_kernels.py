"""Batch and layer normalization kernels (generated from their formulas) on the verification ladder:
the symbolic expansion (float64), PyTorch autograd in both modes (float64 and float32, running
statistics included), the NumPy reference, central finite differences; the loop-invariant statistics
computed once per channel; bad settings and inputs refused in one line."""

from __future__ import annotations

import numpy as np
import pytest

from symcnn.bench.bench import torch_model
from symcnn.bench.numpy_network import NumpyNetwork
from symcnn.codegen.network import layer_kernels
from symcnn.spec import parse_spec
from symcnn.symbolic.verify import symbolic_network_gradients
from tests.kernels_helpers import COMPILES_KERNELS, network_for, random_params, toml_of


TINY = {"name": "tiny-norm", "input": [2, 2, 2], "layers": [
    {"type": "batchnorm2d", "name": "bn1"},
    {"type": "relu"},
    {"type": "flatten"},
    {"type": "dense", "name": "fc1", "out_features": 3},
    {"type": "layernorm", "name": "ln1", "eps": 0.01},
    {"type": "dense", "name": "fc2", "out_features": 2},
]}

SMALL = {"name": "small-norm", "input": [2, 5, 4], "layers": [
    {"type": "conv2d", "name": "conv1", "out_channels": 3, "kernel": 3, "padding": 1},
    {"type": "batchnorm2d", "name": "bn1", "momentum": 0.3, "eps": 0.001},
    {"type": "relu"},
    {"type": "layernorm", "name": "ln1"},
    {"type": "flatten"},
    {"type": "dense", "name": "fc1", "out_features": 6},
    {"type": "layernorm", "name": "ln2"},
    {"type": "tanh"},
    {"type": "dense", "name": "fc2", "out_features": 4},
]}


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@COMPILES_KERNELS
def test_kernels_equal_the_symbolic_expansion(tmp_path):
    net = network_for(TINY, tmp_path)
    rng = np.random.default_rng(3)
    params = random_params(net, rng)
    net.load_params(params)
    x = rng.standard_normal((2, 2, 2, 2))
    labels = np.array([1, 0])
    loss, grads = net.loss_and_grads(x, labels)  # training mode: the batch's statistics
    expected = symbolic_network_gradients(net.spec, params, x, labels)
    assert loss == pytest.approx(expected["loss"], rel=1e-12)
    for name in list(params) + ["input"]:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-9, atol=1e-12, err_msg=name)


def torch_pass(torch, net, params, buffers, x, labels, training, torch_dtype):
    """PyTorch's loss, logits, gradients (by symcnn's names) and buffers after one pass."""
    model = torch_model(net.spec, params, buffers).to(torch_dtype)
    model.train(training)
    tx = torch.tensor(x, dtype=torch_dtype, requires_grad=True)
    logits = model(tx)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(labels))
    loss.backward()
    positions = {layer.name: position for position, layer in enumerate(net.spec.layers) if layer.name}
    grads = {name: getattr(model[positions[name.rsplit(".", 1)[0]]], name.rsplit(".", 1)[1]).grad.numpy()
             for name in params}
    grads["input"] = tx.grad.numpy()
    state = {name: getattr(model[positions[name.rsplit(".", 1)[0]]], name.rsplit(".", 1)[1]).numpy()
             for name in buffers}
    return loss.item(), logits.detach().numpy(), grads, state


@COMPILES_KERNELS
@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-10), ("float32", 5e-4)])
@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
def test_kernels_equal_pytorch_in_both_modes(torch, tmp_path, dtype, tolerance, training):
    net = network_for(SMALL, tmp_path, dtype=dtype)
    rng = np.random.default_rng(5)
    net.load_params(random_params(net, rng))
    if not training:  # running statistics away from their start, as after some training
        net.load_buffers({**net.buffers, "bn1.running_mean": rng.standard_normal(3),
                          "bn1.running_var": rng.uniform(0.5, 2.0, 3), "bn1.num_batches_tracked": 7})
    x = (rng.standard_normal((4, 2, 5, 4)) * 2 + 1).astype(dtype)
    labels = np.array([3, 0, 1, 3])
    params = {name: value.copy() for name, value in net.params.items()}
    buffers = {name: value.copy() for name, value in net.buffers.items()}
    net.train(training)
    loss, grads = net.loss_and_grads(x, labels)
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    expected_loss, logits, expected, state = torch_pass(torch, net, params, buffers, x, labels, training, torch_dtype)
    assert loss == pytest.approx(expected_loss, rel=tolerance)
    for key, value in expected.items():
        scale = max(np.abs(value).max(), 1e-3)  # a bias before batch norm: a zero gradient, up to rounding
        np.testing.assert_allclose(grads[key], value, rtol=tolerance, atol=tolerance * scale, err_msg=key)
    for name, value in state.items():  # running statistics updated in training mode only, as PyTorch
        np.testing.assert_allclose(net.buffers[name], value, rtol=tolerance, atol=tolerance, err_msg=name)
    assert int(net.buffers["bn1.num_batches_tracked"]) == int(buffers["bn1.num_batches_tracked"]) + training
    after = {name: value.copy() for name, value in net.buffers.items()}
    np.testing.assert_allclose(net.forward(x, training=False), torch_pass(
        torch, net, net.params, after, x, labels, False, torch_dtype)[1], rtol=tolerance, atol=tolerance)
    assert all(np.array_equal(after[name], net.buffers[name]) for name in after)  # evaluation changes nothing


@COMPILES_KERNELS
def test_running_statistics_after_sgd_steps_equal_pytorch(torch, tmp_path):
    net = network_for(SMALL, tmp_path)
    rng = np.random.default_rng(9)
    net.load_params(random_params(net, rng))
    model = torch_model(net.spec, net.params).to(torch.float64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(3):
        x, labels = rng.standard_normal((5, 2, 5, 4)) + 0.5, rng.integers(0, 4, 5)
        loss = net.train_step(x, labels, lr=0.05)
        optimizer.zero_grad()
        expected = torch.nn.functional.cross_entropy(model(torch.tensor(x)), torch.tensor(labels))
        expected.backward()
        optimizer.step()
        assert loss == pytest.approx(expected.item(), rel=1e-10)
    assert int(net.buffers["bn1.num_batches_tracked"]) == int(model[1].num_batches_tracked) == 3
    np.testing.assert_allclose(net.buffers["bn1.running_mean"], model[1].running_mean.numpy(), rtol=1e-10)
    np.testing.assert_allclose(net.buffers["bn1.running_var"], model[1].running_var.numpy(), rtol=1e-10)
    np.testing.assert_allclose(net.params["bn1.weight"], model[1].weight.detach().numpy(), rtol=1e-10)


@COMPILES_KERNELS
@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
def test_kernels_equal_the_numpy_reference(tmp_path, training):
    net = network_for(SMALL, tmp_path)
    rng = np.random.default_rng(2)
    net.load_params(random_params(net, rng))
    x, labels = rng.standard_normal((3, 2, 5, 4)), np.array([0, 1, 2])
    reference = NumpyNetwork(net.spec, {k: v.copy() for k, v in net.params.items()},
                             {k: v.copy() for k, v in net.buffers.items()}, training)
    expected_loss, expected = reference.loss_and_grads(x, labels)
    loss, grads = net.train(training).loss_and_grads(x, labels)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=1e-9, atol=1e-12, err_msg=key)
    for name, value in reference.buffers.items():
        np.testing.assert_allclose(net.buffers[name], value, rtol=1e-12, err_msg=name)


@COMPILES_KERNELS
def test_gradients_equal_central_finite_differences(tmp_path):
    net = network_for(SMALL, tmp_path)
    rng = np.random.default_rng(4)
    net.load_params(random_params(net, rng))
    x, labels = rng.standard_normal((3, 2, 5, 4)), np.array([2, 0, 1])
    _, grads = net.loss_and_grads(x, labels, training=True)
    step = 1e-5
    for key, array in dict(net.params, input=x).items():
        for _ in range(3):
            index = tuple(rng.integers(0, size) for size in array.shape)
            original = array[index]
            array[index] = original + step
            plus = net.loss_and_grads(x, labels, training=True)[0]
            array[index] = original - step
            minus = net.loss_and_grads(x, labels, training=True)[0]
            array[index] = original
            assert grads[key][index] == pytest.approx((plus - minus) / (2 * step), rel=1e-5, abs=1e-8), (key, index)


def test_channel_statistics_are_computed_once_per_channel_not_per_element():
    spec = parse_spec(toml_of(SMALL))
    kernels = {kernel.name: kernel for kernel in layer_kernels(spec.layers[1])}
    forward = kernels["bn1_forward"]
    # the mean and the variance (which reads the mean): two arrays filled per channel before the output loops
    statistics = [p for p in forward.precomputed if p.reductions]
    assert [p.names for p in statistics] == [("stat0",), ("stat1",)]
    assert {loop.variable for p in forward.precomputed for loop in p.loops} == {"c"}
    assert "stat0[c]" in statistics[1].reductions[0].update
    assert all(not term.reductions and not term.loops for term in forward.terms)  # nothing summed per element
    grad_input = kernels["bn1_grad_input"]
    assert grad_input.precomputed and all(not term.reductions and not term.loops for term in grad_input.terms)
    # evaluation mode: the running statistics, read; nothing summed
    assert not any(p.reductions for p in kernels["bn1_eval_forward"].precomputed)


def test_per_channel_coefficients_leave_two_multiply_adds_per_element():
    """Batch norm's derived input gradient, ten products per element, regrouped by what each reads per
    element: document 003's compact form, three per-channel coefficients (no square root per element)."""
    spec = parse_spec(toml_of(SMALL))
    kernels = {kernel.name: kernel for kernel in layer_kernels(spec.layers[1])}
    grad_input = kernels["bn1_grad_input"]
    assert [term.update for term in grad_input.terms] == [
        "acc += coef0[c]*grad_output[n_p, c, i_p, j_p]", "acc += coef1[c]", "acc += x[n_p, c, i_p, j_p]*coef2[c]"]
    coefficients = [p for p in grad_input.precomputed if not p.reductions]
    assert [p.names for p in coefficients] == [("coef0", "coef1", "coef2")]  # one loop over the channels
    assert [loop.variable for loop in coefficients[0].loops] == ["c"]
    assert all("stat1[c]" in value for value in coefficients[0].values)
    # the mean, then the variance beside the sums of dL/dY and X * dL/dY: two passes over the arrays
    assert [p.names for p in grad_input.precomputed if p.reductions] == [("stat0",), ("stat1", "stat2", "stat3")]
    assert [term.update for term in kernels["bn1_forward"].terms] == [
        "acc += coef0[c]", "acc += x[n, c, i, j]*coef1[c]"]  # the shift (beta[c] included), the scale


def test_layer_norm_statistics_are_computed_once_per_sample():
    """Layer norm's statistics are per sample: arrays over the batch, filled before the output loops,
    in the forward kernel and in every gradient (the weight gradient's sum over the batch reads them).
    The layer's backward kernel (every gradient in one pass) fills the input gradient's four once and
    the weight and bias gradients read them: it adds no statistic of its own."""
    spec = parse_spec(toml_of(SMALL))
    for kernel in layer_kernels(spec.layers[3]):
        assert all(not term.reductions for term in kernel.terms), kernel.name
        assert all(len(term.loops) <= 1 for term in kernel.terms), kernel.name  # at most the sum over the batch
        for array in kernel.precomputed:
            assert [loop.variable for loop in array.loops] == ["n"] and array.shape == ("N",), kernel.name
    statistics = {kernel.name: [name for p in kernel.precomputed if p.reductions for name in p.names]
                  for kernel in layer_kernels(spec.layers[3])}
    assert statistics == {"ln1_forward": ["stat0", "stat1"], "ln1_grad_input": ["stat0", "stat1", "stat2", "stat3"],
                          "ln1_grad_weight": ["stat0", "stat1"], "ln1_grad_bias": [],
                          "ln1_backward": ["stat0", "stat1", "stat2", "stat3"],
                          # the forward pass's kept, the backward kernel reading them (codegen.saved_statistics)
                          "ln1_forward_saving": ["stat0", "stat1"], "ln1_backward_saved": ["stat0", "stat1"]}


def test_evaluation_mode_kernels_read_the_running_statistics():
    spec = parse_spec(toml_of(SMALL))
    names = [kernel.name for kernel in layer_kernels(spec.layers[1])]
    assert names == ["bn1_forward", "bn1_grad_input", "bn1_grad_weight", "bn1_grad_bias", "bn1_backward",
                     "bn1_forward_saving", "bn1_backward_saved", "bn1_eval_forward", "bn1_eval_grad_input",
                     "bn1_eval_grad_weight", "bn1_eval_grad_bias",
                     "bn1_eval_backward"]
    evaluation = next(kernel for kernel in layer_kernels(spec.layers[1]) if kernel.name == "bn1_eval_forward")
    assert evaluation.arguments == ("x", "weight", "bias", "running_mean", "running_var", "out")
    reads_running = {kernel.name: "running_var" in kernel.arguments for kernel in layer_kernels(spec.layers[1])}
    assert reads_running == {name: "_eval_" in name and not name.endswith("grad_bias") for name in names}
    assert [kernel.name for kernel in layer_kernels(spec.layers[3])] == [
        "ln1_forward", "ln1_grad_input", "ln1_grad_weight", "ln1_grad_bias", "ln1_backward", "ln1_forward_saving",
        "ln1_backward_saved"]  # one mode


@COMPILES_KERNELS
def test_one_value_per_channel_in_training_mode_is_refused(tmp_path):
    spec = {"name": "one-pixel", "input": [3, 1, 1], "layers": [
        {"type": "batchnorm2d", "name": "bn"}, {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]}
    net = network_for(spec, tmp_path)
    x = np.ones((1, 3, 1, 1))
    with pytest.raises(ValueError, match=r"^bn: input: batch normalization in training mode needs more than one "
                                         r"value per channel \(a variance to estimate\), got an input of shape "
                                         r"\(1, 3, 1, 1\)$"):
        net.forward(x)
    assert int(net.buffers["bn.num_batches_tracked"]) == 0  # refused before anything ran
    assert net.forward(x, training=False).shape == (1, 2)  # evaluation mode: the running statistics
    assert net.forward(np.ones((2, 3, 1, 1))).shape == (2, 2)  # two images: two values per channel


@pytest.mark.parametrize("layer, message", [
    ({"type": "batchnorm2d", "name": "bn", "eps": 0}, r"eps: must be a positive number, got 0"),
    ({"type": "batchnorm2d", "name": "bn", "eps": -1e-5}, r"eps: must be a positive number, got -1e-05"),
    ({"type": "layernorm", "name": "ln", "eps": 0.0}, r"eps: must be a positive number, got 0.0"),
    ({"type": "batchnorm2d", "name": "bn", "momentum": 1.5}, r"momentum: must be a number in \[0, 1\], got 1.5"),
    ({"type": "batchnorm2d", "name": "bn", "momentum": -0.1}, r"momentum: must be a number in \[0, 1\], got -0.1"),
    ({"type": "batchnorm2d", "name": "bn", "momentum": True}, r"momentum: must be a number in \[0, 1\], got True"),
    ({"type": "batchnorm2d"}, r"name: missing \(required\)"),
])
def test_bad_settings_name_the_layer_and_field(layer, message):
    spec = {"name": "bad", "input": [2, 3, 3], "layers": [layer, {"type": "flatten"},
                                                          {"type": "dense", "name": "fc", "out_features": 2}]}
    with pytest.raises(ValueError, match=r"^\[\[layers\]\] table 1 \((batchnorm2d|layernorm)[^)]*\): " + message):
        parse_spec(toml_of(spec))


def test_momentum_bounds_are_accepted():
    for momentum in (0, 1, 0.0, 1.0):
        spec = {"name": "ok", "input": [2, 3, 3], "layers": [
            {"type": "batchnorm2d", "name": "bn", "momentum": momentum}, {"type": "flatten"},
            {"type": "dense", "name": "fc", "out_features": 2}]}
        assert parse_spec(toml_of(spec)).layers[0].settings["momentum"] == momentum


@COMPILES_KERNELS
def test_buffers_are_checked_when_replaced(tmp_path):
    net = network_for(TINY, tmp_path)
    assert sorted(net.buffers) == ["bn1.num_batches_tracked", "bn1.running_mean", "bn1.running_var"]
    assert net.buffers["bn1.num_batches_tracked"].dtype == np.int64
    assert net.buffers["bn1.running_var"].tolist() == [1, 1]
    assert net.params["bn1.weight"].tolist() == [1, 1] and net.params["ln1.weight"].tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match=r"^bn1.running_var: expected a C-contiguous float64 array of shape \(2\)"):
        net.buffers = {**net.buffers, "bn1.running_var": np.ones(3)}
    with pytest.raises(ValueError, match=r"^bn1.running_mean: holds NaN, infinite or negative values"):
        net.load_buffers({**net.buffers, "bn1.running_mean": [np.nan, 0]})
    with pytest.raises(ValueError, match=r"^buffers: missing \['bn1.num_batches_tracked'\]"):
        net.load_buffers({"bn1.running_mean": [0, 0], "bn1.running_var": [1, 1]})
    with pytest.raises(ValueError, match="^training: must be True, False or None"):
        net.forward(np.zeros((2, 2, 2, 2)), training="eval")
    assert net.eval() is net and not net.training and net.train().training
