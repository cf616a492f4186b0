"""The kernel-internal copies of the lanes and columns schedules' operands (:class:`Staging`).

- a *padded* copy of a window's operand (:func:`padded_read`), zero beyond the operand, so that the
  loops read zeros where the formula's conditions would test; a kernel whose work items are parts of an
  image's rows copies only the rows its part reads (:func:`part_window`);
- a copy with the *lane axis last* (:func:`lane_last`), so that the innermost loop is contiguous.

Each returns the read of the copy that replaces the formula's read; the copy only moves values.

Example:
    >>> from sympy import Symbol
    >>> i, u = Symbol("i", integer=True), Symbol("u", integer=True)
    >>> affine_range(2*i + u - 1, {i: (0, 15), u: (0, 2)})
    (-1, 31)
"""

from __future__ import annotations

from typing import Optional

import sympy
from sympy import Expr, Indexed, IndexedBase, Symbol

from symcnn.codegen.kernel_ir import Loop, Staging

__all__ = ["affine_range", "copy_loop_order", "in_bounds", "lane_last", "named_array", "padded_read", "part_window"]


def affine_range(expr: Expr, ranges: dict) -> Optional[tuple[int, int]]:
    """The least and greatest value of an affine integer ``expr`` over the box ``ranges``."""
    expr = sympy.expand(expr)
    if not expr.free_symbols <= set(ranges):
        return None
    if expr.free_symbols and sympy.Poly(expr, *expr.free_symbols).total_degree() > 1:
        return None
    if not expr.subs({symbol: 0 for symbol in expr.free_symbols}).is_Integer:
        return None
    if not all(expr.coeff(symbol).is_Integer for symbol in expr.free_symbols):
        return None
    low, high = _extremes(expr, ranges)
    return int(low), int(high)


def _extremes(expr: Expr, ranges: dict) -> tuple[Expr, Expr]:
    """The least and greatest value of the expanded affine ``expr`` (integer coefficients) over the box
    ``ranges``, whose ends may be expressions (``last >= first``): each term at the end its sign picks."""
    low = high = expr.subs({symbol: 0 for symbol in expr.free_symbols})
    for symbol in expr.free_symbols:
        coefficient = expr.coeff(symbol)
        first, last = ranges[symbol]
        low += coefficient * (first if coefficient >= 0 else last)
        high += coefficient * (last if coefficient >= 0 else first)
    return low, high


def in_bounds(read: Indexed, shape, ranges: dict, image) -> bool:
    """Every index of ``read`` but the image's stays inside ``shape`` over the box ``ranges`` (a
    phase's read whose bounds hold everywhere: :mod:`symcnn.codegen.phases` dropped them)."""
    spans = [(affine_range(index, ranges), size) for index, size in zip(read.indices, shape) if index != image]
    return all(span is not None and size.is_Integer and 0 <= span[0] and span[1] <= size - 1 for span, size in spans)


def named_array(lowering, name: str) -> IndexedBase:
    """An array of the kernel's own, printed by ``name``."""
    base = IndexedBase(name)
    lowering.printer.array_names[base] = name
    return base


def padded_read(lowering, read: Indexed, shape, image, ranges, stagings, always: bool = False,
                part_rows: Optional[dict] = None) -> Optional[Expr]:
    """The read from a zero-padded per-image copy when its indices are affine (or ``always``: a copy
    as wide as ``ranges`` reach, zeros beyond the operand); else ``read``. ``part_rows``
    (:func:`~symcnn.codegen.backends.numba_cpu.lanes._part_rows`): each work item computes only a part
    of the rows, so it copies only the operand's rows that part reads (the rest of its copy is never
    read)."""
    if not always and all(index.is_Symbol or index.is_Integer for index in read.indices):
        return read
    name = f"{lowering.names[read.base]}_padded"
    base = named_array(lowering, name)
    if image not in read.indices:
        return None  # an operand without a batch axis read through a window: not a case we have
    extents, offsets, loops, target, source, kept = [], [], [], [], [], []
    for axis, (index, size) in enumerate(zip(read.indices, shape)):
        if index == image:
            source.append(image)
            continue
        span = affine_range(index, ranges)
        if span is None or not size.is_Integer:
            return None
        low, high = min(span[0], 0), max(span[1], int(size) - 1)
        variable = Symbol(f"a{axis}", integer=True, nonnegative=True)
        extents.append(high - low + 1)
        offsets.append(-low)
        window = part_window(index, ranges, part_rows or {})
        if window is None:
            loops.append(Loop(str(variable), str(size)))
        else:
            printer = lowering.printer.doprint
            loops.append(Loop(str(variable), printer(sympy.Min(size, window[1] + 1, evaluate=False)), False,
                              printer(sympy.Max(0, window[0], evaluate=False))))
        target.append(variable - low)
        source.append(variable)
        kept.append((index, int(size)))
    zeroed = any(offset != 0 or extent != size for offset, extent, (_, size) in zip(offsets, extents, kept))
    stagings.append(Staging(name, tuple(str(extent) for extent in extents), tuple(loops),
                            ", ".join(lowering.code(t) for t in target), lowering.code(read.base[tuple(source)]),
                            per_image=True, zeroed=zeroed))
    return base[tuple(index + offset for (index, _), offset in zip(kept, offsets))]


