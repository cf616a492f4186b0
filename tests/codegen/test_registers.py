"""Register tiles (symcnn/codegen/backends/numba_cpu/registers.py): which kernels take them, that they
change no number, and that LLVM turns their per-lane statements into vector instructions."""

from __future__ import annotations

import ast
import contextlib
import inspect
import re

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from symcnn.codegen.backends.numba_cpu import columns, lanes
from symcnn.codegen.backends.numba_cpu.registers import (ACCUMULATORS, WIDE_ACCUMULATORS, _loads_per_product,
                                                         wide_accumulators)
from symcnn.codegen.network import layer_kernels
from symcnn.runtime.vector_width import WIDE_VECTORS
from symcnn.spec import load_spec
from tests.kernels_helpers import network_for

#: names a block's factors take: broadcast and streamed values, sorted by the printer as strings (10 before 9)
_FACTOR_NAMES = ["broadcast0", "broadcast9", "broadcast10", "streamed0", "streamed2", "streamed11", "row0"]


def _kernels(spec_name: str, label: str) -> dict:
    layer = next(layer for layer in load_spec(spec_name).layers if layer.label == label)
    return {kernel.name.removeprefix(f"{label}_"): kernel for kernel in layer_kernels(layer)}


def test_per_image_kernels_and_weight_gradients_take_register_tiles():
    conv2 = _kernels("seed004", "conv2")  # lanes: 32 output channels, 16 input channels
    forward, grad_input = conv2["forward"].lanes.registers, conv2["grad_input"].lanes.registers
    # wide blocks of 8 rows: 8 x 32 values for a group of 32 lanes, at least WIDE_ACCUMULATORS (8 x 16)
    assert forward.group.step == 32 and len(forward.loads) == len(forward.stores) == wide_accumulators(32) == 256
    assert grad_input.group.step == 16 and len(grad_input.updates) == wide_accumulators(16) == WIDE_ACCUMULATORS
    assert len(forward.narrow.updates) == len(grad_input.narrow.loads) == ACCUMULATORS
    assert forward.arguments == forward.narrow.arguments == ("i", "tile", "weight_t", "x_padded")
    # the weight gradient: each image summed into its whole tile, c_in in blocks (8 x 32 values; 2 x 32),
    # u and v plain loops around them, the image's rows and columns the reduction
    grad_weight = conv2["grad_weight"].lanes.registers
    assert [(loop.variable, loop.stop, loop.step) for loop in grad_weight.outer] == [
        ("u", "3", 1), ("v", "3", 1), ("c_in", "16", 8)]
    assert grad_weight.narrow.outer[-1].step == 2 and len(grad_weight.narrow.loads) == ACCUMULATORS
    assert [loop.variable for loop in grad_weight.reduction] == ["i", "j"]
    assert grad_weight.arguments == ("grad_output_t", "tile", "x_padded")
    assert conv2["grad_weight"].lanes.over_batch and len(grad_weight.loads) == wide_accumulators(32)
    lenet = _kernels("suite-lenet", "conv2")  # columns: 14 columns in a vector of 16, 6 input channels
    assert lenet["grad_input"].kind == "columns" and lenet["grad_input"].lanes.registers.group.step == 16


def test_a_streamed_read_that_moves_with_the_block_takes_one_product_per_update():
    """resnet-mini's strided 1 x 1 shortcut: its input gradient's lanes are an image's columns and its
    blocks are rows, so every block row streams vectors of its own. Unrolled four ways those were 512
    scalar reads, which LLVM's SLP vectorizer took 22 s to pack; one product per update leaves one read
    per accumulator. Where the streamed read stays put (seed004's weights), the reduction is unrolled."""
    shortcut = _kernels("resnet-mini", "b2_shortcut")["grad_input"]
    assert shortcut.kind == "phases"
    registers = shortcut.phases[0].lanes.registers
    for block in (registers, registers.narrow):
        assert [loop.variable for loop in (*block.outer, *block.inner)] == ["q_k"]
        assert [loop.variable for loop in block.reduction] == ["c_out"]
        streamed = [name for name, _ in block.reads if re.fullmatch(r"streamed\d+", name)]
        assert len(streamed) == len(block.updates) and all(update.count("*") == 1 for update in block.updates)
    forward = _kernels("seed004", "conv2")["forward"].lanes.registers
    assert all(update.count("*") == 3 for update in forward.updates)  # the 3 x 3 window's row, unrolled
    assert len([name for name, _ in forward.reads if re.fullmatch(r"streamed\d+", name)]) == 3 * forward.group.step


