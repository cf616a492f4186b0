"""Precomputed arrays filled inside the outputs' outer loop (symcnn.codegen.invariant_loops): which kernels
take it, how their loops read, and their numbers against PyTorch and against the same kernels in loops of
their own, bit for bit."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from symcnn.codegen.invariant_loops import MIN_PARALLEL_ITEMS, MIN_RUN, invariants_inside
from symcnn.codegen.network import layer_kernels
from symcnn.spec import load_spec, spec_from_dict
from tests.kernels_helpers import COMPILES_KERNELS, assert_float64_equals_pytorch, network_for


def _kernels(spec, label: str) -> dict:
    layer = next(layer for layer in spec.layers if layer.label == label)
    return {kernel.name[len(label) + 1:]: kernel for kernel in layer_kernels(layer)}


def _loops(kernel) -> list[tuple[str, str, bool]]:
    return [(loop.variable, loop.stop, loop.parallel) for loop in kernel.output_loops]


def test_batch_norm_fills_each_channel_s_statistics_before_its_outputs():
    """resnet-mini's first batch norm (16 channels of 32 x 32): the forward pass's loops begin with the
    channel's, in parallel, the statistics and coefficients filled inside it; the output still stored at
    ``[n, c, i, j]``; in the kernel of every gradient, each output (a phase) inside the same loop."""
    kernels = _kernels(load_spec("resnet-mini"), "stem_bn")
    forward = kernels["forward"]
    assert (forward.shared_loops, forward.invariants_inside) == (1, True)
    assert _loops(forward) == [("c", "16", True), ("n", "N", False), ("i", "32", False), ("j", "32", False)]
    assert forward.output_index == ("n", "c", "i", "j")
    assert all(array.loops[0].variable == "c" for array in forward.precomputed)
    backward = kernels["backward"]
    assert (backward.kind, backward.shared_loops, backward.invariants_inside) == ("phases", 1, True)
    assert [_loops(phase)[0] for phase in backward.phases] == [("c", "16", True)] * 3
    assert [sum(loop.parallel for loop in phase.output_loops) for phase in backward.phases] == [1, 1, 1]


def test_layer_norm_fills_each_sample_s_statistics_before_its_outputs():
    spec = spec_from_dict({"name": "ln", "input": [4, 16, 16], "layers": [
        {"type": "layernorm", "name": "ln"}, {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]})
    forward = _kernels(spec, "ln")["forward"]
    assert forward.invariants_inside
    assert _loops(forward)[0] == ("n", "N", True)


def _batch_norm_forward(channels: int, height: int, width: int):
    spec = spec_from_dict({"name": "bn", "input": [channels, height, width], "layers": [
        {"type": "batchnorm2d", "name": "bn"}, {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 2}]})
    return _kernels(spec, "bn")["forward"]


@pytest.mark.parametrize("channels, inside", [(MIN_PARALLEL_ITEMS - 1, False), (MIN_PARALLEL_ITEMS, True)])
def test_fewer_channels_than_parallel_items_keep_the_batch_loop(channels, inside):
    forward = _batch_norm_forward(channels, 32, 32)
    assert forward.invariants_inside is inside
    assert _loops(forward)[0] == (("c", str(channels), True) if inside else ("n", "N", True))


@pytest.mark.parametrize("height, width, inside", [(16, 16, False), (31, 33, False), (32, 32, True), (8, 128, True)])
def test_maps_shorter_than_a_run_keep_the_batch_loop(height, width, inside):
    assert (height * width >= MIN_RUN) is inside
    assert _batch_norm_forward(32, height, width).invariants_inside is inside


def test_kernels_without_precomputed_arrays_are_left_as_they_are():
    kernels = _kernels(load_spec("resnet-mini"), "b1_conv1")
    assert all(invariants_inside(kernel) is kernel for kernel in kernels.values())
    assert not any(kernel.invariants_inside for kernel in kernels.values())


NORMALIZED = {"name": "invariant-loops", "input": [16, 32, 32], "layers": [
    {"type": "batchnorm2d", "name": "bn", "momentum": 0.2},
    {"type": "relu"},
    {"type": "conv2d", "name": "conv", "out_channels": 16, "kernel": 1, "bias": False},
    {"type": "batchnorm2d", "name": "bn2"},
    {"type": "layernorm", "name": "ln"},
    {"type": "flatten"},
    {"type": "dense", "name": "fc", "out_features": 3},
]}


@pytest.mark.heavy
def test_normalizations_with_their_arrays_inside_equal_pytorch(tmp_path):
    """Batch norm of 16 channels (each kernel with its statistics inside its channel loop; fused with the ReLU
    after it, and not) and layer norm, float64: the loss and every gradient equal PyTorch's, with the
    statistics kept from the forward pass and computed again; on 1 and 2 threads alike."""
    net = network_for(NORMALIZED, tmp_path)
    assert all(_kernels(net.spec, label)["forward"].invariants_inside for label in ("bn", "bn2", "ln"))
    labels = np.array([0, 2, 1])
    assert_float64_equals_pytorch(net, np.random.default_rng(5), labels)
    net._saving_kernel = lambda kernel: None  # the backward kernels that compute their statistics again
    assert_float64_equals_pytorch(net, np.random.default_rng(6), labels)
    x = np.random.default_rng(7).standard_normal((3, *net.spec.input_shape))
    grads = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        grads.append(net.loss_and_grads(x, labels)[1])
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    for name, value in grads[0].items():
        np.testing.assert_array_equal(grads[1][name], value, err_msg=name)


@COMPILES_KERNELS
def test_the_same_numbers_as_the_arrays_in_loops_of_their_own(tmp_path, monkeypatch):
    """The spec above generated twice, the second time with every kernel's arrays in loops of their own (as
    before this layout): after two train steps in float64, every parameter and buffer equal to 1e-12 (the
    statistics are the same sums; LLVM may contract the element-wise values otherwise in each loop nest)."""
    nets = [network_for(NORMALIZED, tmp_path, seed=3)]
    for module in ("symcnn.codegen.lower", "symcnn.codegen.backward"):
        monkeypatch.setattr(f"{module}.invariants_inside", lambda kernel: kernel)
    assert not _kernels(spec_from_dict(NORMALIZED), "bn")["forward"].invariants_inside
    nets.append(network_for({**NORMALIZED, "name": "invariant-loops-own"}, tmp_path, seed=3))
    rng = np.random.default_rng(8)
    x, labels = rng.standard_normal((5, 16, 32, 32)), np.array([0, 1, 2, 1, 0])
    for net in nets:
        for _ in range(2):
            net.train_step(x, labels, 0.1)
    for name, value in [*nets[0].params.items(), *nets[0].buffers.items()]:
        other = nets[1].params[name] if name in nets[1].params else nets[1].buffers[name]
        np.testing.assert_allclose(other, value, rtol=1e-12, atol=1e-12, err_msg=name)
