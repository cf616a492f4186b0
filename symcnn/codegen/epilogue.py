"""An element-wise op's input gradient applied where a gradient kernel stores its sums (an epilogue).

When an element-wise layer E (ReLU, tanh, ...) is read by one layer Q alone, Q's input gradient is
E's ``dL/dY``, and E's input gradient reads it at one index only: ``dL/dX_E[idx] = f(X_E[idx],
dL/dY_E[idx])``. Q's input-gradient kernel can then store ``f(X_E[idx], sum)`` instead of its sum,
and E's own gradient kernel (a write and a read of an activation-sized array) is never run.
:mod:`symcnn.codegen.fusion` finds such pairs; this module holds what the schedules need to store
through ``f``: :class:`FusedElementwise` (``f`` with the sum as :data:`STORED`) on the lowering, and
:func:`epilogue_at`, ``f`` printed at one store of a schedule (its output element). The forward
counterpart, :mod:`symcnn.codegen.forward_fusion`, stores E's forward pass ``f(stored)`` at the store of
the layer before it: an epilogue that reads nothing but the stored value.

Example: ReLU's ``[0 < Y[n, c, k, l]] * stored`` at the store ``grad_input[n, c, k, l]`` gives
``Epilogue(loads=(('fused0', 'fused_out[n, c, k, l]'),), value='((stored) if (fused0 > 0) else (0))')``.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy
from sympy import Expr, Indexed, IndexedBase, Symbol

from symcnn.codegen.kernel_ir import Epilogue

__all__ = ["STORED", "FUSED_INPUT", "FUSED_OUTPUT", "FusedElementwise", "Unfusable", "epilogue_at"]

#: The name of the sum an epilogue stores through (the template assigns it before the epilogue).
STORED = Symbol("stored")

#: The argument of a fused kernel that holds E's input (``X_E``).
FUSED_INPUT = "fused_x"

#: The argument of a fused kernel that holds E's output (``Y_E``), where E's gradient reads that instead
#: (tanh's ``1 - Y^2``: :mod:`symcnn.symbolic.output_form`).
FUSED_OUTPUT = "fused_out"


class Unfusable(ValueError):
    """A schedule cannot apply an epilogue where it stores (a weight gradient's sums of chunks store no
    element of the output): the pair is not fused, and both kernels run as they are."""


@dataclass(frozen=True)
class FusedElementwise:
    """E's input gradient (or, fused forward, its output) as a function of the stored sum: ``expression``
    reads :data:`STORED` and ``base`` (E's input, or its output) at ``indices`` (the kernel's output
    indices) only; the kernel takes ``base`` as its argument ``argument``."""

    expression: Expr
    base: IndexedBase
    indices: tuple[Symbol, ...]
    output: str  # the printed name of the kernel's output array, the only array an epilogue stores to
    argument: str = FUSED_INPUT


def epilogue_at(lowering, store: Expr) -> Epilogue | None:
    """The lowering's epilogue (``None`` if it has none) at ``store``, the output element a schedule
    writes: E's input is read at the store's indices, so that the loads and the store are one element.
    Where the store is an element of a phase's strided view of the output (a kernel in phases), E's array
    is read through the same view (``lowering.fused_views``: :func:`symcnn.codegen.lower._fused_views`).

    :class:`Unfusable` when the store is not an element of the output or of such a view (``None``, or
    another layout of it, whose indices are not the formula's).
    """
    fused: FusedElementwise | None = lowering.fused
    if fused is None:
        return None
    name = lowering.printer.array_names.get(store.base, str(store.base)) if isinstance(store, Indexed) else None
    expression = fused.expression
    if name != fused.output:
        view = lowering.fused_views.get(name)
        if view is None:
            raise Unfusable(f"the store {store} is not an element of {fused.output} or of a view of it")
        expression = expression.xreplace({fused.base: lowering.array(view)})
    at = dict(zip(fused.indices, store.indices))
    reads = sorted(expression.atoms(Indexed), key=sympy.default_sort_key)
    loads = {read: Symbol(f"fused{position}") for position, read in enumerate(reads)}
    printed = tuple((str(name), lowering.code(read.xreplace(at))) for read, name in loads.items())
    return Epilogue(printed, lowering.code(expression.xreplace(loads)))