def test_the_groups_loop_runs_outside_the_blocks_where_their_streamed_values_are_the_more():
    """Consecutive blocks share what the loops keep fixed between them: suite-wide's conv2 forward (128
    output channels, 16 x 16 outputs) streams 32 lanes of its weight over the whole reduction (3 x 32 values a
    step against 10 input values), so its group's loop runs outside the blocks of columns; mobilenet-mini's
    1 x 1 input gradient in columns broadcasts more weights a step than it streams input columns, and seed004's
    conv2 forward has a single group of lanes (either order the same loops), so their blocks stay outside."""
    def counts(block):
        streamed = sum(bool(re.fullmatch(r"streamed\d+", name)) for name, _ in block.reads)
        return streamed, sum(name.startswith("broadcast") for name, _ in block.reads)

    forward = _kernels("suite-wide", "conv2")["forward"].lanes.registers
    for block in (forward, forward.narrow):
        streamed, broadcast = counts(block)
        assert streamed > broadcast and block.outer == () and [loop.variable for loop in block.inner] == ["j"]
    columns = _kernels("mobilenet-mini", "pw2")["grad_input"]
    assert columns.kind == "columns"
    for block in (columns.lanes.registers, columns.lanes.registers.narrow):
        streamed, broadcast = counts(block)
        assert streamed <= broadcast and block.inner == () and block.outer[-1].variable == "c_in"
    one_group = _kernels("seed004", "conv2")["forward"].lanes.registers
    assert one_group.inner == () and one_group.outer[-1].variable == "j"


def test_narrow_blocks_take_the_group_of_fewest_loads_and_their_copy_is_stored_in_it():
    """256-bit vectors hold 64 sums in 8 of AVX2's 16 registers. suite-wide's conv3 forward pass (128 -> 128
    channels, 3 x 3, 8 x 8) loads 12 weight vectors and 4 inputs for 24 multiply-adds a step in blocks of 2
    columns by 32 lanes, 6 and 6 in 4 columns by 16: its variant for 256-bit vectors takes groups of 16 and
    stores its weight's copy in groups of 16, where the kernel for 512-bit vectors keeps 32 (the copy, made
    once a call, serves one of them). Its weight gradient loads as many either way (4 + 2 or 2 + 4 for 8):
    the widest group, one kernel with blocks of both sizes."""
    conv3 = _kernels("suite-wide", "conv3")
    forward = conv3["forward"]
    wide, narrow = forward.lanes.registers, forward.narrow.lanes.registers
    assert (wide.group.step, narrow.group.step, narrow.narrow) == (32, 16, None)
    assert wide.narrow.group.step == 32  # the wide kernel's own narrow blocks, never called where the variant is
    assert [loop.step for loop in narrow.inner] == [4] and len(narrow.loads) == ACCUMULATORS
    assert ("streamed_row0", "weight_t[(group) // 16, c_in, u, 0, 0:]") in narrow.reads

    def copy_shape(kernel):
        return next(staging.shape for staging in kernel.lanes.stagings if staging.name == "weight_t")

    assert copy_shape(forward) == ("4", "128", "3", "3", "32") and copy_shape(forward.narrow)[::4] == ("8", "16")
    grad_weight = conv3["grad_weight"]
    assert grad_weight.narrow is None and grad_weight.lanes.registers.narrow.group.step == 32
    assert _loads_per_product(wide.narrow) == pytest.approx(16 / 24) and _loads_per_product(narrow) == 0.5


