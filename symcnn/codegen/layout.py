"""Kernels over reshaped views: a copy that is a reshape (flatten, run as a view), and element-wise or
whole-row sums run as one long loop over views of C-contiguous arguments (which vectorizes where nested
short loops barely did). Used by :mod:`symcnn.codegen.lower`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy
import sympy
from sympy import Indexed, IndexedBase, Symbol

from symcnn.codegen.rewrites import integer_index
from symcnn.symbolic.adjoint import GatherTerm

if TYPE_CHECKING:  # a lowering's names and printer; lower imports this module
    from symcnn.codegen.lower import Lowering

__all__ = ["reshape_of", "image_size", "collapse_image", "collapse_rows"]


def reshape_of(lowering: "Lowering", tensors, indices, shape, batch, terms) -> str:
    """The argument whose row-major reshape the output is, or ``""``.

    A kernel that copies one read per element (no sum, no condition) from an operand with the
    output's batch axis and its number of elements per image, where each element's flat row-major
    offset in the operand is its own in the output, moves nothing: ``flatten`` and its gradient on
    C-contiguous arrays. Checked for every element of one image (the shapes are constants), so a
    runtime may pass ``operand.reshape(output shape)``, a view, instead of calling the kernel.

    Example: ``Y[n, k] = X[n, k // 256, k // 16 % 16, k % 16]`` is the reshape of ``X (N, 32, 16, 16)``.
    """
    if len(terms) != 1 or terms[0].limits or terms[0].conditions or not isinstance(terms[0].body, Indexed):
        return ""
    read = terms[0].body
    source_shape = next(tensor.shape for tensor in tensors if tensor.base == read.base)
    if (not shape or shape[0] != batch or not source_shape or source_shape[0] != batch
            or read.indices[0] != indices[0] or not all(size.is_Integer for size in (*shape[1:], *source_shape[1:]))):
        return ""
    per_image = [int(size) for size in shape[1:]]
    if int(sympy.prod(per_image)) != int(sympy.prod(source_shape[1:])):
        return ""
    positions = numpy.indices(per_image).reshape(len(per_image), -1)  # every element of one image
    arguments = {var: position for var, position in zip(indices[1:], positions)}
    offset = numpy.zeros(positions.shape[1], dtype=numpy.int64)
    for index, size in zip(read.indices[1:], source_shape[1:]):
        if not index.free_symbols <= set(arguments):
            return ""
        # in integers: floor(k/49) evaluated as floor((1/49)*k) in floats is 0 at k = 49
        values = sympy.lambdify(list(arguments), integer_index(index), modules="numpy")(*arguments.values())
        offset = offset * int(size) + numpy.broadcast_to(numpy.asarray(values, dtype=numpy.int64), offset.shape)
    return lowering.names[read.base] if numpy.array_equal(offset, numpy.arange(offset.size)) else ""


def image_size(shape) -> int:
    return int(sympy.prod(shape[1:]))


def _reshapeable(lowering: "Lowering", names) -> bool:
    """Whether every array ``names`` is C-contiguous, so that a reshape is a view: a phase's strided
    view (``grad_input_p11 = grad_input[:, :, 1::2, 1::2]``) is not, and numba refuses its reshape."""
    return not lowering.strided.intersection(names)


def _rows_view(lowering: "Lowering", name: str, leading, extent: int, views: dict) -> IndexedBase:
    """A view of argument ``name`` with its trailing axes as one of ``extent``, registered in ``views``."""
    view = IndexedBase(f"{name}_rows")
    lowering.printer.array_names[view] = str(view)
    sizes = [str(size) if size.is_Integer else f"{name}.shape[{axis}]" for axis, size in enumerate(leading)]
    views[str(view)] = f"{name}.reshape(({', '.join(sizes + [str(extent)])}))"
    return view


def collapse_image(lowering: "Lowering", indices, shape, batch, terms, tensors, output_name: str, views: dict):
    """An element-wise kernel's loops over an image (``c, i, j``) as one loop over reshaped views:
    ``(indices, terms, output view name)``, or ``None`` when a term sums, tests, or reads anything
    but the output's own element of an array of the output's shape. One loop of 16,384 vectorizes
    where 32 of 32 barely did (measured alone on seed004's ReLU gradient: 0.25 -> 0.08 ms)."""
    if len(indices) < 3 or shape[0] != batch or not all(size.is_Integer for size in shape[1:]) \
            or any(term.limits or term.conditions for term in terms):
        return None
    shapes = {tensor.base: tensor.shape for tensor in tensors}
    reads = sorted(set().union(*(term.body.atoms(Indexed) for term in terms)), key=sympy.default_sort_key)
    if not _reshapeable(lowering, [output_name] + [lowering.names.get(read.base, "") for read in reads]):
        return None
    placeholders = {read: Symbol(f"read{position}") for position, read in enumerate(reads)}
    if any(tuple(read.indices) != tuple(indices) or tuple(shapes.get(read.base, ())[1:]) != tuple(shape[1:])
           for read in reads) or any(term.body.xreplace(placeholders).has(*indices[1:]) for term in terms):
        return None
    element = Symbol("".join(str(index) for index in indices[1:]), integer=True, nonnegative=True)
    extent = image_size(shape)
    replaced = {read: _rows_view(lowering, lowering.names[read.base], shape[:1], extent, views)[indices[0], element]
                for read in reads}
    output = _rows_view(lowering, output_name, shape[:1], extent, views)
    return ((indices[0], element), [GatherTerm((), (), term.body.xreplace(replaced)) for term in terms], str(output))


def collapse_rows(lowering: "Lowering", term: GatherTerm, tensors, views: dict) -> GatherTerm:
    """``term`` with its two innermost loops as one, when they run over whole rows and columns
    that every read indexes last: ``sum_{i, j} dL/dY[n, c, i, j]`` as ``sum_p rows[n, c, p]``, over
    ``rows = grad_output.reshape((N, 16, 1024))``, a view (the arrays are C-contiguous). One loop
    of 1,024 vectorizes; 32 of 32 each end in a horizontal sum (measured on seed004's conv1 bias
    gradient: 0.15 -> 0.04 ms). ``views`` collects each view's name and printed reshape."""
    if len(term.limits) < 2 or term.conditions:
        return term
    (row, row_low, row_high), (column, column_low, column_high) = term.limits[-2:]
    if row_low != 0 or column_low != 0:
        return term
    shapes = {tensor.base: tensor.shape for tensor in tensors}
    reads = sorted((read for read in term.body.atoms(Indexed) if read.has(row) or read.has(column)),
                   key=sympy.default_sort_key)
    placeholders = {read: Symbol(f"read{position}") for position, read in enumerate(reads)}
    if not reads or term.body.xreplace(placeholders).has(row, column):
        return term  # the loop variables appear outside the reads
    if not _reshapeable(lowering, [lowering.names.get(read.base, "") for read in reads]):
        return term
    for read in reads:
        shape = shapes.get(read.base)
        if (shape is None or tuple(read.indices[-2:]) != (row, column)
                or any(index.has(row, column) for index in read.indices[:-2])
                or tuple(shape[-2:]) != (row_high + 1, column_high + 1)):
            return term
    pixel = Symbol(f"{row}{column}", integer=True, nonnegative=True)
    extent = (row_high + 1) * (column_high + 1)
    replaced = {read: _rows_view(lowering, lowering.names[read.base], shapes[read.base][:-2], int(extent), views)[
        tuple(read.indices[:-2]) + (pixel,)] for read in reads}
    return GatherTerm(term.limits[:-2] + ((pixel, sympy.S.Zero, extent - 1),), term.conditions,
                      term.body.xreplace(replaced))
