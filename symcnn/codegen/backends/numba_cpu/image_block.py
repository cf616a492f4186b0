"""Image blocking for the lanes schedule: several images per work item, one weight load for all.

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

Example:
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

from symcnn.codegen.kernel_ir import ImageGroups
from symcnn.printing.nodes import FloorDiv

__all__ = ["IMAGE_BLOCK", "IMAGE_TILE_ELEMENTS", "ImageBlock", "blocked_by_images", "image_block",
           "image_block_size"]

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