def test_every_update_reads_named_values_only():
    """Each update adds products of named values (read once per step), in the formula's order, into
    its own accumulator; every accumulator is loaded and stored once."""
    wide = _kernels("seed004", "conv1")["forward"].lanes.registers
    for registers in (wide, wide.narrow):
        names = {name for name, _ in registers.reads}
        for index, update in enumerate(registers.updates):
            target, value = update.split(" = ", 1)
            assert re.fullmatch(r"acc\d+_\d+", target) and value.startswith(f"{target} + ")
            assert set(re.findall(r"(?:broadcast|streamed)\d+", value)) <= names
            # through a view of its tile row, at a constant index: row0 = tile[j, group:]; acc0_5 = row0[5]
            assert re.fullmatch(rf"{target} = row\d+\[\d+\]", registers.loads[index])
            assert registers.stores[index] == f"{registers.loads[index].split(' = ')[1]} = {target}"
        assert registers.views and all(re.fullmatch(r"tile\[.*, group:\]", view) for _, view in registers.views)


def test_a_block_function_takes_the_names_its_code_reads():
    """The block is a function of its own: its arguments are every name its statements read that they
    do not bind, whichever the block size (one call serves both)."""
    registers = _kernels("suite-lenet", "conv2")["grad_input"].lanes.registers
    for blocks in (registers, registers.narrow):
        code = "\n".join([*(f"{name} = {view}" for name, view in blocks.views), *blocks.loads,
                          *(f"{name} = {read}" for name, read in blocks.reads), *blocks.updates, *blocks.stores])
        read = {node.id for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Name)}
        loops = {loop.variable for loop in (*blocks.outer, blocks.group, *blocks.inner, *blocks.reduction)}
        assigned = {statement.split(" = ", 1)[0] for statement in (*blocks.loads, *blocks.updates)} | {
            name for name, _ in blocks.views}
        assert read - loops - assigned - {name for name, _ in blocks.reads} <= set(registers.arguments)
        assert "tile" in registers.arguments and not set(registers.arguments) & (loops | assigned)


def test_a_blocks_streamed_rows_are_sliced_before_any_value_is_read():
    """numba's slicing branches, and a value loaded before a branch is in another basic block than the
    multiply-adds, where LLVM cannot fold the load into them: so each block slices its streamed rows first. Lanes
    blocks (seed004's conv2) and columns ones (LeNet-5's conv2 input gradient), in both sizes."""
    for registers in (_kernels("seed004", "conv2")["forward"].lanes.registers,
                      _kernels("suite-lenet", "conv2")["grad_input"].lanes.registers):
        for blocks in (registers, registers.narrow):
            names = [name for name, _ in blocks.reads]
            views = [position for position, name in enumerate(names) if name.startswith("streamed_row")]
            assert views and views == list(range(len(views))) and len(views) < len(names), names[:6]


@pytest.mark.slow  # compiles a small spec twice (about a minute on 2 cores)
def test_register_tiles_change_no_number(tmp_path, monkeypatch):
    """With and without register tiles, every output and gradient is the same bit for bit: lanes
    convolutions (8 output channels: one group of 8; 7 and 15 rows; 64: wide blocks of 5 rows of 32 lanes),
    columns ones (3 channels), the weight gradients (3 x 3, 2 x 2 and 1 x 1 kernels); 64 output channels: the
    forward pass's variant for 256-bit vectors, in groups of 16 lanes (its weight's copy too)."""
    layers = [{"type": "conv2d", "name": "c1", "out_channels": 8, "kernel": 3, "padding": 1},
              {"type": "relu"},
              {"type": "conv2d", "name": "c2", "out_channels": 3, "kernel": 3, "padding": 1},
              {"type": "conv2d", "name": "c3", "out_channels": 64, "kernel": 2, "padding": 0},
              {"type": "conv2d", "name": "c4", "out_channels": 8, "kernel": 1},  # a weight gradient in 2 sizes
              {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 5}]
    spec = {"name": "tiled", "input": [3, 7, 16], "loss": "softmax_cross_entropy", "layers": layers}
    tiled = network_for(spec, tmp_path, dtype="float32")
    for module in (lanes, columns):
        monkeypatch.setattr(module, "register_tile", lambda *args, **kwargs: None)
    plain = network_for({**spec, "name": "untiled"}, tmp_path, dtype="float32")
    assert _calls_block(tiled, "c1_forward") and not _calls_block(plain, "c1_forward")
    assert _calls_block(tiled, "c2_forward")  # columns
    assert _calls_block(tiled, "c3_grad_input")
    module = inspect.getsource(inspect.getmodule(tiled._functions["c3_forward"].py_func))
    assert "in blocks of 160 local variables" in module  # 5 of the 15 columns x 32 lanes: a wide block of 8 rows
    for weight_gradient in ("c1_grad_weight", "c3_grad_weight", "c4_grad_weight"):
        assert _calls_block(tiled, weight_gradient)
        assert not _calls_block(plain, weight_gradient)
    assert "c4_grad_weight_block0_narrow" in tiled._functions["c4_grad_weight"].py_func.__globals__
    plain.params = {name: value.copy() for name, value in tiled.params.items()}
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 3, 7, 16)).astype(np.float32)
    labels = rng.integers(0, 5, 3)
    logits, (loss, grads) = tiled.forward(x, training=False), tiled.loss_and_grads(x, labels)
    _assert_same(plain, x, labels, logits, loss, grads)
    with contextlib.ExitStack() as stack:  # the blocks for 256-bit vectors, whatever this CPU has
        for kernel in ("c1_forward", "c2_forward", "c3_grad_input", "c4_grad_weight"):
            tiled._functions[kernel] = stack.enter_context(_narrow_blocks(tiled._functions[kernel]))
        # c3's forward pass for 256-bit vectors is a kernel of its own (blocks of 16 lanes, its copy in 16s)
        tiled._functions["c3_forward"] = tiled._functions["c3_forward"].py_func.__globals__["c3_forward_narrow"]
        _assert_same(tiled, x, labels, logits, loss, grads)


