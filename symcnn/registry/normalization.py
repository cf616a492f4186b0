"""The registry entries of document 003's normalization layers: batch and layer normalization.

Registered when :mod:`symcnn.registry` is imported (it imports this module last); SymPy-free like it.
The formulas are in :mod:`symcnn.symbolic.normalization`.

Example:
    >>> from symcnn import registry
    >>> entry = registry.get("batchnorm2d")
    >>> entry.parameter_shapes((16, 8, 8), {}), entry.buffer_shapes((16, 8, 8), {})["running_var"]
    ({'weight': (16,), 'bias': (16,)}, (16,))
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from symcnn.registry.costs import per_element
from symcnn.registry.core import Op, Setting, Shape, register

__all__: list[str] = []


def _per_channel(input_shape: Shape, settings: Mapping[str, Any]) -> dict[str, Shape]:
    return {"weight": (input_shape[0],), "bias": (input_shape[0],)}


def _running_statistics(input_shape: Shape, settings: Mapping[str, Any]) -> dict[str, Shape]:
    """PyTorch's buffers of ``BatchNorm2d``, named as its ``state_dict`` names them."""
    return {"running_mean": (input_shape[0],), "running_var": (input_shape[0],), "num_batches_tracked": ()}


def _values_per_channel(shape: Shape, settings: Mapping[str, Any]) -> None:
    """Batch norm in training mode needs more than one value per channel (PyTorch refuses one too).

    >>> _values_per_channel((1, 3, 1, 1), {})
    Traceback (most recent call last):
    ...
    ValueError: input: batch normalization in training mode needs more than one value per channel (a variance to estimate), got an input of shape (1, 3, 1, 1)
    """  # noqa: E501  (a doctest's output, as printed)
    if math.prod(shape[:1] + shape[2:]) <= 1:
        raise ValueError(f"input: batch normalization in training mode needs more than one value per channel "
                         f"(a variance to estimate), got an input of shape {tuple(shape)}")


def _trailing(input_shape: Shape, settings: Mapping[str, Any]) -> dict[str, Shape]:
    return {"weight": tuple(input_shape), "bias": tuple(input_shape)}


_FORMULAS = "symcnn.symbolic.normalization"
_EPS = Setting("eps", "number", default=1e-5, roles=("epsilon",),
               help="added to the variance inside the square root (PyTorch's default 1e-5)")

register(Op(
    "batchnorm2d", f"{_FORMULAS}:batchnorm2d", "batch normalization",
    settings=(_EPS, Setting("momentum", "fraction", default=0.1,
                            help="weight of the batch's statistics in the running ones (PyTorch's default 0.1)")),
    parameter_shapes=_per_channel, buffer_shapes=_running_statistics, counters=("num_batches_tracked",),
    macs=per_element(2),  # evaluation mode: one scale and one shift per element (the running statistics fold)
    initial={"weight": 1.0, "running_var": 1.0},
    evaluation=f"{_FORMULAS}:batchnorm2d_evaluation", check_training_input=_values_per_channel,
    summary="batch normalization per channel (document 003): in training mode with the batch's mean and biased "
            "variance over (N, H, W), in evaluation mode with the running statistics; a scale and a shift per "
            "channel",
    description="batch normalization",
    gradient_note="In training mode every output of a channel depends on every input of that channel through "
                  "the batch's mean and variance, so each input's gradient gathers the whole channel's upstream "
                  "gradient (document 003's four-line backward); in evaluation mode the statistics are constants "
                  "and the layer is a scale and a shift per channel.",
    letter="B",
    phrase=lambda settings: f"eps = {settings['eps']}, momentum = {settings['momentum']}",
))
register(Op(
    "layernorm", f"{_FORMULAS}:layernorm", "layer normalization", inputs=(3, 1),
    settings=(_EPS,), parameter_shapes=_trailing, initial={"weight": 1.0},
    macs=per_element(4),  # the sample's mean and variance (one each per element), then a scale and a shift
    summary="layer normalization over each sample's (C, H, W) or (F,) values (document 003), with a scale and a "
            "shift of that shape; the same in both modes",
    description="layer normalization",
    gradient_note="Every output of a sample depends on every input of that sample through its mean and variance, "
                  "so each input's gradient gathers the sample's whole upstream gradient.",
    letter="B",
    phrase=lambda settings: f"eps = {settings['eps']}",
))
