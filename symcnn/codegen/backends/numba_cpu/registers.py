"""Register tiles: a lanes or columns kernel's block of the tile summed in local variables.

The lanes schedule (:mod:`~symcnn.codegen.backends.numba_cpu.lanes`) runs its reduction outside the
lane loop: every multiply-add loads its tile element from memory and stores it back. With the
reduction inside instead, one block of the tile (``block`` output columns by ``group`` lanes) stays in
local variables, ``acc{b}_{l}``, for the whole reduction, and is loaded and stored once::

    for j in range(0, 16, 2):                       # the tile's outer axis, in blocks
        for group in range(0, 32, 32):              # the lanes, in groups
            row0 = tile[j, group:]                  # each tile row of the block, a view
            acc0_0 = row0[0]                        # ... block x group values
            for c_in in range(16):                  # the reduction, its innermost loop unrolled
                for u in range(3):
                    streamed_row0 = weight_t[c_in, u, 0, group:]
                    broadcast0 = x_padded[c_in, i + u, j]
                    streamed0 = streamed_row0[0]
                    acc0_0 = acc0_0 + broadcast0*streamed0 + ...
            row0[0] = acc0_0                        # ...

The statements of one lane differ only in the lane (``row0[l]``, ``streamed_row0[l]``: the group's
rows read through views at constant indices, :func:`_row_view`, which numba compiles in about 40% less
time than ``tile[j, group + l]``'s index arithmetic): LLVM's SLP vectorizer packs them
into vector instructions, the accumulators into vector registers (numba leaves it off;
``numba.config.SLP_VECTORIZE``, set by the generated modules). It is the same sums in the same order
for every element (the formula's, as in the lanes schedule): the same numbers bit for bit.
Measured on a 16 -> 32 channel 5 x 5 forward pass (8 x 8 outputs, batch 64, one thread): 55 GFLOP/s
in the lanes schedule, 95-119 GFLOP/s in register blocks (:data:`ACCUMULATORS`; docs/performance.md).

A weight gradient (``dL/dW[c_out, c_in, u, v] = sum_{n, i, j} ...``, summed over the batch into one tile
per chunk of images) is blocked the same way for each image: its tile's outer axes ``c_in, u, v`` are
loops around the blocks, one of them in blocks (:func:`_blocked_axis`), and the image's rows and
columns are the reduction. Measured on suite-wide's conv3 (128 -> 128 channels, 3 x 3, 8 x 8 outputs,
batch 64, 2 threads, interleaved): 12.7 ms in the lanes schedule, 9.5 ms in blocks of 128; the same
numbers bit for bit.

A block streams its group's lanes of the streamed operand for the whole reduction. Where the lanes make
several groups and that operand is a copy (a weight with its lane axis last, an image's output gradient),
the copy is stored in groups (:func:`~symcnn.codegen.backends.numba_cpu.stagings.lanes_in_groups`), so that
what a block streams is one contiguous run, read as ``weight_t[(group) // 32, c_in, u, 0, 5]``: 1.3x faster
suite-wide train steps (128 channels, batch 64; docs/performance.md), the same numbers bit for bit.

The template makes each kernel's blocks a function of its own (``<kernel>_block0``, called once per
tile row): numba's parallel passes copy every statement of a ``prange`` body, which doubled the
kernels' compile time. The blocks come in two sizes, :func:`wide_accumulators` values for CPUs with
512-bit vectors and :data:`ACCUMULATORS` for the others, and the module calls the one its CPU suits
(:mod:`symcnn.runtime.vector_width`); the same sums either way. The narrow blocks take the group of lanes
whose step loads the fewest vectors per multiply-add (:func:`_loads_per_product`), which for a 3 x 3
forward pass or input gradient is 16 lanes in 4 columns, not 32 in 2 (suite-wide's conv3 forward pass on an
AVX2 CPU 1.31x faster; docs/performance.md, "Narrow register blocks in the group of fewest loads").

Example:
    >>> from symcnn.codegen.network import layer_kernels
    >>> from symcnn.spec import load_spec
    >>> forward = layer_kernels(load_spec("seed004").layers[3])[0]
    >>> reads = forward.lanes.registers.reads
    >>> reads[0], [read for read in reads if read[0].startswith("broadcast")][:2], forward.lanes.registers.updates[0]
    (('streamed_row0', 'weight_t[c_in, u, 0, group:]'), [('broadcast0', 'x_padded[c_in, i + u, j]'), ('broadcast1', 'x_padded[c_in, i + u, j + 1]')], 'acc0_0 = acc0_0 + broadcast0*streamed0 + broadcast1*streamed1 + broadcast2*streamed2')
"""  # noqa: E501  (a doctest's output, as printed)

