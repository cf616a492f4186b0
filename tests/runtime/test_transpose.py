"""A square block transposed in vector registers (symcnn.runtime.transpose): the lanes schedule's tile store."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from symcnn.runtime.transpose import VECTOR_BYTES, block_side, interleavings, transpose_block


@numba.njit(cache=False)
def _transposed(source, row, column):
    target = np.full((block_side(source), block_side(source)), -1.0, dtype=source.dtype)
    transpose_block(source, row, column, target)
    return target


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_block_anywhere_in_an_array_is_its_transpose(dtype):
    rng = np.random.default_rng(0)
    source = rng.standard_normal((37, 45)).astype(dtype)
    side = VECTOR_BYTES // source.itemsize
    for row, column in [(0, 0), (3, 7), (37 - side, 45 - side), (1, 45 - side)]:
        assert np.array_equal(_transposed(source, row, column), source[row:row + side, column:column + side].T)


def test_the_side_is_one_vector_of_the_dtype_in_python_and_in_numba():
    for dtype in (np.float32, np.float64):
        array = np.zeros((32, 32), dtype)
        assert block_side(array) == VECTOR_BYTES // array.itemsize == _transposed(array, 0, 0).shape[0]


@pytest.mark.parametrize("side", [2, 4, 8, 16])
def test_log2_rounds_of_interleaving_transpose_any_power_of_two(side):
    rows = [[(r, c) for c in range(side)] for r in range(side)]
    low, high = interleavings(side)
    for _ in range(side.bit_length() - 1):
        rows = [[(a + b)[index] for index in mask] for a, b in
                ((rows[i], rows[i + side // 2]) for i in range(side // 2)) for mask in (low, high)]
    assert rows == [[(r, c) for r in range(side)] for c in range(side)]


def test_other_layouts_are_refused_at_compile_time():
    with pytest.raises(numba.core.errors.TypingError):
        _transposed(np.zeros((32, 32), np.float32, order="F"), 0, 0)
