"""Forward passes that fold: several layers' forward passes in one kernel.

Two rewrites, each listed in the generated package (packages made before a table have none of it):
a normalization folded into the layer before it (``FOLDS``, :mod:`symcnn.codegen.folding`), run by
:func:`folded_forward` on that layer's parameters scaled per output channel; and an element-wise layer's
forward pass stored by the kernel of the layer whose output it alone reads (``FORWARD_FUSED``,
:mod:`symcnn.codegen.forward_fusion`): :func:`forward_fusions`. Both skip a layer's output, so
:meth:`symcnn.runtime.network.Network._forward` runs them all only in evaluation passes with ``fold``.
A pass with gradients runs the forward fusions whose skipped output no backward kernel reads
(:func:`trainable_fusions`: ReLU after a convolution or a batch norm, whose gradient reads ``[Y > 0]``):
the layer's kernel stores ReLU's output, and its own output, an activation-sized array, is never written.

Example: seed004's ``FORWARD_FUSED = {'relu1': ('conv1', 'conv1_with_relu1_forward')}`` gives
``{'conv1': (<relu1's LayerSpec>, 'conv1_with_relu1_forward')}``: at ``conv1``, that kernel writes
``relu1``'s output, and ``relu1`` is skipped.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from symcnn import registry
from symcnn.spec import LayerSpec

__all__ = ["forward_fusions", "trainable_fusions", "folded_forward"]


def forward_fusions(kernels, layers: dict[str, LayerSpec]) -> dict[str, tuple[LayerSpec, str]]:
    """The package's forward fusions by the label of the layer whose output the element-wise layer E
    reads (or, for a folded normalization, of that normalization): (E, the fused kernel)."""
    return {layer: (layers[elementwise], kernel)
            for elementwise, (layer, kernel) in getattr(kernels, "FORWARD_FUSED", {}).items()}


def trainable_fusions(kernels, layers: dict[str, LayerSpec],
                      fusions: dict[str, tuple[LayerSpec, str]]) -> dict[bool, dict[str, tuple[LayerSpec, str]]]:
    """The forward fusions a pass with gradients may run as well, for training passes (``True``) and
    evaluation passes (``False``), by the label of the layer P whose output the element-wise layer E reads:
    ``fusions`` (:func:`forward_fusions`) where P has one forward kernel in both modes (no evaluation
    kernels, no mask, no fold), and in training passes, for a P with a formula for each mode (batch
    norm), its training-mode kernel storing E's output (``TRAINING_FORWARD_FUSED``). Each only where the
    fused kernel writes all that P's own forward kernel writes (a max pool's ``switch``) and no backward
    kernel reads P's output, which is never written: P's (``out``) and E's (``x``, and ``fused_x`` in the
    kernel of ``FUSED`` that stores E's input gradient). Decided from the kernels' ``ARGUMENTS``, so
    that a gradient that reads its input keeps both kernels.

    >>> from symcnn.runtime.loader import load_kernels
    >>> from symcnn.spec import load_spec
    >>> layers = {layer.label: layer for layer in load_spec("seed004").layers}
    >>> kernels = load_kernels(load_spec("seed004"))
    >>> {label: (e.label, kernel) for label, (e, kernel) in
    ...  trainable_fusions(kernels, layers, forward_fusions(kernels, layers))[True].items()}
    {'conv1': ('relu1', 'conv1_with_relu1_forward')}
    """
    arguments, folded, stored_by = kernels.ARGUMENTS, getattr(kernels, "FOLDS", {}), getattr(kernels, "FUSED", {})
    fanouts_fused = getattr(kernels, "FANOUT_FUSED", {})

    def backward_reads(label: str, name: str) -> bool:
        """Whether a gradient kernel of layer ``label`` (its own, or one of FUSED storing through it) reads ``name``."""
        own = (names for kernel, names in arguments.items()  # not a fold's scale and shift, which write ``out``
               if kernel.startswith(f"{label}_") and ("_grad_" in kernel or kernel.endswith("backward")))
        return any(name in names for names in own)

    candidates = []  # (the modes, P's label, E, the fused kernel)
    for label, (elementwise, kernel) in fusions.items():
        entry = registry.get(layers[label].kind)
        if entry.evaluation is None and entry.mask_drop is None and label not in folded:  # one kernel, both modes
            candidates.append(((True, False), label, elementwise, kernel))
    for elementwise, (label, kernel) in getattr(kernels, "TRAINING_FORWARD_FUSED", {}).items():  # two modes
        candidates.append(((True,), label, layers[elementwise], kernel))
    chosen: dict[bool, dict[str, tuple[LayerSpec, str]]] = {True: {}, False: {}}
    for modes, label, elementwise, kernel in candidates:
        # the kernels storing E's input gradient: its reader's (FUSED), or its fan-out's sum (FANOUT_FUSED)
        storing = [stored_by.get(elementwise.label, (None, None))[1], fanouts_fused.get(elementwise.label)]
        if (backward_reads(label, "out") or backward_reads(elementwise.label, "x")
                or any(name is not None and "fused_x" in arguments[name] for name in storing)
                or not set(arguments[f"{label}_forward"]) <= set(arguments[kernel])):
            continue
        for training in modes:
            chosen[training][label] = (elementwise, kernel)
    return chosen


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
