"""Document 003's receptive-field claims, checked against the input positions that an output of
symcnn's formulas reads.

A stack of windowed layers (convolutions, max and average pools) runs along one axis (inputs of
width 1, padding 0) over symbols, through :mod:`symcnn.symbolic.layers`, with symbolic weights so
that nothing cancels. Layer ``l``'s receptive field is the span of input rows its output 0 reads
(first to last, gaps of a dilated kernel included); its jump is the step between the first rows that
its outputs 0 and 1 read. Layer 0 is the input (a pixel: field 1, jump 1; ``K[0] = s[0] = 1``), and
the claim is given the stack's kernels ``K[l]``, strides ``s[l]`` and dilations ``r[l]``.

Example:
    >>> case = [case for case in RECEPTIVE_FIELD.cases({}) if case.label.startswith("2 layers")][0]
    >>> case.label
    '2 layers: conv2d K=1 s=1, conv2d K=1 s=1'
    >>> evidence = RECEPTIVE_FIELD.evidence(case, {})
    >>> evidence.derived["RF"].tolist(), evidence.derived["J"].tolist()
    ([1, 1, 1], [1, 1, 1])
"""

from __future__ import annotations

import functools
import itertools
from typing import NamedTuple

from sympy import Array

from symcnn.checking.errata.probes.core import Case, Evidence, Probe
from symcnn.symbolic import layers
from symcnn.symbolic.tensors import symbol_array

__all__ = ["RECEPTIVE_FIELD", "DILATED_FIELD", "Layer", "stacks"]


class Layer(NamedTuple):
    """One windowed layer along an axis: its op, kernel, stride and dilation (pools: 1)."""

    kind: str
    kernel: int
    stride: int
    dilation: int = 1

    def words(self) -> str:
        return f"{self.kind} K={self.kernel} s={self.stride}" + (f" d={self.dilation}" if self.dilation > 1 else "")


def _singles() -> list[tuple[Layer, ...]]:
    convolutions = [(Layer("conv2d", kernel, stride, dilation),) for kernel in (1, 2, 3) for stride in (1, 2)
                    for dilation in ((1,) if kernel == 1 else (1, 2))]  # a 1-tap kernel has no dilation
    pools = [(Layer(kind, kernel, stride),) for kind in ("maxpool2d", "avgpool2d") for kernel in (2, 3)
             for stride in (1, 2)]
    return convolutions + pools


#: Layers that stacks of two and three are made of.
_PARTS = (Layer("conv2d", 1, 1), Layer("conv2d", 3, 1), Layer("conv2d", 2, 2), Layer("maxpool2d", 2, 2),
          Layer("conv2d", 3, 1, 2), Layer("conv2d", 3, 2), Layer("avgpool2d", 3, 2))


def stacks() -> list[tuple[Layer, ...]]:
    """The stacks checked, smallest first: every single layer, every pair of :data:`_PARTS`, and
    triples of them."""
    pairs = list(itertools.product(_PARTS, repeat=2))
    triples = [stack for stack in itertools.product(_PARTS, repeat=3) if len(set(stack)) == 3][::7]
    size = lambda stack: (len(stack), sum(layer.kernel for layer in stack), sum(layer.stride for layer in stack),  # noqa: E731
                          sum(layer.dilation for layer in stack))
    return sorted(_singles(), key=size) + sorted(pairs, key=size) + sorted(triples, key=size)


def _input_rows(stack: tuple[Layer, ...]) -> int:
    """Enough input rows for two outputs of the last layer (each layer's output-size rule, backwards)."""
    rows = 2
    for layer in reversed(stack):
        rows = (rows - 1) * layer.stride + layer.dilation * (layer.kernel - 1) + 1
    return rows


def _apply(x: Array, layer: Layer, number: int) -> Array:
    if layer.kind == "conv2d":
        weight = symbol_array(f"w{number}_", (1, 1, layer.kernel, 1))
        return layers.conv2d(x, weight, stride=(layer.stride, 1), dilation=(layer.dilation, 1))
    pool = layers.maxpool2d if layer.kind == "maxpool2d" else layers.avgpool2d
    return pool(x, (layer.kernel, 1), (layer.stride, 1))


@functools.lru_cache(maxsize=None)
def _fields(stack: tuple[Layer, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Each layer's receptive field and jump (layer 0: the input), read off the expanded outputs."""
    x = symbol_array("x", (1, 1, _input_rows(stack), 1))
    row = {x[0, 0, index, 0]: index for index in range(x.shape[2])}
    fields, jumps, output = [1], [1], x
    for number, layer in enumerate(stack, start=1):
        output = _apply(output, layer, number)
        first, second = (sorted(row[symbol] for symbol in output[0, 0, index, 0].free_symbols if symbol in row)
                         for index in (0, 1))
        fields.append(first[-1] - first[0] + 1)
        jumps.append(second[0] - first[0])
    return tuple(fields), tuple(jumps)


def _stack_cases(options) -> list[Case]:
    return [Case(f"{len(stack)} layer{'s' if len(stack) > 1 else ''}: "
                 f"{', '.join(layer.words() for layer in stack)}", {"stack": stack}) for stack in stacks()]


def _stack_evidence(case: Case, options) -> Evidence:
    stack = case.values["stack"]
    fields, jumps = _fields(stack)
    given = {"L": len(stack), "K": Array([1] + [layer.kernel for layer in stack]),
             "s": Array([1] + [layer.stride for layer in stack]), "r": Array([1] + [layer.dilation for layer in stack])}
    shape = (len(stack) + 1,)
    return Evidence(given, {"RF": Array(fields), "J": Array(jumps)}, {"RF": shape, "J": shape, "P": shape})


#: The receptive field and jump of each layer of a stack (``RF[l]``, ``J[l]``), against the rows its
#: outputs read in symcnn's expanded formulas.
RECEPTIVE_FIELD = Probe("the input rows an output reads in symcnn's expanded formulas, through stacks of "
                        "convolutions and pools", _stack_cases, _stack_evidence)


def _dilated_cases(options) -> list[Case]:
    return [Case(f"conv2d K={kernel}, dilation r={rate}, stride {stride}", {"K": kernel, "r": rate, "s": stride})
            for kernel in (1, 2, 3, 4) for rate in (1, 2, 3) for stride in (1, 2)]


def _dilated_evidence(case: Case, options) -> Evidence:
    kernel, rate, stride = case.values["K"], case.values["r"], case.values["s"]
    fields, _ = _fields((Layer("conv2d", kernel, stride, rate),))
    return Evidence({"K": kernel, "r": rate, "s": stride}, {"RF": fields[1]})


#: One dilated convolution's receptive field, against the rows its output reads.
DILATED_FIELD = Probe("the input rows an output of symcnn's conv2d reads", _dilated_cases, _dilated_evidence)
