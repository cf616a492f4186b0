"""Symbol tensors with the documents' element names (``x00``, ``w01``, upstream ``a b c d``).

Naming rule: a tensor's element ``prefix[idx]`` is named ``prefix`` followed by the indices of
every axis whose size is more than 1, and always of the last two axes (the spatial ones of an
NCHW tensor). Indices are written as digits when all are below 10 (``x012``: channel 0, row 1,
column 2), and joined with ``_`` otherwise (``x_0_12``). The upstream gradient of a single 2×2
output map is ``a b c d`` as in document 002; any other upstream gradient is ``g`` + indices.
:func:`symbol_table` maps every name back to its tensor and full NCHW index.

Example:
    >>> symbol_array("x", (1, 1, 2, 2)).tolist()
    [[[[x00, x01], [x10, x11]]]]
    >>> upstream_array((1, 1, 2, 2)).tolist()
    [[[[a, b], [c, d]]]]
"""

from __future__ import annotations

import itertools
from typing import Iterable, Mapping, Sequence

import sympy
from sympy import Array, Symbol

__all__ = ["element_name", "symbol_array", "upstream_array", "symbol_table", "as_array", "indices_of"]

DOCUMENT_UPSTREAM = ("a", "b", "c", "d")


def indices_of(shape: Sequence[int]) -> Iterable[tuple[int, ...]]:
    """Every index of ``shape`` in row-major order."""
    return itertools.product(*(range(size) for size in shape))


def element_name(prefix: str, index: Sequence[int], shape: Sequence[int]) -> str:
    """The name of ``prefix[index]`` in a tensor of ``shape``.

    >>> element_name("w", (0, 0, 1, 0), (1, 1, 2, 2))
    'w10'
    >>> element_name("x", (1, 0, 11, 2), (2, 1, 12, 12))
    'x_1_11_2'
    """
    rank = len(shape)
    shown = [index[axis] for axis in range(rank) if shape[axis] > 1 or axis >= rank - 2]
    if all(value < 10 for value in shown):
        return prefix + "".join(str(value) for value in shown)
    return prefix + "_" + "_".join(str(value) for value in shown)


def symbol_array(prefix: str, shape: Sequence[int], real: bool = True) -> Array:
    """A SymPy ``Array`` of ``shape`` whose elements are named symbols (real by default)."""
    shape = tuple(int(size) for size in shape)
    elements = [Symbol(element_name(prefix, index, shape), real=real) for index in indices_of(shape)]
    return Array(elements, shape) if shape else Array(elements[0])


def upstream_array(shape: Sequence[int]) -> Array:
    """The upstream gradient dL/dY for an output of ``shape``: ``a b c d`` for one 2×2 map."""
    shape = tuple(int(size) for size in shape)
    if len(shape) == 4 and shape[:2] == (1, 1) and shape[2:] == (2, 2):
        return Array([Symbol(name, real=True) for name in DOCUMENT_UPSTREAM], shape)
    return symbol_array("g", shape)


def symbol_table(tensors: Mapping[str, Array]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Each symbol's name mapped to ``(tensor role, full index)``, for tensors of symbols."""
    table: dict[str, tuple[str, tuple[int, ...]]] = {}
    for role, array in tensors.items():
        for index in indices_of(array.shape):
            element = array[index]
            if isinstance(element, Symbol):
                table[element.name] = (role, tuple(index))
    return table


def _check_leaves(value, name: str) -> None:
    """Every leaf of a nested list must be a number or a SymPy expression (not a string, not None)."""
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_leaves(item, name)
        return
    if isinstance(value, (bool, str, bytes)) or value is None:
        raise ValueError(f"{name}: expected a rectangular nested list of numbers or symbols, got {value!r}")
    try:
        sympy.sympify(value, strict=True)
    except (sympy.SympifyError, TypeError):
        raise ValueError(f"{name}: expected a rectangular nested list of numbers or symbols, got {value!r}") from None


def as_array(value, name: str) -> Array:
    """``value`` (nested lists, NumPy array or SymPy array) as a SymPy ``Array``.

    Numbers become exact SymPy numbers (floats stay floats). Raises ``ValueError`` naming the
    tensor when the nesting is ragged or an element is not a number or SymPy expression.
    """
    if isinstance(value, sympy.NDimArray):
        return Array(value)
    try:
        import numpy

        if isinstance(value, numpy.ndarray):
            if value.dtype.kind not in "biuf":
                raise ValueError(f"{name}: expected a numeric array, got dtype {value.dtype}")
            return Array(value.tolist(), value.shape)
    except ImportError:  # numpy is a dependency, but the symbolic side does not need it
        pass
    _check_leaves(value, name)
    try:
        return Array(value)
    except (ValueError, TypeError, sympy.SympifyError) as error:
        raise ValueError(f"{name}: expected a rectangular nested list of numbers or symbols ({error})") from None
