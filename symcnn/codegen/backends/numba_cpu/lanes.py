"""The lanes schedule: a product term ``broadcast * streamed`` lowered for SIMD loops.

A convolution's forward pass ``Y[n, c_out, i, j] += W[c_out, c_in, u, v] * X[n, c_in, i + u - 1, ...]``
has an output axis, ``c_out``, that indexes only ``W``: for fixed ``(c_in, u, v, i, j)`` the X value
is one number, multiplied into a whole row of W. The lanes schedule makes that row the innermost
loop, contiguous in memory, so that the compiler can turn it into vector instructions:

- the *streamed* operand (all its indices plain loop variables) gets a copy with the lane axis last;
- the *broadcast* operand, when its indices are affine (a window read), gets a zero-padded copy, so
  that the range and padding conditions of the formula become reads of zeros, never tests;
- the accumulator (``tile``) keeps the lane axis last: one output row of an image, or, when the term
  sums over the batch (weight gradients), the whole output, one per chunk of images, summed at the
  end (a dense layer's, too large for that, in blocks of its lane axis, each taking every image);
- register blocking: each lane loop updates several tile elements (neighbouring output columns) by
  several products each (the innermost reduction loop unrolled), so that a tile element loaded
  takes several multiply-adds and a streamed value loaded serves several elements.

It is a loop interchange and a change of layout of the same sums: every value is printed from the
formula (:class:`~symcnn.printing.numba.NumbaPrinter`), the copies only move it. :func:`lanes_schedule`
returns ``None`` for a kernel it does not fit (other terms, a divisibility condition that
:mod:`symcnn.codegen.phases` left, ...), which then keeps its gather or accumulate schedule; a strided
input gradient comes here as its phases, each a plain correlation.

Example:
    >>> from symcnn.codegen.network import layer_kernels
    >>> from symcnn.spec import load_spec
    >>> forward = layer_kernels(load_spec("seed004").layers[3])[0]
    >>> forward.kind, forward.lanes.updates[0]
    ('lanes', 'tile[j, c_out] = tile[j, c_out] + broadcast0*weight_t[c_in, u, 0, c_out] + broadcast1*weight_t[c_in, u, 1, c_out] + broadcast2*weight_t[c_in, u, 2, c_out]')
"""  # noqa: E501  (a doctest's output, as printed)

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import sympy
from sympy import Indexed, Sum, Symbol

from symcnn.symbolic.adjoint import GatherTerm
from symcnn.codegen.epilogue import epilogue_at
from symcnn.codegen.cost_model import LoopNest, vector_nest
from symcnn.codegen.kernel_ir import ChunkRows, Lanes, Loop, TransposedStore
from symcnn.codegen.backends.numba_cpu.product_blocks import batch_unrolled, blocked_by_images, row_block
from symcnn.codegen.backends.numba_cpu.registers import BROADCAST, _split, _unrolled, lane_group, register_tile
from symcnn.codegen.backends.numba_cpu.stagings import (in_bounds, lane_last, lanes_in_groups, named_array, padded_read,
                                                         plain_read)
from symcnn.printing.nodes import FloorDiv, OrderedSum

__all__ = ["lanes_schedule"]

#: A lane loop shorter than this does not fill a vector register (8 float32 in AVX2); its length
#: must be a multiple of it (a whole number of vectors: a dense layer's 10 outputs make a better
#: dot product, its 8,192 features the lanes).
MIN_LANES = 8

#: Weight gradients sum the batch in this many chunks, in parallel; a constant, so that the sums
#: (and a resumed training run) do not depend on the number of threads.
BATCH_CHUNKS = 8

