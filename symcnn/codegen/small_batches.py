"""A dense layer's forward pass at small batches: each output a dot product of a weight row, in parallel.

The lanes schedule of a dense layer's forward pass (over its output features) takes the images in groups
(:class:`~symcnn.codegen.kernel_ir.ImageGroups`, one parallel work item a group) and reads a copy of its
weight transposed on every call. Below two groups' images that is one thread, a group's missing images
computed on its last one, and the copy: ``suite-mlp-head``'s ``fc1`` (1352 -> 256 features) took
137-170 µs at batches 1 to 4, where a dot product of each weight row with the image, in parallel over
the features, took 26-75 µs (``docs/bench/dense_rows_probe.py``; docs/performance.md, "A dense layer's
forward pass at small batches").

So such a kernel (a lanes kernel in groups of images that copies an operand whole, with a rank-2 output) is
lowered once more in the scalar form (:func:`symcnn.codegen.cost_model.scalar_only`), its loops led by the
features' loop, in parallel (:func:`symcnn.codegen.invariant_loops.led_by`), and carries that variant
(:attr:`~symcnn.codegen.kernel_ir.Kernel.small_batch`). Its module defines both, ``<name>_groups`` and
``<name>_rows``, and ``<name>`` calls the rows form for a batch of fewer than two groups' images, the
groups form from there (:func:`symcnn.codegen.package.small_batch_forms`). Both compute the same formula;
the rows form's sums are vectorized by LLVM in another order (``reassoc``), so an image's outputs may
differ in the last bits between a batch below the threshold and one above it. The threshold does not
depend on the thread count, and each form sums in the same order on any number of threads.

Example (``suite-mlp-head``'s ``fc1``: below 8 images, its dot products in parallel over 256 features):

    >>> from symcnn.codegen.network import layer_kernels
    >>> from symcnn.spec import load_spec
    >>> fc1 = next(layer for layer in load_spec("suite-mlp-head").layers if layer.label == "fc1")
    >>> forward = layer_kernels(fc1)[0]
    >>> forward.kind, forward.lanes.images.size, forward.small_batch.below
    ('lanes', 4, 8)
    >>> rows = forward.small_batch.kernel
    >>> rows.kind, [(loop.variable, loop.stop, loop.parallel) for loop in rows.output_loops], rows.output_index
    ('sum', [('i', '256', True), ('n', 'N', False)], ('n', 'i'))
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Callable, Optional, TypeVar

from symcnn.codegen import cost_model
from symcnn.codegen.invariant_loops import led_by
from symcnn.codegen.kernel_ir import Kernel, SmallBatch

__all__ = ["per_batch_size", "GROUPS_BELOW"]

#: A batch of fewer than this many groups of images takes the rows form: the groups form would give every
#: group to one thread, the other left idle, and copy the weight for it.
GROUPS_BELOW = 2

Lowering = TypeVar("Lowering", bound=Callable[..., Optional[Kernel]])


def per_batch_size(lower: Lowering) -> Lowering:
    """``lower`` (a function returning a :class:`Kernel`, or ``None``), returning its kernel with a variant for
    small batches where it is a dense layer's groups of images (see the module's docstring)."""
    @functools.wraps(lower)
    def lowered(*arguments, **keywords):
        kernel = lower(*arguments, **keywords)
        if kernel is None or not _groups_with_a_copy(kernel):
            return kernel
        with cost_model.scalar_only():
            scalar = lower(*arguments, **keywords)
        rows = _rows_form(scalar, kernel)
        if rows is None:
            return kernel
        return replace(kernel, small_batch=SmallBatch(GROUPS_BELOW * kernel.lanes.images.size, rows))
    return lowered


def _groups_with_a_copy(kernel: Kernel) -> bool:
    """A lanes kernel over images in groups that copies an operand whole before its groups (a weight, transposed),
    its tile in plain loops: none in register blocks takes groups of images today, so renaming their functions
    for a variant would be code no spec runs."""
    lanes = kernel.lanes
    return (kernel.kind == "lanes" and lanes is not None and lanes.images is not None and lanes.registers is None
            and any(not staging.per_image for staging in lanes.stagings))


def _rows_form(scalar: Kernel, kernel: Kernel) -> Optional[Kernel]:
    """``scalar`` (``kernel`` lowered in the scalar form) led by its features' loop, unnamed; ``None`` unless it
    is a gather over an output of the batch and one other axis, as ``kernel`` takes it."""
    loops = scalar.output_loops
    if (scalar.kind != "sum" or len(loops) != 2 or loops[0].stop != "N" or scalar.arguments != kernel.arguments
            or scalar.output != kernel.output):
        return None
    return replace(led_by(scalar, replace(loops[1], parallel=True)), name="")
