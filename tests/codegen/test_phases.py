"""Strided gathers by phase (symcnn/codegen/phases.py): which kernels are split, what each phase reads,
and that the phases compute what PyTorch does (float64) over random strides, paddings, dilations,
output paddings, groups and sizes the stride does not divide, the same bit for bit on 1 or 2 threads."""

from __future__ import annotations

import hashlib
import inspect
import re

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sympy import Eq, IndexedBase, Le, Mod, Symbol

from symcnn.codegen.network import layer_kernels
from symcnn.codegen.phases import split_phases
from symcnn.spec import load_spec, spec_from_dict
from symcnn.symbolic.adjoint import GatherTerm
from symcnn.symbolic.ops import Tensor
from tests.kernels_helpers import (assert_central_differences, assert_float64_equals_pytorch,
                                   assert_same_gradients_on_one_and_two_threads, network_for, random_params)


def _kernels(spec, label):
    layer = next(layer for layer in spec.layers if layer.label == label)
    return {kernel.name.removeprefix(f"{label}_"): kernel for kernel in layer_kernels(layer)}


def _tests_divisibility(kernel) -> bool:
    """Whether a string of the kernel description (its phases' included) tests ``... % s == 0``."""
    printed = repr([getattr(kernel, field) for field in kernel.__dataclass_fields__ if field != "formula"])
    return re.search(r"% \d+ == 0", printed) is not None


def test_a_stride_2_input_gradient_runs_in_four_phases_of_the_lanes_schedule():
    """resnet-mini's stride-2 3x3 convolution: output rows and columns even or odd, each phase the taps
    that land on it (1, 2, 2 and 4 of the 9), a strided view of the weight, no divisibility test left."""
    grad_input = _kernels(load_spec("resnet-mini"), "b2_conv1")["grad_input"]
    assert grad_input.kind == "phases" and [phase.kind for phase in grad_input.phases] == ["lanes"] * 4
    assert dict(grad_input.views) == {
        "grad_input_p00": "grad_input[:, :, 0::2, 0::2]", "weight_p00": "weight[:, :, 1::2, 1::2]",
        "grad_input_p01": "grad_input[:, :, 0::2, 1::2]", "weight_p01": "weight[:, :, 1::2, 0::2]",
        "grad_input_p10": "grad_input[:, :, 1::2, 0::2]", "weight_p10": "weight[:, :, 0::2, 1::2]",
        "grad_input_p11": "grad_input[:, :, 1::2, 1::2]", "weight_p11": "weight[:, :, 0::2, 0::2]"}
    taps = [next(s.shape[1:3] for s in phase.lanes.stagings if s.name.endswith("_t")) for phase in grad_input.phases]
    assert taps == [("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")]
    odd = grad_input.phases[3].lanes
    # dL/dY[(2*q_k + 1 + 1 - 2*t_u)/2] = dL/dY[q_k - t_u + 1]: from 0 to 16, zero-padded at 16
    assert odd.broadcasts[0] == ("broadcast0", "grad_output_padded[c_out, q_k - t_u + 1, q_l + 1]")
    assert [(s.name, s.shape, s.zeroed) for s in odd.stagings if s.per_image] == [
        ("grad_output_padded", ("32", "17", "17"), True)]
    assert odd.store == "grad_input_p11[n, c_in, q_k, q_l]"
    assert not _tests_divisibility(grad_input)
    assert grad_input.parallel and grad_input.fastmath == "{'contract'}"


def test_a_transposed_convolution_runs_by_phase_and_its_weight_gradient_by_quotient():
    """document003's stride-2 transposed convolution: its forward pass in four phases (the lanes
    schedule over the output channels); its weight gradient sums over the input rows q_i where it summed
    over the output rows i with s | i + p - d*u: i = 2*q_i + u - 1, the bound a read of the padding."""
    kernels = _kernels(load_spec("docs/bench/document003.toml"), "up")
    forward = kernels["forward"]
    assert forward.kind == "phases" and [phase.kind for phase in forward.phases] == ["lanes"] * 4
    weight = kernels["grad_weight"]
    assert weight.kind == "lanes" and not weight.phases and weight.lanes.over_batch
    assert [(loop.variable, loop.start, loop.stop) for loop in weight.lanes.around[:1]] == [("q_i", "0", "16")]
    assert "grad_output_padded[c_out, 2*q_i + u, 2*q_j]" in dict(weight.lanes.broadcasts).values()
    assert not _tests_divisibility(forward) and not _tests_divisibility(weight)
    assert kernels["grad_input"].kind == "lanes"  # a strided convolution: no condition to begin with


