"""A kernel's vector phases in one parallel loop: each work item computes its rows of every phase.

A strided convolution's input gradient runs as its phases (:mod:`symcnn.codegen.phases`), four at stride 2,
each a lanes or columns kernel with its own parallel loop over the images' row parts and its own zero-padded
copy of the output gradient's rows. Run one after another, three phases copy the same rows of ``dL/dY``, each
into a copy of its own, and each phase writes its quarter of ``dL/dX`` across the whole batch. Where every phase
takes the same work items and their copies of an operand differ only in how far they reach, the phases share
one loop: each item makes one copy, as large as the largest, and computes every phase's rows in turn, while its
block of ``dL/dX`` is in cache. Measured on ``suite-residual``'s ``b2_conv1_grad_input`` (16 <- 32 channels,
3 x 3, stride 2, 32 x 32 maps, batch 64, 2 threads; docs/performance.md): 1.40 -> 1.13 ms in a train step; a
stride-3 one's nine phases 1.33-1.37x; phases that copy nothing (2 x 2, stride 2) 1.02-1.05x. In a scratch copy,
one loop with a copy per phase was slower than a loop per phase (1.21 against 1.15 ms), so phases whose copies of
one name cannot merge keep a loop each.

The merged copy places each value where every phase's copy did (the same printed target index) and copies the
union of the rows the phases' copies hold; each phase reads only the rows its own copy holds (the rows its part
reads: :func:`~symcnn.codegen.backends.numba_cpu.stagings.part_window`) or the zeros past the operand, which
stay zero. No value changes: each phase computes the same sums in the same order into its own elements.

Example:
    >>> from symcnn.codegen.kernel_ir import Loop, Staging
    >>> def copy(rows, stop): return Staging("g_padded", ("4", str(rows)), (Loop("a1", "4"), Loop("a2", stop)),
    ...                                      "a1, a2", "g[n, a1, a2]", per_image=True, zeroed=True)
    >>> merged = merged_stagings([copy(16, "min(16, 8*part + 8)"), copy(17, "min(16, 8*part + 9)")])
    >>> merged[0].shape, merged[0].loops[1].stop
    (('4', '17'), 'max(min(16, 8*part + 8), min(16, 8*part + 9))')
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence

from symcnn.codegen.kernel_ir import Kernel, Loop, Staging

__all__ = ["merged_stagings", "one_item"]


def one_item(phases: Sequence[Kernel]) -> Optional[tuple[Staging, ...]]:
    """The per-image copies the ``phases`` share when they run in one parallel loop, each work item computing its
    rows of every phase; ``None`` where they do not: fewer than two phases, a phase that is not a lanes or
    columns kernel over the images' row parts (summed over the batch, in lane blocks or groups of images, or a
    scalar form), work items that differ, or copies of one name that differ in more than their extents."""
    if len(phases) < 2 or any(not _over_rows(phase) for phase in phases):
        return None
    if any(phase.lanes.parts != phases[0].lanes.parts for phase in phases):
        return None
    return merged_stagings([staging for phase in phases for staging in phase.lanes.stagings if staging.per_image])


def _over_rows(phase: Kernel) -> bool:
    """``phase`` is a vector kernel whose parallel loop runs over images (or their row parts) and nothing else."""
    lanes = phase.lanes
    return (lanes is not None and not phase.winograd and not phase.phases and not phase.precomputed
            and not lanes.over_batch and not lanes.lane_block and lanes.images is None)


def merged_stagings(stagings: Sequence[Staging]) -> Optional[tuple[Staging, ...]]:
    """One copy per name, in the order the names first come: each as large as the largest of that name and
    filling the union of their loops' ranges; ``None`` where two copies of one name differ in anything else."""
    by_name: dict[str, list[Staging]] = {}
    for staging in stagings:
        by_name.setdefault(staging.name, []).append(staging)
    merged = []
    for copies in by_name.values():
        first = copies[0]
        alike = all(copy.target == first.target and copy.source == first.source and copy.zeroed == first.zeroed
                    and len(copy.shape) == len(first.shape)
                    and [loop.variable for loop in copy.loops] == [loop.variable for loop in first.loops]
                    and all(loop.step == 1 and not loop.parallel for loop in copy.loops) for copy in copies)
        if not alike:
            return None
        if any(copy.shape != first.shape for copy in copies):
            if not all(extent.isdigit() for copy in copies for extent in copy.shape):
                return None
            # a larger copy holds a smaller one's values at the same places, and zeros past them
            shape = tuple(str(max(int(extents) for extents in axis)) for axis in zip(*(c.shape for c in copies)))
            first = replace(first, shape=shape)
        loops = tuple(Loop(axis[0].variable, _widest("max", [loop.stop for loop in axis]),
                           start=_widest("min", [loop.start for loop in axis]))
                      for axis in zip(*(copy.loops for copy in copies)))
        merged.append(replace(first, loops=loops))
    return tuple(merged)


def _widest(extreme: str, bounds: list[str]) -> str:
    """The printed ``extreme`` (``min`` or ``max``) of the printed ``bounds``, each bound once."""
    distinct = list(dict.fromkeys(bounds))
    return distinct[0] if len(distinct) == 1 else f"{extreme}({', '.join(distinct)})"
