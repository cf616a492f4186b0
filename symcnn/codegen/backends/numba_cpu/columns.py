"""The columns schedule: a product ``broadcast * streamed`` vectorized over output columns.

The lanes schedule (:mod:`~symcnn.codegen.backends.numba_cpu.lanes`) vectorizes over an output axis that
only one operand indexes, the channels: with 1, 3 or 6 of them there is no vector to fill. The output's
columns, the ``j`` of ``Y[n, c, i, j]``, are another such axis: for fixed ``(c_out, c_in, u, v, i)``,
``W[c_out, c_in, u, v]`` is one number, multiplied into a whole row ``X[n, c_in, i + u, j + v]`` of
the input, contiguous in memory. The columns schedule makes that row the innermost loop:

- the *streamed* operand (the one indexed by ``j``, in its last axis with a unit step: ``j + v``, or
  ``l - v`` in an input gradient) is read from a zero-padded per-image copy, so that the formula's
  range and padding conditions become reads of zeros, never tests; the copy is as wide as the lane
  loop reaches, which may run beyond the last column up to a whole number of vectors
  (:data:`~symcnn.codegen.cost_model.VECTOR`; those columns are computed and never stored);
- the *broadcast* operand (the weight) is read before each lane loop;
- the accumulator (``tile``) holds one output row of an image, columns last, for every output axis
  that only the broadcast operand indexes (the output channels): register blocking updates several
  channels per lane loop (each streamed value loaded serves them all) by several products each (the
  innermost reduction loop unrolled);
- a weight gradient, which sums over the batch and over the columns, gets the same lanes over the
  columns it sums (its tile: the whole gradient, a column axis last), each image added in its chunk
  (:data:`~symcnn.codegen.backends.numba_cpu.lanes.BATCH_CHUNKS`), the chunks and columns summed at
  the end in a fixed order: the same sums whatever the thread count. Its lanes too may run to a whole
  number of vectors: both operands are then read from zero-padded per-image copies (the lanes past the
  last column multiply zeros, and their partial sums are never added). Measured on an Intel Xeon:
  LeNet-5's first weight gradient over its 28 columns compiled to scalar code, padded to 32 to vectors,
  2.3x faster.

Which blocking, unroll and width, and whether this schedule at all, the cost model decides
(:mod:`symcnn.codegen.cost_model`): :func:`columns_candidates` lists them with their loop nests. Every
value is printed from the formula (:class:`~symcnn.printing.numba.NumbaPrinter`), the copies only move
it; the loops are the lanes schedule's (:class:`~symcnn.codegen.kernel_ir.Lanes`).

Example:
    >>> from symcnn.codegen.network import layer_kernels
    >>> from symcnn.spec import load_spec
    >>> forward = layer_kernels(load_spec("suite-lenet").layers[0])[0]
    >>> forward.kind, forward.lanes.tile_shape, forward.lanes.updates[0]
    ('columns', ('6', '32'), 'tile[c_out, j] = tile[c_out, j] + broadcast0*x_padded[c_in, i + u, j] + broadcast1*x_padded[c_in, i + u, j + 1] + broadcast2*x_padded[c_in, i + u, j + 2] + broadcast3*x_padded[c_in, i + u, j + 3] + broadcast4*x_padded[c_in, i + u, j + 4]')
"""  # noqa: E501  (a doctest's output, as printed)

from __future__ import annotations

import itertools
import math
from typing import Callable, NamedTuple, Optional

import sympy
from sympy import Indexed, Sum, Symbol

from symcnn.codegen.backends.numba_cpu.lanes import (BATCH_CHUNKS, _chunk_images, _is_bound_of, _register_blocks,
                                                    _part_rows, _row_parts, chunk_loops)
from symcnn.codegen.backends.numba_cpu.stagings import affine_range, named_array, padded_read, plain_read
from symcnn.codegen.backends.numba_cpu.registers import _block_size, register_tile
from symcnn.codegen.cost_model import VECTOR, LoopNest, vector_nest
from symcnn.codegen.epilogue import epilogue_at
from symcnn.codegen.kernel_ir import Lanes, Loop
from symcnn.printing.nodes import FloorDiv
from symcnn.symbolic.adjoint import GatherTerm

__all__ = ["ColumnsFit", "columns_fit", "columns_candidates", "MAX_OVER_BATCH_TILE", "MAX_OVER_BATCH_TILE_ALONE"]

#: Register blocks and unrolls tried: at most this many tile rows per lane loop, and products per
#: update from the innermost reduction loop; when that loop is unrolled whole, the next one too, up to
#: ``MAX_DEEP_UNROLL`` products (a 5 x 5 window: 25).
MAX_BLOCK = 8
MAX_UNROLL = 8
MAX_DEEP_UNROLL = 32

