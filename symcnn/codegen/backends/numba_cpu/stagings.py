"""The kernel-internal copies of the lanes and columns schedules' operands (:class:`Staging`).

- a *padded* copy of a window's operand (:func:`padded_read`), zero beyond the operand, so that the
  loops read zeros where the formula's conditions would test; a kernel whose work items are parts of an
  image's rows copies only the rows its part reads (:func:`part_window`); a window that never leaves
  the operand is read in place, unless its channels' rows would crowd into one of L1's sets
  (:func:`crowded`): a copy then holds them a row further apart;
- a copy with the *lane axis last* (:func:`lane_last`), so that the innermost loop is contiguous.

Each returns the read of the copy that replaces the formula's read; the copy only moves values.

Example:
    >>> from sympy import Symbol
    >>> i, u = Symbol("i", integer=True), Symbol("u", integer=True)
    >>> affine_range(2*i + u - 1, {i: (0, 15), u: (0, 2)})
    (-1, 31)
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

import sympy
from sympy import Expr, Indexed, IndexedBase, Symbol

from symcnn.codegen.kernel_ir import Loop, Staging
from symcnn.printing.nodes import FloorDiv

__all__ = ["affine_range", "copy_loop_order", "crowded", "crowding", "in_bounds", "lane_last", "lanes_in_groups",
           "named_array", "padded_read", "part_window", "runtime_count", "spread_rows"]


def affine_range(expr: Expr, ranges: dict) -> Optional[tuple[int, int]]:
    """The least and greatest value of an affine integer ``expr`` over the box ``ranges``."""
    expr = sympy.expand(expr)
    if not expr.free_symbols <= set(ranges):
        return None
    if expr.free_symbols and sympy.Poly(expr, *expr.free_symbols).total_degree() > 1:
        return None
    if not expr.subs({symbol: 0 for symbol in expr.free_symbols}).is_Integer:
        return None
    if not all(expr.coeff(symbol).is_Integer for symbol in expr.free_symbols):
        return None
    low, high = _extremes(expr, ranges)
    return int(low), int(high)


def _extremes(expr: Expr, ranges: dict) -> tuple[Expr, Expr]:
    """The least and greatest value of the expanded affine ``expr`` (integer coefficients) over the box
    ``ranges``, whose ends may be expressions (``last >= first``): each term at the end its sign picks."""
    low = high = expr.subs({symbol: 0 for symbol in expr.free_symbols})
    for symbol in expr.free_symbols:
        coefficient = expr.coeff(symbol)
        first, last = ranges[symbol]
        low += coefficient * (first if coefficient >= 0 else last)
        high += coefficient * (last if coefficient >= 0 else first)
    return low, high


def in_bounds(read: Indexed, shape, ranges: dict, image) -> bool:
    """Every index of ``read`` but the image's stays inside ``shape`` over the box ``ranges`` (a
    phase's read whose bounds hold everywhere: :mod:`symcnn.codegen.phases` dropped them)."""
    spans = [(affine_range(index, ranges), size) for index, size in zip(read.indices, shape) if index != image]
    return all(span is not None and size.is_Integer and 0 <= span[0] and span[1] <= size - 1 for span, size in spans)


def named_array(lowering, name: str) -> IndexedBase:
    """An array of the kernel's own, printed by ``name``."""
    base = IndexedBase(name)
    lowering.printer.array_names[base] = name
    return base


def plain_read(read: Indexed) -> bool:
    """Every index of ``read`` a loop variable or a constant: no window, read as it is.

    >>> from sympy import IndexedBase, symbols
    >>> n, c, i, u = symbols("n c i u", integer=True)
    >>> plain_read(IndexedBase("x")[n, c, i]), plain_read(IndexedBase("x")[n, c, i + u])
    (True, False)
    """
    return all(index.is_Symbol or index.is_Integer for index in read.indices)


