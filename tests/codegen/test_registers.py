"""Register tiles (symcnn/codegen/backends/numba_cpu/registers.py): which kernels take them, that they
change no number, and that LLVM turns their per-lane statements into vector instructions."""

from __future__ import annotations

import re

import numba
import numpy as np
import pytest

from symcnn.codegen.backends.numba_cpu import columns, lanes
from symcnn.codegen.backends.numba_cpu.registers import ACCUMULATORS
from symcnn.codegen.lower import layer_kernels
from symcnn.spec import load_spec
from tests.kernels_helpers import network_for, use_session_cache


@pytest.fixture(autouse=True)
def _session_cache(monkeypatch, tmp_path_factory):
    use_session_cache(monkeypatch, tmp_path_factory)


def _kernels(spec_name: str, label: str) -> dict:
    layer = next(layer for layer in load_spec(spec_name).layers if layer.label == label)
    return {kernel.name.removeprefix(f"{label}_"): kernel for kernel in layer_kernels(layer)}


def test_per_image_kernels_take_register_tiles_and_weight_gradients_do_not():
    conv2 = _kernels("seed004", "conv2")  # lanes: 32 output channels, 16 input channels
    forward, grad_input = conv2["forward"].lanes.registers, conv2["grad_input"].lanes.registers
    assert forward.group.step == 32 and len(forward.loads) == len(forward.stores) == ACCUMULATORS
    assert grad_input.group.step == 16 and len(grad_input.updates) == ACCUMULATORS
    assert conv2["grad_weight"].lanes.registers is None
    lenet = _kernels("suite-lenet", "conv2")  # columns: 14 columns in a vector of 16, 6 input channels
    assert lenet["grad_input"].kind == "columns" and lenet["grad_input"].lanes.registers.group.step == 16


def test_every_update_reads_named_values_only():
    """Each update adds products of named values (read once per step), in the formula's order, into
    its own accumulator; every accumulator is loaded and stored once."""
    registers = _kernels("seed004", "conv1")["forward"].lanes.registers
    names = {name for name, _ in registers.reads}
    for index, update in enumerate(registers.updates):
        target, value = update.split(" = ", 1)
        assert re.fullmatch(r"acc\d+_\d+", target) and value.startswith(f"{target} + ")
        assert set(re.findall(r"(?:broadcast|streamed)\d+", value)) <= names
        assert registers.loads[index].startswith(f"{target} = tile[")
        assert registers.stores[index].endswith(f"= {target}")


@pytest.mark.slow  # compiles a small spec twice (about a minute on 2 cores)
def test_register_tiles_change_no_number(tmp_path, monkeypatch):
    """With and without register tiles, every output and gradient is the same bit for bit: lanes
    convolutions (8 output channels: one group of 8; 7 and 15 rows), columns ones (3 channels)."""
    layers = [{"type": "conv2d", "name": "c1", "out_channels": 8, "kernel": 3, "padding": 1},
              {"type": "relu"},
              {"type": "conv2d", "name": "c2", "out_channels": 3, "kernel": 3, "padding": 1},
              {"type": "conv2d", "name": "c3", "out_channels": 16, "kernel": 2, "padding": 0},
              {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 5}]
    spec = {"name": "tiled", "input": [3, 7, 16], "loss": "softmax_cross_entropy", "layers": layers}
    tiled = network_for(spec, tmp_path, dtype="float32")
    for module in (lanes, columns):
        monkeypatch.setattr(module, "register_tile", lambda *args, **kwargs: None)
    plain = network_for({**spec, "name": "untiled"}, tmp_path, dtype="float32")
    assert "acc0_0" in _source(tiled, "c1_forward") and "acc0_0" not in _source(plain, "c1_forward")
    assert "acc0_0" in _source(tiled, "c2_forward") and "acc0_0" in _source(tiled, "c3_grad_input")  # columns
    plain.params = {name: value.copy() for name, value in tiled.params.items()}
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 3, 7, 16)).astype(np.float32)
    labels = rng.integers(0, 5, 3)
    assert np.array_equal(tiled.forward(x, training=False), plain.forward(x, training=False))
    loss, grads = tiled.loss_and_grads(x, labels)
    plain_loss, plain_grads = plain.loss_and_grads(x, labels)
    assert loss == plain_loss
    for name in grads:
        assert np.array_equal(grads[name], plain_grads[name]), name


def _source(net, kernel: str) -> str:
    import inspect

    return inspect.getsource(net._functions[kernel].py_func)


def test_register_tiles_compile_to_vector_multiply_adds(tmp_path):
    """The per-lane statements become packed instructions (numba's SLP vectorizer, switched on by the
    generated modules), no scalar multiply-add left: without SLP each lane is a scalar ``vfmadd...ss``."""
    spec = {"name": "vectorized", "input": [8, 6, 8], "loss": "softmax_cross_entropy",
            "layers": [{"type": "conv2d", "name": "c1", "out_channels": 16, "kernel": 3, "padding": 1},
                       {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]}
    net = network_for(spec, tmp_path, dtype="float32")
    assert "acc0_0" in _source(net, "c1_forward")
    cached = net._functions["c1_forward"]  # loaded from numba's cache, which keeps no assembly: compiled again
    options = {key: value for key, value in cached.targetoptions.items() if key not in ("cache", "nopython")}
    kernel = numba.njit(**options)(cached.py_func)
    x, weight, bias = (np.zeros(shape, np.float32) for shape in ((2, 8, 6, 8), (16, 8, 3, 3), (16,)))
    kernel(x, weight, bias, np.zeros((2, 16, 6, 8), np.float32))
    assembly = "\n".join(kernel.inspect_asm().values())
    packed = re.findall(r"\bv(?:fmadd|fmul|mul|add)\w*ps\s", assembly)
    scalar = re.findall(r"\bvfmadd\w*ss\s", assembly)
    assert packed and not scalar, (len(packed), len(scalar))
