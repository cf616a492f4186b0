"""A square block of a 2-D array, transposed in vector registers: the lanes schedule's store of its tile.

Why: a lanes kernel (:mod:`symcnn.codegen.backends.numba_cpu.lanes`) sums one output row into a tile
whose lane axis (the channels) is last, while the output's own last axis is the row's: storing the tile
element by element reads it across its rows, one element per load, or through gathers. On a 3 -> 32
channel 3 x 3 convolution of 32 x 32 maps (batch 64, 2 threads, AMD Zen 4) that store took as long as
the sums: 1.43 ms for the kernel, 0.70 without the store, 1.10 storing the same bytes in the tile's own
order. Loaded as whole vectors (one per tile row) and transposed by shuffles, then stored row by row,
the kernel took 1.19 ms.

How: :func:`transpose_block` loads ``side`` rows of ``side`` elements as vectors, transposes them in
``log2(side)`` rounds of interleaving (each output vector the low or high halves of two inputs,
element by element: after the last round vector ``c`` holds column ``c``), and stores them as the
rows of ``target``. ``side`` (:func:`block_side`) is one vector of the dtype: 16 float32 or 8
float64 in 512 bits on a CPU with AVX-512, 8 or 4 in 256 bits otherwise. It only moves values: the
numbers stored are the tile's, bit for bit. Like every generated kernel it does not bounds-check:
the caller keeps ``row + side`` and ``column + side`` within ``source`` and ``target`` ``side`` by ``side``.

numba's on-disk cache of a kernel does not notice a change here: this file is one of the generator's
sources (:data:`symcnn.runtime.loader.GENERATOR_SOURCES`), so a change makes new packages.

Example:
    >>> import numpy as np, numba
    >>> @numba.njit
    ... def corner_transposed(a):
    ...     out = np.empty((block_side(a), block_side(a)), a.dtype)
    ...     transpose_block(a, 0, 0, out)
    ...     return out
    >>> a = np.arange(400.0).reshape(20, 20)
    >>> bool((corner_transposed(a) == a[:block_side(a), :block_side(a)].T).all())
    True
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic, overload

from symcnn.runtime.vector_width import WIDE_VECTORS

__all__ = ["VECTOR_BYTES", "interleavings", "transpose_block", "block_side"]

#: The bytes of one vector register the blocks fill: 64 (512 bits) with AVX-512, else 32.
VECTOR_BYTES = 64 if WIDE_VECTORS else 32


def _side(dtype) -> int:
    return VECTOR_BYTES * 8 // dtype.bitwidth


def interleavings(side: int) -> tuple[list[int], list[int]]:
    """The shuffle masks of one round: the low halves of two ``side``-element vectors, element by
    element, then the high halves. ``log2(side)`` rounds, each pairing vector ``i`` with ``i + side/2``,
    transpose ``side`` vectors.

    >>> interleavings(4)
    ([0, 4, 1, 5], [2, 6, 3, 7])
    """
    half = side // 2
    return ([index for p in range(half) for index in (p, p + side)],
            [index for p in range(half, side) for index in (p, p + side)])


def block_side(array) -> int:
    """The side of :func:`transpose_block`'s blocks for ``array``'s dtype (in Python: the same number).

    >>> import numpy as np
    >>> block_side(np.zeros(1, np.float32)) * 4 == VECTOR_BYTES
    True
    """
    return VECTOR_BYTES // array.itemsize


@overload(block_side)
def _block_side(array):
    side = _side(array.dtype)
    return lambda array: side


def _pointer(context, builder, array_type, array, indices):
    """The address of ``array[indices]`` (no bounds check, no negative indices), as LLVM's."""
    shape, strides = (cgutils.unpack_tuple(builder, field) for field in (array.shape, array.strides))
    return cgutils.get_item_pointer2(context, builder, array.data, shape, strides, array_type.layout, indices,
                                     wraparound=False)


@intrinsic
def transpose_block(typingctx, source, row, column, target):
    """``target[c, r] = source[row + r, column + c]`` for ``r, c < block_side(source)``: ``side`` vector
    loads, ``side * log2(side)`` shuffles, ``side`` vector stores. Both arrays 2-D, C-contiguous, of
    one float dtype."""
    if not (isinstance(source, types.Array) and isinstance(target, types.Array) and source.ndim == target.ndim == 2
            and source.layout == target.layout == "C" and source.dtype == target.dtype
            and isinstance(source.dtype, types.Float)):
        return None
    side = _side(source.dtype)

    def codegen(context, builder, signature, arguments):
        source_type, row_type, column_type, target_type = signature.args
        source_array = context.make_array(source_type)(context, builder, arguments[0])
        target_array = context.make_array(target_type)(context, builder, arguments[3])
        first_row = context.cast(builder, arguments[1], row_type, types.intp)
        first_column = context.cast(builder, arguments[2], column_type, types.intp)
        vector = ir.VectorType(context.get_data_type(source_type.dtype), side)
        align = source_type.dtype.bitwidth // 8  # an element's: the rows need not start on a vector's bound

        def at(array_type, array, row_index, column_index):
            return builder.bitcast(_pointer(context, builder, array_type, array, [row_index, column_index]),
                                   vector.as_pointer())

        rows = [builder.load(at(source_type, source_array, builder.add(first_row, first_row.type(r)), first_column),
                             align=align) for r in range(side)]
        masks = [ir.Constant(ir.VectorType(ir.IntType(32), side), mask) for mask in interleavings(side)]
        for _ in range(side.bit_length() - 1):
            pairs = [(rows[i], rows[i + side // 2]) for i in range(side // 2)]
            rows = [builder.shuffle_vector(low, high, mask) for low, high in pairs for mask in masks]
        for c in range(side):
            builder.store(rows[c], at(target_type, target_array, first_row.type(c), first_row.type(0)), align=align)
        return context.get_dummy_value()

    return types.none(source, row, column, target), codegen