#: A weight gradient's tile (the whole gradient times its columns) stays in L1: at most this many
#: elements (32 KiB of float32); beyond, the lanes or gather form. Its chunks' sum, 8 x 8192 values at
#: most, therefore stays on one thread (lanes.PARALLEL_SUM_MIN).
MAX_OVER_BATCH_TILE = 8192

#: The limit where the lanes schedule does not fit, so that the alternative is the scalar gather form (a
#: depthwise convolution's weight gradient: one input channel per output channel, nothing to vectorize
#: over). A tile past L1 is still far faster than gather's scalar sums: 3x3 depthwise weight gradients,
#: batch 64, 32x32 maps, 2 threads (docs/performance.md): 32 channels (a tile of 9,216 elements) 0.72 ms
#: against 2.60; 48 channels (13,824) 1.15 ms against 3.51.
MAX_OVER_BATCH_TILE_ALONE = 16384


class ColumnsFit(NamedTuple):
    """A kernel the columns schedule fits: its one product term and constant term (or ``None``), the
    factors in the product's order and which one is streamed, the lane (a column axis) and its extent,
    the image index, the index ranges, the output axes around the tile (``rows``) and in it before the
    lane (``outer``), and the reduction loops the lane loop sits in (batch and lane excluded)."""

    product: GatherTerm
    constant: Optional[GatherTerm]
    factors: tuple[Indexed, Indexed]
    streamed: Indexed
    lane: Symbol
    extent: int
    over_batch: bool
    batch_index: Optional[Symbol]
    image: Symbol
    ranges: dict
    rows: tuple[tuple[Symbol, int], ...]
    outer: tuple[tuple[Symbol, int], ...]
    reduction: tuple[tuple[Symbol, int, int], ...]


def _affine(index) -> bool:
    """``index`` is a constant or a sum of loop variables times integers: ``j + v``, ``2*i - u + 1``."""
    symbols = sorted(index.free_symbols, key=str)
    return not symbols or (index.is_polynomial(*symbols) and sympy.Poly(index, *symbols).total_degree() <= 1)


def _unit_step_last(read: Indexed, lane: Symbol) -> bool:
    """``lane`` indexes ``read`` in its last axis only, with a step of one: ``j``, ``j + v``, ``l - v + 4``."""
    *others, last = read.indices
    return (not any(index.has(lane) for index in others)
            and sympy.expand(last).coeff(lane) == 1 and not (sympy.expand(last) - lane).has(lane))


