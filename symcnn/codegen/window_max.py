"""Max pooling's kernels: the forward scan of each window with its argmax, and the gradient's routing tests.

The forward kernel scans each window in row-major order (:func:`window_max`), keeping the first
maximum by the formula's tie rule and its offset in the window (the switch); the gradient reads that
switch instead of scanning again (:func:`switch_tests`). Both take a lowering of
:mod:`symcnn.codegen.lower` (its printer, loops and identities).

Example: the window test, printed with the template's names, is ``value > best`` (strictly greater:
a tie keeps the first maximum).
"""

from __future__ import annotations

import sympy
from sympy import Expr, Indexed, IndexedBase, Symbol

from symcnn.codegen.rewrites import switch_test, window_offset
from symcnn.printing.nodes import Guard
from symcnn.symbolic import ops
from symcnn.symbolic.functions import FirstArgmax, MaxOver, replaces_first_max

__all__ = ["WINDOW_VALUE", "BEST", "window_max", "switch_tests"]

#: A max kernel's names (the template's) for the window value it reads and the maximum so far.
WINDOW_VALUE, BEST = Symbol("value"), Symbol("best")


def window_max(lowering, maximum: MaxOver) -> dict:
    """The :class:`~symcnn.codegen.kernel_ir.Kernel` fields of max pooling's scan of each window, in
    row-major order: the maximum so far starts at ``maximum``'s identity (in the pooled array's dtype),
    and a window value replaces it by the formula's tie rule, recording its offset in the window (the
    switch)."""
    limits = maximum.limits
    offset = window_offset(maximum.variables, limits)  # u*K_w + v
    (source,) = {element.base for element in maximum.function.atoms(Indexed)}  # the pooled array
    return {"window": tuple(lowering.loop(*limit) for limit in limits),
            "window_value": lowering.code(maximum.function),
            "window_offset": lowering.code(offset),
            "window_first_offset": lowering.code(offset.xreplace({var: low for var, low, _ in limits})),
            "window_test": lowering.code(Guard(replaces_first_max(WINDOW_VALUE, BEST))),
            # In the array's own dtype: ``-np.inf`` is a float64, and a float32 kernel would then compare
            # and keep every value in float64 (measured on seed004's pooling, float32: 0.104 -> 0.083 ms).
            # A maximum is one of the values, so the dtype changes no result.
            "initial": f"{lowering.code(source)}.dtype.type({lowering.identity(MaxOver)})"}


def switch_tests(body: Expr, switch: IndexedBase, forward: ops.IndexFormula) -> Expr:
    """Each routing indicator of ``body`` as a test of the argmax offset that the forward kernel
    recorded in ``switch`` for the forward's window (its one ``MaxOver``)."""
    (window,) = forward.rhs.atoms(MaxOver)
    return body.replace(lambda node: isinstance(node, FirstArgmax), lambda node: sympy.Piecewise(
        (1, switch_test(node, switch, window, forward.indices)), (0, True)))