def test_phases_no_tap_reaches_write_zeros():
    """A 1x1 convolution of stride 2 reaches only even rows and columns: three phases of four are
    the sum's identity."""
    spec = load_spec("resnet-mini")
    grad_input = _kernels(spec, "b2_shortcut")["grad_input"]
    assert [(phase.kind, bool(phase.terms)) for phase in grad_input.phases] == [
        ("lanes", False), ("sum", False), ("sum", False), ("sum", False)]
    assert [phase.initial for phase in grad_input.phases[1:]] == ["0.0"] * 3
    assert [phase.output for phase in grad_input.phases] == ["grad_input_p00", "grad_input_p01", "grad_input_p10",
                                                             "grad_input_p11"]


def test_element_wise_gathers_are_not_split_into_phases():
    """A 2x2 max pool of stride 2 has one tap per output element: by phase it would save a test but read
    its operands four times (measured slower), so it keeps the gather form, its one tap found instead
    (symcnn.codegen.taps, tests/codegen/test_taps.py)."""
    grad_input = _kernels(load_spec("seed004"), "maxpool2d2")["grad_input"]
    assert grad_input.kind == "sum" and not grad_input.phases and grad_input.terms[0].condition is None


def test_a_condition_without_a_unit_coefficient_is_left_as_a_test():
    k, u = (Symbol(name, integer=True, nonnegative=True) for name in "ku")
    x = IndexedBase("X")
    tensors = (Tensor("input", x, (sympy.Integer(9),)),)
    unsolved = GatherTerm(((u, 0, 2),), (Eq(Mod(2 * k + 3 * u, 3), 0),), x[u])
    assert split_phases({x: "x"}, (k,), (sympy.Integer(9),), [unsolved], tensors, "out") is None
    assert split_phases({x: "x"}, (k,), (sympy.Integer(9),), [GatherTerm(((u, 0, 2),), (Le(u, k),), x[u])],
                        tensors, "out") is None  # nothing to rewrite


