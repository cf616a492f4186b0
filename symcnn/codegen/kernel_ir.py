"""What a generated kernel is, as data: printed expressions and loop bounds for the templates.

:mod:`symcnn.codegen.lower` lowers derived formulas to these;
``symcnn/codegen/backends/numba_cpu/templates/layer.py.jinja`` lays them out.
Every string here is code printed from a formula by :class:`~symcnn.printing.numba.NumbaPrinter`, or a
name, or a constant: the templates add loops, never arithmetic. That includes each reduction's
initial value (its identity), the statement that combines a value into it, and max pooling's tie
rule, all printed from the formula's ``Sum`` and ``MaxOver`` nodes.

Example:
    >>> Loop("i", "16", parallel=True)
    Loop(variable='i', stop='16', parallel=True, start='0', step=1)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

__all__ = ["Loop", "Reduction", "Term", "Staging", "ImageGroups", "BatchUnroll", "Epilogue", "Registers", "StagedSum",
           "Lanes", "SavedStatistics", "SmallBatch", "Separable", "Winograd", "Kernel"]


@dataclass(frozen=True)
class Loop:
    variable: str
    stop: str  # printed: a constant, N for the batch, or a bound folded from a condition
    parallel: bool = False
    start: str = "0"
    step: int = 1  # a register-blocked or unrolled loop steps by its block


@dataclass(frozen=True)
class Reduction:
    """A reduction into the variable ``name``: ``name = initial``, then ``update`` inside ``loops``.

    ``peak1 = -np.inf`` and ``peak1 = max(peak1, x[n, j])`` (a ``MaxOver``); ``sum0 = 0.0`` and
    ``sum0 += exp(-peak1 + x[n, j])`` (a ``Sum``). A value hoisted out of a term, or the lanes
    schedule's sum of its chunks' tiles.
    """

    name: str
    loops: tuple[Loop, ...]
    initial: str  # printed: the reduction's identity
    update: str  # printed statement: one value combined into ``name`` by the reduction's step


@dataclass(frozen=True)
class Term:
    """``update`` (``acc += value``: the term's value added into the kernel's accumulator) over
    ``loops`` where ``condition`` holds (``None``: always).

    ``reductions`` are computed in the innermost loop, before the value (softmax's normalizer).
    """

    loops: tuple[Loop, ...]
    condition: Optional[str]
    update: str  # printed statement
    reductions: tuple[Reduction, ...] = ()
    loads: tuple[tuple[str, str], ...] = ()  # (name, printed read), read before the value


@dataclass(frozen=True)
class Staging:
    """A kernel-internal copy of an operand, filled before it is read.

    Zero-padded (``zeroed``: reads beyond the operand's bounds find zeros, so the loops test no
    bounds) and/or with the lane axis last (so that the innermost loop runs over contiguous
    memory). ``per_image``: the operand has a batch axis and the copy holds image ``n``.
    """

    name: str
    shape: tuple[str, ...]  # printed extents
    loops: tuple[Loop, ...]  # over the operand's axes, the batch axis excluded
    target: str  # printed index into the copy
    source: str  # printed read of the operand
    per_image: bool
    zeroed: bool


@dataclass(frozen=True)
class ImageGroups:
    """A per-image lanes kernel's images in groups of ``size``, one parallel work item each
    (:mod:`symcnn.codegen.backends.numba_cpu.product_blocks`): ``items`` work items (printed), of
    which item ``item`` stores its first ``stored`` images (printed)."""

    size: int
    items: str
    stored: str


@dataclass(frozen=True)
class SmallBatch:
    """A kernel's variant for small batches (:mod:`symcnn.codegen.small_batches`): ``kernel``, unnamed, for
    batches of fewer than ``below`` images. ``forms``: the suffixes the module names the variant and the kernel
    by, each with what it is (for the docstring of the function that calls the one a batch suits)."""

    below: int
    kernel: "Kernel"
    forms: tuple[tuple[str, str], tuple[str, str]] = (("rows", "parallel over output features"),
                                                      ("groups", "parallel over groups of images"))


@dataclass(frozen=True)
class BatchUnroll:
    """A lane-blocked weight gradient's batch loop stepping by several images (``loop``), each
    update adding their products in the batch's order, then the rest of the batch (``rest``) one
    image at a time, with the kernel's own updates; ``around``, ``broadcasts`` and ``updates`` as
    in :class:`Lanes`."""

    loop: Loop
    rest: Loop
    around: tuple[Loop, ...]
    broadcasts: tuple[tuple[str, str], ...]
    updates: tuple[str, ...]


@dataclass(frozen=True)
class Epilogue:
    """What a store writes instead of the sum: ``value``, printed in terms of ``stored`` (the sum,
    assigned first) and of ``loads`` (name, printed read), read at the stored element's index
    (:mod:`symcnn.codegen.epilogue`: an element-wise op's input gradient fused into the kernel
    that computes its upstream gradient)."""

    loads: tuple[tuple[str, str], ...]
    value: str


@dataclass(frozen=True)
class Registers:
    """A kernel's tile (a per-image kernel's row, a weight gradient's whole tile, each image summed into it)
    summed in blocks held in local variables (:mod:`symcnn.codegen.backends.numba_cpu.registers`):
    ``outer`` loops over the tile's blocks,
    ``group`` over its lanes in groups, ``inner`` (if not empty) over the blocks again, inside the group's loop;
    each block's values are loaded (``loads``), summed over the
    ``reduction`` loops (``reads`` first: the broadcast values and the group's streamed ones, then
    ``updates``) and stored back (``stores``); the template makes the block a function of its own, called
    with ``arguments``: this one on CPUs with 512-bit vectors, ``narrow`` (if any) on the others."""

    outer: tuple[Loop, ...]
    group: Loop
    loads: tuple[str, ...]  # printed statements, ``acc0_3 = row0[3]``
    reduction: tuple[Loop, ...]
    reads: tuple[tuple[str, str], ...]  # (name, printed read)
    updates: tuple[str, ...]  # printed statements, one per value of the block
    stores: tuple[str, ...]  # printed statements, ``row0[3] = acc0_3``
    arguments: tuple[str, ...] = ()  # the names the block reads from its kernel (it is a function of its own)
    narrow: Optional["Registers"] = None  # the same in smaller blocks, for 256-bit vectors (registers.py)
    inner: tuple[Loop, ...] = ()  # the blocked axis's loop when it runs inside the group's (registers.py)
    views: tuple[tuple[str, str], ...] = ()  # (name, printed view) loads and stores read: ``row0 = tile[j, group:]``


@dataclass(frozen=True)
class StagedSum:
    """A second output of a weight gradient summed over the batch: a sum of the operand one of its per-image
    copies holds, over every axis but the lane (a bias's gradient, ``sum dL/dY``, in the kernel that stages
    ``dL/dY`` for its weight's: :mod:`symcnn.codegen.parameter_fusion`).

    Each chunk of images adds every image's copy into ``name`` (float64, of ``shape``: the copy's lane
    axes): for each ``block`` of its lanes, one local sum per lane (``initial``), each updated (``updates``)
    inside ``loops`` (over the copy's other axes, in its order) and added into ``name`` (``stores``). The
    chunks' sums are stored in ``sums`` (``sums[chunk, ...] = name[...]`` over ``chunk_loops``, ``index``),
    then added in order into each element of ``output`` (``reduction``, inside ``store_loops``), ``store``.
    """

    output: str
    name: str
    shape: tuple[str, ...]
    block: Loop
    initial: tuple[str, ...]  # printed statements: ``lane_sum0 = 0.0``
    loops: tuple[Loop, ...]
    updates: tuple[str, ...]  # printed: ``lane_sum3 += grad_output_t[axis0, axis1, axis2 + 3]``
    stores: tuple[str, ...]  # printed: ``staged_sum[axis2 + 3] += lane_sum3``
    chunk_loops: tuple[Loop, ...]
    index: str  # printed index of ``name`` (and of ``sums`` after the chunk) over ``chunk_loops``
    store_loops: tuple[Loop, ...]
    reduction: Reduction  # the chunks' sums of one output element, into ``total``
    store: str  # printed output element, ``grad_bias[c_out]``


@dataclass(frozen=True)
class ChunkRows:
    """A weight gradient's chunk tiles summed into its output a block of lanes at a time (the lanes
    schedule's chunks, :class:`Lanes`): for each value of ``outer`` (the tile's axes but the lane, in the
    tiles' order, the first the parallel loop) and each of ``blocks`` blocks of ``width`` lanes, the
    float64 accumulators ``row[lane]`` start at ``initial``, add each chunk's row in the chunks' order
    (``update``: a vector loop along the tiles' rows) and are stored (``store``). Each element's sum is the
    one a scalar accumulator per element makes, bit for bit. Where the lane is the output's first axis (a
    convolution's output channels), the block bounds how many of its rows the stores cross at once, so
    that their pages stay in the TLB (measured, suite-wide's conv3, 128 lanes: docs/performance.md)."""

    outer: tuple[Loop, ...]
    width: int
    blocks: int
    initial: str  # printed: ``0.0``
    update: str  # printed: ``row[lane] += tiles[chunk, c_in, u, v, lane + 32*lane_block]``
    store: str  # printed: ``grad_weight[lane + 32*lane_block, c_in, u, v] = row[lane]``


@dataclass(frozen=True)
class TransposedStore:
    """The printed pieces of a lanes tile's store through transposed blocks (the template's ``transposed_store``):
    the rows and lanes whole blocks fill, each block's lane and row ranges, the element of ``tile_t`` stored, and
    the test for rows past the last whole block."""

    whole_rows: str
    whole_lanes: str
    lane_range: str
    row_range: str
    block_element: str
    rows_left: str


@dataclass(frozen=True)
class Lanes:
    """The lanes schedule of a kernel whose one term is ``broadcast * streamed``.

    One output axis, the lane, indexes only the streamed operand: the innermost loop runs along it,
    contiguous in the staged copies and in ``tile``, an accumulator with the lane axis last, while
    the broadcast value is read once outside that loop. Register blocking: the innermost reduction
    loop is unrolled (``unroll`` terms per update) and the innermost outer tile loop blocked
    (``block`` updates per lane loop), so that each tile element loaded in the lane loop takes
    several multiply-adds, and each streamed value loaded serves several tile elements; the order
    of every element's additions is the formula's, so the sums are the same bit for bit.
    ``over_batch``: the term sums over the
    batch (a weight gradient), so every thread accumulates its share of images into its own tile
    and the tiles are summed at the end; otherwise the tile holds one output row of image ``n``.

    The columns schedule (:mod:`symcnn.codegen.backends.numba_cpu.columns`) has the same loops, its
    lane an axis of output columns (or, in a weight gradient, the columns it sums: the chunks' tiles
    are then summed over the lane too).
    """

    over_batch: bool
    chunks: int  # over_batch: the images are summed in this many chunks (the parallel loop)
    chunk_images: tuple[str, str]  # printed start and stop of chunk ``chunk``'s images
    stagings: tuple[Staging, ...]
    rows: tuple[Loop, ...]  # output loops outside the tile, after the batch (rows schedule)
    # not over_batch: the printed number of parallel work items and item ``item``'s image and row
    # part (the first row loop runs over that part's rows), or ("", "", ""): one item per image
    parts: tuple[str, str, str]
    tile: tuple[Loop, ...]  # the tile's loops, the lane last (its stop is the runtime ``lanes``)
    tile_shape: tuple[str, ...]
    lane_extent: str  # the streamed argument's lane axis, ``weight.shape[0]``: a runtime value
    tile_index: str  # printed index of the tile element of the current output element
    # printed initial value of a tile element of the rows schedule: the sum's constant term, or its
    # identity (the tiles summed over the batch are allocated zero-filled: the identity of a sum)
    init: str
    # The loops around the lane loop: the term's reduction (the batch excluded), then the tile's
    # outer loops; the innermost of each may step by a block (register blocking, below).
    around: tuple[Loop, ...]
    broadcasts: tuple[tuple[str, str], ...]  # (name, printed read), hoisted out of the lane loop
    # printed statements, one per blocked tile element: ``element = element + product + ...``, each
    # product in terms of a broadcast name, added one after another in the formula's order
    updates: tuple[str, ...]
    store: str  # printed output element that a tile element is written to
    # over_batch only: > 0, the lane axis is summed in blocks of this width, in parallel, each
    # block's tile taking every image in order (see symcnn.codegen.backends.numba_cpu.lanes._lane_block);
    # 0, in chunks of the batch. ``block_bounds``: the printed number of blocks, block ``block``'s first
    # lane and its width (from the runtime ``lanes``)
    lane_block: int = 0
    block_bounds: tuple[str, str, str] = ("", "", "")
    # over_batch in chunks only: the printed number of chunks (``chunks`` of a small batch are
    # fewer), and the sum of the chunks' tiles into each output element: in rows of lanes (:class:`ChunkRows`,
    # the lanes schedule's), or one element at a time (``chunk_sum``, the columns schedule's, which sums the
    # lanes too)
    chunk_count: str = ""
    chunk_sum: Optional[Reduction] = None
    chunk_rows: Optional[ChunkRows] = None
    # the columns schedule's chunk_sum only: the loops of that sum, in the tiles' own order (the first parallel), so
    # that it reads ``tiles`` along its rows; in the output's order it read one element of each cache
    # line at a time (measured: 3 of the 8 ms of a 128-channel weight gradient)
    chunk_loops: tuple[Loop, ...] = ()
    # per image only: several images per work item, the tile's first axis (``slot``) one per image
    images: Optional[ImageGroups] = None
    # lane-blocked only: the batch summed several images per update, then the rest one at a time
    batch_unroll: Optional[BatchUnroll] = None
    # lane-blocked only: the printed first row of block ``block`` when the blocks split the tile's
    # rows too (each block ``height`` rows by ``lane_block`` lanes), or "" (every block takes every row)
    row_start: str = ""
    # not over_batch: the loops that store the tile into the output, in order (the columns schedule:
    # the lane last, over the output's columns only); empty: the tile's loops, the lane first
    stores: tuple[Loop, ...] = ()
    # not over_batch: what each store writes instead of its tile element (:class:`Epilogue`), or None
    epilogue: Optional[Epilogue] = None
    # per image, one row by the lanes: the tile stored along the output's rows (its last axis) through square
    # blocks transposed in vector registers (symcnn.runtime.transpose), not element by element across them
    transposed: Optional["TransposedStore"] = None
    # per image only: the tile summed in register blocks instead of ``around``/``updates`` (:class:`Registers`)
    registers: Optional[Registers] = None
    # over_batch in chunks only: a second output summed from a per-image copy (:class:`StagedSum`), or None
    staged_sum: Optional[StagedSum] = None


@dataclass(frozen=True)
class Separable:
    """A small 2-D transform ``M d M^T`` of each lane's tile, in two passes of the 1-D transform ``M``
    (:mod:`symcnn.codegen.backends.numba_cpu.winograd`): for each ``row`` of ``rows``, over the lanes,
    ``first_reads`` (``p0 = ...``), ``statements`` (``q0 = ...``: ``M`` times the ``p``, printed) and
    ``first_stores`` into ``between`` (of ``between_shape``); then for each ``column`` of ``columns``, over
    the lanes, ``second_reads`` from ``between``, ``statements`` again and ``second_stores``."""

    lane: Loop  # the vector loop, its stop a runtime value
    rows: int
    columns: int
    first_reads: tuple[str, ...]  # printed statements, in terms of ``row`` and the lane
    statements: tuple[str, ...]
    first_stores: tuple[str, ...]
    between: str
    between_shape: tuple[str, ...]
    second_reads: tuple[str, ...]  # in terms of ``column`` and the lane
    second_stores: tuple[str, ...]


@dataclass(frozen=True)
class Winograd:
    """A 3 x 3, stride-1 convolution's forward pass by Winograd's minimal filtering F(m x m, 3 x 3)
    (:mod:`symcnn.codegen.backends.numba_cpu.winograd`): ``filter_copy`` and ``filters`` make each input
    channel's transformed filters (``u``, of ``u_shape``) once a call, in parallel over ``filter_loop``; each work
    item (the kernel's one output loop) takes ``images`` images: ``copy`` stages them zero-padded, channels last;
    for each of their tiles (``tile_origin``: printed ``(name, value)`` from ``t``) ``inputs`` transforms a tile
    of the copy into ``v_tiles`` (of ``v_shape``: position, tile, channel); ``registers`` sums the
    products of each of the ``positions`` tile positions ``e`` into ``product`` (of ``product_shape``, zeroed);
    ``outputs`` transforms each tile's products into ``y``, and each output element of the tile inside the
    output (``store_loops``) is stored as ``value`` (printed from ``y`` and the formula's constant term) through
    ``epilogue``. ``constants``: ``(name, printed value)``, the transforms' coefficients in the input's dtype."""

    images: int
    tiles: str  # printed: the tiles of an item's images (those past the batch's end excluded)
    positions: int
    filter_loop: Loop
    filter_copy: Staging
    filters: Separable
    u_shape: tuple[str, ...]
    copy: Staging
    tile_origin: tuple[tuple[str, str], ...]
    inputs: Separable
    v_shape: tuple[str, ...]
    product_shape: tuple[str, ...]
    registers: Registers
    outputs: Separable
    y_shape: tuple[str, ...]
    store_loops: tuple[Loop, ...]  # the tile's rows and columns inside the output, then the lanes
    image: str  # printed statement: the stored tile's image (the formula's index), from the item's and ``slot``
    store: str  # printed output element
    value: str  # printed: what it is, before the epilogue
    constants: tuple[tuple[str, str], ...]
    epilogue: Optional[Epilogue] = None


@dataclass(frozen=True)
class SavedStatistics:
    """A training-mode forward kernel's statistics kept for its layer's backward pass
    (:mod:`symcnn.codegen.saved_statistics`): its precomputed arrays ``rows`` (names) are the rows of its
    ``statistics`` argument, of shape ``(len(rows), *shape)`` (``shape``: constants, ``"N"`` for the batch);
    ``tracked``: (a buffer's role, the row of the batch value it follows), batch norm's mean and variance."""

    rows: tuple[str, ...]
    shape: tuple
    tracked: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Kernel:
    """One generated function, fully printed: the template only lays it out."""

    name: str
    formula: str  # for the docstring
    arguments: tuple[str, ...]  # arrays, in order; the output last
    output: str
    output_loops: tuple[Loop, ...]
    # "sum": each output element accumulates its terms (gather); "accumulate": each output tile
    # (the last two output axes, innermost) is zeroed, then every term adds into it, the reduction
    # loops outside, so that the innermost loop runs along a row; "max": window max with argmax;
    # "lanes" and "columns" (vectorized over channels or over columns): see :class:`Lanes`; "phases": see
    # ``phases``; "winograd": see :class:`Winograd`.
    kind: str = "sum"
    terms: tuple[Term, ...] = ()
    tile: tuple[Loop, ...] = ()  # the inner output loops of an "accumulate" kernel
    # "sum" and "accumulate": what the terms add into, printed (``acc``, or an output element)
    accumulator: str = ""
    # printed identity of the kernel's reduction, where its accumulator starts: ``0.0`` for a sum,
    # ``x.dtype.type(-np.inf)`` for a max kernel's maximum so far (in its input's dtype)
    initial: str = ""
    result: Optional[str] = None  # a scalar kernel's return value, printed (the loss's -acc/N)
    switch: Optional[str] = None  # the argmax output of a max kernel
    # A max kernel scans each window in row-major order: ``value`` (the template's name) is read
    # from ``window_value`` and replaces the maximum so far, ``best``, and its offset when
    # ``window_test`` holds (the formula's tie rule, printed with those two names), the offset
    # starting at the first element's.
    window: tuple[Loop, ...] = ()  # the window loops of a max kernel
    window_value: str = ""
    window_offset: str = ""
    window_first_offset: str = ""
    window_test: str = ""
    imports: frozenset = frozenset()  # (module, name) the printed code calls
    batch_from: str = ""  # the argument whose first axis is the batch size N
    lanes: Optional[Lanes] = None
    # the argument whose row-major reshape the output is, element for element (flatten), or "":
    # a runtime may pass a view of it instead of calling the kernel
    reshape_of: str = ""
    # (name, printed reshape of an argument): views the terms read, made before the loops
    views: tuple[tuple[str, str], ...] = ()
    # arrays of loop-invariant reductions, filled before the output loops (symcnn.codegen.invariants)
    precomputed: tuple = ()
    # "phases": the kernel in parts run one after another, each a kernel (of any kind) writing a
    # strided view of the output, defined among ``views`` (symcnn.codegen.phases)
    phases: tuple["Kernel", ...] = ()
    # how many outer loops every output shares, printed once around them all: in "phases", the batch's and the
    # channels' (symcnn.codegen.phases.shared_loops), so that each image-channel plane is written by every phase
    # while it is in cache; or the one loop the precomputed arrays are filled in too (``invariants_inside``)
    shared_loops: int = 0
    # "phases" of vector kernels over the same work items: the per-image copies they share, each item computing
    # its rows of every phase in one parallel loop (symcnn.codegen.phase_items); None: a loop per phase
    one_item: Optional[tuple[Staging, ...]] = None
    # the precomputed arrays filled inside the shared loop, a value at a time, just before the outputs that read
    # them, not in loops of their own before the outputs' (symcnn.codegen.invariant_loops)
    invariants_inside: bool = False
    # "sum": the output element's index, its variables in the output's axis order, where the output loops run in
    # another (symcnn.codegen.invariant_loops); empty: the output loops' order
    output_index: tuple[str, ...] = ()
    # "sum" and "accumulate": what each output element is stored as instead of its sum, or None
    epilogue: Optional[Epilogue] = None
    # the same kernel scheduled for CPUs with 256-bit vectors where their cost model chooses otherwise
    # (symcnn.codegen.widths), unnamed: the module names both (the variant with this docstring) and calls
    # the one its CPU suits
    narrow: Optional["Kernel"] = None
    # the kernel of the same module whose register-block functions this one calls, its blocks being the same
    # (a weight gradient's, in the kernel that also sums its bias's: symcnn.codegen.parameter_fusion), or ""
    blocks_of: str = ""
    # a forward kernel that stores its statistics into its ``statistics`` argument for the backward pass, or None
    statistics: Optional[SavedStatistics] = None
    # the same kernel in the scalar form, its loops led by the features' (parallel), for batches of fewer than
    # ``below`` images (symcnn.codegen.small_batches): the module names both and calls the one the batch suits
    small_batch: Optional["SmallBatch"] = None
    # kind "winograd": the convolution by Winograd's minimal filtering (:class:`Winograd`)
    winograd: Optional[Winograd] = None

    @property
    def parallel(self) -> bool:
        """Whether numba compiles it with ``parallel=True``: it has a parallel loop."""
        return any(loop.parallel for loop in self.output_loops) or any(phase.parallel for phase in self.phases)

    @property
    def fastmath(self) -> str:
        """numba's ``fastmath`` flags for this kernel, printed: LLVM may always fuse a multiply and
        an add (``contract``: one rounding instead of two); in a gather kernel whose terms are
        unconditional sums (dense forward, bias gradients, the loss, a normalization's statistics), it
        may also reassociate the sums and ignore the sign of a zero sum, so that a long sum vectorizes. Not in the lanes
        schedule, which keeps each element's order of additions (its blocking is tested bit for
        bit), nor under conditions (measured: ``nsz`` made max pooling's gradient 9x slower); in phases,
        the flags every phase has."""
        return "{" + ", ".join(repr(flag) for flag in self._fastmath_flags()) + "}"

    def _fastmath_flags(self) -> list[str]:
        if self.phases:  # each with the kernel's statistics, computed before its phases
            each = [replace(phase, precomputed=self.precomputed)._fastmath_flags() for phase in self.phases]
            return [flag for flag in each[0] if all(flag in flags for flags in each)]
        flags = ["contract"]
        sums = any(term.loops for term in self.terms) or any(array.reductions for array in self.precomputed)
        if self.kind == "sum" and sums and all(term.condition is None and not term.loads for term in self.terms):
            flags += ["nsz", "reassoc"]
        return flags
