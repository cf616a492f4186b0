"""The lanes schedule (symcnn/codegen/backends/numba_cpu/lanes.py): which kernels take it, what it stages,
and that its sums do not depend on the thread count. Its numbers are checked with every other kernel's in
test_kernels.py (symbolic layers, PyTorch, finite differences, random specs)."""

import inspect
import re

import numpy as np
import pytest
import sympy

from symcnn.codegen.network import layer_kernels
from symcnn.codegen.backends.numba_cpu.lanes import BATCH_CHUNKS, PARALLEL_SUM_MIN
from symcnn.codegen.backends.numba_cpu.stagings import affine_range
from symcnn.runtime.network import Network
from symcnn.spec import load_spec, spec_from_dict
from tests.kernels_helpers import (assert_float64_equals_pytorch, assert_same_gradients_on_one_and_two_threads,
                                   network_for, random_params, toml_of)


def _spec(directory, layers, input_shape):
    path = directory / "net.toml"
    path.write_text(toml_of({"name": "net", "input": list(input_shape), "loss": "softmax_cross_entropy",
                             "layers": [{"type": "conv2d", **layer} for layer in layers]
                             + [{"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 3}]}))
    return load_spec(path)


def _kernels(spec, label):
    layer = next(layer for layer in spec.layers if layer.label == label)
    return {kernel.name.removeprefix(f"{label}_"): kernel for kernel in layer_kernels(layer)}


def test_seed004_convolutions_and_dense_gradients_take_the_lanes_schedule():
    spec = load_spec("seed004")
    conv2 = _kernels(spec, "conv2")
    assert {name: kernel.kind for name, kernel in conv2.items()} == {
        "forward": "lanes", "grad_input": "lanes", "grad_weight": "lanes", "grad_bias": "sum",
        "grad_weight_and_bias": "lanes"}  # the weight gradient's, its bias's summed from its copy of dL/dY
    forward = conv2["forward"].lanes
    # the weight with its output-channel axis last, the input zero-padded by one pixel each side
    assert [(s.name, s.shape, s.per_image, s.zeroed) for s in forward.stagings] == [
        ("x_padded", ("16", "18", "18"), True, True), ("weight_t", ("16", "3", "3", "32"), False, False)]
    assert forward.init == "bias[c_out]"
    # each image's 16 rows in two parallel items of 8 (a batch of one keeps both threads busy)
    assert forward.parts == ("2*N", "(item) // 2", "item % 2")
    assert [(loop.variable, loop.start, loop.stop) for loop in forward.rows] == [("i", "8*part", "8*part + 8")]
    # register-blocked: v unrolled (three products per update), four columns j per lane loop, and
    # the six distinct window reads of those four columns read once each
    assert [(loop.variable, loop.step) for loop in forward.around] == [("c_in", 1), ("u", 1), ("j", 4)]
    assert [read for _, read in forward.broadcasts] == [
        "x_padded[c_in, i + u, j]"] + [f"x_padded[c_in, i + u, j + {offset}]" for offset in range(1, 6)]
    assert forward.updates[1] == ("tile[j + 1, c_out] = tile[j + 1, c_out] + broadcast1*weight_t[c_in, u, 0, c_out] + "
                                  "broadcast2*weight_t[c_in, u, 1, c_out] + broadcast3*weight_t[c_in, u, 2, c_out]")
    weight = conv2["grad_weight"].lanes
    assert weight.over_batch and weight.chunks == BATCH_CHUNKS and weight.chunk_count == f"min({BATCH_CHUNKS}, N)"
    # the chunks' tiles summed at the end, a block of 32 lanes (its 32 output channels) at a time: a Sum over
    # the chunks into each lane's accumulator, printed from its identity and its step, then stored
    rows = weight.chunk_rows
    assert (rows.width, rows.blocks, [loop.variable for loop in rows.outer]) == (32, 1, ["c_in", "u", "v"])
    assert (rows.initial, rows.update) == ("0.0", "row[lane] += tiles[chunk, c_in, u, v, lane + 32*lane_block]")
    assert rows.store == "grad_weight[lane + 32*lane_block, c_in, u, v] = row[lane]"
    assert weight.chunk_sum is None  # the columns schedule's form
    # the weight gradient: eight pixels j per update, the kernel's three columns v per lane loop,
    # each grad_output_t row loaded once for all three, the 8 + 2 window values read once each
    elements = [f"tile[c_in, u, {v}, c_out]" for v in range(3)]
    assert [update.partition(" = ")[0] for update in weight.updates] == elements
    assert weight.updates[1].startswith(f"{elements[1]} = {elements[1]} + broadcast1*grad_output_t[i, j, c_out] "
                                        "+ broadcast2*grad_output_t[i, j + 1, c_out]")
    assert weight.updates[1].count("*") == 8 and len(weight.broadcasts) == 10
    assert weight.lane_block == 0  # its tile (16 x 3 x 3 x 32) is small: chunks of the batch
    fc1 = _kernels(spec, "fc1")["grad_weight"].lanes
    assert fc1.lane_extent == "x.shape[1]"  # 8192 features, already contiguous
    assert fc1.stagings == ()
    # a 10 x 8192 tile: summed in parallel blocks of 512 features (20 KiB of tile each), every image
    # in order, the features read at the block's start plus the lane
    assert (fc1.lane_block, fc1.tile_shape) == (512, ("10", "512"))
    assert fc1.block_bounds == ("(lanes + 511) // 512", "max(0, 512*block)",
                                "-lane_start + min(lanes, lane_start + 512)")
    assert fc1.updates[0] == "tile[i, k] = tile[i, k] + broadcast0*x[n, k + lane_start]"
    assert fc1.chunk_rows is None and fc1.chunk_sum is None  # each block's tile is stored as it is
    assert fc1.store == "grad_weight[i, k + lane_start]"


def _copy(kernel, name):
    (staging,) = [s for s in kernel.lanes.stagings if s.name == name]
    return staging


def test_the_chunks_sum_runs_in_parallel_only_when_it_is_long(tmp_path):
    """A weight gradient adds its chunks' tiles on one thread unless there are more than PARALLEL_SUM_MIN
    values to add: seed004's conv2 has 8 x 16 x 32 x 3 x 3 = 36,864, a 64 -> 128 channel 3 x 3 one 589,824."""
    short = _kernels(load_spec("seed004"), "conv2")["grad_weight"].lanes
    wide = _kernels(_spec(tmp_path, [{"name": "conv1", "out_channels": 128, "kernel": 3, "padding": 1}], (64, 8, 8)),
                    "conv1")["grad_weight"].lanes
    for lanes, values in ((short, 36_864), (wide, 589_824)):
        assert BATCH_CHUNKS * np.prod([int(extent) for extent in lanes.tile_shape]) == values
        assert [loop.parallel for loop in lanes.chunk_rows.outer] == [values > PARALLEL_SUM_MIN] + [False] * 2


def test_lane_last_copies_read_the_operand_row_by_row():
    """A copy with the lane axis last, whose operand's lanes lie 256 elements apart or more, is filled a
    run of each lane at a time (contiguous reads, the copy's few rows being written stay in L1), still
    stored in the copy's own order; a run whose first axis is longer than 8 (a map's row of 16), or a dense
    layer's weight, a matrix, in chunks of 8 of that axis; copies whose lanes lie close keep the copy's
    order."""
    conv2 = _kernels(load_spec("seed004"), "conv2")
    copy = _copy(conv2["grad_weight"], "grad_output_t")  # lanes 256 apart, rows of 16: in chunks of 8
    assert ([(loop.variable, loop.start, loop.stop) for loop in copy.loops], copy.target) == (
        [("i", "0", "16"), ("j_chunk", "0", "2"), ("c_out", "0", "32"), ("j", "8*j_chunk", "8*j_chunk + 8")],
        "i, j, c_out")
    weight = _copy(conv2["forward"], "weight_t")  # lanes 16 x 3 x 3 = 144 apart
    assert [loop.variable for loop in weight.loops] == ["c_in", "u", "v", "c_out"]
    conv3 = _kernels(load_spec("suite-wide"), "conv3")
    weight = _copy(conv3["forward"], "weight_t")  # lanes 128 x 3 x 3 apart: runs of 3 x 3 taps
    assert [loop.variable for loop in weight.loops] == ["c_in", "c_out", "u", "v"]
    assert weight.target == "(c_out) // 32, c_in, u, v, c_out % 32"  # stored in groups of 32 lanes (below)
    weight = _copy(conv3["grad_input"], "weight_t")  # lanes (input channels) 9 apart
    assert [loop.variable for loop in weight.loops] == ["c_out", "u", "v", "c_in"]
    copy = _copy(conv3["grad_weight"], "grad_output_t")  # lanes 64 apart
    assert [loop.variable for loop in copy.loops] == ["i", "j", "c_out"]
    weight = _copy(_kernels(load_spec("suite-mlp-head"), "fc1")["forward"], "weight_t")  # 256 x 1352
    assert [(loop.variable, loop.start, loop.stop, loop.step) for loop in weight.loops] == [
        ("k_chunk", "0", "169", 1), ("i", "0", "256", 1), ("k", "8*k_chunk", "8*k_chunk + 8", 1)]
    assert weight.target == "k, i"
    # 346,112 elements, copied once a call: in parallel over its chunks; a 32 x 16 x 3 x 3 weight's on one thread
    assert [loop.parallel for loop in weight.loops] == [True, False, False]
    assert not any(loop.parallel for loop in _copy(conv2["forward"], "weight_t").loops)


def test_long_copy_rows_read_their_count_from_the_operand():
    """A zero-padded copy's innermost loop over a whole row of at least RUNTIME_COUNT_MIN values runs to the
    operand's extent, read at run time (LLVM vectorizes it; a constant count it leaves scalar); shorter rows,
    lane-last copies (their rows stored strided) and loops over part of the rows keep their printed count. The
    count is the same number either way: the kernels' values are checked by the kernel tests of these specs."""
    conv1 = _kernels(load_spec("seed004"), "conv1")  # 32 x 32 maps
    stops = {(kernel, copy.name): [(loop.variable, loop.stop) for loop in copy.loops]
             for kernel in ("forward", "grad_input", "grad_weight") for copy in conv1[kernel].lanes.stagings}
    assert stops[("forward", "x_padded")] == [("a1", "3"), ("a2", "min(32, 16*part + 17)"), ("a3", "x.shape[3]")]
    assert stops[("grad_input", "grad_output_padded")][-1] == ("a3", "grad_output.shape[3]")
    assert stops[("grad_weight", "x_padded")] == [("a1", "3"), ("a2", "32"), ("a3", "x.shape[3]")]
    assert stops[("grad_weight", "grad_output_t")][-2:] == [("c_out", "16"), ("j", "8*j_chunk + 8")]
    assert stops[("forward", "weight_t")][-1] == ("c_out", "16")  # over the lanes
    conv2 = _kernels(load_spec("seed004"), "conv2")  # 16 x 16 maps: rows of 16, printed
    assert [loop.stop for loop in _copy(conv2["grad_weight"], "x_padded").loops] == ["16", "16", "16"]
    wide = _kernels(load_spec("suite-wide"), "conv3")  # 8 x 8 maps, the lanes' loop innermost: printed
    assert [loop.stop for loop in _copy(wide["grad_weight"], "grad_output_t").loops] == ["8", "8", "128"]


@pytest.mark.heavy
def test_a_weight_copied_in_parallel_gives_pytorchs_numbers(tmp_path_factory):
    """A dense layer of 256 x 256 weights (65,536: the least copied in parallel, PARALLEL_COPY_MIN) and
    one of 64 x 256 (on one thread): equal to PyTorch in float64 (batches of 1 and 5)."""
    pytest.importorskip("torch")
    from symcnn.codegen.backends.numba_cpu.stagings import PARALLEL_COPY_MIN

    spec = {"name": "parallel-copy", "input": [1, 16, 16], "loss": "softmax_cross_entropy", "layers": [
        {"type": "flatten"}, {"type": "dense", "name": "fc1", "out_features": 256}, {"type": "relu"},
        {"type": "dense", "name": "fc2", "out_features": 64}, {"type": "relu"},
        {"type": "dense", "name": "fc3", "out_features": 3}]}
    copies = {label: _copy(_kernels(spec_from_dict(spec), label)["forward"], "weight_t") for label in ("fc1", "fc2")}
    assert 256 * 256 == PARALLEL_COPY_MIN and copies["fc1"].loops[0].parallel and not copies["fc2"].loops[0].parallel
    net = network_for(spec, tmp_path_factory.mktemp("spec"))
    rng = np.random.default_rng(6)
    net.load_params(random_params(net, rng))
    for labels in (np.array([2]), np.array([0, 1, 2, 1, 0])):
        assert_float64_equals_pytorch(net, rng, labels)


#: A convolution whose weight is copied in runs of its taps (32 input channels: lanes 288 apart), a 1 x 1
#: convolution's and a dense layer's weights copied in chunks (the dense one's last chunk short: 300 features).
RUNS = {"name": "runs", "input": [264, 4, 4], "loss": "softmax_cross_entropy", "layers": [
    {"type": "conv2d", "name": "pw", "out_channels": 32, "kernel": 1}, {"type": "relu"},
    {"type": "conv2d", "name": "c1", "out_channels": 16, "kernel": 3, "padding": 1}, {"type": "relu"},
    {"type": "flatten"}, {"type": "dense", "name": "fc1", "out_features": 300}, {"type": "relu"},
    {"type": "dense", "name": "fc2", "out_features": 16}]}


def test_weights_are_copied_in_runs_and_chunks():
    """The copies of RUNS' weights: c1's in runs of its taps, pw's and fc2's in chunks of 8 rows."""
    kernels = {label: _kernels(spec_from_dict(RUNS), label)["forward"] for label in ("c1", "pw", "fc2")}
    assert [loop.variable for loop in _copy(kernels["c1"], "weight_t").loops] == ["c_in", "c_out", "u", "v"]
    assert [(loop.variable, loop.stop) for loop in _copy(kernels["pw"], "weight_t").loops] == [
        ("c_in_chunk", "33"), ("c_out", "32"), ("c_in", "8*c_in_chunk + 8"), ("u", "1"), ("v", "1")]
    assert [loop.stop for loop in _copy(kernels["fc2"], "weight_t").loops][-1] == "min(8*k_chunk + 8, 300)"


@pytest.mark.slow  # compiles RUNS' kernels (about 80 s on 2 cores); the copies' loops are checked above
def test_copies_in_runs_and_chunks_give_pytorchs_numbers(tmp_path_factory):
    """RUNS, its weights copied in runs and chunks, equals PyTorch in float64."""
    pytest.importorskip("torch")
    net = network_for(RUNS, tmp_path_factory.mktemp("runs"))
    rng = np.random.default_rng(5)
    net.load_params(random_params(net, rng))
    assert_float64_equals_pytorch(net, rng, np.array([3, 0, 15, 7, 1]))


def test_range_conditions_become_reads_of_the_padding():
    """The input gradient's conditions 0 <= k - u + 1 <= 15 are the bounds of dL/dY: its padded copy
    holds zeros beyond them, offset by one."""
    grad_input = _kernels(load_spec("seed004"), "conv2")["grad_input"].lanes
    assert grad_input.broadcasts[:3] == (("broadcast0", "grad_output_padded[c_out, k - u + 2, l + 2]"),
                                         ("broadcast1", "grad_output_padded[c_out, k - u + 2, l + 1]"),
                                         ("broadcast2", "grad_output_padded[c_out, k - u + 2, l]"))
    (padded,) = [s for s in grad_input.stagings if s.name == "grad_output_padded"]
    assert padded.shape == ("32", "18", "18") and padded.target == "a1, a2 + 1, a3 + 1"


def test_a_strided_input_gradient_runs_by_phase(tmp_path):
    spec = _spec(tmp_path, [{"name": "c", "out_channels": 8, "kernel": 3, "stride": 2, "padding": 1}], (2, 9, 9))
    kernels = _kernels(spec, "c")
    assert kernels["forward"].kind == "lanes"
    # its five output columns in one block: the window reads at constant columns
    assert kernels["forward"].lanes.broadcasts[:2] == (("broadcast0", "x_padded[c_in, 2*i + u, 0]"),
                                                       ("broadcast1", "x_padded[c_in, 2*i + u, 1]"))
    # divisibility by the stride: each parity of the rows and columns its own kernel, without a test
    # (symcnn/codegen/phases.py); two input channels are too few lanes, so each phase is vectorized over its
    # columns (symcnn/codegen/backends/numba_cpu/columns.py)
    grad_input = kernels["grad_input"]
    assert grad_input.kind == "phases" and [phase.kind for phase in grad_input.phases] == ["columns"] * 4
    assert not any(term.condition and "%" in term.condition for phase in grad_input.phases for term in phase.terms)


def test_short_lanes_leave_the_kernel_to_the_other_schedules(tmp_path):
    """Fewer than 8 output channels fill no vector of channels: the lanes schedule does not fit (the
    columns schedule, over the output's columns, takes the kernel: tests/codegen/test_columns.py)."""
    from symcnn.codegen import cost_model

    spec = _spec(tmp_path, [{"name": "c", "out_channels": 4, "kernel": 3, "padding": 1}], (2, 8, 8))
    with cost_model.recorded() as choices:
        forward = _kernels(spec, "c")["forward"]
    assert forward.kind != "lanes" and "lanes" not in {nest.schedule for nest in choices[0]}


def test_affine_range():
    i, u = sympy.symbols("i u", integer=True, nonnegative=True)
    assert affine_range(2 * i + u - 1, {i: (0, 7), u: (0, 2)}) == (-1, 15)
    assert affine_range(i - u + 1, {i: (0, 15), u: (0, 2)}) == (-1, 16)
    assert affine_range(i * u, {i: (0, 1), u: (0, 1)}) is None


def test_weight_gradients_do_not_depend_on_the_thread_count(monkeypatch):
    """The batch is summed in a fixed number of chunks (the convolutions), or in order for each block
    of features (the dense layer): the same sums with 1 or 2 threads, bit for bit (so that a resumed
    training run reproduces an uninterrupted one on any machine)."""
    monkeypatch.setenv("SYMCNN_ADAPTIVE_THREADS", "0")  # two threads even on a busy machine
    net = Network.from_spec("seed004", seed=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((13, 3, 32, 32)).astype(np.float32)
    assert_same_gradients_on_one_and_two_threads(net, x, rng.integers(0, 10, 13))


def test_training_skips_the_first_layers_input_gradient():
    net = Network.from_spec("seed004", seed=0)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, 4)
    loss, full = net.loss_and_grads(x, labels)
    net.profile = {}
    loss_again, params_only = net.loss_and_grads(x, labels, input_gradient=False)
    assert loss_again == loss and "input" not in params_only and "input" in full
    assert "conv1_grad_input" not in net.profile and "conv2_grad_input" in net.profile
    for name, gradient in params_only.items():
        assert np.array_equal(gradient, full[name]), name


@pytest.mark.parametrize("label", ["conv1", "conv2", "fc1"])
def test_lanes_kernels_print_their_values_from_the_formula(label):
    """Each product in the lane loop is the formula's term with its broadcast read hoisted out."""
    for kernel in _kernels(load_spec("seed004"), label).values():
        if kernel.kind == "lanes":
            names = {name for name, _ in kernel.lanes.broadcasts}
            for update in kernel.lanes.updates:
                element, _, value = update.partition(" = ")
                products = value.removeprefix(f"{element} + ")
                assert products.startswith("broadcast") and set(re.findall(r"broadcast\d+", products)) <= names
            assert not any("broadcast" in read for _, read in kernel.lanes.broadcasts)


@pytest.mark.slow  # compiles the spec twice, blocked and unblocked (about 2 minutes on 2 cores)
def test_register_blocking_changes_no_sum(tmp_path, monkeypatch):
    """Blocked and unrolled, every output element still adds the formula's terms in the formula's
    order: the same numbers bit for bit as with no blocking (odd sizes, so that blocks of 3 and 2
    and loops left whole all occur; a strided layer; a dense layer)."""
    from symcnn.codegen.backends.numba_cpu import lanes
    from tests.kernels_helpers import network_for

    layers = [{"type": "conv2d", "name": "c1", "out_channels": 8, "kernel": 3, "padding": 1},
              {"type": "relu"},
              {"type": "conv2d", "name": "c2", "out_channels": 16, "kernel": 2, "stride": 2},
              {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 9}]
    spec = {"name": "blocked", "input": [3, 6, 10], "loss": "softmax_cross_entropy", "layers": layers}
    blocked = network_for(spec, tmp_path, dtype="float32")
    for knob in ("UNROLL", "BLOCK", "OVER_BATCH_UNROLL", "OVER_BATCH_BLOCK"):
        monkeypatch.setattr(lanes, knob, 1)
    monkeypatch.setattr(lanes, "_block_limit", lambda lane_count: 1)
    monkeypatch.setattr(lanes, "register_tile", lambda *args, **kwargs: None)  # plain lane loops, no register tiles
    from symcnn.codegen.backends.numba_cpu import columns, product_blocks

    for knob in ("IMAGE_BLOCK", "BATCH_UNROLL", "WIDE_LANES"):
        monkeypatch.setattr(product_blocks, knob, 0 if knob == "WIDE_LANES" else 1)
    for knob in ("MAX_BLOCK", "MAX_UNROLL", "MAX_DEEP_UNROLL"):  # c1's 3 input channels may take the columns
        monkeypatch.setattr(columns, knob, 1)
    monkeypatch.setattr(columns, "register_tile", lambda *args, **kwargs: None)
    plain = network_for({**spec, "name": "plain"}, tmp_path, dtype="float32")
    def source(net, kernel):
        return inspect.getsource(net._functions[kernel].py_func)

    assert "c1_forward_block0(" in source(blocked, "c1_forward")  # register blocks, a function of their own
    assert "broadcast1" not in source(plain, "c1_forward") and "_block" not in source(plain, "c1_forward")
    plain.params = {name: value.copy() for name, value in blocked.params.items()}
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 3, 6, 10)).astype(np.float32)
    labels = rng.integers(0, 9, 5)
    loss, grads = blocked.loss_and_grads(x, labels)
    plain_loss, plain_grads = plain.loss_and_grads(x, labels)
    assert loss == plain_loss
    for name in grads:
        assert np.array_equal(grads[name], plain_grads[name]), name


def test_a_streamed_copy_is_stored_in_groups_of_the_register_blocks_lanes():
    """A register block runs over one group of lanes (32 here) for its whole reduction. Where the lanes
    make several groups, the streamed operand's copy holds each group's values as one contiguous run,
    ``[lane // 32, ..., lane % 32]``, and every block reads it there, at each of the group's 32 places;
    a copy of a single group (seed004's 32 output channels) keeps the lane-last layout."""
    conv3 = _kernels(load_spec("suite-wide"), "conv3")
    for kernel, name, shape, target in (
            ("forward", "weight_t", ("4", "128", "3", "3", "32"), "(c_out) // 32, c_in, u, v, c_out % 32"),
            ("grad_input", "weight_t", ("4", "128", "3", "3", "32"), "(c_in) // 32, c_out, u, v, c_in % 32"),
            ("grad_weight", "grad_output_t", ("4", "8", "8", "32"), "(c_out) // 32, i, j, c_out % 32")):
        copy = _copy(conv3[kernel], name)
        assert (copy.shape, copy.target) == (shape, target), kernel
        registers = conv3[kernel].lanes.registers
        for block in filter(None, (registers, registers.narrow)):
            # each streamed row a view of the group's copy (its last axis from 0), read at the lane's place in it
            views = {label: read for label, read in block.reads if label.startswith("streamed_row")}
            streamed = [read for label, read in block.reads if re.fullmatch(r"streamed\d+", label)]
            assert views and all(view.startswith(f"{name}[(group) // 32, ") and view.endswith(", 0:]")
                                 for view in views.values()), kernel
            assert all(read.split("[")[0] in views for read in streamed), kernel
            assert {int(read.split("[")[1].removesuffix("]")) for read in streamed} == set(range(32)), kernel
    one_group = _kernels(load_spec("seed004"), "conv2")["forward"]
    assert _copy(one_group, "weight_t").target == "c_in, u, v, c_out"
    assert all("[(group) // " not in read for _, read in one_group.lanes.registers.reads)


#: Copies in groups of lanes (two groups of 32): c1's forward weight and its weight gradient's copy of the
#: output gradient (64 output channels), c2's input gradient's weight (64 input channels).
GROUPS = {"name": "groups", "input": [3, 3, 3], "loss": "softmax_cross_entropy", "layers": [
    {"type": "conv2d", "name": "c1", "out_channels": 64, "kernel": 3, "padding": 1},
    {"type": "conv2d", "name": "c2", "out_channels": 8, "kernel": 3}, {"type": "flatten"},
    {"type": "dense", "name": "fc", "out_features": 3}]}


@pytest.mark.heavy
def test_copies_in_groups_of_lanes_give_pytorchs_numbers(tmp_path_factory):
    """GROUPS' three kernels whose register blocks read copies stored in groups of lanes equal PyTorch in
    float64. Each is called on its own, so that only it compiles (not the whole network's kernels)."""
    torch = pytest.importorskip("torch")
    spec = spec_from_dict(GROUPS)
    for label, kernel, name in (("c1", "forward", "weight_t"), ("c1", "grad_weight", "grad_output_t"),
                                ("c2", "grad_input", "weight_t")):
        assert _copy(_kernels(spec, label)[kernel], name).shape[0] == "2", (label, kernel)
    kernels = network_for(GROUPS, tmp_path_factory.mktemp("groups"))._functions
    rng = np.random.default_rng(7)
    x, weight1, bias1 = (rng.standard_normal(shape) for shape in ((2, 3, 3, 3), (64, 3, 3, 3), (64,)))
    out, grad_weight1 = np.empty((2, 64, 3, 3)), np.empty_like(weight1)
    grad_output1, weight2, grad_output2 = (rng.standard_normal(shape) for shape in ((2, 64, 3, 3), (8, 64, 3, 3),
                                                                                     (2, 8, 1, 1)))
    grad_input2 = np.empty((2, 64, 3, 3))
    kernels["c1_forward"](x, weight1, bias1, out)
    kernels["c1_grad_weight"](grad_output1, x, grad_weight1)
    kernels["c2_grad_input"](grad_output2, weight2, grad_input2)
    t = torch.from_numpy
    expected = {"forward": torch.nn.functional.conv2d(t(x), t(weight1), t(bias1), padding=1),
                "grad_weight": torch.nn.grad.conv2d_weight(t(x), weight1.shape, t(grad_output1), padding=1),
                "grad_input": torch.nn.grad.conv2d_input(grad_input2.shape, t(weight2), t(grad_output2))}
    for name, value in (("forward", out), ("grad_weight", grad_weight1), ("grad_input", grad_input2)):
        np.testing.assert_allclose(value, expected[name].numpy(), rtol=1e-12, atol=1e-12, err_msg=name)


#: An image's rows split in parts: strided, dilated and 1 x 1 strided windows.
PARTS = {"name": "parts", "input": [8, 12, 12], "loss": "softmax_cross_entropy", "layers": [
    {"type": "conv2d", "name": "c1", "out_channels": 8, "kernel": 3, "stride": 2, "padding": 1}, {"type": "relu"},
    {"type": "conv2d", "name": "c2", "out_channels": 8, "kernel": 3, "dilation": 2, "padding": 1},
    {"type": "conv2d", "name": "c3", "out_channels": 8, "kernel": 1, "stride": 2},
    {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 3}]}


def test_row_parts_copy_only_the_rows_they_read():
    """An image's rows split in two parts, one work item each: each item copies into its zero-padded
    copy only the input rows its part reads (about half of them); a 1 x 1 window reads its input in place."""
    spec = spec_from_dict(PARTS)
    for label, rows in (("c1", "range(max(0, 6*part - 1), min(12, 6*part + 6))"),
                        ("c2", "range(max(0, 2*part - 1), min(6, 2*part + 5))")):
        (padded,) = [s for s in _kernels(spec, label)["forward"].lanes.stagings if s.name == "x_padded"]
        assert f"range({padded.loops[1].start}, {padded.loops[1].stop})" == rows, label
    # c3's 1 x 1 window never leaves its input: no copy, the input read where it is
    c3 = _kernels(spec, "c3")["forward"].lanes
    assert [s.name for s in c3.stagings] == ["weight_t"]
    assert any(read.startswith("x[n, c_in, 2*i") for _, read in c3.registers.reads), c3.registers.reads


@pytest.mark.slow  # compiles PARTS' kernels (about 100 s on 2 cores); the parts' rows are checked above
def test_row_parts_give_pytorchs_numbers(tmp_path_factory):
    """Every loss and gradient of PARTS, the input's included, equals PyTorch's in float64."""
    pytest.importorskip("torch")
    net = network_for(PARTS, tmp_path_factory.mktemp("parts"))
    assert_float64_equals_pytorch(net, np.random.default_rng(5), np.array([0, 2, 1]))


#: Lanes kernels whose tiles take transposed blocks with lanes and rows past the last whole block (conv1's 24
#: channels and conv2's 16 by 20 columns: in float32 one block of 16 and 8 lanes and 4 rows more; in float64 blocks
#: of 8 and 4 rows more), stored through an epilogue (conv1's ReLU in its forward pass, relu1's mask in conv2's input
#: gradient), and a 6-channel convolution that keeps its own store.
TRANSPOSED = {"name": "transposed-stores", "input": [3, 20, 20], "loss": "softmax_cross_entropy", "layers": [
    {"type": "conv2d", "name": "conv1", "out_channels": 24, "kernel": 3, "padding": 1}, {"type": "relu"},
    {"type": "conv2d", "name": "conv2", "out_channels": 16, "kernel": 3, "padding": 1}, {"type": "relu"},
    {"type": "conv2d", "name": "conv3", "out_channels": 6, "kernel": 3, "padding": 1},
    {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 3}]}


def test_a_tile_is_stored_through_transposed_blocks_where_rows_and_lanes_fill_one():
    """Where a tile stores through an epilogue, the output's last axis is the tile's row and both hold 16 (a float32
    block on AVX-512) it is stored through transposed blocks: conv1's forward pass storing relu1, conv2's storing
    relu3, conv2's input gradient storing relu1's. The same kernels without an epilogue (a plain copy, which LLVM
    gathers 16 at a time), a 6-channel tile, a weight gradient's sum over the batch, a dense layer's input gradient
    (a tile row per image, the lane its output's last axis) and the phases of a strided input gradient (strided
    views of the output) are stored as before."""
    from symcnn.codegen.forward_fusion import forward_fused_kernels
    from symcnn.codegen.fusion import fused_kernels

    spec = spec_from_dict(TRANSPOSED)
    forward, backward = forward_fused_kernels(spec), fused_kernels(spec)
    fused = [forward["relu1"].kernel, forward["relu3"].kernel, backward["relu1"]]
    assert [kernel.name for kernel in fused] == [
        "conv1_with_relu1_forward", "conv2_with_relu3_forward", "conv2_with_relu1_grad_input"]
    assert all(kernel.lanes.transposed and kernel.lanes.epilogue for kernel in fused)
    assert ("symcnn.runtime.transpose", "transpose_block") in fused[0].imports
    kernels = {label: _kernels(spec, label) for label in ("conv1", "conv2", "conv3", "fc")}
    assert not any(kernels[label][kind].lanes.transposed
                   for label, kind in (("conv1", "forward"), ("conv2", "grad_input"), ("conv1", "grad_weight")))
    assert kernels["conv3"]["forward"].kind != "lanes" or not kernels["conv3"]["forward"].lanes.transposed
    assert not kernels["fc"]["grad_input"].lanes.transposed  # several images a tile (slots), the lane last
    strided = fused_kernels(spec_from_dict(STRIDED_AFTER_RELU))["relu1"]  # phases: 16 x 16 by 16 lanes, relu1's mask
    assert strided.name == "down_with_relu1_grad_input" and [phase.kind for phase in strided.phases] == ["lanes"] * 4
    assert not any(phase.lanes.transposed for phase in strided.phases)


#: A stride-2 convolution after a ReLU: its input gradient's phases (16 rows by 16 lanes each) store relu1's.
STRIDED_AFTER_RELU = {"name": "strided-after-relu", "input": [16, 32, 32], "layers": [
    {"type": "conv2d", "name": "stem", "out_channels": 16, "kernel": 3, "padding": 1}, {"type": "relu"},
    {"type": "conv2d", "name": "down", "out_channels": 32, "kernel": 3, "stride": 2, "padding": 1},
    {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 3}]}


@pytest.mark.heavy
@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-10), ("float32", 2e-4)])
def test_transposed_stores_give_pytorchs_numbers_with_their_remainders(tmp_path, dtype, tolerance):
    """TRANSPOSED equals PyTorch in float64 and in float32 (blocks of 8 and of 16 on AVX-512, the remainder loops
    included), and its float64 gradients do not depend on the thread count."""
    torch = pytest.importorskip("torch")
    from tests.kernels_helpers import torch_loss_and_grads

    net = network_for(TRANSPOSED, tmp_path, dtype=dtype)
    assert "transpose_block(" in inspect.getsource(net.kernel("conv1_with_relu1_forward").py_func)
    rng = np.random.default_rng(8)
    net.load_params({name: value.astype(dtype) for name, value in random_params(net, rng).items()})
    x = rng.standard_normal((3, *net.spec.input_shape)).astype(dtype)
    labels = np.array([0, 2, 1])
    loss, grads = net.loss_and_grads(x, labels)
    expected_loss, expected_logits, expected = torch_loss_and_grads(
        net.spec, net.params, x, labels, torch.float64 if dtype == "float64" else torch.float32)
    assert loss == pytest.approx(expected_loss, rel=tolerance)
    np.testing.assert_allclose(net.forward(x), expected_logits, rtol=tolerance, atol=tolerance)
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=tolerance, atol=tolerance * np.abs(value).max(), err_msg=key)
    if dtype == "float64":
        assert_same_gradients_on_one_and_two_threads(net, x, labels)