def padded_read(lowering, read: Indexed, shape, image, ranges, stagings, always: bool = False,
                part_rows: Optional[dict] = None, spread: bool = False) -> Optional[Expr]:
    """The read from a zero-padded per-image copy when its indices are affine (or ``always``: a copy
    as wide as ``ranges`` reach, zeros beyond the operand); else ``read``. ``part_rows``
    (:func:`~symcnn.codegen.backends.numba_cpu.lanes._part_rows`): each work item computes only a part
    of the rows, so it copies only the operand's rows that part reads (the rest of its copy is never
    read). A window that stays inside the operand over ``ranges`` (a 1 x 1 or unpadded convolution's
    input) is read where it is: its copy would hold the same values at the same places, and copying
    them cost 6% of a 1 x 1 convolution's forward pass (32 -> 64 channels, 32 x 32, batch 64).

    ``spread``: the kernel reads the operand's channels' rows one after another, again and again (the
    columns schedule's streamed rows). Where they would crowd into one of L1's sets (:func:`crowded`),
    the copy gets rows past the operand's (:func:`spread_rows`, never read), and a window inside the
    operand is copied too: suite-separable's pw1 forward pass (32 -> 64 channels, 32 x 32 maps 4 KiB
    apart, batch 64, 2 threads) 6.76 -> 3.25 ms with a copy of 33 rows a channel (docs/performance.md)."""
    in_place = (not always and plain_read(read)) or (image in read.indices and in_bounds(read, shape, ranges, image))
    if in_place and not (spread and image in read.indices and _crowded_in_place(read, shape, image)):
        return read
    name = f"{lowering.names[read.base]}_padded"
    base = named_array(lowering, name)
    if image not in read.indices:
        return None  # an operand without a batch axis read through a window: not a case we have
    extents, offsets, loops, target, source, kept = [], [], [], [], [], []
    for axis, (index, size) in enumerate(zip(read.indices, shape)):
        if index == image:
            source.append(image)
            continue
        span = affine_range(index, ranges)
        if span is None or not size.is_Integer:
            return None
        low, high = min(span[0], 0), max(span[1], int(size) - 1)
        variable = Symbol(f"a{axis}", integer=True, nonnegative=True)
        extents.append(high - low + 1)
        offsets.append(-low)
        window = part_window(index, ranges, part_rows or {})
        if window is None:
            whole = Loop(str(variable), str(size))
            last = axis == len(shape) - 1  # the innermost loop: its count read at run time where the row is long
            loops.append(runtime_count(whole, lowering.names[read.base], axis) if last else whole)
        else:
            printer = lowering.printer.doprint
            loops.append(Loop(str(variable), printer(sympy.Min(size, window[1] + 1, evaluate=False)), False,
                              printer(sympy.Max(0, window[0], evaluate=False))))
        target.append(variable - low)
        source.append(variable)
        kept.append((index, int(size)))
    zeroed = any(offset != 0 or extent != size for offset, extent, (_, size) in zip(offsets, extents, kept))
    if spread:
        extents = spread_rows(extents)
    stagings.append(Staging(name, tuple(str(extent) for extent in extents), tuple(loops),
                            ", ".join(lowering.code(t) for t in target), lowering.code(read.base[tuple(source)]),
                            per_image=True, zeroed=zeroed))
    return base[tuple(index + offset for (index, _), offset in zip(kept, offsets))]


#: L1 data cache: addresses a multiple of ``L1_WAY_BYTES`` apart share one of its sets, of ``L1_WAYS`` lines of
#: ``LINE_BYTES`` (32 KiB of 8 ways on the x86 CPUs of the last decade; 48 KiB of 12 ways has the same way size).
L1_WAY_BYTES = 4096
L1_WAYS = 8
LINE_BYTES = 64
#: The element size layouts are planned for: float32's (a float64 kernel's rows lie twice as far apart,
#: starting in at most as many sets).
ELEMENT_BYTES = 4
#: Rows of an axis that all start in one set (a multiple of ``L1_WAY_BYTES`` apart), more than this many times
#: its ways, crowd each other out of L1. Measured (suite-separable's pw1 forward block, 32 rows of 128 bytes,
#: batch 64, 2 threads, reading in place from inputs whose planes lie 4096 to 8192 bytes apart): 6.0-6.7 ms
#: where they all start in one set (4096 and 8192 bytes; 4 times its ways), 3.6 in two sets (6144), 2.9-3.1 in
#: four or more. Rows of 64 bytes 1 KiB apart (16 x 16 maps, four sets) were not: their copies gained nothing
#: (pw2, 64 and 128 rows) and made a small input gradient half again as slow (suite-pointwise's conv4).
CROWDED = 2.0


def crowding(extents) -> float:
    """How crowded L1's sets get when a kernel reads one row of each value of an axis of an array of
    ``extents`` (C order, float32), the worst axis: its extent over the lines its rows can take, the ways
    of the sets they start in.

    >>> crowding([32, 32, 32]), crowding([32, 33, 32]), crowding([64, 16, 16]), crowding([32, 34, 34])
    (4.0, 0.12890625, 2.0, 0.06640625)
    """
    return max((extent / (_sets(extents[axis + 1:]) * L1_WAYS) for axis, extent in enumerate(extents[:-1])),
               default=0.0)