from __future__ import annotations

import functools
import re
from dataclasses import replace
from typing import Optional

import sympy
from sympy import Symbol

from symcnn.codegen import cost_model
from symcnn.codegen.backends.numba_cpu.free_names import free_names
from symcnn.codegen.kernel_ir import Loop, Registers
from symcnn.printing.nodes import FloorDiv

__all__ = ["register_tile", "lane_group", "GROUP_LANES", "ACCUMULATORS", "WIDE_ACCUMULATORS", "WIDE_BLOCK_ROWS",
           "wide_accumulators", "BROADCAST"]

#: Lanes per group, the widest of these that divides the lanes (whole vectors of 8 float32 at least).
GROUP_LANES = (32, 16, 8)

#: Tile values in local variables (``block`` x ``group``) on CPUs with 256-bit vectors (AVX2): 8 vectors
#: of 8 float32, half of their 16 vector registers. Measured on the 5 x 5 forward pass above (one
#: thread): 64 values (4 x 16, 2 x 32) 95-102 GFLOP/s, 128 values (8 x 16, 4 x 32) 119.
ACCUMULATORS = 64

#: Tile values in local variables on CPUs with 512-bit vectors (AVX-512, which numba's LLVM would use at
#: 256 bits but the generated blocks ask for 512: ``wide_vectors`` in the template): 8 vectors of 16
#: float32, a quarter of their 32 registers; 8 independent sums keep both multiply-add units busy.
#: Measured on seed004's conv2 forward pass (batch 64, one thread): 94 GFLOP/s at 64 values in 256-bit
#: vectors, 96 at 64 in 512-bit ones, 128-145 at 128 in 512-bit ones; with AVX2 only (numba told
#: ``NUMBA_CPU_NAME=haswell``), 128 values run at 66 against 92 at 64 (16 vectors: they spill).
#: A generated kernel carries both blocks and calls the one its CPU suits. The least a wide block holds: a group
#: of 32 lanes takes more (:func:`wide_accumulators`).
WIDE_ACCUMULATORS = 128

#: Rows (of the tile's blocked axis) in a wide block at least. Each streamed vector of an update serves every row
#: of the block and each broadcast every vector of its row, so a group of 32 lanes (two 512-bit vectors a row) in
#: 4 rows loads 6 values for 8 multiply-adds of vectors where 8 rows load 10 for 16. Measured, kernel against
#: kernel (suite-vgg, suite-wide, suite-dilated; batch 64, 2 threads, interleaved; docs/performance.md, "Wide
#: register blocks of 8 rows"): the convolutions' kernels with groups of 32 lanes 1.09-1.33x faster in 8 rows
#: (256 values, 16 of the 32 registers), the same numbers. For groups of 16 lanes, 16 rows (256 values) against 8
#: changed nothing measurable (suite-residual's 16-channel blocks), so they keep 8, and groups of 8 lanes 16 rows
#: of half vectors. numba compiles a block in time that grows faster than its accumulators (docs/performance.md,
#: "Register blocks of 16 vectors"), so no block is larger than it needs to be.
WIDE_BLOCK_ROWS = 8


def wide_accumulators(group: int) -> int:
    """Tile values in local variables in a block for CPUs with 512-bit vectors, for a group of ``group`` lanes:
    :data:`WIDE_BLOCK_ROWS` rows of the group, at least :data:`WIDE_ACCUMULATORS` values.

    >>> wide_accumulators(32), wide_accumulators(16), wide_accumulators(8)
    (256, 128, 128)
    """
    return max(WIDE_ACCUMULATORS, WIDE_BLOCK_ROWS * group)