def test_taps_of_a_dilation_the_stride_does_not_divide():
    """Stride 3, dilation 2: 3 | k + 2 - 2*u holds every third tap, a different one in each phase; each
    phase's values equal the gather with its tests."""
    k, u = (Symbol(name, integer=True, nonnegative=True) for name in "ku")
    w, g = IndexedBase("W"), IndexedBase("G")
    tensors = (Tensor("weight", w, (sympy.Integer(5),)), Tensor("grad_output", g, (sympy.Integer(4),)))
    row = (k + 2 - 2 * u) / 3
    term = GatherTerm(((u, 0, 4),), (Eq(Mod(k + 2 - 2 * u, 3), 0), Le(0, row), Le(row, 3)), w[u] * g[row])
    split = split_phases({w: "weight", g: "grad_output"}, (k,), (sympy.Integer(10),), [term], tensors, "out")
    assert [view.printed() for view in split.views] == [
        "out[0::3]", "weight[1::3]", "out[1::3]", "weight[0::3]", "out[2::3]", "weight[2::3]"]
    assert [phase.shape for phase in split.phases] == [(4,), (3,), (3,)]
    weight_of = {view.base: view.slices[0] for view in split.views if view.source == "weight"}

    def through_views(read):  # weight_p1[t] is W[1 + 3*t]
        first, step = weight_of[read.base]
        return w[first + step * read.indices[0]]

    for residue, phase in enumerate(split.phases):
        (phase_term,) = phase.terms
        (tap, low, high), = phase_term.limits
        (q_k,) = phase.indices
        value = phase_term.body.replace(lambda node: isinstance(node, sympy.Indexed) and node.base in weight_of,
                                        through_views)
        for q in range(int(phase.shape[0])):
            position = 3 * q + residue
            expected = sum(w[t] * g[(position + 2 - 2 * t) // 3] for t in range(5)
                           if (position + 2 - 2 * t) % 3 == 0 and 0 <= (position + 2 - 2 * t) // 3 <= 3)
            at = [{tap: t, q_k: q} for t in range(int(low), int(high) + 1)]
            got = sum(value.xreplace(point) for point in at
                      if all(condition.xreplace(point) for condition in phase_term.conditions))
            assert sympy.expand(got - expected) == 0, (residue, q)


# --- the numbers -----------------------------------------------------------------------------------


@st.composite
def strided_specs(draw):
    """A strided (possibly grouped) convolution, a transposed convolution, a 3x3 average pool of stride 2
    (by phase in the gather form), a dense layer: sizes 5 to 9, strides 1 to 3, paddings, dilations 1 to 2,
    output paddings; 8 channels (the lanes schedule) or 2 to 4 (the others)."""
    height, width = draw(st.integers(5, 9)), draw(st.integers(5, 9))
    channels = draw(st.sampled_from([2, 3, 8]))
    groups = draw(st.sampled_from([1, 2])) if channels % 2 == 0 else 1
    pair = lambda low, high: [draw(st.integers(low, high)), draw(st.integers(low, high))]  # noqa: E731
    kernel, stride, dilation = pair(1, 3), pair(2, 3), pair(1, 2)
    padding = [draw(st.integers(0, k - 1)) for k in kernel]
    sizes = [(size + 2 * p - d * (k - 1) - 1) // s + 1
             for size, k, s, p, d in zip((height, width), kernel, stride, padding, dilation)]
    if min(sizes) < 2:
        kernel, padding, dilation = [2, 2], [1, 1], [1, 1]
    middle = draw(st.sampled_from([2, 8]))
    up_kernel, up_stride, up_dilation = pair(1, 3), pair(1, 3), pair(1, 2)
    up_padding = [draw(st.integers(0, (d * (k - 1)) // 2)) for k, d in zip(up_kernel, up_dilation)]
    output_padding = [draw(st.integers(0, max(s, d) - 1)) for s, d in zip(up_stride, up_dilation)]
    layers = [
        {"type": "conv2d", "name": "conv", "out_channels": 2 * groups * draw(st.integers(1, 2)) if channels < 8
         else 8, "kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation, "groups": groups},
        {"type": "conv_transpose2d", "name": "up", "out_channels": middle, "kernel": up_kernel,
         "stride": up_stride, "padding": up_padding, "dilation": up_dilation, "output_padding": output_padding},
        {"type": "avgpool2d", "kernel": 3, "stride": 2},
        {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 3},
    ]
    digest = hashlib.sha256(repr((layers, channels, height, width)).encode()).hexdigest()[:10]
    return {"name": f"strided-{digest}", "input": [channels, height, width], "layers": layers}


def _valid(spec) -> bool:
    """The pool needs a map of at least 3x3 after the transposed convolution."""
    try:
        spec_from_dict(spec)
    except ValueError:
        return False
    return True


def _equal_pytorch(net, seed: int) -> None:
    rng = np.random.default_rng(seed)
    net.load_params(random_params(net, rng))
    assert_float64_equals_pytorch(net, rng, np.array([1, 2]))


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.mark.slow  # five specs compiled (about 3.5 minutes on 2 cores); the fixed strided spec below runs in CI (heavy)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.filter_too_much])
@given(spec=strided_specs().filter(_valid))
def test_random_strided_specs_equal_pytorch(torch, tmp_path_factory, spec):
    net = network_for(spec, tmp_path_factory.mktemp("spec"))
    conv, up = (next(layer for layer in net.spec.layers if layer.label == label) for label in ("conv", "up"))
    for layer, kernel in ((conv, "grad_input"), (up, "forward")):  # the new schedule is the one tested
        assert not _tests_divisibility(_kernels(net.spec, layer.label)[kernel]), (layer.label, kernel)
    _equal_pytorch(net, 0)


FIXED = {  # stride 3 and 2, sizes 8 and 7 (neither divisible), a grouped convolution, the lanes' 8 channels
    "name": "strided-fixed",
    "input": [8, 8, 7],
    "layers": [
        {"type": "conv2d", "name": "conv", "out_channels": 8, "kernel": [3, 2], "stride": [3, 2],
         "padding": [1, 0], "dilation": [1, 2], "groups": 2},
        {"type": "tanh"},
        {"type": "conv_transpose2d", "name": "up", "out_channels": 8, "kernel": 3, "stride": [2, 3],
         "padding": 1, "output_padding": [1, 2]},
        {"type": "conv2d", "name": "down", "out_channels": 8, "kernel": 3, "stride": 2},
        {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 3},
    ],
}


@pytest.fixture(scope="module")
def fixed(tmp_path_factory):
    return network_for(FIXED, tmp_path_factory.mktemp("spec"))


@pytest.mark.heavy
def test_fixed_strided_spec_takes_the_phases_and_equals_pytorch_and_finite_differences(torch, fixed):
    kinds = {label: _kernels(fixed.spec, label) for label in ("up", "down")}
    assert kinds["up"]["forward"].kind == kinds["down"]["grad_input"].kind == "phases"
    assert {phase.kind for phase in kinds["up"]["forward"].phases} == {"lanes"}
    _equal_pytorch(fixed, 1)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, *fixed.spec.input_shape))
    assert_central_differences(fixed, x, np.array([0, 2]), rng, step=1e-5, samples=3, rel=1e-6, abs=1e-9)


@pytest.mark.heavy
def test_phases_do_not_depend_on_the_thread_count(fixed, monkeypatch):
    monkeypatch.setenv("SYMCNN_ADAPTIVE_THREADS", "0")  # two threads even on a busy machine
    rng = np.random.default_rng(2)
    fixed.load_params(random_params(fixed, rng))
    x = rng.standard_normal((5, *fixed.spec.input_shape))
    assert_same_gradients_on_one_and_two_threads(fixed, x, rng.integers(0, 3, 5))


DEPTHWISE_STRIDED = {  # each phase a scalar form: no channels to vectorize over; 7 x 7 maps: phases of 4 and 3 rows
    "name": "depthwise-strided",
    "input": [4, 7, 7],
    "layers": [
        {"type": "conv2d", "name": "stem", "out_channels": 4, "kernel": 3, "padding": 1},
        {"type": "relu"},
        {"type": "conv2d", "name": "dw", "out_channels": 4, "kernel": 3, "stride": 2, "padding": 1, "groups": 4},
        {"type": "relu"},
        {"type": "conv2d", "name": "dw1x1", "out_channels": 4, "kernel": 1, "stride": 2, "groups": 4},
        {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 3},
    ],
}


@pytest.mark.heavy
def test_scalar_phases_share_the_image_and_channel_loops(torch, tmp_path):
    """A stride-2 depthwise convolution's input gradient runs its four phases in one loop over the images and
    channels (each plane written by every phase while it is in cache), its fused ReLU mask with them; a 1 x 1
    one's phases, of which three write zeros, too. The values: PyTorch's in float64, finite differences."""
    net = network_for(DEPTHWISE_STRIDED, tmp_path)
    # dw's phases are 4 x 4, 4 x 3, 3 x 4 and 3 x 3: only the images and channels shared; dw1x1's all 2 x 2
    for label, shared in (("dw", ["n", "c"]), ("dw1x1", ["n", "c", "q_k", "q_l"])):
        grad_input = _kernels(net.spec, label)["grad_input"]
        assert grad_input.kind == "phases" and len(grad_input.phases) == 4
        assert {phase.kind for phase in grad_input.phases} <= {"accumulate", "sum"}
        loops = grad_input.phases[0].output_loops[:grad_input.shared_loops]
        assert [loop.variable for loop in loops] == shared, label
    function = inspect.getsource(net.kernel("dw_with_relu1_grad_input").py_func)  # dw's, storing relu1's gradient
    assert function.count("prange(") == 1 and function.count("for n in prange(N):") == 1
    _equal_pytorch(net, 3)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, *net.spec.input_shape))
    assert_central_differences(net, x, np.array([1, 2]), rng, step=1e-5, samples=3, rel=1e-6, abs=1e-9)


def test_phases_with_a_vector_schedule_keep_their_own_loops():
    """Phases of which one is vectorized (the lanes schedule allocates and stages before its loops) share no
    image and channel loops as scalar phases do: resnet-mini's strided 1 x 1 shortcut, and its stride-2 3 x 3
    convolution (whose vector phases share one parallel loop instead: tests/codegen/test_phase_items.py)."""
    spec = load_spec("resnet-mini")
    for label in ("b2_shortcut", "b2_conv1"):
        assert _kernels(spec, label)["grad_input"].shared_loops == 0


@pytest.mark.heavy
def test_a_phase_read_element_by_element_is_not_reshaped(torch, tmp_path):
    """A 3x3 average pool of stride 2 on 7x7: its input gradient's odd-odd phase takes one tap, an
    element-wise copy into the strided view ``grad_input[:, :, 1::2, 1::2]``, which is not contiguous:
    looping over it through a reshape (codegen.layout) failed to compile in numba."""
    spec = {"name": "phase-elementwise", "input": [2, 7, 7], "layers": [
        {"type": "avgpool2d", "kernel": 3, "stride": 2},
        {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 3},
    ]}
    net = network_for(spec, tmp_path)
    rng = np.random.default_rng(0)
    net.load_params(random_params(net, rng))
    assert_float64_equals_pytorch(net, rng, np.array([0, 2]))