def columns_fit(indices, shape, batch, terms: list[GatherTerm], tensors,
                tile_limit: int = MAX_OVER_BATCH_TILE) -> Optional[ColumnsFit]:
    """The columns schedule's view of a kernel, or ``None`` when it does not fit: one product of two
    reads (and at most one constant term), a batch to split, no divisibility condition, every other
    condition a bound of the streamed read, the columns read with a unit step; a weight gradient's tile
    of at most ``tile_limit`` elements."""
    products = [term for term in terms if term.limits]
    constants = [term for term in terms if not term.limits]
    if len(products) != 1 or len(constants) > 1:
        return None
    product = products[0]
    factors = sympy.Mul.make_args(product.body)
    if len(factors) != 2 or not all(isinstance(f, Indexed) for f in factors):
        return None
    if any(condition.has(sympy.Mod) for condition in product.conditions):
        return None  # a strided input gradient
    if not all(_affine(index) for read in factors for index in read.indices):
        return None  # a grouped convolution's input channel, c_in + 2*floor(c_out/3): no window to pad
    batch_index = indices[0] if shape and shape[0] == batch else None
    batch_loop = next((var for var, low, high in product.limits if high + 1 == batch), None)
    over_batch = batch_index is None and batch_loop is not None
    if (batch_index is None and not over_batch) or (over_batch and constants):
        return None
    if not all(size.is_Integer for var, size in zip(indices, shape) if var != batch_index):
        return None
    ranges = {var: (0, int(size) - 1) for var, size in zip(indices, shape) if var != batch_index}
    for var, low, high in product.limits:
        if var != batch_loop:
            if not (low.is_Integer and high.is_Integer):
                return None
            ranges[var] = (int(low), int(high))
    sizes = {var: int(size) for var, size in zip(indices, shape) if var != batch_index}
    shapes = {tensor.base: tensor.shape for tensor in tensors}
    reduction = [(var, int(low), int(high)) for var, low, high in product.limits if var != batch_loop]
    if over_batch:
        # the lane: the innermost summed axis that both reads index last, with a step of one, from 0
        lanes = [(var, high + 1) for var, low, high in reduction if low == 0
                 and all(_unit_step_last(read, var) for read in factors)
                 and any(read.indices[-1] == var and shapes[read.base][-1] == high + 1 for read in factors)]
        if not lanes:
            return None
        lane, extent = lanes[-1]
        streamed = next(read for read in factors if read.indices[-1] != lane) if any(
            read.indices[-1] != lane for read in factors) else factors[0]
        rows, outer = (), tuple((var, sizes[var]) for var in indices)
        if math.prod(sizes.values()) * extent > tile_limit:
            return None
    else:
        lane, extent = indices[-1], sizes[indices[-1]]
        streamed_reads = [read for read in factors if read.has(lane)]
        if len(indices) < 3 or len(streamed_reads) != 1 or not _unit_step_last(streamed_reads[0], lane):
            return None  # no columns (a dense layer's outputs are the lanes schedule's), or not read as a row
        streamed = streamed_reads[0]
        if not plain_read(next(read for read in factors if read is not streamed)):
            return None  # a window read of the broadcast operand (it is read as it is)
        others = [var for var in indices if var not in (lane, batch_index)]
        rows = tuple((var, sizes[var]) for var in others if streamed.has(var))
        outer = tuple((var, sizes[var]) for var in others if not streamed.has(var))
    image = batch_index if batch_index is not None else batch_loop
    if any(image not in read.indices and not plain_read(read) for read in factors):
        return None  # an affine read of an operand without a batch axis: no per-image copy to pad
    if not all(_is_bound_of(condition, [(streamed, shapes[streamed.base])]) for condition in product.conditions):
        return None
    for read in factors:  # a read taken as it is must stay inside its operand
        if plain_read(read) and read.base in shapes:
            for index, size in zip(read.indices, shapes[read.base]):
                span = affine_range(index, ranges) if index != image else (0, 0)
                if span is None or span[0] < 0 or (size.is_Integer and span[1] > int(size) - 1):
                    return None
    reduction = tuple(limit for limit in reduction if limit[0] != lane) if over_batch else tuple(reduction)
    return ColumnsFit(product, constants[0] if constants else None, tuple(factors), streamed, lane, extent,
                      over_batch, batch_index, image, ranges, rows, outer, reduction)


def _options(extent: int, limit: int) -> list[int]:
    """The block sizes :func:`~symcnn.codegen.backends.numba_cpu.lanes._block_size` gives ``extent`` for
    limits ``1..limit``: the divisors of ``extent`` up to ``limit`` (the whole loop when it fits)."""
    return sorted({_block_size(extent, size) for size in range(1, limit + 1)}) if extent else [1]


def _staged_shape(read: Indexed, shape, image, ranges) -> list[int]:
    """The extents of ``read``'s zero-padded per-image copy (as
    :func:`~symcnn.codegen.backends.numba_cpu.stagings.padded_read` makes it)."""
    extents = []
    for index, size in zip(read.indices, shape):
        if index != image:
            low, high = affine_range(index, ranges)
            extents.append(max(high, int(size) - 1) - min(low, 0) + 1)
    return extents


