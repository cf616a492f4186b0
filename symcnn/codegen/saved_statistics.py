"""Statistics a training-mode forward pass computes, kept for the backward pass instead of computed again.

Batch norm's forward kernel sums each channel twice before it normalizes (the mean, then the squares about
it: :mod:`symcnn.codegen.invariants`); its backward kernel (:mod:`symcnn.codegen.backward`) summed the same
two again, a pass over the activation for the mean alone, and the runtime's running-statistics update
(:mod:`symcnn.runtime.buffers`) two more. Measured on ``suite-separable`` (batch 64): batch norm's kernels took
17 of its 54 ms, each pass over a 16 MB activation about 0.6 ms.

Two kernels per layer, decided from the formulas (no op is named):

- ``<label>_forward_saving(x, ..., out, statistics)`` (and ``<P>_with_<E>_forward_saving``, the same storing
  E's output): the training forward kernel whose statistics are rows of its ``statistics`` argument, then
  the batch values a buffer follows (:attr:`~symcnn.symbolic.ops.IndexFormula.statistics`: batch norm's mean
  ``stat0[c]/m`` and biased variance ``stat1[c]/m``), computed from them;
- ``<label>_backward_saved(..., statistics, grad_input, ...)``: the layer's backward kernel whose reductions
  that are one of the forward's statistics (compared as formulas: the same sum over the same ranges,
  whatever its summation indices) read ``statistics[row, c]``.

Made where the forward kernel computes statistics of one shape (a constant or the batch per axis). The
numbers: the forward kernel's statistics are the same sums in the same loops as the backward's own; the
backward then equals ``<label>_backward`` to rounding (a sum it computed in one loop with others may
vectorize in another order). The runtime runs both in a training pass where the package has them
(:meth:`symcnn.runtime.network.Network._forward`), and the running statistics from the kept rows; the PyTorch
operators keep the kernels that compute their own.

Example:
    >>> from symcnn.spec import load_spec
    >>> layer = next(layer for layer in load_spec("suite-batchnorm").layers if layer.kind == "batchnorm2d")
    >>> [kernel.name for kernel in saved_kernels(layer, [])]
    ['bn1_forward_saving']
"""

from __future__ import annotations

from typing import Optional

from symcnn.codegen.backward import backward_kernel
from symcnn.codegen.kernel_ir import Kernel
from symcnn.codegen.lower import Lowering, batch_symbol, forward_invariants, forward_kernel, layer_formula
from symcnn.spec import LayerSpec

__all__ = ["saved_kernels", "kept_seeds"]


def kept_seeds(layer: LayerSpec) -> Optional[tuple]:
    """What the training forward kernel of ``layer`` keeps, as :meth:`~symcnn.codegen.invariants.Precomputer.seed`
    takes it, or ``None`` where it keeps nothing; found as :func:`~symcnn.codegen.lower.forward_kernel` finds it."""
    formula, values = layer_formula(layer, "training")
    concrete = formula.substitute(values)
    _, precomputer, _ = forward_invariants(Lowering(concrete.tensors, batch_symbol(formula)), concrete)
    kept = precomputer.kept(concrete.statistics)
    return kept[1] if kept is not None else None


def saved_kernels(layer: LayerSpec, gradients: list, separate: Optional[list[Kernel]] = None) -> list[Kernel]:
    """``<label>_forward_saving`` and, from ``gradients`` (the layer's training-mode gradient formulas, their
    own kernels ``separate``), ``<label>_backward_saved``; none where the forward pass keeps no statistic,
    only the first where the gradients share none with it."""
    formula, values = layer_formula(layer, "training")
    saving = forward_kernel(layer, formula, values, saving=True)
    if saving is None:
        return []
    seeds = kept_seeds(layer)
    backward = backward_kernel(layer, gradients, values, separate or [], seeds=seeds) if gradients else None
    return [saving] + ([backward] if backward is not None else [])
