"""A kernel for each vector width (symcnn/codegen/widths.py, the two constants of cost_model.py): which kernels
get a narrow variant, that the module calls the one its CPU suits, and that both compute the network's
gradients as PyTorch does."""

from __future__ import annotations

import numpy as np
import pytest

from symcnn.codegen import cost_model
from symcnn.codegen.cost_model import NARROW, WIDE, cheapest
from symcnn.codegen.network import layer_kernels
from symcnn.codegen.package import per_width
from symcnn.runtime.vector_width import WIDE_VECTORS
from symcnn.spec import spec_from_dict
from tests.kernels_helpers import assert_float64_equals_pytorch, network_for

#: A 3-channel stem and a 1 x 1 convolution: where AVX2 timings favour the columns schedule; a 3 x 3 one from 32
#: to 64 channels, whose register blocks for 256-bit vectors take groups of 16 lanes, its weight's copy in 16s
#: (registers.py).
STEM = {"name": "widths", "input": [3, 16, 16], "loss": "softmax_cross_entropy",
        "layers": [{"type": "conv2d", "name": "stem", "out_channels": 16, "kernel": 3, "padding": 1},
                   {"type": "relu"},
                   {"type": "conv2d", "name": "pw", "out_channels": 32, "kernel": 1},
                   {"type": "conv2d", "name": "wide", "out_channels": 64, "kernel": 3, "padding": 1},
                   {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 3}]}


def _candidates(label: str) -> list:
    """The loop nests the forward kernel of ``STEM``'s layer ``label`` is chosen among."""
    layer = next(layer for layer in spec_from_dict(STEM).layers if layer.label == label)
    with cost_model.recorded() as choices:
        layer_kernels(layer)
    return choices[0]


def test_each_width_decides_by_its_own_constants_and_a_differing_choice_is_told():
    nests = _candidates("pw")  # 1 x 1, 16 -> 32 channels: the lanes schedule, columns ones, the scalar form
    lanes = next(nest for nest in nests if nest.schedule == "lanes")
    assert WIDE.first == ("lanes",) and NARROW.first == ("lanes", "columns")
    with cost_model.compared() as differing:
        assert cheapest(nests) is lanes  # the wide constants take the lanes schedule where it fits
        assert cheapest([lanes]) is lanes  # one candidate: nothing to differ
    assert differing == [lanes] and not cost_model.comparing()
    with cost_model.narrow():
        assert cost_model.narrowed() and not cost_model.comparing()
        narrow = cheapest(nests)
    assert narrow.schedule == "columns" and narrow is min(nests, key=lambda nest: cost_model.estimate(nest, NARROW))
    assert not cost_model.narrowed()


def test_a_kernel_the_widths_schedule_differently_carries_both():
    spec = spec_from_dict(STEM)
    kernels = {kernel.name: kernel for layer in spec.layers for kernel in layer_kernels(layer)}
    stem, pw = kernels["stem_forward"], kernels["pw_forward"]
    assert (stem.kind, stem.narrow.kind, stem.narrow.name) == ("lanes", "columns", "")
    assert (pw.kind, pw.narrow.kind) == ("lanes", "columns")
    assert stem.narrow.arguments == stem.arguments and stem.narrow.narrow is None
    assert kernels["fc_forward"].narrow is None  # a dense layer: no choice that differs
    rendered, dispatched = per_width([stem, kernels["fc_forward"]])
    assert [kernel.name for kernel in rendered] == ["stem_forward_wide", "stem_forward_narrow", "fc_forward"]
    assert dispatched == ["stem_forward"]


@pytest.mark.heavy
def test_the_module_calls_the_variant_its_cpu_suits_and_both_equal_pytorch(tmp_path):
    """Whichever variant the CPU calls, the other one is checked here too: each width's kernels in turn,
    the loss and every gradient in float64 against PyTorch's."""
    net = network_for(STEM, tmp_path)
    dispatched = [name for name, kernel in net._functions.items() if f"{name}_narrow" in kernel.py_func.__globals__]
    assert {"stem_forward", "pw_forward", "wide_forward", "wide_grad_input"} <= set(dispatched)
    rng = np.random.default_rng(3)
    for width in ("wide", "narrow"):
        for name in dispatched:
            variants = net._functions[name].py_func.__globals__
            assert variants[name] is variants[f"{name}_{'wide' if WIDE_VECTORS else 'narrow'}"]
            net._functions[name] = variants[f"{name}_{width}"]
        assert_float64_equals_pytorch(net, rng, np.array([0, 2, 1, 1]))
