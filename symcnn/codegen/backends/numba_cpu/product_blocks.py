"""Blocks for the lanes schedule's matrix-product-shaped kernels (dense layers, 1x1 convolutions).

Image blocking: several images per work item, one weight load for all.

A dense layer's forward pass ``Y[n, i] = b[i] + sum_k W[i, k]*X[n, k]`` in the lanes schedule keeps
one tile row per image (``tile[i]``, the 256 outputs of fc1) and streams the whole weight through it
for every image: each weight value loaded serves one multiply-add, and the weight (1.4 MB) comes
from L3 once per image. There is no output column to block over (a convolution's neighbouring
pixels), so the tile gets one: the images. A work item takes ``size`` images; its tile holds one row
for each (``tile[slot, i]``); each update of the lane loop adds one image's products, so a weight
value loaded serves every image of the item, and the weight is read once per item. (That is the
register tile of a matrix product: images x lanes, the reduction outside the lane loop.)

Each image still adds the formula's terms in the formula's order: the same sums, bit for bit, as
one image at a time, whatever the number of images or threads. The last item of a batch that the
block size does not divide reads its missing images' rows from the batch's last image (a valid
read; their sums are computed and not stored).

A dense layer's weight gradient ``dW[i, k] = sum_n dY[n, i]*X[n, k]`` sums every image into one
tile, in the batch's order; its tile (256 x 1,352 for fc1) is summed in parallel blocks of its lanes
that fit L1. With many rows those blocks are narrow (16 lanes: a lane loop of one or two vectors,
its overhead as long as its work), so :func:`row_block` blocks the rows too (16 rows x 256 lanes),
and :func:`batch_unrolled` adds several images per update, so that a tile element loaded takes
several multiply-adds. (Measured on a hand-written twin of fc1's weight gradient, 1 thread, best of
40: 1.1 ms in blocks of 16 lanes, 1.0 ms in blocks of 16 rows x 256 lanes, 0.44 ms with four
images per update, 0.46 ms at 32 x 128, 0.50 ms at 64 x 64.)

Example:
    >>> row_block([256, 1352], lane_block=16, lanes=1352, budget=5120)
    (256, 16)
    >>> row_block([10, 8192], lane_block=512, lanes=8192, budget=5120)  # wide enough already
    (512, 0)
    >>> image_block_size(rows=[], tile_vars=["i"], per_image_stagings=False, streamed_per_image=False,
    ...                  lanes=256)
    4
    >>> image_block_size(rows=[], tile_vars=["i"], per_image_stagings=False, streamed_per_image=False,
    ...                  lanes=8192)  # four rows of 8,192 would not stay in L1
    0
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import sympy
from sympy import Symbol

from symcnn.codegen.kernel_ir import BatchUnroll, ImageGroups, Loop
from symcnn.printing.nodes import FloorDiv

__all__ = ["BATCH_UNROLL", "IMAGE_BLOCK", "IMAGE_TILE_ELEMENTS", "WIDE_LANES", "ImageBlock", "batch_unrolled",
           "blocked_by_images", "image_block", "image_block_size", "row_block"]

#: Images per work item: with ``UNROLL`` reduction values each, ``IMAGE_BLOCK * UNROLL`` broadcast
#: values stay in registers (16 of AVX-512's 32). Measured on a hand-written twin of
#: suite-mlp-head's fc1 forward (64 x 1,352 -> 256, float32, 1 thread, best of 15): 1.2 ms one image
#: at a time, 0.61 ms four at a time, 0.71 ms eight (unrolled 2).
IMAGE_BLOCK = 4

#: An item's tile (``size`` rows of the lanes) holds at most this many elements (24 KiB of float32:
#: it stays in L1 while the weight streams past it).
IMAGE_TILE_ELEMENTS = 6144


class ImageBlock(NamedTuple):
    """How a kernel's images are grouped: ``slot`` indexes the tile's new leading axis; the item's
    image ``slot`` is ``image`` (for the store) and is read at ``read_image`` (clamped to the batch)."""

    size: int
    slot: Symbol
    image: sympy.Expr
    read_image: sympy.Expr
    groups: ImageGroups


def image_block_size(rows, tile_vars, per_image_stagings: bool, streamed_per_image: bool, lanes: int) -> int:
    """Images per work item for a per-image lanes kernel, or 0 (one image at a time).

    Only a tile that is one row of lanes (no output column to block over, no row loop) whose
    broadcast operand is read in place (no per-image copy to make for each image) and whose streamed
    operand is the same for every image (the weight) is blocked, and only as far as its tile stays
    small."""
    if rows or len(tile_vars) != 1 or per_image_stagings or streamed_per_image:
        return 0
    size = min(IMAGE_BLOCK, IMAGE_TILE_ELEMENTS // lanes)
    return size if size >= 2 else 0


def image_block(lowering, image: Symbol, batch, size: int) -> ImageBlock:
    """The image block of ``size`` images: item ``item``'s slot ``slot`` is image ``size*item + slot``."""
    printer = lowering.printer.doprint
    item = Symbol("item", integer=True, nonnegative=True)
    slot = Symbol("slot", integer=True, nonnegative=True)
    first = size * item
    groups = ImageGroups(size=size, items=printer(FloorDiv(batch + size - 1, size)),
                         stored=printer(sympy.Min(size, batch - first)))
    return ImageBlock(size, slot, first + slot, sympy.Min(first + slot, batch - 1), groups)


