"""The columns schedule (symcnn/codegen/backends/numba_cpu/columns.py): which kernels it fits, what it stages
and stores, and that its kernels equal PyTorch on random small shapes with few channels (forced with
cost_model.restricted, whatever the model would pick), with sums that do not depend on the thread count."""

import hashlib
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symcnn.codegen import cost_model
from symcnn.codegen.backends.numba_cpu import lanes as lanes_module
from symcnn.codegen.backends.numba_cpu.columns import MAX_OVER_BATCH_TILE, MAX_OVER_BATCH_TILE_ALONE, columns_fit
from symcnn.codegen.backends.numba_cpu.lanes import BATCH_CHUNKS, PARALLEL_SUM_MIN
from symcnn.codegen.lower import layer_formula
from symcnn.codegen.network import layer_kernels
from symcnn.spec import load_spec, spec_from_dict
from tests.kernels_helpers import (assert_float64_equals_pytorch, assert_same_gradients_on_one_and_two_threads,
                                   network_for, random_params)


def _conv_spec(name, input_shape, **conv):
    return {"name": name, "input": list(input_shape), "loss": "softmax_cross_entropy",
            "layers": [{"type": "conv2d", "name": "conv", **conv}, {"type": "tanh"}, {"type": "flatten"},
                       {"type": "dense", "name": "fc", "out_features": 3}]}


def _kernels(spec: dict, label: str = "conv") -> dict:
    layer = next(layer for layer in spec_from_dict(spec).layers if layer.label == label)
    return {kernel.name.removeprefix(f"{label}_"): kernel for kernel in layer_kernels(layer)}


def _only_columns(nest) -> bool:
    return nest.schedule == "columns"


def test_lenet_first_convolution_is_vectorized_over_its_columns():
    """One input channel, six output channels: no vector of channels. Its 28 columns, padded to 32 (two
    whole vectors), are the lane; the six channels are one register block."""
    conv1 = {kernel.name: kernel for kernel in layer_kernels(load_spec("suite-lenet").layers[0])}
    forward = conv1["conv1_forward"]
    assert forward.kind == "columns"
    lanes = forward.lanes
    assert lanes.lane_extent == "16*((out.shape[3] + 15) // 16)"  # read at run time: LLVM vectorizes it
    assert lanes.tile_shape[-1] == "32" and lanes.tile[-1].variable == "j"
    # stored over the 28 real columns only, the lane innermost (the output's rows are contiguous)
    assert [(loop.variable, loop.stop) for loop in lanes.stores] == [("c_out", "6"), ("j", "28")]
    assert lanes.store == "out[n, c_out, i, j]"
    # the input copied into a zero-filled copy wide enough for the 32 lanes and the 5 x 5 window
    (staging,) = lanes.stagings
    assert (staging.name, staging.shape, staging.zeroed) == ("x_padded", ("1", "32", "36"), True)
    # the weight is the broadcast operand, read before the lane loop; the bias starts each tile row
    assert lanes.init == "bias[c_out]"
    assert all(read.startswith("weight[") for _, read in lanes.broadcasts)
    weight = conv1["conv1_grad_weight"]
    assert weight.kind == "columns" and weight.lanes.over_batch
    # its lane, the 28 columns it sums, padded to 32 too: both operands copied, zeros beyond them, so that
    # the lanes past column 27 add nothing, and only the 28 real columns' partial sums are added at the end
    assert weight.lanes.tile_shape[-1] == "32"
    assert weight.lanes.lane_extent == "16*((grad_output.shape[3] + 15) // 16)"
    assert {(staging.name, staging.shape, staging.zeroed) for staging in weight.lanes.stagings} == {
        ("x_padded", ("1", "32", "36"), True), ("grad_output_padded", ("6", "28", "32"), True)}
    assert [(loop.variable, loop.stop) for loop in weight.lanes.chunk_sum.loops] == [("chunk", "chunks"), ("j", "28")]