BROADCAST = "broadcast"
STREAMED = "streamed"
#: A streamed value's name (``streamed12``), not a streamed row view's (``streamed_row0``).
_STREAMED_VALUE = re.compile(rf"{STREAMED}\d+")
#: float32 values in a 256-bit vector (AVX2's), which the narrow blocks' loads are counted in.
NARROW_LANES = 8
#: A view of a row of the tile (``row0 = tile[j, group:]``) or of a streamed operand, read at constant indices.
ROW, STREAMED_ROW = "row", "streamed_row"
#: Where a row view's slice is printed: a symbol no formula holds, replaced by the slice's start.
_SLICE = Symbol("_slice_start_")
#: The first lane of the group the block's lanes loop is at (a multiple of the group's width).
GROUP_START = Symbol("group", integer=True, nonnegative=True)


def lane_group(lanes: int) -> Optional[int]:
    """The lanes of one group of the register blocks (:data:`GROUP_LANES`), or ``None`` when none divides
    ``lanes``.

    >>> lane_group(128), lane_group(48), lane_group(12)
    (32, 16, None)
    """
    return next((size for size in GROUP_LANES if lanes % size == 0), None)


def _block_size(extent: int, limit: int) -> int:
    """The largest block of at most ``limit`` that divides ``extent`` (the whole loop if it fits)."""
    return next(size for size in range(min(extent, limit), 0, -1) if extent % size == 0)


def _split(var, low: int, high: int, limit: int, printer) -> tuple[Optional[Loop], list]:
    """A loop over ``var`` in blocks: the loop stepping by the block (``None`` when one block covers
    it) and the block's values of ``var``, in order."""
    extent = high - low + 1
    size = _block_size(extent, limit)
    if size == extent:
        return None, [sympy.Integer(low + offset) for offset in range(size)]
    loop = Loop(printer(var), str(high + 1), False, str(low), size)
    return loop, [var + offset for offset in range(size)]