#: The chunks' tiles are summed in a parallel loop only when there are more than this many values to add
#: (``BATCH_CHUNKS`` times a tile's elements). Below it a parallel region costs more than it shares: on
#: ``seed004``'s weight gradients (3,456 and 36,864 values) the sum on one thread was as fast at batch 64
#: and 3.5-5 us faster at batch 1, with identical results, and numba compiled each kernel 2-3 s faster
#: (a parallel loop is a function of its own, compiled and linked three times: docs/performance.md).
PARALLEL_SUM_MIN = 2 ** 16

#: Register blocking (:func:`_register_blocks`): up to ``UNROLL`` values of the innermost reduction
#: loop summed per update, and up to ``BLOCK`` tile elements updated per lane loop (:func:`_block_limit`). A weight
#: gradient's tile (a whole weight, ``over_batch``) has a short inner axis (the kernel's width) and a long
#: reduction (an image's pixels): it is unrolled deeper and blocked by up to ``OVER_BATCH_BLOCK``
#: (measured on seed004's conv2: 8 x 3 about 1.5x faster than 8 x 1; see docs/performance.md).
UNROLL = 4
BLOCK = 4
OVER_BATCH_UNROLL = 8
OVER_BATCH_BLOCK = 4

#: A per-image kernel's rows are split in this many parallel parts (:func:`_row_parts`).
ROW_PARTS = 2

#: A lane-blocked weight gradient's tile (:func:`_lane_block`) holds about this many elements
#: (20 KiB of float32: it stays in L1 while every image is added into it).
LANE_BLOCK_ELEMENTS = 5120


def _is_bound_of(condition, reads: list[Indexed]) -> bool:
    """``condition`` is ``0 <= e`` or ``e <= size - 1`` for an index ``e`` of one of ``reads``:
    reading a zero-padded copy of that operand then implements it."""
    if not isinstance(condition, (sympy.LessThan, sympy.StrictLessThan)):
        return False
    for read, shape in reads:
        for index, size in zip(read.indices, shape):
            bounds = (sympy.Le(0, index, evaluate=False), sympy.Le(index, size - 1, evaluate=False),
                      sympy.Lt(index, size, evaluate=False))
            if any(sympy.expand(condition.lhs - condition.rhs - (b.lhs - b.rhs)) == 0  # affine: expand decides
                   and type(condition) is type(b) for b in bounds):
                return True
    return False


