"""The ops that join branches of a graph: ``add`` (a residual connection) and ``concat`` (along channels).

Each takes ``inputs`` tensors ``X1, X2, ...``: the first has the role ``input``, the others
``input2``, ``input3``, ... (:func:`symcnn.registry.input_role`), so every op keeps ``input`` as its first input and
the gradient of input ``m`` is ``grad_input<m>``. Both work on a ``(N, C, H, W)`` map (``rank=4``) or a
``(N, F)`` vector (``rank=2``); ``concat`` joins along axis 1 (channels, or features).

Example:
    >>> add(inputs=2, rank=2).equation()
    Eq(Y[n, k], X1[n, k] + X2[n, k])
    >>> concat(inputs=2, rank=2).output.shape
    (N, F_1 + F_2)
"""

from __future__ import annotations

import sympy
from sympy import Expr, IndexedBase, Symbol

from symcnn.registry import MAX_MERGED, input_role
from symcnn.symbolic.functions import Bracket
from symcnn.symbolic.ops import ELEMENT_INDICES, ELEMENT_PARAMETERS, ELEMENT_SHAPES, N, IndexFormula, Tensor

__all__ = ["add", "concat"]

def _check(inputs: int, rank: int) -> None:
    if isinstance(inputs, bool) or not isinstance(inputs, int) or not 2 <= inputs <= MAX_MERGED:
        raise ValueError(f"inputs: must be an integer in [2, {MAX_MERGED}], got {inputs!r}")
    if rank not in ELEMENT_INDICES:
        raise ValueError(f"rank must be 2 or 4, got {rank}")


def _size(name: str) -> Symbol:
    return Symbol(name, integer=True, positive=True)


def _tensors(inputs: int) -> list[IndexedBase]:
    return [IndexedBase(f"X{number}") for number in range(1, inputs + 1)]


def add(inputs: int = 2, rank: int = 4) -> IndexFormula:
    """``Y = X1 + X2 + ...`` element-wise, inputs of one shape: ResNet's ``y = F(x) + x`` (document 003).

    Each input's gradient is the output's, whole: at the join the gradient is copied to every branch.
    """
    _check(inputs, rank)
    indices, shape = ELEMENT_INDICES[rank], ELEMENT_SHAPES[rank]
    bases = _tensors(inputs)
    return IndexFormula(
        op="add",
        output=Tensor("output", IndexedBase("Y"), shape),
        indices=indices,
        rhs=sympy.Add(*(base[indices] for base in bases)),
        operands=tuple(Tensor(input_role(number), base, shape) for number, base in enumerate(bases, 1)),
        parameters=dict(ELEMENT_PARAMETERS[rank]),
    )


def concat(inputs: int = 2, rank: int = 4) -> IndexFormula:
    """The inputs stacked along axis 1 (channels; features for ``rank=2``): DenseNet's join (document 003).

    ``Y[n, c, i, j] = sum_m [o_m <= c <= o_m + C_m - 1] X_m[n, c - o_m, i, j]`` with ``o_m = C_1 + ... +
    C_(m-1)``: output channel ``c`` is channel ``c - o_m`` of the one input whose block holds it. Each
    input's gradient is its block of the output's gradient.
    """
    _check(inputs, rank)
    indices = ELEMENT_INDICES[rank]
    letter = "C" if rank == 4 else "F"
    sizes = [_size(f"{letter}_{number}") for number in range(1, inputs + 1)]
    rest = ELEMENT_SHAPES[rank][2:]  # (H_in, W_in), or () for vectors
    axis = indices[1]
    terms: list[Expr] = []
    offset: Expr = sympy.S.Zero
    operands = []
    for number, (base, size) in enumerate(zip(_tensors(inputs), sizes), 1):
        block = Bracket(sympy.Le(offset, axis), sympy.Le(axis, offset + size - 1))
        terms.append(block * base[(indices[0], axis - offset) + indices[2:]])
        operands.append(Tensor(input_role(number), base, (N, size) + rest))
        offset = offset + size
    parameters = {key: value for key, value in ELEMENT_PARAMETERS[rank].items()
                  if key not in ("in_channels", "in_features")}
    feature = "in_channels" if rank == 4 else "in_features"
    for number, size in enumerate(sizes, 1):  # each input's channels, by role: in_channels, in_channels2, ...
        parameters[feature if number == 1 else f"{feature}{number}"] = size
    return IndexFormula(
        op="concat",
        output=Tensor("output", IndexedBase("Y"), (N, offset) + rest),
        indices=indices,
        rhs=sympy.Add(*terms),
        operands=tuple(operands),
        parameters=parameters,
    )