def _unrolls(reduction) -> list[tuple[int, ...]]:
    """The unrolls worth trying, each as the sizes of the innermost reduction loop's block and (when
    that is the whole loop) the next one's, as ``_register_blocks(..., deep=True)`` splits them."""
    if not reduction:
        return [()]
    inner = reduction[-1][2] - reduction[-1][1] + 1
    unrolls = [(size,) for size in _options(inner, MAX_UNROLL)]
    if len(reduction) > 1 and inner <= MAX_UNROLL:
        outer = reduction[-2][2] - reduction[-2][1] + 1
        unrolls += [(inner, size) for size in _options(outer, MAX_DEEP_UNROLL // inner) if size > 1]
    return unrolls


def _reads_backwards(fit: ColumnsFit, unroll: tuple[int, ...]) -> bool:
    """A reduction loop that ``unroll`` leaves a loop runs the streamed read backwards (``l - v``, ``k - u``,
    an input gradient's): numba then cannot tell that the index stays nonnegative and keeps its
    wraparound test, and the lane loop stays scalar (measured: 4-10x slower than the same kernel
    unrolled whole; see docs/performance.md, "Schedules from shapes"). Such candidates are not offered."""
    whole = {var for (var, low, high), size in zip(fit.reduction[::-1], unroll) if size == high - low + 1}
    return any(sympy.expand(index).coeff(var) < 0 for var, _, _ in fit.reduction if var not in whole
               for index in fit.streamed.indices)


def _read_counts(fit: ColumnsFit, block: int, unroll: tuple[int, ...]) -> tuple[int, int]:
    """(values read before each lane loop, distinct lane-dependent reads in it) at ``block`` x ``unroll``."""
    sizes = dict(zip([var for var, _, _ in fit.reduction[::-1]], unroll))  # innermost first
    if fit.outer:
        sizes[fit.outer[-1][0]] = block
    variables = list(sizes)
    at = list(itertools.product(*(range(size) for size in sizes.values())))  # each variable's offset
    hoisted, streamed = set(), set()
    for position, read in enumerate(fit.factors):
        # a read at a point: its indices moved by each unrolled or blocked variable's offset times its coefficient
        slopes = [[int(sympy.expand(index).coeff(var)) for var in variables] for index in read.indices]
        reads = {(position, *(sum(s * o for s, o in zip(slope, point)) for slope in slopes)) for point in at}
        (streamed if read.has(fit.lane) else hoisted).update(reads)
    return len(hoisted), len(streamed)


def columns_candidates(lowering, output_name: str, indices, shape, batch, terms, tensors,
                       tile_limit: int = MAX_OVER_BATCH_TILE) -> list[tuple[LoopNest, Callable[[], dict]]]:
    """The columns schedule's candidates for this kernel (none when it does not fit): each register
    block, unroll and lane width, as a :class:`~symcnn.codegen.cost_model.LoopNest` and a function that
    prints its :class:`~symcnn.codegen.kernel_ir.Kernel` fields; a weight gradient's tile of at most
    ``tile_limit`` elements (:data:`MAX_OVER_BATCH_TILE`, or :data:`MAX_OVER_BATCH_TILE_ALONE`)."""
    fit = columns_fit(indices, shape, batch, terms, tensors, tile_limit)
    if fit is None:
        return []
    shapes = {tensor.base: tensor.shape for tensor in tensors}
    outputs = math.prod(extent for _, extent in fit.outer + fit.rows) * (1 if fit.over_batch else fit.extent)
    products = math.prod(high - low + 1 for _, low, high in fit.reduction) * (fit.extent if fit.over_batch else 1)
    widths = [fit.extent]
    padded = -(-fit.extent // VECTOR) * VECTOR  # a whole number of vectors: no scalar remainder
    if fit.extent % VECTOR and not (fit.over_batch and outputs * padded > tile_limit):
        widths.append(padded)
    candidates = []
    for width in widths:
        ranges = {**fit.ranges, fit.lane: (0, width - 1)}
        # A window that stays inside its operand is read in place (padded_read), but its copy is still
        # counted: the constants were fitted with it, and without it a width short of whole vectors
        # would rank first (its scalar remainder underpriced: 1.85x slower on LeNet-5's conv1, AVX2).
        staged = sum(math.prod(_staged_shape(read, shapes[read.base], fit.image, ranges)) for read in fit.factors
                     if not plain_read(read) or _copied_for_width(fit, read, width))
        for block in _options(fit.outer[-1][1] if fit.outer else 0, MAX_BLOCK):
            for unroll in (unroll for unroll in _unrolls(fit.reduction) if not _reads_backwards(fit, unroll)):
                hoisted, streamed = _read_counts(fit, block, unroll)
                nest = vector_nest(
                    "columns", multiply_adds=outputs * products, rows=[e for _, e in fit.rows],
                    outer=[e for _, e in fit.outer], reduction=[h - low + 1 for _, low, h in fit.reduction],
                    lanes=width, useful=fit.extent, block=block, unroll=math.prod(unroll), streamed=streamed,
                    hoisted=hoisted, staged=staged, stored=0 if fit.over_batch else outputs)
                candidates.append((nest, _builder(lowering, output_name, indices, shape, batch, fit, block,
                                                  math.prod(unroll), width, shapes)))
    return candidates


def _copied_for_width(fit: ColumnsFit, read: Indexed, width: int) -> bool:
    """``read`` is copied whole, zeros beyond it, because the lane loop runs past the columns to ``width``:
    the streamed read's, and in a weight gradient (whose lanes both operands index) both."""
    return width != fit.extent and (fit.over_batch or read is fit.streamed)


def _builder(lowering, output_name, indices, shape, batch, fit: ColumnsFit, block, unroll, width, shapes):
    return lambda: _columns_fields(lowering, output_name, indices, shape, batch, fit, block, unroll, width, shapes)


def _columns_fields(lowering, output_name, indices, shape, batch, fit: ColumnsFit, block: int, unroll: int,
                    width: int, shapes) -> dict:
    """The :class:`~symcnn.codegen.kernel_ir.Kernel` fields of one columns candidate."""
    printer = lowering.printer.doprint
    lane = fit.lane
    stagings: list = []
    ranges = {**fit.ranges, lane: (0, width - 1)}
    # each work item copies only what its part of the rows reads (as the lanes schedule does): a depthwise
    # convolution's rows are its channels, so each item copied the whole image for half its channels
    part_rows = {} if fit.over_batch else _part_rows(list(fit.rows))
    reads = tuple(padded_read(lowering, read, shapes[read.base], fit.image, ranges, stagings,
                              always=_copied_for_width(fit, read, width), part_rows=part_rows, spread=True)
                  for read in fit.factors)
    tile_vars = [var for var, _ in fit.outer] + [lane]
    tile_element = named_array(lowering, "tile")[tuple(tile_vars)]
    blocked = _register_blocks(lowering, fit.reduction, fit.outer, reads, lane, tile_element, unroll, block, deep=True)
    sizes = dict(zip(indices, shape))
    element = named_array(lowering, output_name)[tuple(indices)]
    store = printer(element)
    tile = tuple(Loop(printer(var), str(extent)) for var, extent in fit.outer) + (Loop(printer(lane), "lanes"),)
    if fit.over_batch:
        # the lane's extent read from the argument that it indexes as it is: unknown to the compiler
        plain = next(read for read in fit.factors if read.indices[-1] == lane)
        extent = Symbol("extent", integer=True, positive=True)
        lowering.printer.symbol_names[extent] = f"{lowering.names[plain.base]}.shape[{len(plain.indices) - 1}]"
        lane_extent = printer(extent if width == fit.extent else VECTOR * FloorDiv(extent + VECTOR - 1, VECTOR))
        chunk, chunks = Symbol("chunk", integer=True, nonnegative=True), Symbol("chunks", integer=True, positive=True)
        tiles = named_array(lowering, "tiles")[(chunk, *tile_vars)]
        chunk_sum = lowering.reduction("total", Sum(tiles, (chunk, 0, chunks - 1), (lane, 0, fit.extent - 1)))
        row_loops, parts, stores = (), ("", "", ""), ()
    else:
        columns = Symbol("columns", integer=True, positive=True)  # the output's width, read at run time
        lowering.printer.symbol_names[columns] = f"{output_name}.shape[{len(indices) - 1}]"
        lane_extent = printer(columns if width == fit.extent else VECTOR * FloorDiv(columns + VECTOR - 1, VECTOR))
        chunk_sum = None
        row_loops, parts = _row_parts(lowering, list(fit.rows), batch)
        stores = tile[:-1] + (Loop(printer(lane), str(fit.extent)),)
    init = lowering.code(fit.constant.body) if fit.constant is not None else lowering.identity(Sum)
    return {
        "kind": "columns",
        "output_loops": tuple(Loop(printer(var), lowering.code(sizes[var]), position == 0)
                              for position, var in enumerate(v for v in indices if v != fit.batch_index)),
        "lanes": Lanes(
            over_batch=fit.over_batch,
            chunks=BATCH_CHUNKS,
            chunk_images=_chunk_images(lowering, batch),
            chunk_count=lowering.code(sympy.Min(batch, BATCH_CHUNKS)) if fit.over_batch else "",
            chunk_sum=chunk_sum,
            # the sum over the chunks and the lane, one output element each, in the tiles' order (each
            # element adds fit.extent column partial sums a chunk: they count towards a parallel sum)
            chunk_loops=(chunk_loops([(printer(var), extent) for var, extent in fit.outer],
                                     summed_per_element=fit.extent) if fit.over_batch else ()),
            stagings=tuple(stagings),
            rows=row_loops,
            parts=parts,
            tile=tile,
            tile_shape=tuple(str(extent) for _, extent in fit.outer) + (str(width),),
            lane_extent=lane_extent,
            tile_index=", ".join(printer(var) for var in tile_vars),
            init=init,
            around=blocked.around,
            broadcasts=blocked.broadcasts,
            updates=blocked.updates,
            store=store,
            stores=stores,
            # a weight gradient's sums of chunks store no element of the formula's: no epilogue there
            epilogue=epilogue_at(lowering, None if fit.over_batch else element),
            registers=None if fit.over_batch else register_tile(  # the tile in local variables (registers.py)
                lowering, fit.reduction, fit.outer, reads, lane, tile_element, unroll, width),
        ),
    }