def _assert_same(net, x, labels, logits, loss, grads) -> None:
    assert np.array_equal(net.forward(x, training=False), logits)
    other_loss, other_grads = net.loss_and_grads(x, labels)
    assert other_loss == loss
    for name in grads:
        assert np.array_equal(other_grads[name], grads[name]), name


@contextlib.contextmanager
def _narrow_blocks(kernel):
    """``kernel`` compiled again (on its first call, within the block) with its module's names of the
    register blocks bound to those for 256-bit vectors: numba reads a called function's global name when it
    compiles the caller."""
    module = kernel.py_func.__globals__
    names = [name.removesuffix("_narrow") for name in module if name.endswith("_narrow")]
    chosen = {name: module[name] for name in names}
    module.update({name: module[f"{name}_narrow"] for name in names})
    try:
        yield _recompiled(kernel)
    finally:
        module.update(chosen)


def _recompiled(function):
    """A numba function compiled again, on its next call, with its options but numba's cache."""
    options = {key: value for key, value in function.targetoptions.items() if key not in ("cache", "nopython")}
    return numba.njit(**options)(function.py_func)


def _source(net, kernel: str) -> str:
    return inspect.getsource(net._functions[kernel].py_func)


def _calls_block(net, kernel: str) -> bool:
    """Whether the kernel the network runs calls its first register block (``c1_forward_narrow_block0(``,
    ``c3_grad_input_block0_wide(``: a kernel scheduled for each vector width names its variant)."""
    return re.search(rf"\b{kernel}(_wide|_narrow)?_block0(_wide|_narrow)?\(", _source(net, kernel)) is not None


