"""A layer's weight and bias gradients in one kernel (symcnn.codegen.parameter_fusion): which layers get it, what
it prints, and that the Network's gradients through it equal those of the two separate kernels."""

import numpy as np
import pytest

from symcnn.codegen.network import layer_kernels
from symcnn.codegen.package import render_package
from symcnn.runtime.network import Network
from symcnn.spec import load_spec


def _kernels(spec: str, label: str) -> dict:
    layer = next(layer for layer in load_spec(spec).layers if layer.label == label)
    return {kernel.name: kernel for kernel in layer_kernels(layer)}


@pytest.mark.parametrize("spec, label, fused", [
    ("suite-dilated", "conv3", True),  # 32 channels, its weight gradient over the batch in chunks
    ("suite-wide", "conv3", True),  # 128 channels: the copy's lanes in groups
    ("seed004", "conv1", True),
    ("seed004", "fc1", False),  # a dense layer's weight gradient in blocks of its lanes: no copy of dL/dY
    ("suite-lenet", "conv1", False),  # 6 channels: the columns schedule, no lane copy
    ("digits", "conv1", False),  # its narrow variant (columns) copies no dL/dY
    ("suite-batchnorm", "bn1", False),  # its gradients share statistics: <label>_backward instead
])
def test_which_layers_sum_their_bias_gradient_in_their_weight_gradients_kernel(spec, label, fused):
    kernels = _kernels(spec, label)
    name = f"{label}_grad_weight_and_bias"
    assert (name in kernels) is fused
    if fused:
        kernel, weight = kernels[name], kernels[f"{label}_grad_weight"]
        assert kernel.arguments == (*weight.arguments, "grad_bias")
        assert kernel.lanes.registers == weight.lanes.registers and kernel.lanes.updates == weight.lanes.updates
        assert kernel.blocks_of == weight.name


def test_the_bias_sum_reads_the_copy_in_its_layout():
    """In groups of 32 lanes (128 channels), the copy is [lane // 32, i, j, lane % 32]: a block per group, one
    local sum per lane, added into the chunk's sums in that layout; each output element adds its chunks' sums in
    order. Without groups, blocks of the last axis."""
    staged = _kernels("suite-wide", "conv3")["conv3_grad_weight_and_bias"].lanes.staged_sum
    assert (staged.block.variable, staged.block.stop, staged.block.step) == ("axis0", "4", 1)
    assert [loop.stop for loop in staged.loops] == ["8", "8"] and len(staged.updates) == 32
    assert staged.updates[3] == "lane_sum3 += grad_output_t[axis0, axis1, axis2, 3]"
    assert staged.stores[3] == "staged_sum[axis0, 3] += lane_sum3" and staged.initial[3] == "lane_sum3 = 0.0"
    assert staged.shape == ("4", "32") and staged.index == "axis0, axis3"
    assert staged.reduction.update == "total += sums[chunk, (c_out) // 32, c_out % 32]"
    assert staged.store == "grad_bias[c_out]" and staged.store_loops[0].stop == "128"
    plain = _kernels("suite-dilated", "conv3")["conv3_grad_weight_and_bias"].lanes.staged_sum
    assert (plain.block.variable, plain.block.stop, plain.block.step) == ("axis2", "32", 32)
    assert plain.updates[5] == "lane_sum5 += grad_output_t[axis0, axis1, axis2 + 5]"
    assert plain.stores[0] == "staged_sum[axis2] += lane_sum0"


def test_the_fused_kernel_calls_the_weight_gradients_register_blocks():
    """Its register blocks are the weight gradient's: called, not defined twice (numba compiles them once)."""
    module = render_package(load_spec("seed004"))["conv2.py"]
    assert "def conv2_grad_weight_block0" in module and "def conv2_grad_weight_and_bias_block" not in module
    fused = module[module.index("def conv2_grad_weight_and_bias("):]
    assert "conv2_grad_weight_block0(" in fused and "staged_sum" in fused


@pytest.mark.heavy
def test_the_networks_gradients_through_it_equal_the_separate_kernels():
    """The weight gradient bit for bit (the same kernel); the bias gradient the same sums in another order."""
    net = Network.from_spec("seed004", seed=0)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((13, 3, 32, 32)).astype(np.float32)  # 13 images: chunks of unequal sizes
    labels = rng.integers(0, 10, 13)
    runs = {}
    try:
        for fused in (True, False):
            if not fused:
                net._weight_and_bias_kernel = lambda *arguments: None
            net.profile = {}
            runs[fused] = (*net.loss_and_grads(x, labels), set(net.profile))
    finally:
        net.profile = None
    (loss, grads, called), (plain_loss, plain, plain_called) = runs[True], runs[False]
    assert {"conv1_grad_weight_and_bias", "conv2_grad_weight_and_bias"} <= called
    assert not {"conv1_grad_bias", "conv2_grad_bias", "conv1_grad_weight", "conv2_grad_weight"} & called
    assert {"conv1_grad_bias", "conv2_grad_weight"} <= plain_called and loss == plain_loss
    for name, expected in plain.items():
        if name.startswith("conv") and name.endswith(".bias"):
            np.testing.assert_allclose(grads[name], expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
        else:
            np.testing.assert_array_equal(grads[name], expected, err_msg=name)


@pytest.mark.heavy
def test_48_channels_are_summed_in_equal_blocks_and_equal_pytorch(tmp_path_factory):
    """48 channels: in blocks of fewer local sums (the copy's groups of 16 lanes); 5 images in 5 chunks of one.
    The float64 gradients through the fused kernel equal PyTorch's (1e-9 relative), and its weight gradient
    the separate kernel's bit for bit."""
    pytest.importorskip("torch")
    from tests.kernels_helpers import assert_float64_equals_pytorch, network_for, random_params

    spec = {"name": "bias-in-blocks", "input": [4, 5, 5], "loss": "softmax_cross_entropy",
            "layers": [{"type": "conv2d", "name": "conv", "out_channels": 48, "kernel": 1},
                       {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 3}]}
    net = network_for(spec, tmp_path_factory.mktemp("spec"))
    layer = next(layer for layer in net.spec.layers if layer.label == "conv")
    staged = {kernel.name: kernel for kernel in layer_kernels(layer)}["conv_grad_weight_and_bias"].lanes.staged_sum
    assert len(staged.updates) < 48 and 48 % len(staged.updates) == 0 and len(staged.stores) == len(staged.updates)
    rng = np.random.default_rng(4)
    net.load_params(random_params(net, rng))
    net.profile = {}
    assert_float64_equals_pytorch(net, rng, np.array([0, 2, 1, 1, 0]))
    assert "conv_grad_weight_and_bias" in net.profile and "conv_grad_bias" not in net.profile
    x = rng.standard_normal((5, 4, 5, 5))
    _, fused = net.loss_and_grads(x, np.array([1, 0, 2, 2, 1]))
    net._weight_and_bias_kernel = lambda *arguments: None
    _, plain = net.loss_and_grads(x, np.array([1, 0, 2, 2, 1]))
    np.testing.assert_array_equal(fused["conv.weight"], plain["conv.weight"])
    np.testing.assert_allclose(fused["conv.bias"], plain["conv.bias"], rtol=1e-12, atol=1e-15)
