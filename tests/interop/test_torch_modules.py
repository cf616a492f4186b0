"""A spec as an nn.Module: the parameters of Network.params by name, a state_dict that round-trips with
the plain PyTorch twin, logits and gradients equal to the twin's and the Network's; single layers inside
any PyTorch model."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import symcnn.torch  # noqa: E402
from symcnn.bench.bench import torch_model  # noqa: E402
from symcnn.runtime.network import Network  # noqa: E402


@pytest.mark.parametrize("spec", ["digits", pytest.param("seed004-text", marks=pytest.mark.heavy)])
def test_parameters_are_network_params_and_the_state_dict_round_trips_with_the_twin(spec):
    net = Network.from_spec(spec, dtype="float64", seed=3)
    model = symcnn.torch.from_spec(spec, dtype="float64", seed=3)
    state = model.state_dict()
    assert list(state) == list(net.params)
    for name, value in net.params.items():
        np.testing.assert_array_equal(state[name].numpy(), value)
    twin = torch_model(net.spec, {name: np.zeros_like(value) for name, value in net.params.items()})
    twin.load_state_dict(state)  # strict: the same names and shapes
    rng = np.random.default_rng(0)
    for parameter in twin.parameters():
        parameter.data = torch.tensor(rng.standard_normal(parameter.shape))
    model.load_state_dict(twin.state_dict())
    x = torch.tensor(rng.standard_normal((5, *net.spec.input_shape)), requires_grad=True)
    labels = torch.tensor(rng.integers(0, net.spec.classes, 5))
    losses, grads = [], []
    for module in (model, twin):
        loss = torch.nn.functional.cross_entropy(module(x), labels)
        grads.append(torch.autograd.grad(loss, [x, *module.parameters()]))
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-12)
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    net.load_params({name: value.detach().numpy() for name, value in model.state_dict().items()})
    loss, network_grads = net.loss_and_grads(x.detach().numpy(), labels.numpy())
    assert loss == pytest.approx(losses[0], rel=1e-12)
    torch.testing.assert_close(torch.tensor(network_grads["input"]), grads[0][0], rtol=1e-10, atol=1e-12)


def test_the_module_trains_with_torch_sgd_as_the_network_does():
    net = Network.from_spec("digits", dtype="float64", seed=1)
    model = symcnn.torch.from_spec("digits", dtype="float64", seed=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    rng = np.random.default_rng(2)
    for _ in range(3):
        x, labels = rng.standard_normal((8, 1, 8, 8)), rng.integers(0, 10, 8)
        expected = net.train_step(x, labels, lr=0.05)
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.tensor(x)), torch.tensor(labels))
        loss.backward()
        optimizer.step()
        assert loss.item() == pytest.approx(expected, rel=1e-12)
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(value.numpy(), net.params[name], rtol=1e-11, atol=1e-13)


def test_dtype_follows_the_module_and_train_eval_switch_the_mode():
    model = symcnn.torch.from_spec("digits")
    assert model.conv1.weight.dtype == torch.float32
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(model.double()(x.double()), model(x.double()))
    with pytest.raises(ValueError, match=r"conv1: weight: expected a float32 tensor \(as x\), got float64"):
        model(x)
    assert model.eval().training is False and not any(layer.training for layer in model)
    assert model.train().training is True and all(layer.training for layer in model)


@pytest.mark.heavy
def test_a_generated_convolution_replaces_nn_conv2d_in_any_model():
    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
                                    torch.nn.Linear(8 * 6 * 6, 2)).double()
    replaced = torch.nn.Sequential(symcnn.torch.layer("conv2d", (3, 6, 6), out_channels=8, kernel=3, padding=1),
                                   *list(reference)[1:]).double()
    replaced[0].load_state_dict(reference[0].state_dict())  # weight and bias, as nn.Conv2d names them
    x = torch.randn(4, 3, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(replaced(x), reference(x))
    reference(x).sum().backward()
    replaced(x).sum().backward()
    torch.testing.assert_close(replaced[0].weight.grad, reference[0].weight.grad)
    assert "conv2d, 8 kernels of size 3, stride 1, padding 1, (3, 6, 6) -> (8, 6, 6)" in repr(replaced[0])
    with pytest.raises(ValueError, match=r"layer: x: expected a tensor of shape \(N, 3, 6, 6\), got \(4, 3, 7"):
        replaced(torch.randn(4, 3, 7, 7, dtype=torch.float64))


@pytest.mark.parametrize("kind, shape, settings, twin", [
    ("dense", (12,), {"out_features": 5}, lambda: torch.nn.Linear(12, 5)),
    ("maxpool2d", (2, 6, 6), {"kernel": 2}, lambda: torch.nn.MaxPool2d(2)),
    ("global_avgpool", (3, 4, 4), {}, lambda: torch.nn.AdaptiveAvgPool2d(1)),
    ("tanh", (7,), {}, lambda: torch.nn.Tanh()),
])
def test_single_layers_of_other_kinds_and_flat_inputs(kind, shape, settings, twin):
    ours, theirs = symcnn.torch.layer(kind, shape, dtype="float64", **settings), twin().double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(3, *shape, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x))


def test_a_bad_layer_is_refused_in_one_line():
    with pytest.raises(ValueError, match="kind: must be one of"):
        symcnn.torch.layer("conv3d", (1, 4, 4))
    with pytest.raises(ValueError, match=r"input_shape: must be \(C, H, W\) or \(features,\), got \(1, 4\)"):
        symcnn.torch.layer("relu", (1, 4))
    with pytest.raises(ValueError, match="out_channels: missing"):
        symcnn.torch.layer("conv2d", (1, 4, 4), kernel=3)