def blocked_by_images(lowering, over_batch: bool, rows, tile_vars, stagings, streamed_read, image, batch,
                      lanes: int) -> Optional[ImageBlock]:
    """The image block of a lanes kernel (:func:`image_block_size`), or ``None``."""
    if over_batch:
        return None
    size = image_block_size(rows, tile_vars, any(s.per_image for s in stagings),
                            image in streamed_read.free_symbols, lanes)
    return image_block(lowering, image, batch, size) if size else None


#: A lane-blocked weight gradient whose blocks are narrower than half this many lanes is blocked
#: over its rows too, its blocks this wide (or half that, for 256 to 511 lanes).
WIDE_LANES = 256


def row_block(tile_extents: list[int], lane_block: int, lanes: int, budget: int) -> tuple[int, int]:
    """``(width, height)``: a lane-blocked weight gradient's blocks, ``width`` lanes by ``height``
    rows of its tile (a divisor of them, the block within ``budget`` elements); ``height`` 0: its
    lane blocks, ``lane_block`` wide, take every row."""
    if not lane_block or len(tile_extents) != 2 or 2 * lane_block >= WIDE_LANES:
        return lane_block, 0
    width = WIDE_LANES
    while 2 * width > lanes and width > lane_block:
        width //= 2
    rows = tile_extents[0]
    height = next(size for size in range(min(rows, budget // width), 0, -1) if rows % size == 0)
    return (width, height) if width > lane_block and height < rows else (lane_block, 0)


#: A lane-blocked weight gradient (a dense layer's: every image added into one tile, in order) adds
#: this many images per update: each tile element loaded takes that many multiply-adds, in the
#: batch's order (then the rest of the batch one image at a time).
BATCH_UNROLL = 4


def batch_unrolled(lowering, register_blocks, batch_loop: Symbol, batch, broadcast_read, streamed_read,
                   tile_element, outer_tile, block: int) -> Optional[BatchUnroll]:
    """The batch loop of a lane-blocked weight gradient stepping by ``BATCH_UNROLL`` images: the
    updates of images ``n, n + 1, ...`` summed in order into each tile element (``register_blocks``
    is the lanes schedule's, the batch offset its innermost reduction, unrolled whole); ``None`` when
    ``BATCH_UNROLL`` is 1."""
    if BATCH_UNROLL < 2:
        return None
    printer = lowering.printer.doprint
    offset = Symbol("image_offset", integer=True, nonnegative=True)
    at = {batch_loop: batch_loop + offset}
    around, broadcasts, updates = register_blocks(
        lowering, [(offset, 0, BATCH_UNROLL - 1)], outer_tile, broadcast_read.subs(at), streamed_read.subs(at),
        tile_element, BATCH_UNROLL, block)
    stop = printer(batch - sympy.Mod(batch, BATCH_UNROLL))
    variable = printer(batch_loop)
    return BatchUnroll(Loop(variable, stop, False, "0", BATCH_UNROLL), Loop(variable, "N", False, stop),
                       around, broadcasts, updates)
