"""Batch norm folded into the layer before it in evaluation mode (symcnn.codegen.folding): which layers fold,
read off the formulas; the folded forward pass against the unfolded one and PyTorch's, in float64."""

from __future__ import annotations

import numpy as np
import pytest

from symcnn.codegen.folding import affine_coefficients, folds, scales_per_output_channel
from symcnn.spec import load_spec, parse_spec
from symcnn.symbolic import ops
from symcnn.symbolic.normalization import batchnorm2d_evaluation, layernorm
from tests.kernels_helpers import network_for, toml_of


def _spec(layers: list, inputs=(3, 8, 8)):
    return parse_spec(toml_of({"name": "folding", "input": list(inputs), "layers": layers}))


CONV = {"type": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1}
BN = {"type": "batchnorm2d"}
HEAD = [{"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 3}]


def test_the_affine_map_and_the_per_channel_scaling_are_read_off_the_formulas():
    scale, shift = affine_coefficients(batchnorm2d_evaluation())
    assert str(scale) == "gamma[c]/sqrt(epsilon + sigma2_run[c])"
    assert str(shift) == "beta[c] - gamma[c]*mu_run[c]/sqrt(epsilon + sigma2_run[c])"
    assert affine_coefficients(layernorm()) is None  # statistics of the sample: not a map of one element
    assert affine_coefficients(ops.relu()) is None  # not affine
    assert scales_per_output_channel(ops.conv2d()) and scales_per_output_channel(ops.conv2d(bias=False))
    assert scales_per_output_channel(ops.conv2d(groups=2))  # grouped: the weight's first index is still c_out
    assert not scales_per_output_channel(ops.conv_transpose2d())  # its weight's first axis is the input's


@pytest.mark.parametrize("layers, expected", [
    ([{**CONV, "name": "conv", "bias": False}, {**BN, "name": "bn"}, {"type": "relu"}, *HEAD], {"bn": "conv"}),
    ([{**CONV, "name": "conv", "groups": 3, "out_channels": 6}, {**BN, "name": "bn"}, *HEAD], {"bn": "conv"}),
    ([{**CONV, "name": "conv"}, {"type": "relu"}, {**BN, "name": "bn"}, *HEAD], {}),  # after a ReLU: not affine
    ([{"type": "conv_transpose2d", "name": "up", "out_channels": 4, "kernel": 2, "stride": 2}, {**BN, "name": "bn"},
      *HEAD], {}),
])
def test_which_layers_fold(layers, expected):
    assert folds(_spec(layers)) == expected


def test_a_layer_whose_output_another_layer_reads_does_not_fold():
    spec = _spec([{**CONV, "name": "conv"}, {**BN, "name": "bn"},
                  {"type": "add", "inputs": ["bn", "conv"]}, *HEAD])
    assert folds(spec) == {}
    assert folds(load_spec("resnet-mini"))["b2_shortcut_bn"] == "b2_shortcut"


SPEC = {"name": "folding-net", "input": [3, 8, 8], "layers": [
    {**CONV, "name": "conv1", "bias": False}, {**BN, "name": "bn1"}, {"type": "relu"},
    {**CONV, "name": "conv2", "groups": 4, "out_channels": 8, "stride": 2}, {**BN, "name": "bn2", "eps": 1e-3},
    *HEAD]}


@pytest.mark.heavy
def test_the_folded_evaluation_pass_equals_the_unfolded_one_and_pytorch(tmp_path):
    torch = pytest.importorskip("torch")
    from symcnn.bench.bench import torch_model

    net = network_for(SPEC, tmp_path, seed=1)
    rng = np.random.default_rng(0)
    net.params = {name: rng.standard_normal(value.shape) * 0.5 for name, value in net.params.items()}
    buffers = dict(net.buffers)
    for name in buffers:
        if name.endswith("running_mean"):
            buffers[name] = rng.standard_normal(buffers[name].shape)
        elif name.endswith("running_var"):
            buffers[name] = rng.uniform(0.2, 3.0, buffers[name].shape)
    net.buffers = buffers
    x = rng.standard_normal((5, 3, 8, 8))
    net.eval()
    net.profile = {}
    folded = net.forward(x)
    # conv1 -> bn1 -> ReLU: the folded kernel stores the ReLU's output too (symcnn.codegen.forward_fusion)
    assert {"conv1_with_relu2_folded_forward", "bn1_eval_scale", "conv2_folded_forward"} <= set(net.profile)
    assert not {"conv1_forward", "conv1_folded_forward", "bn1_eval_forward", "bn2_eval_forward"} & set(net.profile)
    net.profile = None
    unfolded = net._forward(x, False)[0]
    np.testing.assert_allclose(folded, unfolded, rtol=1e-12, atol=1e-13)
    twin = torch_model(net.spec, net.params, buffers=net.buffers).eval()
    with torch.no_grad():
        expected = twin(torch.tensor(x)).numpy()
    np.testing.assert_allclose(folded, expected, rtol=1e-12, atol=1e-13)
    # training mode, and evaluation passes whose gradients are taken, run unfolded
    loss, grads = net.loss_and_grads(x, np.array([0, 1, 2, 0, 1]), training=False)
    assert np.isfinite(loss) and set(grads) >= {"conv1.weight", "bn1.weight"}
