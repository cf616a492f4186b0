"""The lanes schedule's blocks for matrix-product-shaped kernels (symcnn/codegen/backends/numba_cpu/product_blocks.py):
which kernels take them, and that they change no sum (odd sizes: a batch that the blocks do not divide, a
partial lane block, a reduction that the unroll does not divide)."""

import numpy as np
import pytest

from symcnn.codegen.backends.numba_cpu import product_blocks
from symcnn.codegen.backends.numba_cpu.product_blocks import row_block
from symcnn.codegen.network import layer_kernels
from symcnn.spec import load_spec
from tests.kernels_helpers import network_for, torch_loss_and_grads

# 136 features -> 104 -> 30: fc1's forward in groups of 4 images (104 lanes); its weight gradient
# (104 x 136) in blocks of 52 rows x 64 lanes (the last block 8 lanes wide), 4 images per update;
# fc2's input gradient (104 lanes) in groups of 4 images, its 30 outputs unrolled by 3
ODD = {"name": "odd-dense", "input": [2, 4, 17], "loss": "softmax_cross_entropy",
       "layers": [{"type": "flatten"}, {"type": "dense", "name": "fc1", "out_features": 104}, {"type": "relu"},
                  {"type": "dense", "name": "fc2", "out_features": 30}]}


def _kernels(spec, label):
    layer = next(layer for layer in spec.layers if layer.label == label)
    return {kernel.name.removeprefix(f"{label}_"): kernel.lanes for kernel in layer_kernels(layer)}


def test_dense_layers_take_image_and_row_blocks():
    fc1 = _kernels(load_spec("suite-mlp-head"), "fc1")
    forward = fc1["forward"]
    images = forward.images
    assert (images.size, images.items, images.stored) == (4, "(N + 3) // 4", "min(4, N - 4*item)")
    assert forward.tile_shape == ("4", "256") and forward.store == "out[4*item + slot, i]"
    # four images by four features: each weight row loaded serves the four images
    assert len(forward.broadcasts) == 16 and forward.broadcasts[4] == ("broadcast4", "x[min(N - 1, 4*item + 1), k]")
    assert forward.updates[1] == ("tile[1, i] = tile[1, i] + broadcast4*weight_t[k, i] + broadcast5*weight_t[k + 1, i]"
                                  " + broadcast6*weight_t[k + 2, i] + broadcast7*weight_t[k + 3, i]")
    assert fc1["grad_input"].images.size == 4
    weight = fc1["grad_weight"]
    # 256 x 1352: blocks of 16 rows by 256 lanes (six lane blocks, the last 72 wide), in parallel
    assert (weight.lane_block, weight.tile_shape, weight.row_start) == (256, ("16", "256"), "16*((block) // 6)")
    assert weight.block_bounds[:2] == ("96", "max(0, 256*(block % 6))")
    assert weight.store == "grad_weight[i + row_start, k + lane_start]"
    unroll = weight.batch_unroll
    assert (unroll.loop.start, unroll.loop.stop, unroll.loop.step) == ("0", "N - (N % 4)", 4)
    assert (unroll.rest.start, unroll.rest.stop) == ("N - (N % 4)", "N")
    assert unroll.updates[0] == ("tile[i, k] = tile[i, k] + broadcast0*x[n, k + lane_start] + broadcast1*x[n + 1, "
                                 "k + lane_start] + broadcast2*x[n + 2, k + lane_start] + broadcast3*x[n + 3, "
                                 "k + lane_start]")
    assert weight.updates[0] == "tile[i, k] = tile[i, k] + broadcast0*x[n, k + lane_start]"  # the rest of the batch


def test_kernels_without_a_matrix_product_tile_keep_their_schedule():
    spec = load_spec("seed004")
    # 8,192 lanes: four tile rows would not stay in L1
    assert _kernels(spec, "fc1")["grad_input"].images is None
    # a 10 x 8192 weight gradient: blocks of 512 lanes take all ten rows (wide enough)
    weight = _kernels(spec, "fc1")["grad_weight"]
    assert (weight.lane_block, weight.row_start) == (512, "")
    # a convolution blocks its output columns, not its images
    conv2 = _kernels(spec, "conv2")
    assert conv2["forward"].images is None and conv2["grad_weight"].batch_unroll is None


def test_row_block():
    assert row_block([104, 136], 48, 136, 5120) == (64, 52)
    assert row_block([128, 256], 40, 256, 5120) == (128, 32)
    assert row_block([7, 2048], 512, 2048, 5120) == (512, 0)
    assert row_block([2, 4], 0, 4, 5120) == (0, 0)


@pytest.mark.heavy
def test_blocked_dense_kernels_change_no_sum(torch, tmp_path, monkeypatch):
    """Each image and each weight-gradient element adds the formula's terms in the formula's order,
    blocked or not: the same numbers bit for bit, and PyTorch's up to rounding."""
    blocked = network_for(ODD, tmp_path, dtype="float32")
    kernels = _kernels(blocked.spec, "fc1")
    assert kernels["forward"].images.size == 4 and kernels["grad_weight"].row_start
    assert _kernels(blocked.spec, "fc2")["grad_input"].images.size == 4
    monkeypatch.setattr(product_blocks, "IMAGE_BLOCK", 1)
    monkeypatch.setattr(product_blocks, "BATCH_UNROLL", 1)
    monkeypatch.setattr(product_blocks, "WIDE_LANES", 0)
    plain = network_for({**ODD, "name": "odd-dense-plain"}, tmp_path, dtype="float32")
    assert _kernels(plain.spec, "fc1")["forward"].images is None
    assert _kernels(plain.spec, "fc1")["grad_weight"].row_start == ""
    plain.params = {name: value.copy() for name, value in blocked.params.items()}
    # 4 does not divide them: a last group of 1 to 3 images (below 8 images the forward pass takes its rows form,
    # symcnn.codegen.small_batches, which the unblocked kernels do not have)
    for batch in (9, 10, 11):
        rng = np.random.default_rng(batch)
        x = rng.standard_normal((batch, 2, 4, 17)).astype(np.float32)
        labels = rng.integers(0, 30, batch)
        loss, grads = blocked.loss_and_grads(x, labels)
        plain_loss, plain_grads = plain.loss_and_grads(x, labels)
        assert loss == plain_loss
        for name in grads:
            assert np.array_equal(grads[name], plain_grads[name]), (batch, name)
        expected_loss, _, expected = torch_loss_and_grads(blocked.spec, blocked.params, x, labels, torch.float32)
        assert loss == pytest.approx(expected_loss, rel=2e-4)
        for key, value in expected.items():
            np.testing.assert_allclose(grads[key], value, rtol=2e-4, atol=2e-4 * np.abs(value).max(),
                                       err_msg=f"{batch} {key}")
