"""A kernel's vector phases in one parallel loop with one copy of their operand (symcnn.codegen.phase_items)."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from symcnn.codegen.kernel_ir import Loop, Staging
from symcnn.codegen.network import layer_kernels
from symcnn.codegen.phase_items import merged_stagings
from symcnn.spec import load_spec, spec_from_dict
from tests.kernels_helpers import (assert_central_differences, assert_float64_equals_pytorch,
                                   assert_same_gradients_on_one_and_two_threads, layer_labelled, network_for,
                                   random_params)

GENERATED = Path(__file__).resolve().parents[2] / "generated"


def _grad_input(spec, label):
    return next(kernel for kernel in layer_kernels(layer_labelled(spec, label)) if kernel.name == f"{label}_grad_input")


def _function(module: Path, name: str) -> str:
    """The printed source of the generated function ``name`` in ``module``."""
    text = module.read_text()
    start = text.index(f"\ndef {name}(")
    end = text.find("\n\n\n", start)
    return text[start:end if end >= 0 else None]


def test_a_stride_2_input_gradients_phases_share_one_loop_and_one_copy():
    """resnet-mini's stride-2 3 x 3 convolution: its four lanes phases take the same work items (an image's
    rows in two parts), and three of them copy dL/dY's rows, padded to 16 x 17, 17 x 16 and 17 x 17: one copy
    of 17 x 17 holding the rows any of them reads, made once per item."""
    grad_input = _grad_input(load_spec("resnet-mini"), "b2_conv1")
    assert [phase.kind for phase in grad_input.phases] == ["lanes"] * 4
    copies = [s for phase in grad_input.phases for s in phase.lanes.stagings if s.per_image]
    assert [s.shape for s in copies] == [("32", "16", "17"), ("32", "17", "16"), ("32", "17", "17")]
    (merged,) = grad_input.one_item
    assert (merged.name, merged.shape, merged.zeroed) == ("grad_output_padded", ("32", "17", "17"), True)
    assert [(loop.start, loop.stop) for loop in merged.loops] == [
        ("0", "32"), ("max(0, 8*part)", "max(min(16, 8*part + 8), min(16, 8*part + 9))"), ("0", "16")]
    printed = _function(GENERATED / "resnet_mini" / "b2_conv1.py", "b2_conv1_grad_input")
    assert printed.count("prange(") == 1 and printed.count("grad_output_padded = np.zeros(") == 1
    assert [printed.count(f"b2_conv1_grad_input_block{i}(") for i in range(4)] == [1, 1, 1, 1]


def test_phases_that_differ_in_form_keep_a_loop_each():
    """A 1 x 1 stride-2 shortcut's phases: one vectorized, three writing zeros element by element."""
    grad_input = _grad_input(load_spec("resnet-mini"), "b2_shortcut")
    assert [phase.kind for phase in grad_input.phases] == ["lanes", "sum", "sum", "sum"]
    assert grad_input.one_item is None


def _copy(target: str, rows: int = 16, zeroed: bool = True) -> Staging:
    return Staging("g_padded", ("4", str(rows)), (Loop("a1", "4"), Loop("a2", "8")), target, "g[n, a1, a2]",
                   per_image=True, zeroed=zeroed)


def test_copies_of_one_name_merge_only_where_they_place_their_values_alike():
    assert merged_stagings([_copy("a1, a2"), _copy("a1, a2", rows=17)])[0].shape == ("4", "17")
    assert merged_stagings([_copy("a1, a2"), _copy("a1, a2 + 1")]) is None  # another offset: other places
    assert merged_stagings([_copy("a1, a2"), _copy("a1, a2", zeroed=False)]) is None
    assert merged_stagings([_copy("a1, a2"), _copy("a1, a2")]) == (_copy("a1, a2"),)


# A stride-2 convolution whose input gradient takes the lanes schedule in two parts of each image's rows
STRIDED = {"name": "phases-one-item", "input": [8, 16, 16], "layers": [
    {"type": "conv2d", "name": "stem", "out_channels": 8, "kernel": 3, "padding": 1},
    {"type": "relu"},
    {"type": "conv2d", "name": "down", "out_channels": 16, "kernel": 3, "stride": 2, "padding": 1},
    {"type": "flatten"},
    {"type": "dense", "name": "fc", "out_features": 3},
]}


@pytest.mark.heavy
def test_phases_in_one_loop_equal_pytorch_finite_differences_and_any_thread_count(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    grad_input = _grad_input(spec_from_dict(STRIDED), "down")
    assert grad_input.one_item and grad_input.phases[0].lanes.parts[0] == "2*N"
    net = network_for(STRIDED, tmp_path)
    function = inspect.getsource(net.kernel("down_with_relu1_grad_input").py_func)  # down's, storing relu1's
    assert function.count("prange(") == 1
    rng = np.random.default_rng(6)
    net.load_params(random_params(net, rng))
    assert_float64_equals_pytorch(net, rng, np.array([0, 2, 1]))
    x = rng.standard_normal((3, *net.spec.input_shape))
    assert_central_differences(net, x, np.array([1, 0, 2]), rng, step=1e-5, samples=3, rel=1e-6, abs=1e-9)
    monkeypatch.setenv("SYMCNN_ADAPTIVE_THREADS", "0")  # two threads even on a busy machine
    assert_same_gradients_on_one_and_two_threads(net, x, np.array([1, 0, 2]))