@pytest.mark.heavy
def test_register_tiles_compile_to_vector_multiply_adds(tmp_path):
    """The per-lane statements become packed instructions (numba's SLP vectorizer, switched on by the
    generated modules), no scalar multiply-add left: without SLP each lane is a scalar ``vfmadd...ss``;
    and on a CPU with AVX-512, 512-bit ones (``wide_vectors``), where numba's LLVM would use 256 bits."""
    spec = {"name": "vectorized", "input": [8, 6, 8], "loss": "softmax_cross_entropy",
            "layers": [{"type": "conv2d", "name": "c1", "out_channels": 16, "kernel": 3, "padding": 1},
                       {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]}
    net = network_for(spec, tmp_path, dtype="float32")
    module = net._functions["c1_forward"].py_func.__globals__
    forward = (np.zeros(shape, np.float32) for shape in ((8, 16), (8, 3, 3, 16), (8, 8, 10)))
    weight_gradient = (np.zeros(shape, np.float32) for shape in ((6, 8, 16), (8, 3, 3, 16), (8, 8, 10)))
    for kernel, arguments in (("c1_forward", (1, *forward)), ("c1_grad_weight", tuple(weight_gradient))):
        for width in ("wide", "narrow"):
            _assert_packed(_recompiled(module[f"{kernel}_block0_{width}"]), arguments, width)


@pytest.mark.heavy
def test_a_blocks_broadcast_values_are_loaded_not_shuffled(tmp_path):
    """A block's broadcast values reach its multiply-adds as loads (``vbroadcastss (mem)``, or ``{1to16}`` in the
    multiply-add), not as a scalar load and a shuffle (``vbroadcastss %xmm``): LeNet-5's conv2 input gradient
    (columns, 16 -> 6 channels, 5 x 5), whose 30 weights a step feed one multiply-add each, so that the
    shuffles were its limit (1.4x slower). Checked where it was measured, on a CPU with AVX-512."""
    if not WIDE_VECTORS:
        pytest.skip("measured and checked on AVX-512 CPUs")
    spec = {"name": "broadcasts", "input": [6, 14, 14], "loss": "softmax_cross_entropy",
            "layers": [{"type": "conv2d", "name": "c0", "out_channels": 6, "kernel": 1},
                       {"type": "conv2d", "name": "c1", "out_channels": 16, "kernel": 5},
                       {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]}
    net = network_for(spec, tmp_path, dtype="float32")
    kernel = net._functions["c1_grad_input"]
    module = kernel.py_func.__globals__
    blocks = [name for name in module if re.fullmatch(r"c1_grad_input_(wide|narrow)_block0", name)]
    assert len(blocks) == 2, blocks  # the columns schedule, in both sizes
    # compiled here, not loaded from numba's cache, so that the block it calls is compiled for its argument types
    _recompiled(kernel)(*(np.zeros(shape, np.float32) for shape in ((2, 16, 10, 10), (16, 6, 5, 5), (2, 6, 14, 14))))
    (signature,) = {signature for name in blocks for signature in module[name].signatures}  # the one called
    for name in blocks:
        block = _recompiled(module[name])
        block.compile(signature)  # numba's cache keeps no assembly
        assembly = "\n".join(block.inspect_asm().values())
        assert re.search(r"\bvfmadd\w*ps\s", assembly), name
        assert not re.search(r"\bvbroadcastss\s+%xmm", assembly), name


def _assert_packed(block, arguments, width) -> None:
    """``block``'s multiply-adds are packed (512-bit ones on an AVX-512 CPU)."""
    block(*arguments)  # numba's cache keeps no assembly: compiled here
    assembly = "\n".join(block.inspect_asm().values())
    packed = re.findall(r"\bv(?:fmadd|fmul|mul|add)\w*ps\s[^\n]*", assembly)
    scalar = re.findall(r"\bvfmadd\w*ss\s", assembly)
    assert packed and not scalar, (width, len(packed), len(scalar))
    if WIDE_VECTORS:
        assert all("zmm" in instruction for instruction in packed if "fmadd" in instruction), width


@given(products=st.lists(st.lists(st.sampled_from(_FACTOR_NAMES), min_size=1, max_size=3), min_size=1, max_size=4))
def test_a_blocks_update_is_what_the_printer_prints_for_its_sum(products):
    """A register block's update is joined from its named factors (no printer: most of the blocks' lowering time);
    it is the statement SymPy's printer makes of the same ordered sum, factors sorted as the printer sorts them."""
    from sympy import Mul, Symbol

    from symcnn.codegen.backends.numba_cpu.registers import _update
    from symcnn.codegen.rewrites import for_kernels
    from symcnn.printing.nodes import Assign, OrderedSum
    from symcnn.printing.numba import NumbaPrinter

    accumulator = Symbol("acc1_12")
    factors = [[Symbol(name) for name in names] for names in products]
    value = OrderedSum(accumulator, *(Mul(*names, evaluate=False) for names in factors))
    assert _update(accumulator, factors) == NumbaPrinter({}).doprint(for_kernels(Assign(accumulator, value)))
