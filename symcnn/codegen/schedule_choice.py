"""Which schedule a sum kernel gets: its vector schedules' candidates and the scalar form, by the cost model.

:func:`vector_schedule` gathers the candidates of a kernel that is one product ``broadcast * streamed``
(the lanes schedule's, :mod:`symcnn.codegen.backends.numba_cpu.lanes`, over channels; the columns
schedule's, :mod:`symcnn.codegen.backends.numba_cpu.columns`, over output columns, one per register
blocking) beside the scalar form's loop nest (:func:`scalar_form_nest`), and builds the one
:func:`symcnn.codegen.cost_model.cheapest` picks; ``None`` leaves the kernel to the scalar form
(:func:`symcnn.codegen.lower.summation`). The choice depends on the kernel's shapes only.
"""

from __future__ import annotations

from typing import Optional

import sympy

from symcnn.codegen.backends.numba_cpu.columns import MAX_OVER_BATCH_TILE, MAX_OVER_BATCH_TILE_ALONE, columns_candidates
from symcnn.codegen.backends.numba_cpu.lanes import lanes_schedule
from symcnn.codegen.cost_model import LoopNest, cheapest, scalar_nest

__all__ = ["vector_schedule", "scalar_form_nest"]


def vector_schedule(lowering, indices, shape, batch, terms, output_name: str, tensors,
                    tiled: bool) -> Optional[dict]:
    """The fields of the cheapest vector schedule (lanes or columns, each register blocking of it) by
    the cost model (:mod:`symcnn.codegen.cost_model`), or ``None`` when none fits or the scalar form
    (accumulate when ``tiled``, else gather) is estimated cheaper."""
    lanes = lanes_schedule(lowering, output_name, indices, shape, batch, terms, tensors)
    # a weight gradient's columns tile may leave L1 where the only other form is the scalar one
    tile_limit = MAX_OVER_BATCH_TILE if lanes is not None else MAX_OVER_BATCH_TILE_ALONE
    candidates = columns_candidates(lowering, output_name, indices, shape, batch, terms, tensors, tile_limit)
    if lanes is not None:
        nest = lanes.pop("nest")
        candidates.insert(0, (nest, lambda: lanes))
    if not candidates:
        return None
    scalar = scalar_form_nest(indices, shape, batch, terms, tiled)
    if scalar is not None:
        candidates.append((scalar, None))
    _, build = cheapest(candidates, nest_of=lambda candidate: candidate[0])
    return build() if build is not None else None


def scalar_form_nest(indices, shape, batch, terms, tiled: bool) -> Optional[LoopNest]:
    """The gather or accumulate form's loop nest for the cost model, per image; ``None`` when a sum's
    bounds are not constants (its cost is not one number)."""
    batch_index = indices[0] if shape and shape[0] == batch else None
    sizes = [size for var, size in zip(indices, shape) if var != batch_index]
    if not all(size.is_Integer for size in sizes):
        return None
    products = 0
    for term in (term for term in terms if term.limits):  # a constant term (a bias) is no product
        extents = [high - low + 1 for _, low, high in term.limits if high + 1 != batch]
        if not all(sympy.sympify(extent).is_Integer for extent in extents):
            return None
        products += int(sympy.prod(extents))
    outputs = int(sympy.prod(sizes))
    schedule = "accumulate" if tiled else "gather"
    return scalar_nest(schedule, multiply_adds=outputs * products, inner=int(shape[-1]) if tiled else 1,
                       stored=outputs if batch_index is not None else 0)