def part_window(index: Expr, ranges: dict, part_rows: dict) -> Optional[tuple[Expr, Expr]]:
    """The least and greatest value of the affine ``index`` (integer coefficients: :func:`affine_range`
    holds) when the rows of ``part_rows`` take their part's range, or ``None`` when it reads none of them.

    >>> i, u, part = (Symbol(name) for name in ("i", "u", "part"))
    >>> part_window(2*i + u - 1, {i: (0, 15), u: (0, 2)}, {i: (8*part, 8*part + 7)})
    (16*part - 1, 16*part + 15)
    """
    if not index.free_symbols & set(part_rows):
        return None
    return _extremes(sympy.expand(index), {**ranges, **part_rows})


def lane_last(lowering, read: Indexed, shape, lane, image, stagings) -> Expr:
    """The streamed read from a copy with the lane axis last (and the image's batch axis dropped);
    ``read`` itself when the lane axis is already its last."""
    if read.indices[-1] == lane:
        return read
    name = f"{lowering.names[read.base]}_t"
    base = named_array(lowering, name)
    order = [index for index in read.indices if index not in (lane, image)] + [lane]
    sizes = dict(zip(read.indices, shape))
    loops = tuple(Loop(lowering.printer.doprint(index), lowering.code(sizes[index]))
                  for index in copy_loop_order(order, read.indices[-1], sizes[read.indices[-1]]))
    stagings.append(Staging(name, tuple(lowering.code(sizes[index]) for index in order), loops,
                            ", ".join(lowering.printer.doprint(index) for index in order), lowering.code(read),
                            per_image=image in read.indices, zeroed=False))
    return base[tuple(order)]


# A row of the operand this long or longer fills a 64-byte cache line in float32.
ROW_BY_ROW_MIN = 16


def copy_loop_order(order: list, row: Expr, row_extent) -> list:
    """The loops of a lane-last copy, outermost first: the copy's own ``order`` (its lane last), except
    that the lane loop goes just outside the operand's contiguous ``row`` axis when rows hold at least
    ``ROW_BY_ROW_MIN`` elements and an outer axis remains. A copy in the copy's order reads one element
    of each lane's row, ``H*W`` apart; row by row, each lane's row is read contiguously while the few
    rows of the copy that one outer step writes stay in L1 (measured with numba on 32 images, float32: a
    64 x 32 x 32 slice 9.6 ms in the copy's order, 2.8 ms in the source's, 1.9 ms row by row; 128 x 8 x 8,
    rows of 8: 0.10, 0.28, 0.18). A matrix (no outer axis: a dense layer's weight) keeps the copy's
    order, whose writes are contiguous; row by row it would write the whole copy a column at a time.

    >>> from sympy import Symbol
    >>> i, j, c = (Symbol(name, integer=True) for name in "ijc")
    >>> copy_loop_order([i, j, c], j, sympy.Integer(32))
    [i, c, j]
    >>> copy_loop_order([i, j, c], j, sympy.Integer(8))
    [i, j, c]
    >>> copy_loop_order([j, c], j, sympy.Integer(1352))
    [j, c]
    """
    outer = [index for index in order[:-1] if index != row]
    if row not in order or not outer or not (sympy.sympify(row_extent).is_Integer and row_extent >= ROW_BY_ROW_MIN):
        return list(order)
    return outer + [order[-1], row]