def _sets(inner) -> int:
    """How many of L1's sets the rows of an axis start in, an array of ``inner`` extents apart."""
    stride = math.prod(inner) * ELEMENT_BYTES
    return min(L1_WAY_BYTES // LINE_BYTES, L1_WAY_BYTES // math.gcd(stride, L1_WAY_BYTES))


def crowded(extents) -> bool:
    """An axis of an array of ``extents`` (C order, float32) whose rows all start in one of L1's sets, more
    than ``CROWDED`` times its ways of them: a 32 x 32 map's rows in 32 channels, 4 KiB apart.

    >>> crowded([32, 32, 32]), crowded([16, 32, 32]), crowded([32, 33, 32]), crowded([128, 16, 16])
    (True, False, False, False)
    """
    return any(_sets(extents[axis + 1:]) == 1 and extent > CROWDED * L1_WAYS
               for axis, extent in enumerate(extents[:-1]))


def spread_rows(extents: list) -> list:
    """``extents`` (a copy's, C order) with rows added past the second-to-last axis's last, as few as
    leave the copy least crowded (:func:`crowding`), where it is :func:`crowded`; else ``extents``.

    >>> spread_rows([32, 32, 32]), spread_rows([64, 64, 64]), spread_rows([32, 34, 34])
    ([32, 33, 32], [64, 65, 64], [32, 34, 34])
    """
    if len(extents) < 3 or not crowded(extents):
        return list(extents)
    *outer, rows, last = extents
    # a line of float32 more: every residue of the rows' stride that matters is among these
    grown = [[*outer, rows + extra, last] for extra in range(LINE_BYTES // ELEMENT_BYTES)]
    return min(grown, key=crowding)


def _crowded_in_place(read: Indexed, shape, image) -> bool:
    """The operand of ``read``, read in place, is :func:`crowded` and a copy of spread rows would not be."""
    extents = [size for index, size in zip(read.indices, shape) if index != image]
    if not all(sympy.sympify(size).is_Integer for size in extents):
        return False
    extents = [int(size) for size in extents]
    return crowded(extents) and not crowded(spread_rows(extents))


#: A zero-padded copy's innermost loop over a whole row of at least this many elements has its trip count read from
#: the operand (:func:`runtime_count`). Measured (a padded per-image copy, float32, batch 64, 2 threads, numba 0.68
#: on LLVM 22, Zen 4, the generated modules' LLVM options; constant count's time over runtime count's): 0.37 at 4
#: columns, 0.65 at 7, 1.03 at 8, 0.76 at 14, 0.73 at 16, 0.80 at 17, 1.95 at 20, 0.90 at 24, 2.47 at 28, 1.86-1.98
#: at 32, 1.72 at 56, 2.35 at 64, 0.99 at 112. LLVM unrolls a short constant loop whole and packs it into vectors
#: (SLP); a longer one it leaves scalar, where a runtime count gets it vectorized with alias checks.
RUNTIME_COUNT_MIN = 28


def runtime_count(loop: Loop, array: str, axis: int) -> Loop:
    """``loop``, the innermost loop of a zero-padded copy over the whole last axis ``axis`` of the operand
    ``array``, its trip count read from the array (the same number: the caller checks every shape) where that
    count is at least ``RUNTIME_COUNT_MIN``, as the lane loops' (``lanes = ...`` in a generated kernel); else
    ``loop`` as it is. Measured on suite-dilated's conv3 (32 channels, 32 x 32, batch 64, 2 threads): its padded
    copy of 32 x 24 rows per work item 0.58 -> 0.33 ms for the batch. Only where the copy's row is contiguous in
    the copy too: a lane-last copy's rows, stored a lane's width apart, went either way (a weight gradient's
    copy of dL/dY 1.66 -> 1.02 ms alone; stored in groups of 32 lanes, suite-pointwise's conv2 weight gradient
    4.4 -> 7.2 ms in a step: LLVM then scatters).

    >>> runtime_count(Loop("a3", "32"), "x", 3).stop, runtime_count(Loop("a3", "16"), "x", 3).stop
    ('x.shape[3]', '16')
    """
    if not loop.stop.isdigit() or int(loop.stop) < RUNTIME_COUNT_MIN:
        return loop
    return replace(loop, stop=f"{array}.shape[{axis}]")


def part_window(index: Expr, ranges: dict, part_rows: dict) -> Optional[tuple[Expr, Expr]]:
    """The least and greatest value of the affine ``index`` (integer coefficients: :func:`affine_range`
    holds) when the rows of ``part_rows`` take their part's range, or ``None`` when it reads none of them.

    >>> i, u, part = (Symbol(name) for name in ("i", "u", "part"))
    >>> part_window(2*i + u - 1, {i: (0, 15), u: (0, 2)}, {i: (8*part, 8*part + 7)})
    (16*part - 1, 16*part + 15)
    """
    if not index.free_symbols & set(part_rows):
        return None
    return _extremes(sympy.expand(index), {**ranges, **part_rows})


def lane_last(lowering, read: Indexed, shape, lane, image, stagings) -> Expr:
    """The streamed read from a copy with the lane axis last (and the image's batch axis dropped);
    ``read`` itself when the lane axis is already its last."""
    if read.indices[-1] == lane:
        return read
    name = f"{lowering.names[read.base]}_t"
    base = named_array(lowering, name)
    order = [index for index in read.indices if index not in (lane, image)] + [lane]
    sizes = dict(zip(read.indices, shape))
    position = list(read.indices).index(lane)
    stride = sympy.Mul(*shape[position + 1:])  # the operand's elements from one lane to the next
    trailing = [(index, sizes[index]) for index in read.indices[position + 1:] if index != image]
    loops = tuple(Loop(lowering.printer.doprint(index), lowering.code(sizes[index])) if not isinstance(index, tuple)
                  else _chunk_loop(lowering.printer.doprint(index[1]), int(sizes[index[1]]), index[0])
                  for index in copy_loop_order(order, trailing, stride))
    per_image = image in read.indices
    if not per_image and all(sympy.sympify(sizes[index]).is_Integer for index in order) and math.prod(
            int(sizes[index]) for index in order) >= PARALLEL_COPY_MIN:
        loops = (replace(loops[0], parallel=True), *loops[1:])  # a large copy made once a call: shared
    stagings.append(Staging(name, tuple(lowering.code(sizes[index]) for index in order), loops,
                            ", ".join(lowering.printer.doprint(index) for index in order), lowering.code(read),
                            per_image=per_image, zeroed=False))
    return base[tuple(order)]


def lanes_in_groups(lowering, staging: Staging, read: Indexed, group: int) -> Staging:
    """``staging``, a lane-last copy (:func:`lane_last`, whose ``read`` it returned), stored instead in
    groups of ``group`` lanes: its element ``[..., lane]`` at ``[lane // group, ..., lane % group]``, the
    same values. A register block (:mod:`~symcnn.codegen.backends.numba_cpu.registers`) runs over one group
    of lanes for the whole reduction; in groups, what it streams is one contiguous run instead of a
    ``group``-wide column of the copy. Measured on suite-wide's conv3 forward pass (128 -> 128 channels,
    3 x 3, 8 x 8, batch 64, one thread, interleaved): 1.23-1.39x faster, the same numbers bit for bit.

    >>> from types import SimpleNamespace
    >>> from sympy import IndexedBase, symbols
    >>> from symcnn.printing.numba import NumbaPrinter
    >>> c_in, u, c_out = symbols("c_in u c_out", integer=True, nonnegative=True)
    >>> copy = Staging("weight_t", ("16", "3", "64"), (), "c_in, u, c_out", "weight[c_out, c_in, u]", False, False)
    >>> lowering = SimpleNamespace(printer=NumbaPrinter({}))
    >>> grouped = lanes_in_groups(lowering, copy, IndexedBase("weight_t")[c_in, u, c_out], 32)
    >>> grouped.shape, grouped.target
    (('2', '16', '3', '32'), '(c_out) // 32, c_in, u, c_out % 32')
    """
    *others, lane = read.indices
    printer = lowering.printer.doprint
    lanes = int(staging.shape[-1])
    return replace(staging, shape=(str(lanes // group), *staging.shape[:-1], str(group)),
                   target=", ".join([printer(FloorDiv(lane, group)), *(printer(index) for index in others),
                                     printer(sympy.Mod(lane, group))]))


#: From one lane to the next the operand holds this many elements or more (1 KiB of float32): read in the
#: copy's order, each step of the innermost loop touches a new cache line, in few of L1's sets.
LANE_STRIDE_MIN = 256
#: A copy of an operand without a batch axis (a weight), made once a call before the parallel loop, is made in
#: parallel over its outermost loop when it holds at least this many elements: below it the parallel copy saves
#: a few microseconds a call, less than the parallel loop costs to compile (about 0.3 s a kernel; docs/performance.md,
#: "A bias gradient from the weight gradient's copy").
PARALLEL_COPY_MIN = 2 ** 16
#: Each lane's run of contiguous elements read at a time: at least this many (32 bytes of float32).
RUN_MIN = 8
#: A run that would leave no outer axis (a matrix) is read in chunks of this many elements.
CHUNK = 8


def copy_loop_order(order: list, trailing: list, stride) -> list:
    """The loops of a lane-last copy, outermost first: the copy's own ``order`` (its lane last), or, when
    the operand holds ``LANE_STRIDE_MIN`` elements or more from one lane to the next (``stride``), the
    lane loop just outside the shortest run of the operand's ``trailing`` axes (those after the lane,
    ``(index, extent)``) that holds ``RUN_MIN`` elements, each lane's run then read contiguously while
    the copy's few rows being written stay in L1. A run whose first axis is longer than ``CHUNK`` (a row
    of a 16 x 16 map or larger), or that would leave no outer axis (a dense layer's weight, a matrix), is
    taken in chunks of ``CHUNK`` elements of that axis, ``("chunk", index)`` (the loop over the chunks) and
    ``("in chunk", index)`` (over one chunk's elements) in the list: each lane's chunk is then one 32-byte
    read, and the copy's rows being written are a chunk long.

    Measured with numba (float32; ms; copy's order against this one): a 64 x 32 x 32 slice of 32 images
    9.64 / 1.90; 128 x 8 x 8 (lanes 64 apart) 0.10, left in the copy's order (row by row 0.18); a
    forward convolution's 128 x 128 x 3 x 3 weight, lanes 1152 apart, 0.176 / 0.053 (runs of 3 x 3);
    a 256 x 1352 dense weight 0.255 / 0.087, 4096 x 2048 92.5 / 29.3 (chunks of 8); the input gradient's
    copy of a weight, lanes 9 apart, left as it is (0.046 against 0.042). A weight gradient's copy of dL/dY,
    its rows whole against in chunks of 8 (batch 64, 2 threads, numba 0.68 on LLVM 22, Zen 4, the generated
    modules' options; ms): 16 x 32 x 32 0.449 / 0.187, 32 x 32 x 32 1.724 / 0.855, 64 x 32 x 32 stored in
    groups of 32 lanes 2.026 / 1.385, 32 x 16 x 16 0.147 / 0.129, 64 x 16 x 16 grouped 0.157 / 0.161.

    >>> from sympy import Integer, Symbol
    >>> i, j, c, k, o = (Symbol(name, integer=True) for name in "ijcko")
    >>> copy_loop_order([i, j, c], [(i, Integer(32)), (j, Integer(32))], Integer(1024))
    [i, ('chunk', j), c, ('in chunk', j)]
    >>> copy_loop_order([i, j, c], [(i, Integer(32)), (j, Integer(8))], Integer(256))
    [i, c, j]
    >>> copy_loop_order([i, j, c], [(i, Integer(8)), (j, Integer(8))], Integer(64))
    [i, j, c]
    >>> copy_loop_order([k, o], [(k, Integer(1352))], Integer(1352))
    [('chunk', k), o, ('in chunk', k)]
    """
    if not (sympy.sympify(stride).is_Integer and stride >= LANE_STRIDE_MIN
            and all(sympy.sympify(extent).is_Integer for _, extent in trailing)):
        return list(order)
    run, elements = [], 1
    for index, extent in reversed(trailing):
        run.insert(0, index)
        elements *= int(extent)
        if elements >= RUN_MIN:
            break
    outer = [index for index in order[:-1] if index not in run]
    if elements < RUN_MIN or order[-len(run) - 1:-1] != run:  # no such run, or not the copy's own last axes
        return list(order)
    first = run[0]
    if outer and int(dict(trailing)[first]) <= CHUNK:
        return outer + [order[-1]] + run
    return [*outer, ("chunk", first), order[-1], ("in chunk", first), *run[1:]]


def _chunk_loop(variable: str, extent: int, role: str) -> Loop:
    """A loop of :func:`copy_loop_order`'s chunks of ``variable`` (``role``: ``"chunk"``, over the chunks' numbers,
    a loop of step 1 that may be parallel: numba's ``prange`` takes no step; or ``"in chunk"``, over one chunk's
    elements)."""
    if role == "chunk":
        return Loop(f"{variable}_chunk", str(-(-extent // CHUNK)))
    start = f"{CHUNK}*{variable}_chunk"
    stop = f"{start} + {CHUNK}" if extent % CHUNK == 0 else f"min({start} + {CHUNK}, {extent})"
    return Loop(variable, stop, False, start)
