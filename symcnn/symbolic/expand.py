"""Instantiate an index formula at concrete shapes: element-wise expressions.

:func:`evaluate` binds an :class:`~symcnn.symbolic.ops.IndexFormula` to concrete arrays (of symbols or
numbers) and returns the output array, element by element: it substitutes the output index,
unrolls every ``Sum`` and ``MaxOver`` over its now concrete range, and replaces each tensor
read by the array's element. Reads outside a tensor are zero where the tensor is zero-padded
(a convolution's input), and an error anywhere else.

Example:
    >>> from symcnn.symbolic import ops
    >>> from symcnn.symbolic.tensors import symbol_array
    >>> x, w = symbol_array("x", (1, 1, 3, 3)), symbol_array("w", (1, 1, 2, 2))
    >>> y = evaluate(ops.conv2d(bias=False), {"input": x, "weight": w}, {"stride_h": 1, "stride_w": 1,
    ...     "padding_h": 0, "padding_w": 0, "dilation_h": 1, "dilation_w": 1})
    >>> y[0, 0, 0, 0]
    w00*x00 + w01*x01 + w10*x10 + w11*x11
"""

from __future__ import annotations

from typing import Mapping

import sympy
from sympy import Array, Expr, Indexed, Sum

from symcnn.symbolic.functions import FirstArgmax, MaxOver, WindowMax, first_max_indicator
from symcnn.symbolic.ops import IndexFormula
from symcnn.symbolic.tensors import indices_of

__all__ = ["unroll", "bind_shapes", "evaluate"]


def _concrete_range(formula_node: Expr, limit) -> range:
    variable, low, high = limit
    if not (low.is_Integer and high.is_Integer):
        raise ValueError(f"cannot unroll {formula_node}: the range of {variable} is not concrete ({low}..{high})")
    return range(int(low), int(high) + 1)


def _unroll_reduction(node: Expr, combine) -> Expr:
    terms = [node.function]
    for limit in node.limits:  # first limit varies slowest: row-major order
        variable = limit[0]
        values = _concrete_range(node, limit)
        terms = [term.xreplace({variable: value}) for term in terms for value in values]
    return combine(*[unroll(term) for term in terms])


def _unroll_first_argmax(node: FirstArgmax) -> Expr:
    """The routing indicator at a concrete position: which element of the unrolled window."""
    flat, stride = 0, 1
    for coordinate, limit in reversed(list(zip(node.position, node.limits))):
        values = _concrete_range(node, limit)
        if not coordinate.is_Integer or int(coordinate) not in values:
            raise ValueError(f"cannot unroll {node}: position {coordinate} is not in {limit[0]}'s range")
        flat += (int(coordinate) - values.start) * stride
        stride *= len(values)
    window = _unroll_reduction(MaxOver(node.function, *node.limits), lambda *args: args)
    return first_max_indicator(tuple(window), flat)


def _windows_depend_on(expr: Expr, indices: set) -> bool:
    """Whether a reduction's range in ``expr``, or a routing indicator's position, depends on one of
    ``indices``: an adaptive window, whose bounds follow the output position."""
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, FirstArgmax) and any(coordinate.free_symbols & indices for coordinate in node.position):
            return True
        if isinstance(node, (Sum, MaxOver, FirstArgmax)) and any(
                (low.free_symbols | high.free_symbols) & indices for _, low, high in node.limits):
            return True
    return False


def unroll(expr: Expr) -> Expr:
    """Expand every ``Sum`` and ``MaxOver`` with concrete limits into an ``Add`` / ``WindowMax``.

    >>> from sympy import IndexedBase, symbols
    >>> X, m = IndexedBase("X"), symbols("m", integer=True)
    >>> unroll(Sum(X[m], (m, 0, 2)))
    X[0] + X[1] + X[2]
    """
    if isinstance(expr, Sum):
        return _unroll_reduction(expr, sympy.Add)
    if isinstance(expr, MaxOver):
        return _unroll_reduction(expr, WindowMax)
    if isinstance(expr, FirstArgmax):
        return _unroll_first_argmax(expr)
    if not expr.args:
        return expr
    args = [unroll(arg) if isinstance(arg, sympy.Basic) else arg for arg in expr.args]
    return expr.func(*args) if any(new is not old for new, old in zip(args, expr.args)) else expr


