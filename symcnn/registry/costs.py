"""The built-in ops' multiply-accumulates and windows, in integers (no SymPy): the registry's entries name them.

**Multiply-accumulates (MACs)** count one sample's forward pass in evaluation mode as document 003
counts a convolution's, ``FLOPs = N·H_out·W_out·C_out·(K_h·K_w·C_in + 1)``: each product summed
into an output is one multiply-add, and a bias's add one more (one FLOP = one multiply-add). The
same rule for the other ops: a dense layer ``out·(in + 1)``; an average ``(1/K)·Σ x`` is ``K``
multiply-adds per output; batch norm in evaluation mode is one scale and one shift per element (2);
layer norm adds its statistics, the mean and the variance (one multiply-add per element each: 4).
Element-wise activations (ReLU has no multiplication at all), max pooling (comparisons), flatten,
concat and add (copies and plain additions) count 0. A transposed convolution multiplies every input
element by every tap: ``C_in·H_in·W_in·C_out·K_h·K_w``, and adds its bias to each output.

**Windows** (:class:`~symcnn.registry.core.Window`): per spatial axis, how many input positions
an output reads, with which stride, padding and dilation: what the receptive-field recurrence and
the tiling check of a model summary need.

Example:
    >>> conv = {"out_channels": 6, "kernel": (5, 5), "stride": (1, 1), "padding": (0, 0), "dilation": (1, 1),
    ...         "bias": True, "groups": 1}
    >>> conv_macs((1, 32, 32), conv)  # LeNet-5's first layer: 6·28·28 outputs, 5·5·1 products and a bias each
    122304
    >>> adaptive_windows((5, 6), {"output": (3, 3)})
    (Window(kernel=3, stride=2, padding=0, dilation=1, exact=False), Window(kernel=2, stride=2, padding=0, dilation=1, exact=True))
"""  # noqa: E501  (a doctest's output, as printed)

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from symcnn.registry.core import Shape, Window
from symcnn.shapes import conv_output, conv_transpose_output, pool_output

__all__ = ["conv_macs", "conv_transpose_macs", "dense_macs", "avgpool_macs", "global_avgpool_macs",
           "adaptive_avgpool_macs", "per_element", "setting_windows", "global_windows", "adaptive_windows",
           "no_integer_windows", "adaptive_bounds"]

Extent = tuple[int, int]


def conv_macs(input_shape: Shape, settings: Mapping[str, Any]) -> int:
    """``C_out·H_out·W_out·(K_h·K_w·C_in/groups + 1)`` (document 003's, with groups; ``+ 0`` without a bias)."""
    channels, height, width = conv_output(input_shape, settings)
    per_output = math.prod(settings["kernel"]) * (input_shape[0] // settings.get("groups", 1)) + settings["bias"]
    return channels * height * width * per_output


def conv_transpose_macs(input_shape: Shape, settings: Mapping[str, Any]) -> int:
    """Every input element times every tap of every output channel, and a bias add per output."""
    output = conv_transpose_output(input_shape, settings)
    products = math.prod(input_shape) * settings["out_channels"] * math.prod(settings["kernel"])
    return products + settings["bias"] * math.prod(output)


def dense_macs(input_shape: Shape, settings: Mapping[str, Any]) -> int:
    """``out·(in + 1)``: a convolution whose kernel covers the whole input (``+ 0`` without a bias)."""
    return settings["out_features"] * (input_shape[0] + settings["bias"])


def avgpool_macs(input_shape: Shape, settings: Mapping[str, Any]) -> int:
    """``K_h·K_w`` multiply-adds (``x/(K_h·K_w)`` summed) per output element."""
    return math.prod(pool_output(input_shape, settings)) * math.prod(settings["kernel"])


def global_avgpool_macs(input_shape: Shape, settings: Mapping[str, Any]) -> int:
    """Every input element once: ``C·H·W``."""
    return math.prod(input_shape)


def adaptive_bounds(size: int, out: int) -> list[tuple[int, int]]:
    """Each output position's window ``[start, stop)`` when ``size`` positions pool to ``out``:
    ``floor(i·size/out)`` to ``ceil((i + 1)·size/out)`` (PyTorch's adaptive windows).

    >>> adaptive_bounds(5, 3)
    [(0, 2), (1, 4), (3, 5)]
    """
    return [(index * size // out, -(-(index + 1) * size // out)) for index in range(out)]


def adaptive_avgpool_macs(input_shape: Shape, settings: Mapping[str, Any]) -> int:
    """Each window's length, summed over the outputs: windows may overlap, so this can exceed ``C·H·W``."""
    rows, columns = (sum(stop - start for start, stop in adaptive_bounds(size, out))
                     for size, out in zip(input_shape[1:], settings["output"]))
    return input_shape[0] * rows * columns


def per_element(count: int):
    """``count`` multiply-adds per element of the input (batch norm's scale and shift: 2)."""
    def macs(input_shape: Shape, settings: Mapping[str, Any]) -> int:
        return count * math.prod(input_shape)
    macs.__doc__ = f"{count} multiply-adds per input element."
    return macs


def setting_windows(extent: Extent, settings: Mapping[str, Any]) -> tuple[Window, Window]:
    """A convolution's or a pool's windows, from its settings (a pool has no padding nor dilation)."""
    padding, dilation = settings.get("padding", (0, 0)), settings.get("dilation", (1, 1))
    return tuple(Window(*axis) for axis in zip(settings["kernel"], settings["stride"], padding, dilation))


def global_windows(extent: Extent, settings: Mapping[str, Any]) -> tuple[Window, Window]:
    """One window over the whole grid (global pooling; a dense layer over a flattened map)."""
    return tuple(Window(size, size) for size in extent)


def adaptive_windows(extent: Extent, settings: Mapping[str, Any]) -> tuple[Window, Window]:
    """An adaptive pool's windows per axis: exact where the output size divides the input's, else the
    largest window and the largest step between window starts (``exact=False``: a bound)."""
    windows = []
    for size, out in zip(extent, settings["output"]):
        bounds = adaptive_bounds(size, out)
        if size % out == 0:
            windows.append(Window(size // out, size // out))
            continue
        steps = [later[0] - earlier[0] for earlier, later in zip(bounds, bounds[1:])] or [size]
        windows.append(Window(max(stop - start for start, stop in bounds), max(steps), exact=False))
    return tuple(windows)


def no_integer_windows(extent: Extent, settings: Mapping[str, Any]) -> Optional[tuple[Window, Window]]:
    """``None``: a transposed convolution's outputs lie 1/stride input positions apart, so the
    receptive-field recurrence (integer steps) does not hold after it."""
    return None
