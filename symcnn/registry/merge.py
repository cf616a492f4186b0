"""The registry entries of the ops that join a graph's branches: ``add`` (ResNet's residual
connection) and ``concat`` (DenseNet's, along channels), document 003.

A spec layer of one names its ``inputs``; each takes two or more, of one rank. Registered when
:mod:`symcnn.registry` is imported; the formulas are in :mod:`symcnn.symbolic.merge`.

Example:
    >>> from symcnn import registry
    >>> registry.get("concat").output_shape(((16, 8, 8), (8, 8, 8)), {})
    (24, 8, 8)
    >>> registry.get("add").output_shape(((16, 8, 8), (16, 4, 4)), {})
    Traceback (most recent call last):
    ...
    ValueError: inputs: add needs inputs of one shape, got (16, 8, 8) and (16, 4, 4)
"""

from __future__ import annotations

from typing import Any, Mapping

from symcnn.registry.core import Op, Shape, register

__all__: list[str] = []


def _same_rank(op: str, shapes: tuple[Shape, ...]) -> None:
    ranks = {len(shape) for shape in shapes}
    if len(ranks) > 1:
        raise ValueError(f"inputs: {op} needs inputs of one rank, got shapes {', '.join(map(str, shapes))}")


def _sum_shape(shapes: tuple[Shape, ...], settings: Mapping[str, Any]) -> Shape:
    _same_rank("add", shapes)
    for shape in shapes[1:]:
        if tuple(shape) != tuple(shapes[0]):
            raise ValueError(f"inputs: add needs inputs of one shape, got {tuple(shapes[0])} and {tuple(shape)}")
    return tuple(shapes[0])


def _concat_shape(shapes: tuple[Shape, ...], settings: Mapping[str, Any]) -> Shape:
    _same_rank("concat", shapes)
    for shape in shapes[1:]:
        if tuple(shape[1:]) != tuple(shapes[0][1:]):
            raise ValueError(f"inputs: concat joins along channels and needs one height and width, got "
                             f"{tuple(shapes[0])} and {tuple(shape)}")
    return (sum(shape[0] for shape in shapes),) + tuple(shapes[0][1:])


_MERGE_FORMULAS = "symcnn.symbolic.merge"

register(Op(
    "add", f"{_MERGE_FORMULAS}:add", "add (residual connection)", inputs=(3, 1), merges=True,
    output_shape=_sum_shape,
    summary="the element-wise sum of two or more inputs of one shape: ResNet's y = F(x) + x (document 003)",
    description="the sum of its inputs (a residual connection)",
    gradient_note="An add passes the gradient to each of its inputs unchanged; where a tensor feeds several "
                  "layers (a skip connection's fan-out), its gradient is the sum of what each sends back.",
    letter="S",
))
register(Op(
    "concat", f"{_MERGE_FORMULAS}:concat", "concatenation (along channels)", inputs=(3, 1), merges=True,
    output_shape=_concat_shape,
    summary="its inputs stacked along the channels (features for vectors): DenseNet's join (document 003)",
    description="its inputs stacked along the channels",
    gradient_note="A concatenation only moves entries: each input's gradient is its block of channels of the "
                  "upstream gradient.",
    letter="S",
))
