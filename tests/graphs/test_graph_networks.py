"""Graph specs run on the generated kernels (float64) equal the PyTorch twin and the NumPy reference:
the example (a residual add, a concat of three, fan-outs of the stem and of ``a``) and a spec whose
network input fans out, with a dropout in one branch (training mode with the Network's masks, and
evaluation mode); the gradients equal central differences; the fan-out sums are generated kernels, and
where the fanned-out tensor is a ReLU's output, its input gradient is stored by that sum."""

from __future__ import annotations

import numpy as np
import pytest

from symcnn.bench.numpy_network import NumpyNetwork
from symcnn.bench.torch_twin import torch_model
from tests.graphs.graph_specs import GRAPH, INPUT_FANOUT
from tests.kernels_helpers import assert_central_differences, network_for, random_params, torch_loss_and_grads


@pytest.fixture(scope="module")
def networks(tmp_path_factory):
    """Each spec's float64 network, generated once into the session's cache."""
    directory = tmp_path_factory.mktemp("specs")
    return {spec["name"]: network_for(spec, directory) for spec in (GRAPH, INPUT_FANOUT)}


def _case(net, seed: int, batch: int = 3):
    rng = np.random.default_rng(seed)
    net.load_params(random_params(net, rng))
    x = rng.standard_normal((batch, *net.spec.input_shape))
    return x, rng.integers(0, net.spec.classes, batch)


def _assert_equal(loss, grads, expected_loss, expected, tolerance=1e-10):
    assert loss == pytest.approx(expected_loss, rel=tolerance)
    assert set(grads) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=tolerance, atol=tolerance * np.abs(value).max(),
                                   err_msg=key)


def test_the_fan_out_sums_are_generated_kernels(networks):
    arguments = networks["graph-example"].kernels.ARGUMENTS
    assert arguments["fanout_stem"] == ("x", "x2", "out") and arguments["fanout_a"] == ("x", "x2", "x3", "out")
    assert "fanout_input" not in arguments and "fanout_c2" not in arguments  # one reader: nothing to sum
    assert networks["graph-input-fanout"].kernels.ARGUMENTS["fanout_input"] == ("x", "x2", "out")


def test_a_relu_read_by_three_layers_has_its_gradient_stored_by_their_sum(networks):
    """``a`` (a ReLU read by c2, the add and the concat): one kernel, the fan-out's sum storing a's input
    gradient, runs in place of ``fanout_a`` and ``a_grad_input``; the gradients equal theirs bit for bit."""
    net = networks["graph-example"]
    assert net.kernels.FANOUT_FUSED == {"a": "fanout_a_with_a_grad_input"}
    x, labels = _case(net, 4)
    runs = {}
    try:
        for fused in (True, False):
            net._fanout_fused, net.profile = ({"a"} if fused else set()), {}  # profile: the kernels called
            runs[fused] = (*net.loss_and_grads(x, labels), set(net.profile))
    finally:
        net._fanout_fused, net.profile = {"a"}, None
    (loss, grads, called), (unfused_loss, unfused, unfused_called) = runs[True], runs[False]
    assert "fanout_a_with_a_grad_input" in called and not {"fanout_a", "a_grad_input"} & called
    assert {"fanout_a", "a_grad_input"} <= unfused_called
    assert loss == unfused_loss and set(grads) == set(unfused)
    for key, value in unfused.items():
        np.testing.assert_array_equal(grads[key], value, err_msg=key)


def test_the_example_equals_pytorch_and_the_numpy_reference(torch, networks):
    net = networks["graph-example"]
    x, labels = _case(net, 1)
    loss, grads = net.loss_and_grads(x, labels)
    expected_loss, expected_logits, expected = torch_loss_and_grads(net.spec, net.params, x, labels, torch.float64)
    _assert_equal(loss, grads, expected_loss, expected)
    np.testing.assert_allclose(net.forward(x), expected_logits, rtol=1e-10, atol=1e-12)
    reference = NumpyNetwork(net.spec, {name: value.copy() for name, value in net.params.items()})
    _assert_equal(*reference.loss_and_grads(x, labels), expected_loss, expected)
    np.testing.assert_allclose(reference.forward(x), expected_logits, rtol=1e-10, atol=1e-12)


@pytest.mark.slow  # a second graph's kernels (about 45 s); the evaluation-mode test below runs in CI (heavy)
def test_an_input_fan_out_with_dropout_in_one_branch_in_training_mode(torch, networks):
    net = networks["graph-input-fanout"].train()
    x, labels = _case(net, 2, batch=4)
    loss, grads = net.loss_and_grads(x, labels)
    masks = net.masks(4)  # what that training pass multiplied by
    assert set(masks) == {"drop"} and 0 < masks["drop"].mean() < 1  # some dropped, some kept
    expected_loss, _, expected = torch_loss_and_grads(net.spec, net.params, x, labels, torch.float64, masks)
    _assert_equal(loss, grads, expected_loss, expected)
    reference = NumpyNetwork(net.spec, {name: value.copy() for name, value in net.params.items()})
    _assert_equal(*reference.loss_and_grads(x, labels, masks), expected_loss, expected)
    # without the mask the sums differ: the comparison above sees the dropout branch
    assert not np.allclose(reference.loss_and_grads(x, labels, {"drop": np.ones_like(masks["drop"])})[1]["input"],
                           expected["input"])


@pytest.mark.heavy
def test_an_input_fan_out_with_dropout_in_evaluation_mode(torch, networks):
    net = networks["graph-input-fanout"]
    x, _ = _case(net, 3)
    with torch.no_grad():
        expected = torch_model(net.spec, net.params).eval()(torch.tensor(x)).numpy()
    np.testing.assert_allclose(net.forward(x, training=False), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(NumpyNetwork(net.spec, net.params).forward(x), expected, rtol=1e-10, atol=1e-12)


def test_the_gradients_of_a_graph_equal_central_differences(networks):
    net = networks["graph-example"]
    x, labels = _case(net, 4, batch=2)
    # a small step: a ReLU input must not cross 0 between the two evaluations
    assert_central_differences(net, x, labels, np.random.default_rng(5), step=1e-6, samples=3, rel=1e-6, abs=1e-8)
