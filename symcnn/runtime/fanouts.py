"""The gradient of a tensor that several layers read: the sum of what they send back (a fan-out's sum).

A residual block's input is read by the block and by its shortcut; the chain rule sums their
gradients, which the generated ``fanout_<label>`` kernel does (the ``add`` formula). Where the tensor
is an element-wise layer's output (the ReLU before a block), the package's ``FANOUT_FUSED`` kernel
stores that layer's input gradient through the sum (:func:`symcnn.codegen.fusion.fanout_fused_kernels`),
and the layer's own gradient kernel is not run.

Example: ``gradient_sum(net, "b1_out", [g1, g2])`` runs ``fanout_b1_out(x=g1, x2=g2, out)``; with
``fused={"fused_x": ..., "fused_out": ...}``, ``fanout_b1_out_with_b1_out_grad_input``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np

from symcnn import registry

__all__ = ["input_names", "gradient_sum"]


@lru_cache(maxsize=None)
def input_names(count: int) -> tuple[str, ...]:
    """The arrays a layer's kernels read its inputs from: ``x``, and an add's or concat's ``x2``, ...

    >>> input_names(3)
    ('x', 'x2', 'x3')
    """
    return tuple(registry.array_name(registry.input_role(number)) for number in range(1, count + 1))


def gradient_sum(net, label: str, gradients: list[np.ndarray], fused: Optional[dict] = None) -> np.ndarray:
    """The gradient of tensor ``label`` in the Network ``net``: the one its reader sent, or the sum of its
    readers' (the generated ``fanout_<label>`` kernel); with ``fused`` (the element-wise layer's input and
    output, ``fused_x`` and ``fused_out``), the input gradient of the layer ``label`` through that sum, by
    its ``FANOUT_FUSED`` kernel. The sum is written to an internal array of ``net``'s."""
    if len(gradients) == 1:
        return gradients[0]
    arrays = dict(zip(input_names(len(gradients)), gradients), **(fused or {}))
    arrays["out"] = net._buffer(f"fanout.{label}", gradients[0].shape, net.dtype)
    net._call(net.kernels.FANOUT_FUSED[label] if fused else f"fanout_{label}", arrays)
    return arrays["out"]