def test_row_parts_copy_only_what_they_read():
    """An image's rows split in two parts, one work item each, as in the lanes schedule: each item copies
    into its zero-padded copy only what its part reads. LeNet-5's first convolution: the input rows of its
    half of the output rows. A depthwise convolution, whose rows are its channels and its output rows: the
    channels of its half (each item copied the whole image before)."""
    (lenet,) = layer_kernels(load_spec("suite-lenet").layers[0])[:1]
    (copy,) = lenet.lanes.stagings
    assert [(loop.variable, loop.start, loop.stop) for loop in lenet.lanes.rows] == [("i", "14*part", "14*part + 14")]
    assert [(loop.start, loop.stop) for loop in copy.loops[1:2]] == [("max(0, 14*part)", "min(32, 14*part + 18)")]
    depthwise = _kernels(_SEPARABLE_DW1)["forward"]
    assert depthwise.kind == "columns"
    (copy,) = depthwise.lanes.stagings
    assert [(loop.variable, loop.start, loop.stop) for loop in depthwise.lanes.rows[:1]] == [
        ("c_out", "16*part", "16*part + 16")]
    assert (copy.loops[0].start, copy.loops[0].stop) == ("max(0, 16*part)", "min(32, 16*part + 16)")


#: suite-separable's first depthwise convolution: 32 channels, 32 x 32, 3 x 3, padding 1.
_SEPARABLE_DW1 = _conv_spec("depthwise", (32, 32, 32), out_channels=32, kernel=3, padding=1, groups=32, bias=False)


#: A 1 x 1 convolution whose channels' rows lie 4 KiB apart (32 x 32 maps): 24 of them start in one of L1's sets.
_CROWDED = _conv_spec("crowded", (24, 32, 32), out_channels=24, kernel=1)


def test_rows_that_would_crowd_l1s_sets_are_read_from_a_copy_a_row_further_apart():
    """The streamed operand's rows, one per channel, read again for every register block: where the
    channels' planes lie a multiple of 4 KiB apart they would share one of L1's sets and evict each other,
    so the operand is copied, with a row more per channel (never read), even where it could be read in
    place. Few channels, or planes of another size, are read where they are."""
    with cost_model.restricted(_only_columns):
        kernels = _kernels(_CROWDED)
        few = _kernels(_conv_spec("few", (6, 32, 32), out_channels=24, kernel=1))
        padded = _kernels(_conv_spec("padded", (24, 32, 32), out_channels=8, kernel=3, padding=1))
    for name, operand in (("forward", "x"), ("grad_input", "grad_output")):
        lanes = kernels[name].lanes
        (copy,) = lanes.stagings
        assert (copy.name, copy.shape, copy.zeroed) == (f"{operand}_padded", ("24", "33", "32"), False), name
        # each work item copies only its part's rows, as for a zero-padded copy
        assert (copy.loops[1].start, copy.loops[1].stop) == ("max(0, 16*part)", "min(32, 16*part + 16)"), name
        assert all(f"{operand}[n," not in read for _, read in lanes.registers.reads), name
    assert few["forward"].lanes.stagings == ()  # 6 rows: no crowd, read in place
    (copy,) = padded["forward"].lanes.stagings  # 34 x 34 planes: spread already, no row added
    assert copy.shape == ("24", "34", "34")


@pytest.mark.heavy
def test_a_copy_a_row_further_apart_equals_pytorch(tmp_path_factory):
    """The crowded convolution's forward pass and input gradient, read from such copies, and so its loss and
    every gradient, equal PyTorch's (its weight gradient's tile is past the columns schedule's limit: lanes)."""
    pytest.importorskip("torch")
    with cost_model.restricted(_only_columns):
        net = network_for(_CROWDED, tmp_path_factory.mktemp("spec"))
    rng = np.random.default_rng(4)
    net.load_params(random_params(net, rng))
    assert_float64_equals_pytorch(net, rng, np.array([1, 0, 2]))