def lanes_schedule(lowering, output_name: str, indices, shape, batch, terms: list[GatherTerm],
                   tensors) -> Optional[dict]:
    """The :class:`~symcnn.codegen.kernel_ir.Kernel` fields of the lanes schedule, or ``None`` when it does
    not fit. ``tensors`` are the formula's tensors (for shapes and padding)."""
    products = [term for term in terms if term.limits]
    constants = [term for term in terms if not term.limits]
    if len(products) != 1 or len(constants) > 1:
        return None
    product = products[0]
    factors = sympy.Mul.make_args(product.body)
    shapes = {tensor.base: tensor.shape for tensor in tensors}
    if len(factors) != 2 or not all(isinstance(f, Indexed) and f.base in shapes for f in factors):
        return None  # not two reads of the formula's tensors (a precomputed array has no tensor)
    if any(c.has(sympy.Mod) for c in product.conditions):
        return None  # a strided input gradient: most of a lane would be skipped
    padded = {tensor.base for tensor in tensors if tensor.zero_padded}
    batch_index = indices[0] if shape and shape[0] == batch else None
    batch_loop = next((var for var, low, high in product.limits if high + 1 == batch), None)
    over_batch = batch_index is None and batch_loop is not None
    if (batch_index is None and not over_batch) or (over_batch and constants):
        return None  # no batch to split; or a sum over the batch plus a constant: not a case we have
    image = batch_index if batch_index is not None else batch_loop
    ranges = {var: (0, int(size) - 1) for var, size in zip(indices, shape) if var != batch_index}
    for var, low, high in product.limits:
        if var != batch_loop:
            if not (low.is_Integer and high.is_Integer):
                return None
            ranges[var] = (int(low), int(high))

    choice = _choose_lane(factors, indices, shape, batch_index, image)
    if choice is None:
        return None
    streamed, broadcast, lane = choice
    if not all(_is_bound_of(c, [(broadcast, shapes[broadcast.base])]) for c in product.conditions):
        return None
    if broadcast.base not in padded and not product.conditions and not plain_read(broadcast) and not in_bounds(
            broadcast, shapes[broadcast.base], ranges, image):
        return None  # an affine read of an operand that is not zero-padded: its bounds are not ours

    others = [var for var in indices if var not in (lane, batch_index)]
    if over_batch:
        tile_vars, rows = others + [lane], []
    else:
        column = [others[-1]] if others and len(indices) >= 3 else []
        tile_vars, rows = column + [lane], [var for var in others if var not in column]
    sizes = dict(zip(indices, shape))

    stagings = []
    broadcast_read = padded_read(lowering, broadcast, shapes[broadcast.base], image, ranges, stagings,
                                 part_rows=_part_rows([(var, int(sizes[var])) for var in rows]))
    if broadcast_read is None:
        return None
    # a window read in place (no padding to add) is priced as the copy it once was: the cost model's
    # constants were fitted to schedules that made it (as the columns schedule's, columns.py)
    read_in_place = not plain_read(broadcast) and broadcast_read is broadcast and image in broadcast.indices
    in_place = math.prod(int(size) for index, size in zip(broadcast.indices, shapes[broadcast.base])
                         if index != image) if read_in_place else 0
    streamed_read = lane_last(lowering, streamed, shapes[streamed.base], lane, image, stagings)
    printer = lowering.printer.doprint
    store = named_array(lowering, output_name)[tuple(indices)]
    images = blocked_by_images(lowering, over_batch, rows, tile_vars, stagings, streamed_read, image, batch,
                               int(sizes[lane]))
    if images:  # several images per work item, a tile row each (product_blocks.py)
        broadcast_read = broadcast_read.subs(image, images.read_image)
        store = store.subs(image, images.image)
        tile_vars, sizes[images.slot] = [images.slot] + tile_vars, sympy.Integer(images.size)
    tile_extents = [lowering.code(sizes[var]) for var in tile_vars]
    lane_block = _lane_block(over_batch, stagings, lane, indices, [int(sizes[var]) for var in tile_vars])
    block_bounds, row_start, tile_sizes = ("", "", ""), "", dict(sizes)
    if lane_block:  # the lane axis in blocks: lanes and output read at the block's start plus the lane
        start = Symbol("lane_start", integer=True, nonnegative=True)
        lanes_symbol = Symbol("lanes", integer=True, positive=True)
        block = Symbol("block", integer=True, nonnegative=True)
        streamed_read = streamed_read.subs(lane, start + lane)
        store = store.subs(lane, start + lane)
        lane_block, height = row_block([int(sizes[var]) for var in tile_vars], lane_block, int(sizes[lane]),
                                       LANE_BLOCK_ELEMENTS)
        tile_extents[-1] = str(lane_block)
        lane_blocks, lane_index = FloorDiv(lanes_symbol + lane_block - 1, lane_block), block
        if height:  # and the rows (product_blocks.py): the row read and stored at the block's first row plus the row
            row, first_row = tile_vars[0], Symbol("row_start", integer=True, nonnegative=True)
            broadcast_read, streamed_read, store = (expr.subs(row, first_row + row)
                                                    for expr in (broadcast_read, streamed_read, store))
            tile_sizes[row], tile_extents[0] = sympy.Integer(height), str(height)
            lane_blocks = -(-int(sizes[lane]) // lane_block)  # a constant: NumbaPrinter misprints a // (b // c)
            row_start = printer(height * FloorDiv(block, lane_blocks))
            lane_index = sympy.Mod(block, lane_blocks)
        # max(0, ...): LLVM then knows that the reads' indices are nonnegative; else numba's
        # wraparound of negative indices keeps the lane loops scalar (measured: 5x slower)
        block_bounds = (printer(lane_blocks * (int(sizes[tile_vars[0]]) // height) if height else lane_blocks),
                        printer(sympy.Max(0, lane_index * lane_block, evaluate=False)),
                        printer(sympy.Min(lanes_symbol, start + lane_block) - start))
    row_loops, parts = _row_parts(lowering, [(var, int(sizes[var])) for var in rows], batch)
    tile = tuple(Loop(printer(var), ("width" if lane_block else "lanes") if var == lane
                      else lowering.code(tile_sizes[var])) for var in tile_vars)
    init = lowering.code(constants[0].body) if constants else lowering.identity(Sum)  # the terms are a sum
    reduction = [(var, int(low), int(high)) for var, low, high in product.limits if var != batch_loop]
    outer_tile = [(var, int(tile_sizes[var])) for var in tile_vars[:-1]]
    tile_element = named_array(lowering, "tile")[tuple(tile_vars)]
    blocked = _register_blocks(
        lowering, reduction, outer_tile, (broadcast_read, streamed_read), lane, tile_element,
        *((OVER_BATCH_UNROLL, OVER_BATCH_BLOCK) if over_batch
          else (UNROLL, images.size if images else _block_limit(int(sizes[lane])))))
    # the tile in local variables (registers.py): a per-image kernel's row, or a weight gradient's whole tile
    # (each image's sums into it in blocks, its outer axes as loops around them); the streamed operand's
    # copy, if it has one, in groups of the blocks' lanes when there are several groups (stagings.py)
    copy = next((staging for staging in stagings if staging.name == printer(streamed_read.base)), None)
    registers = None if images or lane_block else register_tile(
        lowering, reduction, outer_tile, (broadcast_read, streamed_read), lane, tile_element, UNROLL, int(sizes[lane]),
        copied=copy is not None)
    if registers is not None and copy is not None and int(sizes[lane]) > registers.group.step:
        stagings[stagings.index(copy)] = lanes_in_groups(lowering, copy, streamed_read, registers.group.step)
    batch_unroll = None
    if lane_block and not reduction:  # every image into one tile: several per update (product_blocks.py)
        batch_unroll = batch_unrolled(
            lowering, lambda lowering, reduction, outer_tile, broadcast_read, streamed_read, tile_element, unroll,
            block: _register_blocks(lowering, reduction, outer_tile, (broadcast_read, streamed_read), lane,
                                    tile_element, unroll, block)[:3],
            batch_loop, batch, broadcast_read, streamed_read, tile_element, outer_tile, OVER_BATCH_BLOCK)
    # a weight gradient's sums of chunks store no element of the formula's: no epilogue there
    epilogue = epilogue_at(lowering, None if over_batch else store)
    return {
        "kind": "lanes",
        "output_loops": tuple(Loop(printer(var), lowering.code(sizes[var]), position == 0)
                              for position, var in enumerate(v for v in indices if v != batch_index)),
        "lanes": Lanes(
            over_batch=over_batch,
            chunks=BATCH_CHUNKS,
            chunk_images=_chunk_images(lowering, batch),
            chunk_count=lowering.code(sympy.Min(batch, BATCH_CHUNKS)) if over_batch else "",
            chunk_rows=_chunk_rows(lowering, [(var, int(sizes[var])) for var in tile_vars], store)
            if over_batch and not lane_block else None,
            stagings=tuple(stagings),
            rows=row_loops,
            parts=parts,
            tile=tile,
            tile_shape=tuple(tile_extents),
            lane_extent=f"{lowering.names[streamed.base]}.shape[{list(streamed.indices).index(lane)}]",
            tile_index=", ".join(printer(var) for var in tile_vars),
            init=init,
            around=blocked.around,
            broadcasts=blocked.broadcasts,
            updates=blocked.updates,
            store=printer(store),
            epilogue=epilogue,
            lane_block=lane_block,
            block_bounds=block_bounds,
            images=images.groups if images else None,
            batch_unroll=batch_unroll,
            row_start=row_start,
            # the lane the output's own last axis (a strided input gradient's phase: its columns): stored along it
            stores=tile if not (over_batch or images) and indices[-1] == lane else (),
            transposed=_transposed_store(lowering, output_name, over_batch or images or lane_block, indices, tile_vars,
                                         sizes) if epilogue is not None else None,
            registers=registers,
        ),
        "nest": _lanes_nest(indices, shape, batch_index, [int(sizes[var]) for var in rows], outer_tile, reduction,
                            int(sizes[lane]), lane_block, blocked, stagings, in_place,
                            int(sizes[tile_vars[0]]) // int(tile_sizes[tile_vars[0]]) / (images.size if images else 1)),
    }


#: The fewest rows and lanes a tile stores through transposed blocks (symcnn.runtime.transpose): one block of
#: float32 on a CPU with 512-bit vectors. A smaller tile keeps its element-by-element store.
TRANSPOSED_EXTENT = 16


def _transposed_store(lowering, output_name: str, whole_batch, indices, tile_vars, sizes) -> Optional[TransposedStore]:
    """The printed pieces of the store through square blocks transposed in vector registers of a per-image tile (a row
    of the output by its lanes, the lane last) that stores through an epilogue, or ``None`` to keep its own store:
    blocks where the output's last index is the tile's row,
    both axes hold a block (:data:`TRANSPOSED_EXTENT`) and the output is not a strided view (a phase's, whose rows
    are stored element by element either way: measured 0.92-0.93x on a stride-2 input gradient). Only through an
    epilogue (a fused ReLU, a ReLU's mask): LLVM vectorizes a plain copy of the tile across its rows with gathers of
    16 (``vgatherdps``), about as fast as the blocks (0.92-1.10x, measured), and a store through an epilogue with
    gathers of 8 (``vgatherqps``), where the blocks gained 1.1-1.3x. The printed module then imports the
    transpose; the lane loop's stop is the runtime ``lanes``, as in every per-image lanes tile."""
    row = tile_vars[0]
    if whole_batch or output_name in lowering.strided or len(tile_vars) != 2 or indices[-1] != row or min(
            int(sizes[var]) for var in tile_vars) < TRANSPOSED_EXTENT:
        return None
    lowering.printer.module_imports["symcnn.runtime.transpose"] |= {"block_side", "transpose_block"}
    rows, lane = lowering.code(sizes[row]), lowering.printer.doprint(tile_vars[1])
    row_name = lowering.printer.doprint(row)
    return TransposedStore(f"{rows} - {rows} % side", "lanes - lanes % side", "range(first_lane, first_lane + side)",
                           "range(first_row, first_row + side)", f"tile_t[{lane} - first_lane, {row_name} - first_row]",
                           f"whole_rows < {rows}")


def _lanes_nest(indices, shape, batch_index, rows, outer_tile, reduction, lanes: int, lane_block: int,
                blocked: Blocked, stagings, in_place: int, share: float) -> LoopNest:
    """The lanes schedule's numbers for the cost model (:mod:`symcnn.codegen.cost_model`), per image;
    ``in_place``: elements of a window read in place, counted as staged; ``share``: the tile's loops run
    that many times per image (its row blocks, over a block of images)."""
    outputs = math.prod(int(size) for var, size in zip(indices, shape) if var != batch_index)
    products = math.prod(high - low + 1 for _, low, high in reduction)
    trips = lane_block or lanes
    return vector_nest("lanes", multiply_adds=outputs * products, rows=rows, outer=[e for _, e in outer_tile],
                       reduction=[high - low + 1 for _, low, high in reduction], lanes=trips, useful=trips,
                       block=blocked.block, unroll=blocked.unroll, streamed=blocked.streamed,
                       hoisted=len(blocked.broadcasts), staged=_staged_elements(stagings) + in_place,
                       stored=outputs if batch_index is not None else 0, repeats=-(-lanes // trips) * share)


def _staged_elements(stagings) -> int:
    """Elements copied per image into ``stagings`` (a copy of an operand without a batch axis is made
    once a call: not counted)."""
    return sum(math.prod(int(extent) for extent in staging.shape) for staging in stagings if staging.per_image)


def _row_parts(lowering, rows: list[tuple[Symbol, int]], batch) -> tuple[tuple[Loop, ...], tuple[str, str, str]]:
    """The row loops of a per-image kernel, the first split in ``ROW_PARTS`` when it divides: each
    (image, part) pair is one parallel work item, so that a batch of one keeps every thread busy.

    Returns the loops (the first from ``part``'s first row to its last) and the printed number of
    items and item ``item``'s image and part (``("", "", "")``: one item per image). Each item
    stages its image's copies, a small cost next to its rows (conv1: 3,468 values copied against
    221,184 multiply-adds). Measured on seed004, interleaved A/B: the batch-1 train step 0.444 ->
    0.369 ms, the batch-64 one unchanged.
    """
    printer = lowering.printer.doprint
    loops = [Loop(printer(var), str(extent)) for var, extent in rows]
    split = _part_rows(rows)
    if not split:
        return tuple(loops), ("", "", "")
    item = Symbol("item", integer=True, nonnegative=True)
    first, last = next(iter(split.values()))
    loops[0] = Loop(loops[0].variable, printer(last + 1), False, printer(first))
    item_bounds = (printer(ROW_PARTS * batch), printer(FloorDiv(item, ROW_PARTS)), printer(sympy.Mod(item, ROW_PARTS)))
    return tuple(loops), item_bounds


def _part_rows(rows: list[tuple[Symbol, int]]) -> dict:
    """``{row: (first, last)}``: the rows of part ``part`` when :func:`_row_parts` splits the first row
    loop (``{}`` when it does not).

    >>> i = Symbol("i")
    >>> _part_rows([(i, 32)])
    {i: (16*part, 16*part + 15)}
    """
    if not rows or rows[0][1] % ROW_PARTS:
        return {}
    part = Symbol("part", integer=True, nonnegative=True)
    size = rows[0][1] // ROW_PARTS
    return {rows[0][0]: (size * part, size * part + size - 1)}


def _lane_block(over_batch: bool, stagings, lane, indices, tile_extents: list[int]) -> int:
    """The width of the lane blocks a weight gradient is summed in, or 0 (chunks of the batch).

    A weight gradient whose tile is large (a dense layer's, 10 x 8192: 320 KiB a chunk, updated
    from L2 by every image), whose operands need no staged copies, and whose lane is the output's
    last axis is better summed in blocks of its lane axis, in parallel: each block's tile fits L1,
    takes every image in order (the same sums whatever the thread count) and is stored as it is.
    Measured on seed004's fc1: 0.45 ms in chunks, 0.14 ms in blocks of 512.
    """
    rows = math.prod(tile_extents[:-1])
    if not over_batch or stagings or indices[-1] != lane or rows * tile_extents[-1] <= LANE_BLOCK_ELEMENTS:
        return 0
    width = max(MIN_LANES, LANE_BLOCK_ELEMENTS // rows // MIN_LANES * MIN_LANES)
    return width if 2 * width <= tile_extents[-1] else 0


def _block_limit(lanes: int) -> int:
    """Columns per lane loop: ``BLOCK`` for 32 lanes, twice that for 16 or fewer (a lane loop of one vector
    does half the work per entry), at most ``2*BLOCK`` (the broadcast values stay in registers)."""
    return min(2 * BLOCK, BLOCK * max(1, 32 // lanes))


class Blocked(NamedTuple):
    """A register-blocked lane loop (:func:`_register_blocks`): the loops around it, the values read
    before it (``(name, printed read)``), its updates, and for the cost model the block and unroll
    it took and how many distinct lane-dependent reads its updates make."""

    around: tuple[Loop, ...]
    broadcasts: tuple[tuple[str, str], ...]
    updates: tuple[str, ...]
    block: int
    unroll: int
    streamed: int


def _register_blocks(lowering, reduction, outer_tile, reads, lane, tile_element, unroll: int, block: int,
                     deep: bool = False) -> Blocked:
    """The loops around the lane loop, the hoisted broadcast reads and the lane loop's updates.

    ``reads`` are the product's factors in its order; those that do not depend on ``lane`` are read
    before the lane loop (broadcast values), the others in it. The innermost reduction loop is
    unrolled by up to ``unroll`` (its values summed in one update, in order; ``deep``: an ``unroll``
    beyond the whole innermost loop unrolls the next one too, both in the formula's order) and the innermost
    outer tile loop blocked by up to ``block`` (one update each): with ``unroll * block`` broadcast
    values in registers, each tile element loaded takes ``unroll`` multiply-adds and each streamed
    value serves ``block`` elements. (Measured on a hand-written twin of seed004's conv2 forward, 2
    threads: 63 GFLOP/s unblocked, 192 GFLOP/s at 3 x 4; the generated kernel, in ``symcnn bench
    --profile``, 61 before and 149 after.)
    """
    printer = lowering.printer.doprint
    loops, unrolled = _unrolled(reduction, unroll, printer, deep)
    tile_loops = [Loop(printer(var), str(extent)) for var, extent in outer_tile]
    block_var, block_values = None, [None]
    if outer_tile:
        block_var, extent = outer_tile[-1]
        loop, block_values = _split(block_var, 0, extent - 1, block, printer)
        tile_loops[-1:] = [loop] if loop else []
    names: dict[str, Symbol] = {}  # printed read -> its name: a window read shared by neighbours is read once
    streamed: set[str] = set()
    updates = []
    for block_value in block_values:
        products = []
        for point in unrolled:
            at = {**point, block_var: block_value} if block_var is not None else point
            factors = []
            for read in reads:
                read = read.xreplace(at)  # simultaneous; a variable replaced by a number or variable + number
                if read.has(lane):
                    streamed.add(lowering.code(read))
                    factors.append(read)
                else:
                    factors.append(names.setdefault(lowering.code(read), Symbol(f"{BROADCAST}{len(names)}")))
            products.append(sympy.Mul(*factors, evaluate=False))
        element = tile_element.xreplace({block_var: block_value}) if block_var is not None else tile_element
        # the sum's step once per product, in the formula's order: ((element + p0) + p1) + ...
        updates.append(lowering.statement(element, OrderedSum(element, *products)))
    broadcasts = tuple((str(name), read) for read, name in names.items())
    return Blocked(tuple(loops + tile_loops), broadcasts, tuple(updates), len(block_values), len(unrolled),
                   len(streamed))


def _chunk_rows(lowering, tile_axes: list[tuple[Symbol, int]], store: Indexed) -> ChunkRows:
    """The sum of the chunks' tiles (axes ``(variable, extent)``, the lane last) into the output element
    ``store``, in blocks of lanes (:class:`~symcnn.codegen.kernel_ir.ChunkRows`): a ``Sum`` over ``chunk``
    into ``row[lane]`` for each lane of block ``lane_block``, the blocks the widest of
    :data:`~symcnn.codegen.backends.numba_cpu.registers.GROUP_LANES` that divides the lanes (else one).

    Against one scalar sum per element in the tiles' order, which crossed all 128 rows of suite-wide's conv3
    weight gradient per stored element (at batch 1 the sum is a transposing copy, and took 0.27 of the
    kernel's 0.44 ms): its kernel in a batch-1 train step 0.357 -> 0.310 ms, the step 1.06x faster; at batch
    64 1.03x (docs/performance.md); the same numbers bit for bit."""
    printer = lowering.printer.doprint
    lane, lanes = tile_axes[-1]
    width = lane_group(lanes) or lanes
    chunk = Symbol("chunk", integer=True, nonnegative=True)
    block, in_block = (Symbol(name, integer=True, nonnegative=True) for name in ("lane_block", "lane"))
    at_lane = {lane: width * block + in_block}
    row = named_array(lowering, "row")[in_block]
    tiles = named_array(lowering, "tiles")[(chunk, *(var for var, _ in tile_axes))].xreplace(at_lane)
    return ChunkRows(outer=chunk_loops([(printer(var), extent) for var, extent in tile_axes])[:-1], width=width,
                     blocks=lanes // width, initial=lowering.identity(Sum), update=lowering.update(row, Sum, tiles),
                     store=lowering.statement(store.xreplace(at_lane), row))


def chunk_loops(axes: list[tuple[str, int]], summed_per_element: int = 1) -> tuple[Loop, ...]:
    """The loops of the chunks' sum over the tiles' axes ``(name, extent)``, in the tiles' order (so that
    it reads them along their rows), in parallel over the first when the sum is long enough
    (:data:`PARALLEL_SUM_MIN` values: the chunks times the axes' extents times ``summed_per_element``,
    the values each element sums in each chunk besides, e.g. the columns schedule's column partial sums).
    The axes of one element, which change no address, go after the others but the last (the lane's),
    so that the parallel one has work to share.

    >>> [(loop.variable, loop.parallel) for loop in chunk_loops([("c_in", 1), ("u", 3), ("c_out", 16)])]
    [('u', False), ('c_in', False), ('c_out', False)]
    >>> [(loop.variable, loop.parallel) for loop in chunk_loops([("c_in", 64), ("u", 3), ("v", 3), ("c_out", 128)])]
    [('c_in', True), ('u', False), ('v', False), ('c_out', False)]
    >>> [loop.parallel for loop in chunk_loops([("c_out", 32), ("u", 3), ("v", 3)], summed_per_element=32)]
    [True, False, False]
    """
    ordered = sorted(axes[:-1], key=lambda axis: axis[1] == 1) + axes[-1:]
    parallel = BATCH_CHUNKS * math.prod(extent for _, extent in axes) * summed_per_element > PARALLEL_SUM_MIN
    return tuple(Loop(name, str(extent), parallel and position == 0) for position, (name, extent) in enumerate(ordered))


def _chunk_images(lowering, batch) -> tuple[str, str]:
    """Chunk ``chunk`` of ``chunks`` sums images ``chunk*N//chunks`` to ``(chunk + 1)*N//chunks - 1``."""
    chunk, chunks = Symbol("chunk", integer=True, nonnegative=True), Symbol("chunks", integer=True, positive=True)
    return (lowering.code(FloorDiv(chunk * batch, chunks)), lowering.code(FloorDiv((chunk + 1) * batch, chunks)))


def _choose_lane(factors, indices, shape, batch_index, image):
    """``(streamed, broadcast, lane)``: the lane is an output axis that indexes the streamed read
    (whose indices are all plain variables) and not the broadcast one; the longest wins."""
    best = None
    for streamed, broadcast in (factors, factors[::-1]):
        distinct = len(set(streamed.indices)) == len(streamed.indices)
        if not all(index.is_Symbol for index in streamed.indices) or not distinct:
            continue
        for var, size in zip(indices, shape):
            if var == batch_index or var not in streamed.indices or broadcast.has(var) or var == image:
                continue
            if not size.is_Integer or size < MIN_LANES or size % MIN_LANES:
                continue
            key = (int(size), streamed.indices[-1] == var)
            if best is None or key > best[0]:
                best = (key, (streamed, broadcast, var))
    return best[1] if best else None