def _unrolled(reduction, unroll: int, printer, deep: bool = False) -> tuple[list[Loop], list[dict]]:
    """The loops of ``reduction`` (``(variable, low, high)``) with the innermost unrolled by up to
    ``unroll``, and the unrolled variables' values, one dict per product in the formula's order
    (``deep``: when the innermost loop is unrolled whole, the next one too, up to ``unroll`` products)."""
    loops = [Loop(printer(var), str(high + 1), False, str(low)) for var, low, high in reduction]
    unrolled: list[dict] = [{}]
    if reduction:
        unroll_var, low, high = reduction[-1]
        loop, unroll_values = _split(unroll_var, low, high, unroll, printer)
        loops[-1:] = [loop] if loop else []
        unrolled = [{unroll_var: value} for value in unroll_values]
        if deep and loop is None and len(reduction) > 1 and unroll // len(unroll_values) > 1:
            next_var, next_low, next_high = reduction[-2]
            next_loop, next_values = _split(next_var, next_low, next_high, unroll // len(unroll_values), printer)
            loops[-1:] = [next_loop] if next_loop else []
            unrolled = [{next_var: outer, unroll_var: inner} for outer in next_values for inner in unroll_values]
    return loops, unrolled


def register_tile(lowering, reduction, outer_tile, reads, lane: Symbol, tile_element, unroll: int,
                  lanes: int, packed: bool = False, copied: bool = False) -> Optional[Registers]:
    """The register-tiled loops of a kernel's tile (:class:`~symcnn.codegen.kernel_ir.Registers`)
    in blocks of :func:`wide_accumulators` values, with the same in blocks of :data:`ACCUMULATORS`
    as its ``narrow`` (when that differs), or ``None`` when its lanes are not a whole number of groups.
    ``reduction``: ``(variable, low, high)`` of the summed loops, the innermost unrolled by up to
    ``unroll``; ``outer_tile``: the tile's axes before the lane, ``(variable, extent)``: one of them in
    blocks (:func:`_blocked_axis`), the others plain loops around the blocks (a weight gradient's
    ``c_in, u, v``); ``reads``: the product's two factors in its order; ``packed``: the streamed one
    (its last index the lane) is of a copy stored in groups of :func:`lane_group` lanes
    (:func:`~symcnn.codegen.backends.numba_cpu.stagings.lanes_in_groups`), read at its group's index
    first and the lane's place in the group last; ``copied``: the streamed one is a copy the caller stores
    in groups of the returned blocks' lanes where they make several groups (``packed`` where they do).

    The narrow blocks take the group of :data:`GROUP_LANES` of fewest loads per multiply-add
    (:func:`_loads_per_product`), the widest of equals. Where that is narrower than the wide blocks' group
    and the streamed operand is a copy (stored in the wide blocks' groups), the narrow blocks here keep the
    wide group and the choice is a kernel for 256-bit vectors of its own (:mod:`symcnn.codegen.widths`):
    lowered again within :func:`symcnn.codegen.cost_model.narrow`, where this returns the narrow blocks
    alone, its copy in their groups, since a block streaming half of each group's run of a copy stored for
    the wide ones ran at a fraction of the gain (suite-wide's conv3 forward pass, 2 threads: 1.05x against
    1.43x; docs/performance.md)."""
    group = lane_group(lanes)
    if group is None or not outer_tile:
        return None
    code = functools.cache(lowering.code)  # each read recurs for every lane, block value and block size
    row_view = functools.cache(lambda read: _row_view(code, read, GROUP_START))  # and so does its view

    def blocks(width: int, accumulators: int) -> Registers:
        """The blocks in groups of ``width`` lanes, a copy's read in its groups of ``width``."""
        in_groups = packed or (copied and lanes > width)
        at = tuple(read.base[(FloorDiv(GROUP_START, width), *read.indices[:-1], lane - GROUP_START)]
                   if in_groups and read.has(lane) else read for read in reads)  # at lane group + l: l, its place
        return _blocks(lowering, code, row_view, reduction, outer_tile, at, lane, tile_element, unroll, lanes,
                       width, accumulators)

    widths = [width for width in GROUP_LANES if width <= group and lanes % width == 0] if not packed else [group]
    candidates = {width: blocks(width, ACCUMULATORS) for width in widths}  # the widest first
    fewest = min(candidates.values(), key=_loads_per_product)  # the first of equals: the widest
    if cost_model.narrowed():  # a kernel's variant for 256-bit vectors: its blocks alone
        return fewest
    wide = blocks(group, wide_accumulators(group))
    narrow = fewest
    if copied and fewest.group.step != group:  # the copy is stored for the wide blocks: a variant of its own
        cost_model.differs(f"register blocks of {fewest.group.step} lanes")
        narrow = candidates[group]
    arguments = tuple(sorted(set(wide.arguments) | set(narrow.arguments)))  # one call for either
    if narrow.updates == wide.updates:
        return replace(wide, arguments=arguments)
    return replace(wide, arguments=arguments, narrow=replace(narrow, arguments=arguments))


def _loads_per_product(registers: Registers) -> float:
    """The vector loads of one step of ``registers``' reduction per vector multiply-add, in 256-bit vectors
    (:data:`NARROW_LANES` float32): its streamed values in vectors, each broadcast value a load of its own.
    A 3 x 3 forward pass's step (one input channel, one kernel row) in blocks of 2 columns by 32 lanes loads
    12 weight vectors and 4 inputs for 24 multiply-adds (0.67), of 4 columns by 16 lanes 6 and 6 (0.5); a
    weight gradient's step in 2 input channels by 32 lanes loads 4 and 2 for 8, in 4 by 16 2 and 4 (0.75
    either way). AVX2's 16 registers hold 8 vectors of sums either way; what they are loaded from (a weight's
    slice of 147 KiB at 128 input channels and 32 lanes, L2's) is what the fewer loads save."""
    streamed = sum(1 for name, _ in registers.reads if _STREAMED_VALUE.fullmatch(name))
    broadcast = sum(1 for name, _ in registers.reads if name.startswith(BROADCAST))
    products = sum(update.count(" + ") for update in registers.updates)  # 'acc = acc + p0 + p1': one per product
    return (streamed + NARROW_LANES * broadcast) / products


def _row_view(code, read, group_start: Symbol) -> Optional[tuple[str, int]]:
    """``read`` as a view of its last axis from the group's first lane, and its constant index in it:
    ``tile[j + 1, group + 5]`` -> ``("tile[j + 1, group:]", 5)``; a packed copy's ``w[(group) // 32, c_in, 5]`` ->
    ``("w[(group) // 32, c_in, 0:]", 5)``; ``None`` when the last index is not the group's start or 0 plus a
    constant. numba compiles ``row0[5]`` in fewer statements than ``tile[j + 1, group + 5]``, and a block's
    compile time grows with its statements times its accumulators (docs/performance.md, "Register blocks of 16
    vectors": about 40% less, the same machine code's speed).

    >>> from sympy import IndexedBase, symbols
    >>> j = symbols("j", integer=True)
    >>> _row_view(str, IndexedBase("tile")[j + 1, GROUP_START + 5], GROUP_START)
    ('tile[j + 1, group:]', 5)
    """
    last = read.indices[-1]
    constant = last.xreplace({group_start: sympy.S.Zero})
    start = last - constant  # (group + 5) - 5 is group as built; expanded only where it is not
    start = start if start in (group_start, 0) else sympy.expand(start)
    if not constant.is_Integer or start not in (group_start, 0) or constant < 0:
        return None
    view = code(read.base[(*read.indices[:-1], _SLICE)]).replace(str(_SLICE), f"{code(start)}:")
    return view, int(constant)


def _update(accumulator: Symbol, products: list[list[Symbol]]) -> str:
    """The sum's step once per product, in the formula's order, ``((acc + p0) + p1) + ...``, each product of named
    values (a register block reads every operand into a local first): what ``lowering.statement`` prints for
    ``Assign(acc, OrderedSum(acc, *products))``, each product's factors in SymPy's order as its printer puts
    them, without the printer (in a profile, 15% of the 18 specs' lowering: 51,712 updates in their blocks).

    >>> a, b, c = sympy.symbols("acc0_0 broadcast0 streamed0")
    >>> _update(a, [[c, b], [c]])
    'acc0_0 = acc0_0 + broadcast0*streamed0 + streamed0'
    """
    printed = ("*".join(str(factor) for factor in sorted(factors, key=sympy.default_sort_key)) for factors in products)
    return " + ".join((f"{accumulator} = {accumulator}", *printed))


def _blocked_axis(outer_tile, block: int) -> int:
    """Which of the tile's outer axes is taken in blocks of up to ``block``: the one whose block (the largest
    divisor of its extent up to ``block``) is largest, the last of equals. A weight gradient's 3 x 3
    kernel over 128 input channels: ``c_in`` in fours (each streamed value serves four blocks' worth of
    sums), where ``v`` would give threes; its 1 x 1 kernel: ``c_in`` (``v`` would give ones).

    >>> _blocked_axis([("c_in", 128), ("u", 3), ("v", 3)], 4), _blocked_axis([("c_in", 3), ("u", 3), ("v", 3)], 4)
    (0, 2)
    """
    sizes = [_block_size(extent, block) for _, extent in outer_tile]
    return max(range(len(sizes)), key=lambda position: (sizes[position], position))


def _blocks(lowering, code, row_view, reduction, outer_tile, reads, lane: Symbol, tile_element,
            unroll: int, lanes: int, group: int, accumulators: int) -> Registers:
    """:func:`register_tile`'s loops in blocks of ``accumulators`` values, ``group`` lanes wide (``code``
    prints an expression, ``row_view`` finds a read's :func:`_row_view`)."""
    printer = lowering.printer.doprint
    block = accumulators // group
    blocked = _blocked_axis(outer_tile, block)
    block_var, extent = outer_tile[blocked]
    block_loop, block_values = _split(block_var, 0, extent - 1, block, printer)
    plain = tuple(Loop(printer(var), str(size)) for position, (var, size) in enumerate(outer_tile)
                  if position != blocked)  # the other outer axes: loops around the blocks
    if any(read.has(lane) and read.has(block_var) for read in reads):
        # a streamed read that moves with the blocked axis (the lanes an image's columns, the block its
        # rows) is a vector of its own for each block value, and unrolling the reduction as well
        # multiplies them: 8 x 16 x 4 = 512 scalar reads in suite-residual's 1 x 1 strided input
        # gradient, which LLVM's SLP vectorizer took 22 s to pack. One product per update keeps the
        # block's independent sums with a quarter of the reads.
        unroll = 1
    loops, unrolled = _unrolled(reduction, unroll, printer)
    group_start = GROUP_START
    names: dict[str, Symbol] = {}  # printed broadcast read -> its name: a window read shared by neighbours once
    streamed: dict[str, Symbol] = {}  # printed read at a lane -> its name: read once, for every value of the block
    row_views: dict[str, str] = {}  # printed view of a tile row -> its name, for the loads and stores
    streamed_views: dict[str, str] = {}  # printed view of a streamed row -> its name, read before the streamed values
    as_they_are: dict[str, None] = {}  # reads printed as they are, not through a view: what may name an argument

    def through_view(read, views: dict, prefix: str) -> str:
        """``read`` printed as its row view's element (the view named in ``views``), or as it is."""
        found = row_view(read)
        if found is None:
            printed = code(read)
            as_they_are[printed] = None
            return printed
        view, index = found
        return f"{views.setdefault(view, f'{prefix}{len(views)}')}[{index}]"

    loads, updates, stores = [], [], []
    for b, block_value in enumerate(block_values):
        for offset in range(group):
            at_lane = {block_var: block_value, lane: group_start + offset}
            accumulator = Symbol(f"acc{b}_{offset}")
            element = through_view(tile_element.xreplace(at_lane), row_views, ROW)
            loads.append(f"{accumulator} = {element}")
            stores.append(f"{element} = {accumulator}")
            products = []
            for point in unrolled:
                factors = []
                for read in reads:
                    read = read.xreplace({**point, **at_lane})
                    if read.has(group_start):
                        printed = through_view(read, streamed_views, STREAMED_ROW)
                        factors.append(streamed.setdefault(printed, Symbol(f"{STREAMED}{len(streamed)}")))
                    else:
                        factors.append(names.setdefault(code(read), Symbol(f"{BROADCAST}{len(names)}")))
                products.append(factors)
            # the sum's step once per product, in the formula's order: ((acc + p0) + p1) + ...
            updates.append(_update(accumulator, products))
    # consecutive blocks share their group's streamed values or their block's broadcast ones, whichever the
    # loops keep fixed between them: the group's loop outside when its streamed values are the more (a
    # weight's group of lanes over the whole reduction, 147 KiB in suite-wide's conv3, against 15 KiB of
    # input rows); measured there, one thread, interleaved: forward 1.22x, input gradient 1.14x faster.
    # (One group: either order is the same loops.)
    blocks = (block_loop,) if block_loop else ()
    outer, inner = (plain, blocks) if lanes > group and len(streamed) > len(names) else ((*plain, *blocks), ())
    group_loop = Loop(printer(group_start), str(lanes), False, "0", group)
    # the streamed rows' views, then the broadcast values, then the streamed values read through them. The views
    # first: numba's slicing branches, and a value loaded before a branch is in another
    # basic block than the multiply-adds that use it, where LLVM's instruction selection cannot fold the load
    # into them: a broadcast then takes a scalar load and a shuffle (``vbroadcastss %xmm``) instead of a load
    # (``vbroadcastss (mem)``, or ``{1to16}`` in the multiply-add). Measured on LeNet-5's conv2 input gradient
    # (6 <- 16 channels, 5 x 5), batch 64, 2 threads: 0.55 -> 0.40 ms; the same numbers bit for bit.
    named = (*((name, view) for view, name in streamed_views.items()),
             *((str(name), read) for read, name in names.items()),
             *((str(name), read) for read, name in streamed.items()))
    views = tuple((name, view) for view, name in row_views.items())
    every_loop = (*outer, group_loop, *inner, *loops)
    bound = ({loop.variable for loop in every_loop} | {name for name, _ in named} | {name for name, _ in views}
             | {statement.split(" = ", 1)[0] for statement in loads})
    # the updates read only accumulators and named reads, all bound, and the loads and stores accumulators and
    # elements of bound views or reads as they are: parsing them all (the longest lines, and the most) was most of
    # this function's time
    used = [*as_they_are, *(read for _, read in named), *(view for _, view in views),
            *(limit for loop in every_loop for limit in (loop.start, loop.stop))]
    return Registers(outer=outer, group=group_loop, loads=tuple(loads), reduction=tuple(loops), reads=named,
                     updates=tuple(updates), stores=tuple(stores), arguments=free_names(used, bound), inner=inner,
                     views=views)
