"""What a claim is compared with at one configuration: the op's derivation there, as tables of
entries by role (``input``, ``weight``, ``output``, ``grad_output``, ``grad_input``, ...): the
expanded forward pass (:func:`symcnn.symbolic.expand.evaluate`) and its element-wise gradients
(:func:`symcnn.symbolic.verify.elementwise_gradients`).

Example:
    >>> tables = derivation("conv2d", 4, False, (("batch", 1), ("dilation_h", 1), ("dilation_w", 1),
    ...     ("in_channels", 1), ("in_height", 2), ("in_width", 3), ("kernel_height", 2), ("kernel_width", 2),
    ...     ("out_channels", 1), ("padding_h", 0), ("padding_w", 0), ("stride_h", 1), ("stride_w", 1)), False)
    >>> tables["output"].shape, tables["output"].entries[0, 0, 0, 1]
    ((1, 1, 1, 2), w00*x01 + w01*x02 + w10*x11 + w11*x12)
"""

from __future__ import annotations

import functools
import random
from typing import Mapping

import sympy
from sympy import Array

from symcnn.checking.index.vocabulary import DISTINCT_INPUT_OPS, ROLE_PREFIX, SOFTMAX_READING_OPS, op_formula
from symcnn.symbolic import ops
from symcnn.symbolic.expand import evaluate
from symcnn.symbolic.tensors import indices_of, symbol_array
from symcnn.symbolic.verify import elementwise_gradients

__all__ = ["Table", "derivation"]


class Table:
    """A derived array as a dict from index to entry (SymPy's ``Array.__getitem__`` is slow)."""

    def __init__(self, array):
        if isinstance(array, sympy.NDimArray):
            self.shape = tuple(int(size) for size in array.shape)
            self.entries = {tuple(index): array[index] for index in indices_of(self.shape)}
        else:  # a scalar (the loss)
            self.shape = ()
            self.entries = {(): sympy.sympify(array)}

    def contains(self, index) -> bool:
        return len(index) == len(self.shape) and all(0 <= v < size for v, size in zip(index, self.shape))


@functools.lru_cache(maxsize=512)
def derivation(op: str, rank: int, bias: bool, config_items: tuple, gradients: bool) -> dict:
    """The derivation at one configuration (``config_items``: its sorted items), as tables by role:
    the operands, the output, and with ``gradients`` the upstream gradient and every gradient (the
    element-wise VJP); under ``identities`` the op's identities there, as a substitution."""
    forward, arrays, parameters = _operands(op, rank, bias, dict(config_items))
    result = {role: Table(array) for role, array in arrays.items()}
    if gradients:
        roles = [tensor.role for tensor in forward.operands if tensor.role in ("input", "weight", "bias")]
        upstream, derived = elementwise_gradients(forward, arrays, parameters, roles)
        if upstream is not None:
            result["grad_output"] = Table(upstream)
        for role, array in derived.items():
            result["grad_" + role] = Table(array)
    result["output"] = Table(evaluate(forward, arrays, parameters))
    if op in SOFTMAX_READING_OPS:
        result["softmax"] = Table(evaluate(ops.softmax(), {"input": arrays["input"]}))
    if op in DISTINCT_INPUT_OPS:  # values substituted after differentiation, as symcnn derive does
        values = _distinct_values(arrays["input"])
        for table in result.values():
            table.entries = {index: sympy.sympify(entry).xreplace(values) for index, entry in table.entries.items()}
    result["identities"] = _one_hot(forward, arrays)
    return result


def _operands(op: str, rank: int, bias: bool, config: Mapping[str, int]) -> tuple[ops.IndexFormula, dict, dict]:
    forward = op_formula(op, rank, bias)
    bindings = {forward.parameters[role]: sympy.Integer(value) for role, value in config.items()}
    arrays = {}
    for tensor in forward.operands:
        shape = tuple(int(sympy.sympify(dim).xreplace(bindings)) for dim in tensor.shape)
        arrays[tensor.role] = symbol_array(ROLE_PREFIX.get(tensor.role, tensor.role[0]), shape)
    parameters = {role: value for role, value in config.items() if role in forward.parameters}
    return forward, arrays, parameters


def _distinct_values(array: Array) -> dict:
    """Max pooling's input as distinct numbers (a fixed permutation): "the" maximum is unambiguous,
    and the routing conditions of the derivation and of a claim both evaluate."""
    numbers = list(range(1, len(array) + 1))
    random.Random(len(array)).shuffle(numbers)
    return {array[index]: sympy.Integer(number) for index, number in zip(indices_of(array.shape), numbers)}


def _one_hot(forward: ops.IndexFormula, arrays) -> dict:
    """The op's identities at this configuration (one-hot targets sum to 1) as a substitution."""
    if not forward.identities or "target" not in arrays:
        return {}
    targets = arrays["target"]
    substitution = {}
    for row in range(targets.shape[0]):
        last = targets[row, targets.shape[1] - 1]
        substitution[last] = 1 - sum(targets[row, column] for column in range(targets.shape[1] - 1))
    return substitution
