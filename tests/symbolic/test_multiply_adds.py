"""Each op's registered multiply-accumulate count (``Op.macs``, integers in symcnn/registry/costs.py)
equals the multiply-adds of its symbolic formula, counted here independently at small shapes.

How the formula is counted: the evaluation-mode formula is bound to small shapes and every output
element expanded over symbols (``x00``, ``w01``, ...). An element that is affine in the inputs,
``sum_v a_v·v + c``, costs one multiply-add per input element whose coefficient ``a_v`` is neither 0
nor 1 (a coefficient of 1 is a copy or a plain addition: flatten, concat, add) and one more for a
nonzero constant ``c`` (a bias, batch norm's shift: document 003's ``+ 1``). A statistic (a ``Sum``
that no output index but the batch reaches: layer norm's mean and variance) is computed once per
sample, one multiply-add per term; the element is then counted with each statistic as a symbol. An
element that is not affine must be a function of one input element (an activation) or a maximum
(comparisons): 0.

Padding is 0 here: the expansion drops a padded tap (a read of zero), which the registry counts as
document 003, fvcore, ptflops and torchinfo do. tests/test_network_summary.py compares padded
layers with those tools.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import sympy
from sympy import Sum

from symcnn import registry
from symcnn.registry import is_input_role
from symcnn.symbolic.expand import evaluate
from symcnn.symbolic.functions import WindowMax
from symcnn.symbolic.instances import bind_layer
from symcnn.symbolic.ops import N
from symcnn.symbolic.tensors import symbol_array

# op -> (input shape without the batch axis, or a tuple of them for add and concat; spec settings)
CASES = [
    ("conv2d", (2, 5, 4), {"out_channels": 3, "kernel": [3, 2], "stride": [2, 1], "dilation": [1, 2]}),
    ("conv2d", (4, 3, 3), {"out_channels": 2, "kernel": 2, "groups": 2, "bias": False}),
    ("conv_transpose2d", (2, 2, 3), {"out_channels": 2, "kernel": 2, "stride": 2}),
    ("conv_transpose2d", (1, 2, 2), {"out_channels": 2, "kernel": [2, 3], "dilation": 2, "output_padding": [1, 0],
                                     "bias": False}),
    ("maxpool2d", (2, 4, 5), {"kernel": 2, "stride": 1}),
    ("avgpool2d", (2, 4, 5), {"kernel": [2, 3], "stride": [2, 1]}),
    ("avgpool2d", (1, 5, 5), {"kernel": 2}),  # the floor drops the last row and column
    ("global_avgpool", (2, 3, 2), {}),
    ("adaptive_avgpool2d", (1, 5, 4), {"output": [3, 3]}),  # overlapping windows of 2 and 3
    ("adaptive_maxpool2d", (1, 5, 4), {"output": [3, 2]}),
    ("flatten", (2, 2, 2), {}),
    ("dense", (5,), {"out_features": 3}),
    ("dense", (4,), {"out_features": 2, "bias": False}),
    ("relu", (2, 2, 2), {}),
    ("relu", (3,), {}),
    ("leaky_relu", (2, 1, 2), {}),
    ("elu", (3,), {"alpha": 0.5}),
    ("sigmoid", (2, 1, 2), {}),
    ("tanh", (3,), {}),
    ("dropout", (2, 2, 2), {"p": 0.0}),  # evaluation mode is the identity; with no drop, so is the formula
    ("batchnorm2d", (2, 2, 2), {}),
    ("layernorm", (2, 2, 2), {}),
    ("layernorm", (3,), {}),
    ("add", ((2, 2, 2), (2, 2, 2), (2, 2, 2)), {}),
    ("concat", ((2, 2, 2), (1, 2, 2)), {}),
]

_PREFIX = {"weight": "w", "bias": "b", "running_mean": "rm", "running_var": "rv", "mask": "m"}


def _prefix(role: str) -> str:
    return _PREFIX[role] if not is_input_role(role) else "x" + role[len("input"):]


def _operand_arrays(formula, values) -> dict:
    """Symbols for every operand at batch 1 (dropout's mask all kept: evaluation mode)."""
    arrays = {}
    for tensor in formula.operands:
        shape = tuple(int(sympy.sympify(size).xreplace({**values, N: 1})) for size in tensor.shape)
        if tensor.role == "mask":
            arrays[tensor.role] = sympy.Array([1] * math.prod(shape), shape)
        else:
            arrays[tensor.role] = symbol_array(_prefix(tensor.role), shape)
    return arrays


def _statistics(formula) -> set:
    """The sums that no output index but the batch reaches: computed once per sample."""
    per_output = set(formula.indices[1:])
    return {node for node in sympy.preorder_traversal(formula.rhs)
            if isinstance(node, Sum) and not node.free_symbols & per_output}


def _terms(statistic: Sum) -> int:
    return math.prod(int(high - low + 1) for _, low, high in statistic.limits)


def _element_multiply_adds(element, inputs: set) -> int:
    reads = element.free_symbols & inputs
    coefficients = [sympy.diff(element, read) for read in reads]
    if any(coefficient.free_symbols & inputs for coefficient in coefficients):  # not affine
        assert len(reads) == 1 or isinstance(element, WindowMax), element
        return 0
    constant = element.xreplace({read: 0 for read in reads})
    return sum(coefficient not in (0, 1) for coefficient in coefficients) + (sympy.simplify(constant) != 0)


def formula_multiply_adds(op: str, input_shape, settings) -> int:
    """One sample's multiply-adds, counted on the expanded evaluation-mode formula."""
    formula, values = bind_layer(op, input_shape, settings, mode="evaluation")
    formula = formula.substitute(values)  # every size and setting a number; the batch stays N
    arrays = _operand_arrays(formula, values)
    statistics = _statistics(formula)
    if statistics:  # each statistic a symbol of its own; the element is then counted around them
        named = {statistic: sympy.Symbol(f"statistic{number}") for number, statistic in enumerate(statistics)}
        formula = dataclasses.replace(formula, rhs=formula.rhs.xreplace(named))
    output = evaluate(formula, arrays)
    inputs = {symbol for role, array in arrays.items() if is_input_role(role) for symbol in array.free_symbols}
    count = sum(_terms(statistic) for statistic in statistics)
    return count + sum(_element_multiply_adds(element, inputs) for element in sympy.flatten(output.tolist()))


def test_every_built_in_layer_op_has_a_case():
    built_in = {op.name for op in registry.ops(layer=True) if str(op.formula).startswith("symcnn.")}
    assert {op for op, _, _ in CASES} == built_in


@pytest.mark.parametrize("op, input_shape, given", CASES, ids=[f"{case[0]}-{case[1]}" for case in CASES])
def test_the_registered_count_is_the_formulas(op, input_shape, given):
    entry = registry.get(op)
    settings = entry.settings_of(given)
    assert entry.macs(input_shape, settings) == formula_multiply_adds(op, input_shape, settings)


def test_the_counts_are_document_003s():
    """Spot checks in document 003's words: a convolution's N·H_out·W_out·C_out·(K_h·K_w·C_in + 1)."""
    conv = registry.get("conv2d")
    settings = conv.settings_of({"out_channels": 96, "kernel": 11, "stride": 4})
    assert conv.macs((3, 227, 227), settings) == 55 * 55 * 96 * (11 * 11 * 3 + 1)
    batchnorm = registry.get("batchnorm2d")
    assert batchnorm.macs((16, 8, 8), batchnorm.settings_of({})) == 2 * 16 * 8 * 8
    assert registry.get("relu").macs((16, 8, 8), {}) == 0
