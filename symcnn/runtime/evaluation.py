"""Evaluation passes that fold: several layers' forward passes in one kernel, when no gradient follows.

Two rewrites, each listed in the generated package (packages made before a table have none of it):
a normalization folded into the layer before it (``FOLDS``, :mod:`symcnn.codegen.folding`), run by
:func:`folded_forward` on that layer's parameters scaled per output channel; and an element-wise layer's
forward pass stored by the kernel of the layer whose output it alone reads (``FORWARD_FUSED``,
:mod:`symcnn.codegen.forward_fusion`): :func:`forward_fusions`. Both skip a layer's output that a
backward pass would read, so :meth:`symcnn.runtime.network.Network._forward` runs them only in
evaluation passes with ``fold``.

Example: seed004's ``FORWARD_FUSED = {'relu1': ('conv1', 'conv1_with_relu1_forward')}`` gives
``{'conv1': (<relu1's LayerSpec>, 'conv1_with_relu1_forward')}``: at ``conv1``, that kernel writes
``relu1``'s output, and ``relu1`` is skipped.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from symcnn.spec import LayerSpec

__all__ = ["forward_fusions", "folded_forward"]


def forward_fusions(kernels, layers: dict[str, LayerSpec]) -> dict[str, tuple[LayerSpec, str]]:
    """The package's forward fusions by the label of the layer whose output the element-wise layer E
    reads (or, for a folded normalization, of that normalization): (E, the fused kernel)."""
    return {layer: (layers[elementwise], kernel)
            for elementwise, (layer, kernel) in getattr(kernels, "FORWARD_FUSED", {}).items()}


def folded_forward(net, layer: LayerSpec, x: np.ndarray, fold: tuple,
                   fused: Optional[tuple[LayerSpec, str]] = None) -> tuple[LayerSpec, np.ndarray]:
    """The output of the normalization after ``layer`` in evaluation mode (the layer and its output), by
    ``layer``'s folded kernel on its weight scaled per output channel and its bias scaled and shifted
    (:mod:`symcnn.codegen.folding`); with ``fused``, (E, kernel), E's output by that kernel instead
    (the folded kernel storing E's forward pass: one kernel for conv -> batch norm -> ReLU)."""
    norm, scale_kernel, shift_kernel, folded_kernel = fold
    output, kernel = fused or (norm, folded_kernel)
    statistics = net._layer_arrays(norm)
    scale = net._buffer(f"{norm.label}.scale", (norm.output_shape[0],), net.dtype)
    shift = net._buffer(f"{norm.label}.shift", (norm.output_shape[0],), net.dtype)
    net._call(scale_kernel, {**statistics, "out": scale})
    net._call(shift_kernel, {**statistics, "out": shift})
    parameters = net._layer_arrays(layer)
    weight = net._buffer(f"{layer.label}.folded_weight", parameters["weight"].shape, net.dtype)
    np.multiply(parameters["weight"], scale.reshape(-1, *(1,) * (weight.ndim - 1)), out=weight)
    bias = net._buffer(f"{layer.label}.folded_bias", shift.shape, net.dtype)
    if "bias" in parameters:
        np.multiply(parameters["bias"], scale, out=bias)
        bias += shift
    else:
        bias[:] = shift
    out = net._buffer(f"{output.label}.out", (x.shape[0], *output.output_shape), net.dtype)
    net._call(kernel, {"x": x, "weight": weight, "bias": bias, "out": out})
    return output, out
