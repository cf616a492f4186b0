"""Buffers: what a layer keeps besides its learned parameters, and its update in training mode.

Batch normalization keeps PyTorch's running statistics, by its ``state_dict`` names:
``bn1.running_mean`` and ``bn1.running_var`` (per channel, in the network's dtype, starting at 0 and
1) and ``bn1.num_batches_tracked`` (an int64 count). The registry says which layers have which
(:attr:`symcnn.registry.Op.buffer_shapes`). This module never imports SymPy.

The update is not part of the differentiated mathematics, so it is not generated from a formula: it
is this module's :func:`update_running_statistics`, PyTorch's rule. After each forward pass in
training mode, with momentum ``m`` and the batch's mean ``mu`` and *unbiased* variance
``s^2 = sigma^2 * n / (n - 1)`` over the ``n = N*H*W`` values of each channel (the normalization itself
uses the biased ``sigma^2``)::

    running_mean <- (1 - m) * running_mean + m * mu
    running_var  <- (1 - m) * running_var  + m * s^2
    num_batches_tracked <- num_batches_tracked + 1

The batch's statistics are computed by :func:`channel_statistics`, one numba kernel in parallel over
the channels with float64 sums, two passes (the mean, then the squares about it). It replaced NumPy's
``x.mean``/``x.var`` over the axes (0, 2, 3), which run on one thread and copy: measured on a
(64, 16, 32, 32) float32 batch, 1.4 ms of a 53 ms train step of ``suite-residual`` per layer.

Example:
    >>> from symcnn.spec import parse_spec
    >>> spec = parse_spec('name = "b"\\ninput = [2, 2, 2]\\n[[layers]]\\ntype = "batchnorm2d"\\nname = "bn"\\n'
    ...                   '[[layers]]\\ntype = "flatten"\\n'
    ...                   '[[layers]]\\ntype = "dense"\\nname = "fc"\\nout_features = 2\\n')
    >>> buffers = initial_buffers(spec, np.float64)
    >>> x = np.arange(16.0).reshape(2, 2, 2, 2)
    >>> update_running_statistics(spec.layers[0], x, buffers)
    >>> buffers["bn.running_mean"], buffers["bn.num_batches_tracked"]
    (array([0.55, 0.95]), array(1))
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from numba import njit, prange

from symcnn import registry
from symcnn.spec import LayerSpec, NetworkSpec

__all__ = ["initial_buffers", "counter_names", "channel_statistics", "update_running_statistics", "switch_dtype"]


def counter_names(spec: NetworkSpec) -> set[str]:
    """The buffers that count (int64, as PyTorch's ``num_batches_tracked``)."""
    return {f"{layer.name}.{role}" for layer in spec.layers if layer.name
            for role in registry.get(layer.kind).counters}


def initial_buffers(spec: NetworkSpec, dtype) -> dict[str, np.ndarray]:
    """Every buffer at its start: the registry's constant where it names one (a running variance:
    1), else 0; counters as int64."""
    buffers = {}
    counters = counter_names(spec)
    for layer in spec.layers:
        initial = registry.get(layer.kind).initial
        for name, shape in layer.buffer_shapes().items():
            kind = np.int64 if name in counters else dtype
            buffers[name] = np.full(shape, initial.get(name.rsplit(".", 1)[1], 0), dtype=kind)
    return buffers


# reassoc: the sums vectorize (in an order fixed per machine, as the generated kernels' sums are).
@njit(cache=True, parallel=True, fastmath={"reassoc", "contract"})
def _statistics(rows, mean, unbiased):
    """``mean[c]`` and ``unbiased[c]`` of ``rows[:, c, :]``, in float64 sums, in parallel over ``c``."""
    images, channels, per_image = rows.shape
    count = images * per_image
    for channel in prange(channels):
        total = 0.0
        for image in range(images):
            for position in range(per_image):
                total += rows[image, channel, position]
        centre = total / count
        squares = 0.0
        for image in range(images):
            for position in range(per_image):
                deviation = rows[image, channel, position] - centre
                squares += deviation * deviation
        mean[channel] = centre
        unbiased[channel] = squares / (count - 1) if count > 1 else np.nan


def channel_statistics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the unbiased variance of each channel of ``x (N, C, ...)`` over its other axes,
    in ``x``'s dtype (NaN variances when a channel holds one value).

    >>> x = np.arange(16.0).reshape(2, 2, 2, 2)
    >>> mean, unbiased = channel_statistics(x)
    >>> bool(np.allclose(mean, x.mean(axis=(0, 2, 3))) and np.allclose(unbiased, x.var(axis=(0, 2, 3), ddof=1)))
    True
    """
    rows = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)
    mean, unbiased = np.empty(x.shape[1], dtype=x.dtype), np.empty(x.shape[1], dtype=x.dtype)
    _statistics(rows, mean, unbiased)
    return mean, unbiased


def update_running_statistics(layer: LayerSpec, x: np.ndarray, buffers: dict,
                              batch_values: Optional[dict] = None) -> None:
    """PyTorch's running-statistics update of a batch-norm layer after a training-mode forward pass on
    its input ``x (N, C, H, W)`` (see the module's docstring), in place; from ``batch_values`` where the
    forward kernel kept them (``running_mean``: the batch's mean, ``running_var``: its biased variance;
    :mod:`symcnn.codegen.saved_statistics`), else computed from ``x``."""
    mean_name, var_name = f"{layer.name}.running_mean", f"{layer.name}.running_var"
    if mean_name not in buffers or var_name not in buffers:
        return
    momentum = x.dtype.type(layer.settings["momentum"])
    if batch_values:
        count = x.size // x.shape[1]  # the values of a channel (N*H*W: more than one in training mode)
        mean, unbiased = batch_values["running_mean"], batch_values["running_var"] * (count / (count - 1))
    else:
        mean, unbiased = channel_statistics(x)
    for name, batch_value in ((mean_name, mean), (var_name, unbiased)):
        running = buffers[name]
        running *= 1 - momentum
        running += momentum * batch_value
    tracked = f"{layer.name}.num_batches_tracked"
    if tracked in buffers:
        buffers[tracked] += 1


def switch_dtype(layer: LayerSpec) -> np.dtype:
    """The dtype of a pooling layer's ``switch`` (the argmax offset within the window, kept for its
    backward pass): the narrowest integer that holds it (measured: the pool's gradient kernel runs about
    10x faster reading int8 than int64 or int32).

    >>> from symcnn.spec import load_spec
    >>> str(switch_dtype(load_spec("seed004").layers[2]))
    'int8'
    """
    window = math.prod(layer.settings.get("kernel", layer.input_shape[1:]))  # an adaptive pool's: within the image
    return np.dtype(np.int8 if window <= 127 else np.int32)
