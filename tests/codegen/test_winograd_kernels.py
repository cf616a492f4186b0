"""A convolution's forward pass and input gradient by Winograd's F(4x4, 3x3) where a spec asks for it
(symcnn.codegen.winograd_kernels, symcnn.codegen.backends.numba_cpu.winograd): which layers take it, the spec's
[kernels] table, and its numbers against the direct kernel's and PyTorch's on either side of its small-batch
threshold, in float64 (equal to rounding) and float32 (within its own tolerance)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from symcnn.codegen.lower import layer_formula
from symcnn.codegen.network import layer_kernels
from symcnn.codegen.package import render_package
from symcnn.codegen.winograd_kernels import forward_kernel
from symcnn.spec import load_spec, parse_spec, spec_from_dict, with_kernels
from tests.kernels_helpers import (assert_float64_equals_pytorch, assert_same_gradients_on_one_and_two_threads,
                                   conv_layer, layer_labelled, network_for, toml_of, torch_loss_and_grads)

#: 64 -> 64 channels (the fewest output channels that take Winograd; its input gradient takes it too) on 7 x 7
#: maps, padding 0 (5 x 5 outputs: tiles of 4 past the edge; the input gradient's 7 x 7 from the output gradient
#: padded by 2), the ReLU after it fused into its store (one convolution: the test compiles in about a minute):
#: 8 images a work item.
WINOGRAD = {"name": "winograd-small", "input": [64, 7, 7], "kernels": {"winograd": True}, "layers": [
    conv_layer("conv1", 64, padding=0),
    {"type": "relu"},
    {"type": "flatten"},
    {"type": "dense", "name": "fc", "out_features": 3},
]}


def _forward(layer):
    return forward_kernel(layer, *layer_formula(layer))


def test_the_kernels_table_marks_the_convolutions():
    spec = spec_from_dict(WINOGRAD)
    assert spec.kernels == {"winograd": True}
    assert [layer.winograd for layer in spec.layers] == [True, False, False, False]
    assert not any(layer.winograd for layer in load_spec("suite-wide").layers)  # off by default


@pytest.mark.parametrize("table, message", [
    ("[kernels]\nwinograd = 1", "spec 'k': kernels.winograd: must be true or false, got 1"),
    ("[kernels]\nfast = true", "spec 'k': kernels: fast: unknown key (allowed: winograd)"),
    ('kernels = "winograd"', "spec 'k': kernels: must be a table of kernel settings, got 'winograd'"),
])
def test_a_bad_kernels_table_is_refused_in_one_line(table, message):
    text = (f'name = "k"\ninput = [1, 4, 4]\n{table}\n\n[[layers]]\ntype = "flatten"\n\n[[layers]]\n'
            'type = "dense"\nname = "fc"\nout_features = 2\n')
    with pytest.raises(ValueError) as error:
        parse_spec(text)
    assert str(error.value) == message


def test_kernel_settings_are_added_to_a_spec_read_from_toml_only():
    spec = with_kernels(parse_spec(toml_of(WINOGRAD)), winograd=False)
    assert spec.kernels == {"winograd": False} and not spec.layers[0].winograd
    with pytest.raises(ValueError, match="^spec 'winograd-small': kernels: only a spec read from TOML text"):
        with_kernels(spec_from_dict(WINOGRAD), winograd=True)


def test_a_wide_3x3_convolution_takes_winograd_with_the_direct_kernel_below_two_items():
    conv3 = replace(layer_labelled(load_spec("suite-wide"), "conv3"), winograd=True)  # 128 -> 128 channels at 8 x 8
    kernel = _forward(conv3)
    assert kernel.kind == "winograd" and kernel.name == "conv3_forward"
    winograd = kernel.winograd
    assert (winograd.images, winograd.positions, kernel.output_loops[0].stop) == (8, 36, "(N + 7) // 8")
    assert kernel.small_batch.below == 16
    direct = kernel.small_batch.kernel
    assert direct.kind == "lanes" and direct.name == "" and direct.arguments == kernel.arguments
    assert _forward(replace(conv3, winograd=False)) == replace(direct, name="conv3_forward")
    # the transforms printed from F(4, 3)'s matrices, every coefficient a constant in the input's dtype
    assert dict(winograd.constants) == {"k0": "1/6", "k1": "1/12", "k2": "1/24", "k3": "1/4", "k4": "4", "k5": "2",
                                         "k6": "5", "k7": "8"}
    assert winograd.value == "bias[c_out] + y[i - i0, j - j0, c_out]" and winograd.store == "out[n, c_out, i, j]"


@pytest.mark.parametrize("settings, why", [
    ({}, ""),  # 64 -> 64 channels, 3 x 3, stride 1: Winograd
    ({"stride": 2}, "stride 2"),
    ({"kernel": 5, "padding": 2}, "a 5 x 5 kernel"),
    ({"kernel": 1, "padding": 0}, "a 1 x 1 kernel"),
    ({"dilation": 2, "padding": 2}, "dilation 2"),
    ({"groups": 2}, "two groups"),
    ({"out_channels": 32}, "64 -> 32 channels: the input's transform outweighs the products"),
    ({"out_channels": 68}, "64 -> 68: not a whole number of the register blocks' groups of lanes"),
    ({"input": 16}, "16 -> 64 channels: too short a sum"),
])
def test_other_convolutions_keep_the_direct_kernel(settings, why):
    settings = dict(settings)
    channels = settings.pop("input", 64)
    spec = spec_from_dict({"name": "one", "input": [channels, 16, 16], "kernels": {"winograd": True}, "layers": [
        conv_layer("conv", 64, **settings), {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]})
    layer = spec.layers[0]
    kernel = _forward(layer)
    assert (kernel.kind == "winograd") == (not why), why
    if why:
        assert kernel.small_batch is None and kernel == _forward(replace(layer, winograd=False))


def test_the_input_gradient_takes_it_too_its_taps_reversed_and_the_others_stay_direct():
    conv3 = layer_labelled(load_spec("suite-wide"), "conv3")
    plain, marked = layer_kernels(conv3), layer_kernels(replace(conv3, winograd=True))
    assert [kernel.name for kernel in marked[:2]] == ["conv3_forward", "conv3_grad_input"]
    assert [kernel.kind for kernel in marked[:2]] == ["winograd", "winograd"]
    assert marked[2:] == plain[2:]  # the weight's and the bias's gradients
    gradient = marked[1].winograd
    # sum_{c_out, u, v} W[c_out, c_in, 2 - u, 2 - v] dL/dY[n, c_out, k + u - 1, l + v - 1]: the filters transformed
    # for each c_out over the lanes c_in, the output gradient copied padded by 1
    assert gradient.filter_copy.source == "weight[c_out, c_in, 2 - u, 2 - v]"
    assert gradient.filters.lane.stop == "weight.shape[1]"
    assert (gradient.copy.source, gradient.copy.target) == ("grad_output[8*item + slot, c_out, h, w]",
                                                             "slot, h + 1, w + 1, c_out")
    assert gradient.store == "grad_input[n, c_in, k, l]" and marked[1].small_batch.kernel.kind == "lanes"


def test_its_module_calls_the_form_a_batch_suits():
    files = render_package(spec_from_dict(WINOGRAD))
    module = files["conv1_with_relu1.py"]  # the forward pass, the ReLU after it fused into its store
    assert "def conv1_with_relu1_forward_winograd(x, weight, bias, out):" in module
    # the direct form, in blocks of 16 lanes for 256-bit vectors: a variant of its own (registers.py)
    assert "def conv1_with_relu1_forward_direct_wide(x, weight, bias, out):" in module
    assert ("conv1_with_relu1_forward_direct = for_this_cpu(conv1_with_relu1_forward_direct_wide, "
            "conv1_with_relu1_forward_direct_narrow)") in module
    assert "    if x.shape[0] < 16:\n        conv1_with_relu1_forward_direct(x, weight, bias, out)" in module
    assert "k0 = x.dtype.type(1/6)" in module  # float32 arithmetic in a float32 kernel
    # the input gradient (padding 0: the output gradient read padded by 2)
    gradient = files["conv1.py"]
    assert "def conv1_grad_input_winograd(grad_output, weight, grad_input):" in gradient
    assert "x_tiles[slot, h + 2, w + 2, c_out] = grad_output[8*item + slot, c_out, h, w]" in gradient


@pytest.mark.heavy
@pytest.mark.parametrize("batch", [3, 17])  # the direct kernel; Winograd, its last item one image
def test_float64_loss_and_gradients_equal_pytorch(tmp_path, batch):
    pytest.importorskip("torch")
    net = network_for(WINOGRAD, tmp_path, dtype="float64")
    rng = np.random.default_rng(batch)
    assert_float64_equals_pytorch(net, rng, rng.integers(0, 3, batch))


@pytest.mark.heavy
def test_the_same_gradients_bit_for_bit_on_one_and_two_threads(tmp_path):
    """Each work item sums its own images, and each channel's filters are transformed alone."""
    net = network_for(WINOGRAD, tmp_path, dtype="float64")
    rng = np.random.default_rng(7)
    assert_same_gradients_on_one_and_two_threads(net, rng.standard_normal((17, 64, 7, 7)), rng.integers(0, 3, 17))


@pytest.mark.slow  # a float32 compile of its own (about 25 s on 2 cores); the sums are checked in float64 above
def test_float32_logits_within_winograds_tolerance_of_pytorchs_float64(tmp_path):
    """Winograd's float32 error: a few times the direct sums' (both against float64)."""
    torch = pytest.importorskip("torch")
    net = network_for(WINOGRAD, tmp_path, dtype="float32")
    rng = np.random.default_rng(5)
    params = {name: (rng.standard_normal(value.shape) * 0.2).astype(np.float32) for name, value in net.params.items()}
    for name, value in params.items():
        net.params[name][...] = value
    x = rng.standard_normal((17, 64, 7, 7)).astype(np.float32)
    found = net.forward(x, training=False)
    _, expected, _ = torch_loss_and_grads(net.spec, {k: v.astype(np.float64) for k, v in params.items()},
                                          x.astype(np.float64), np.zeros(17, dtype=np.int64), torch.float64)
    scale = np.abs(expected).max()
    assert np.abs(found - expected).max() <= 2e-5 * scale