def bind_shapes(formula: IndexFormula, arrays: Mapping[str, Array], known: Mapping[Expr, int] = {}) -> dict[Expr, int]:
    """Shape parameters read off the arrays' shapes, checked for consistency.

    A dimension that is a bare symbol (``C_in``) is bound to the array's size; any other
    dimension (``C_in*H_in*W_in``) must agree with the bindings. Raises ``ValueError``
    naming the tensor and axis. ``known`` are bindings given beforehand (stride, padding, ...).
    """
    bindings: dict[Expr, int] = dict(known)
    for tensor in formula.operands:
        if tensor.role not in arrays:
            raise ValueError(f"{formula.op}: missing the {tensor.role} tensor")
        shape = tuple(arrays[tensor.role].shape)
        if len(shape) != len(tensor.shape):
            raise ValueError(
                f"{tensor.role}: expected a rank-{len(tensor.shape)} tensor of shape "
                f"{tuple(tensor.shape)}, got shape {shape}"
            )
        for dimension, size in zip(tensor.shape, shape):
            if isinstance(dimension, sympy.Symbol) and dimension not in bindings:
                bindings[dimension] = size
    for tensor in formula.operands:
        shape = tuple(arrays[tensor.role].shape)
        for axis, (dimension, size) in enumerate(zip(tensor.shape, shape)):
            expected = sympy.sympify(dimension).xreplace(bindings)
            if expected != size:
                raise ValueError(
                    f"{tensor.role}: axis {axis} has size {size}, but the other tensors require {expected}"
                )
    return bindings


def _parameter_bindings(formula: IndexFormula, values: Mapping[str, int]) -> dict[Expr, int]:
    bindings = {}
    for role, value in values.items():
        if role not in formula.parameters:
            raise ValueError(f"{formula.op} has no parameter {role!r}")
        symbol = formula.parameters[role]
        if not isinstance(symbol, sympy.Symbol):
            raise ValueError(f"{formula.op}: {role} is derived from the other parameters and cannot be set")
        bindings[symbol] = sympy.sympify(value)
    return bindings


def evaluate(formula: IndexFormula, arrays: Mapping[str, Array], parameters: Mapping[str, int] = {}) -> Array | Expr:
    """The formula's output for concrete ``arrays`` (by role) and ``parameters`` (by role).

    Sizes (batch, channels, height, ...) come from the arrays; ``parameters`` gives the rest
    (stride, padding, dilation, kernel of a pool). A rank-0 output (a loss) is returned as an
    expression. Raises ``ValueError`` when the output would
    be empty or a parameter is missing.
    """
    bindings = bind_shapes(formula, arrays, _parameter_bindings(formula, parameters))
    concrete = formula.substitute(bindings)
    out_shape = []
    for axis, dimension in enumerate(concrete.output.shape):
        if not dimension.is_Integer:
            missing = ", ".join(sorted(str(s) for s in dimension.free_symbols))
            raise ValueError(f"{formula.op}: output axis {axis} needs parameter(s) {missing}")
        if dimension < 1:
            raise ValueError(f"{formula.op}: the output would be empty (axis {axis} has size {dimension})")
        out_shape.append(int(dimension))

    tensors = {tensor.base: tensor for tensor in formula.operands}

    def read(element: Indexed) -> Expr:
        tensor, array = tensors[element.base], arrays[tensors[element.base].role]
        if not all(value.is_Integer for value in element.indices):
            raise ValueError(f"{formula.op}: read of {element} at a non-integer index")
        index = tuple(int(value) for value in element.indices)
        if all(0 <= value < size for value, size in zip(index, array.shape)):
            return array[index]
        if tensor.zero_padded:
            return sympy.S.Zero
        # A formula must keep its own reads in range (its conditions say where): never pad silently.
        raise ValueError(f"{formula.op}: read of {element} outside the {tensor.role} tensor "
                         f"of shape {tuple(array.shape)}")

    # Unroll once with the output indices still symbolic, then visit each output point; where a
    # window's bounds depend on the output position (adaptive pooling), unroll at each point.
    per_point = _windows_depend_on(concrete.rhs, set(concrete.indices))
    body = concrete.rhs if per_point else unroll(concrete.rhs)
    elements = []
    for index in indices_of(out_shape):
        point = body.xreplace(dict(zip(concrete.indices, index)))
        point = unroll(point) if per_point else point
        point = point.xreplace({read_node: read(read_node) for read_node in point.atoms(Indexed)})
        elements.append(point)
    if not out_shape:
        return elements[0]  # a scalar (the loss)
    return Array(elements, tuple(out_shape))