def test_a_weight_gradient_sums_its_columns_in_a_fixed_order():
    """The lane of a weight gradient is a column axis it sums: each chunk's tile keeps one partial sum
    per column, and the chunks and columns are summed at the end, chunks outer, in order."""
    with cost_model.restricted(_only_columns):
        kernels = _kernels(_conv_spec("few", (1, 12, 12), out_channels=3, kernel=3))
    weight = kernels["grad_weight"].lanes
    assert kernels["grad_weight"].kind == "columns" and weight.over_batch
    assert weight.tile_shape == ("3", "1", "3", "3", "10")
    assert [loop.variable for loop in weight.chunk_sum.loops] == ["chunk", "j"]
    assert weight.chunk_sum.update == "total += tiles[chunk, c_out, c_in, u, v, j]"
    assert weight.lane_extent == "grad_output.shape[3]"


def test_a_weight_gradients_column_sums_count_towards_a_parallel_chunk_sum(monkeypatch):
    """The chunks' sum of a columns weight gradient adds each element's column partial sums too: it runs in
    parallel once the chunks times the tile's elements, columns included, exceed PARALLEL_SUM_MIN, even
    when the weight's own elements would stay below it. (A columns tile holds at most MAX_OVER_BATCH_TILE
    elements, whose chunks' sum stays under the shipped threshold: a lower one shows the count.)"""
    threshold = 2 ** 14
    monkeypatch.setattr(lanes_module, "PARALLEL_SUM_MIN", threshold)
    with cost_model.restricted(_only_columns):
        long = _kernels(_conv_spec("long", (1, 48, 48), out_channels=6, kernel=5))["grad_weight"].lanes
        short = _kernels(_conv_spec("short", (1, 12, 12), out_channels=3, kernel=3))["grad_weight"].lanes
    for lanes, weight, columns in ((long, 6 * 5 * 5, 44), (short, 3 * 3 * 3, 10)):
        # the tile: the weight's elements times its lanes (the summed columns, or more: padded to whole vectors)
        assert np.prod([int(extent) for extent in lanes.tile_shape[:-1]]) == weight
        assert int(lanes.tile_shape[-1]) in (columns, -(-columns // cost_model.VECTOR) * cost_model.VECTOR)
        assert BATCH_CHUNKS * weight < threshold
        values = weight * columns  # the partial sums the chunks' sum adds, per chunk: the real columns' only
        assert [loop.parallel for loop in lanes.chunk_loops] == [BATCH_CHUNKS * values > threshold] + [False] * 3
    assert BATCH_CHUNKS * MAX_OVER_BATCH_TILE <= PARALLEL_SUM_MIN  # so no shipped columns sum is parallel


def _depthwise_spec(name: str, channels: int, size: int) -> dict:
    return {"name": name, "input": [channels, size, size], "loss": "softmax_cross_entropy", "layers": [
        {"type": "conv2d", "name": "dw", "out_channels": channels, "kernel": 3, "padding": 1, "groups": channels,
         "bias": False},
        {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]}


@pytest.mark.heavy
def test_a_weight_gradient_tile_beyond_l1_where_only_the_scalar_form_is_left(tmp_path_factory, torch):
    """A depthwise weight gradient has no channels to vectorize over (no lanes schedule): its columns tile
    may hold up to MAX_OVER_BATCH_TILE_ALONE elements, past L1, rather than leave the kernel to gather's
    scalar sums. A convolution that the lanes schedule fits keeps the L1 limit."""
    depthwise = _depthwise_spec("depthwise-wide-tile", 32, 32)  # a tile of 32 x 3 x 3 x 32 = 9,216 elements
    assert MAX_OVER_BATCH_TILE < 32 * 9 * 32 <= MAX_OVER_BATCH_TILE_ALONE
    weight = _kernels(depthwise, "dw")["grad_weight"]
    assert weight.kind == "columns" and weight.lanes.over_batch
    assert weight.lanes.tile_shape == ("32", "1", "3", "3", "32")
    # a lanes-schedule convolution whose columns tile would be as large: its columns are not a candidate
    dense_channels = _kernels(_conv_spec("wide-tile", (32, 32, 32), out_channels=32, kernel=3, padding=1))
    assert dense_channels["grad_weight"].kind != "columns"
    # the kernel's values: PyTorch's, in float64, on two images
    net = network_for(depthwise, tmp_path_factory.mktemp("spec"))
    net.load_params(random_params(net, np.random.default_rng(2)))
    assert_float64_equals_pytorch(net, np.random.default_rng(3), np.array([0, 1]))


def test_products_are_the_formulas_term():
    """Every product in a lane loop is the formula's weight read (hoisted, by name) times its input read."""
    with cost_model.restricted(_only_columns):
        forward = _kernels(_conv_spec("few", (2, 9, 11), out_channels=3, kernel=[2, 3], padding=1))["forward"]
    names = {name for name, _ in forward.lanes.broadcasts}
    for update in forward.lanes.updates:
        element, _, value = update.partition(" = ")
        products = re.findall(r"(broadcast\d+)\*(x_padded\[[^]]*\])", value)
        assert value == " + ".join([element] + [f"{name}*{read}" for name, read in products])
        for name, read in products:
            assert name in names and re.fullmatch(r"x_padded\[c_in, i( \+ (u|\d+))?, j( \+ \d+)?\]", read), read


def test_what_the_columns_schedule_does_not_fit():
    """Columns read with a step (a strided convolution's) and outputs without columns (a dense layer's)
    are the other schedules'; a strided input gradient runs by phase (codegen/phases.py), each phase a
    plain correlation without a divisibility test, which the columns schedule may then take."""
    from symcnn.codegen.lower import _forward_terms

    spec = spec_from_dict(_conv_spec("strided", (2, 9, 9), out_channels=2, kernel=3, stride=[1, 2]))
    formula, values = layer_formula(spec.layers[0])
    concrete = formula.substitute(values)
    assert columns_fit(concrete.indices, concrete.output.shape, formula.parameters["batch"],
                       _forward_terms(concrete), concrete.tensors) is None
    with cost_model.restricted(_only_columns):
        strided = _kernels(_conv_spec("strided2", (2, 9, 9), out_channels=2, kernel=3, stride=2))
        dense = layer_kernels(spec.layers[-1])
    assert strided["forward"].kind != "columns" and strided["grad_input"].kind == "phases"
    assert {phase.kind for phase in strided["grad_input"].phases} == {"columns"}
    assert strided["grad_weight"].kind != "columns"
    assert not any(kernel.kind == "columns" for kernel in dense)


@st.composite
def few_channel_specs(draw, any_groups: bool = False):
    """Random small convolutions with few channels: columns read with a unit step (the width's stride 1),
    anything else random (the height's stride, padding, dilation, non-square kernels; one group or
    depthwise, or with ``any_groups`` any grouping, whose input channel ``c_in + 2*floor(c_out/3)`` the
    columns schedule does not take)."""
    height, width = draw(st.integers(3, 10)), draw(st.integers(3, 13))
    kernel = [draw(st.integers(1, min(3, height))), draw(st.integers(1, min(4, width)))]
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    per_group = draw(st.integers(1, 3)) if any_groups or groups == 1 else 1
    conv = {"out_channels": groups * per_group, "kernel": kernel, "groups": groups,
            "stride": [draw(st.integers(1, 2)), 1], "padding": [draw(st.integers(0, 1)), draw(st.integers(0, 2))],
            "dilation": [1, draw(st.integers(1, 2))], "bias": draw(st.booleans())}
    if width + 2 * conv["padding"][1] - conv["dilation"][1] * (kernel[1] - 1) < 1:
        conv["dilation"] = [1, 1]
    channels = groups * draw(st.integers(1, 2 if any_groups and groups > 1 else 1)) if groups > 1 else draw(
        st.integers(1, 3))
    digest = hashlib.sha256(repr((conv, channels, height, width)).encode()).hexdigest()[:10]
    return _conv_spec(f"columns-{digest}", (channels, height, width), **conv)


@pytest.mark.slow  # six specs compiled (about 100 s on 2 cores); the model-scheduled ones below run in CI (heavy)
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=few_channel_specs())
def test_random_few_channel_convolutions_in_columns_equal_pytorch(tmp_path_factory, spec):
    """Forced to the columns schedule wherever it fits, every other candidate excluded."""
    pytest.importorskip("torch")
    with cost_model.restricted(_only_columns):
        kernels = _kernels(spec)
        net = network_for(spec, tmp_path_factory.mktemp("spec"))
    assert kernels["forward"].kind == "columns"
    source = net.kernels.__file__.replace("__init__.py", "conv.py")
    variants = [variant for kernel in kernels.values() for variant in (kernel, kernel.narrow) if variant]  # widths.py
    columns = sum(part.kind == "columns" for variant in variants for part in variant.phases or [variant])
    assert len(re.findall(r"lanes = ", open(source).read())) == columns  # a strided input gradient's phases too
    rng = np.random.default_rng(0)
    net.load_params(random_params(net, rng))
    assert_float64_equals_pytorch(net, rng, np.array([1, 2, 0]))


@pytest.mark.heavy
def test_a_weight_gradient_padded_to_whole_vectors_equals_pytorch(tmp_path_factory):
    """A weight gradient whose summed columns (10) are padded to a whole vector (16) with zeros: the
    gradients equal PyTorch's in float64, the padded lanes adding nothing."""
    pytest.importorskip("torch")
    spec = _conv_spec("columns-padded-weight", (1, 12, 12), out_channels=3, kernel=3)

    def padded(nest) -> bool:
        return nest.schedule == "columns" and nest.trips % cost_model.VECTOR == 0
    with cost_model.restricted(padded):
        weight = _kernels(spec)["grad_weight"]
        net = network_for(spec, tmp_path_factory.mktemp("spec"))
    assert weight.kind == "columns" and weight.lanes.over_batch and weight.lanes.tile_shape[-1] == "16"
    rng = np.random.default_rng(3)
    net.load_params(random_params(net, rng))
    assert_float64_equals_pytorch(net, rng, np.array([2, 0]))


@pytest.mark.heavy
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=few_channel_specs(any_groups=True))
def test_random_few_channel_convolutions_as_the_model_schedules_them_equal_pytorch(tmp_path_factory, spec):
    """As generated (the cost model's choice: columns, lanes or the scalar form, a strided input gradient
    in phases, each of which may take the columns schedule)."""
    pytest.importorskip("torch")
    net = network_for(spec, tmp_path_factory.mktemp("spec"))
    rng = np.random.default_rng(2)
    net.load_params(random_params(net, rng))
    assert_float64_equals_pytorch(net, rng, np.array([0, 1]))


@pytest.mark.heavy
def test_columns_weight_gradients_do_not_depend_on_the_thread_count(monkeypatch, tmp_path):
    """Summed in a fixed number of chunks and columns: the same numbers with 1 or 2 threads, bit for bit."""
    monkeypatch.setenv("SYMCNN_ADAPTIVE_THREADS", "0")  # two threads even on a busy machine
    spec = _conv_spec("columns-threads", (2, 14, 14), out_channels=3, kernel=3, padding=1)
    with cost_model.restricted(_only_columns):
        net = network_for(spec, tmp_path, dtype="float32")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((13, 2, 14, 14)).astype(np.float32)
    assert_same_gradients_on_one_and_two_threads(net, x, rng.integers(0, 3, 13))
