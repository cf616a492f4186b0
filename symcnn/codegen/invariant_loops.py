"""Loop-invariant arrays filled inside the output's outer loop, one index at a time.

A normalization's kernel fills its statistics and coefficients (:mod:`symcnn.codegen.invariants`), one
value per channel (batch norm) or per sample (layer norm), in loop nests of their own, and then stores
its output in loops over every element: each of those passes reads the whole activation, which in a
train step has left the cache since the last (16.8 MB at batch 64 for 64 channels of 32 x 32). Where
every array is indexed by the same one output index, and every output is a scalar sum form (each element
summed on its own, so that its loops may run in any order), the outputs' loops are reordered to begin
with that index, in parallel, and the arrays are filled inside it: a channel's statistics, then its
coefficients, then its outputs, the channel's values read again while they are in cache (256 KB a
channel in that example). At batch 1 the outputs are then stored by every thread, not by the one that
takes the only image. Each statistic is the same sum in the same order; the element-wise values may differ
in the last bit, as LLVM contracts and reassociates them in another loop nest (the kernels allow it:
``fastmath``). Only where each value of the other indices is a long run of elements (:data:`MIN_RUN`) and
the index has enough values (:data:`MIN_PARALLEL_ITEMS`). Measured in docs/performance.md ("Batch norm's
statistics inside its channel loop").

Example (``suite-batchnorm``'s first batch norm, 16 channels of 28 x 28: too short a run per image; and
``resnet-mini``'s, 16 channels of 32 x 32: its statistics, coefficients and outputs inside one parallel
loop over the channels):

    >>> from symcnn.codegen.network import layer_kernels
    >>> from symcnn.spec import load_spec
    >>> def forward(spec):
    ...     bn = next(layer for layer in load_spec(spec).layers if layer.kind == "batchnorm2d")
    ...     return layer_kernels(bn)[0]
    >>> forward("suite-batchnorm").shared_loops
    0
    >>> kernel = forward("resnet-mini")
    >>> kernel.shared_loops, [(loop.variable, loop.parallel) for loop in kernel.output_loops]
    (1, [('c', True), ('n', False), ('i', False), ('j', False)])
"""

from __future__ import annotations

import math
from dataclasses import replace

from symcnn.codegen.kernel_ir import Kernel, Loop

__all__ = ["MIN_PARALLEL_ITEMS", "MIN_RUN", "invariants_inside", "led_by"]

#: The fewest values of a constant index the loops are shared over: each is one parallel item, and
#: fewer items than threads would leave threads idle where the batch's loop keeps them busy.
MIN_PARALLEL_ITEMS = 16

#: The fewest consecutive elements an output's loops write (and its statistics read) for each value of the
#: other indices, inside the shared loop: 1024, a 4 KB page of float32. Shorter runs (a channel's 16 x 16 map
#: in each image) are streams too short for the CPU's prefetchers, read from memory more slowly than the batch
#: loop's contiguous rows; measured on batch norm's gradient at batch 64 (docs/performance.md): 64 channels of
#: 32 x 32 2.94 -> 2.84 ms, 32 channels of 14 x 14 0.41 -> 0.53 ms.
MIN_RUN = 1024


def invariants_inside(kernel: Kernel) -> Kernel:
    """``kernel`` with its precomputed arrays filled inside its outputs' outer loop, where they can be
    (see the module's docstring); otherwise ``kernel`` as it is. Its ``narrow`` variant likewise."""
    narrow = invariants_inside(kernel.narrow) if kernel.narrow is not None else None
    if narrow is not kernel.narrow:
        kernel = replace(kernel, narrow=narrow)
    shared = _shared_loop(kernel)
    if shared is None:
        return kernel
    if kernel.phases:
        phases = tuple(led_by(phase, shared) for phase in kernel.phases)
        return replace(kernel, phases=phases, shared_loops=1, invariants_inside=True)
    return replace(led_by(kernel, shared), shared_loops=1, invariants_inside=True)


def _shared_loop(kernel: Kernel) -> Loop | None:
    """The one loop every precomputed array is filled over, when every output's loops include it and can
    be reordered (scalar sum forms, no loops shared already), over enough values; else ``None``."""
    if not kernel.precomputed or kernel.shared_loops:
        return None
    loops = {(p.loops[0].variable, p.loops[0].stop) if len(p.loops) == 1 else None for p in kernel.precomputed}
    if len(loops) != 1 or None in loops:
        return None
    ((variable, stop),) = loops
    if not (stop == "N" or (stop.isdigit() and int(stop) >= MIN_PARALLEL_ITEMS)):
        return None
    outputs = kernel.phases or (kernel,)
    if any(output.kind != "sum" or output.lanes is not None or output.phases for output in outputs):
        return None
    runs = [_run(output.output_loops, variable, stop) for output in outputs]
    if None in runs or max(runs) < MIN_RUN:
        return None
    return Loop(variable, stop, parallel=True)


def _run(loops: tuple[Loop, ...], variable: str, stop: str) -> int | None:
    """How many elements the loops after ``variable``'s write consecutively (their extents' product: the output's
    trailing axes), or ``None`` when ``variable`` is not one of ``loops`` over ``stop`` or those extents are not
    constants."""
    positions = [position for position, loop in enumerate(loops)
                 if (loop.variable, loop.stop, loop.start, loop.step) == (variable, stop, "0", 1)]
    if not positions or not all(loop.stop.isdigit() for loop in loops[positions[0] + 1:]):
        return None
    return math.prod(int(loop.stop) for loop in loops[positions[0] + 1:])


def led_by(output: Kernel, first: Loop) -> Kernel:
    """``output`` (a scalar sum form) with its loops reordered to begin with ``first`` (parallel), the rest in
    their order, none parallel; each element stored at its index as before."""
    rest = tuple(replace(loop, parallel=False) for loop in output.output_loops if loop.variable != first.variable)
    return replace(output, output_loops=(first, *rest),
                   output_index=output.output_index or tuple(loop.variable for loop in output.output_loops))
