"""The built-in ops' output and parameter shapes, in integers (no SymPy): the registry's entries name them.

Each function takes a layer's input shape without the batch axis and its settings (as
:meth:`symcnn.registry.Op.settings_of` returns them). An output function raises a one-line
``ValueError`` naming the setting when the configuration does not fit; spec validation prefixes the
layer. The rules are the formulas' (:mod:`symcnn.symbolic.ops`; tests keep them equal).

Example:
    >>> settings = {"out_channels": 6, "kernel": (3, 3), "stride": (2, 2), "padding": (1, 1), "dilation": (1, 1),
    ...             "output_padding": (1, 1), "bias": True}
    >>> conv_transpose_output((4, 5, 5), settings), conv_transpose_parameters((4, 5, 5), settings)
    ((6, 10, 10), {'weight': (4, 6, 3, 3), 'bias': (6,)})
"""

from __future__ import annotations

from typing import Any, Mapping

from symcnn.validation import check_window, output_sizes

__all__ = ["Shape", "conv_output", "pool_output", "conv_parameters", "dense_parameters", "conv_transpose_output",
           "conv_transpose_parameters", "transposed_output_sizes"]

Shape = tuple[int, ...]


def _window(settings: Mapping[str, Any]) -> tuple:
    return (settings["kernel"], settings["stride"], settings.get("padding", (0, 0)), settings.get("dilation", (1, 1)))


def _check_groups(groups: int, in_channels: int, out_channels: int) -> None:
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups: must divide both the input channels ({in_channels}) and out_channels "
                         f"({out_channels}), got {groups}")


def conv_output(input_shape: Shape, settings: Mapping[str, Any]) -> Shape:
    kernel, stride, padding, dilation = _window(settings)
    _check_groups(settings.get("groups", 1), input_shape[0], settings["out_channels"])
    check_window(input_shape[1:], kernel, padding, dilation)
    return (settings["out_channels"], *output_sizes(input_shape[1:], kernel, stride, padding, dilation))


def pool_output(input_shape: Shape, settings: Mapping[str, Any]) -> Shape:
    kernel, stride, padding, dilation = _window(settings)
    check_window(input_shape[1:], kernel, padding, dilation)
    return (input_shape[0], *output_sizes(input_shape[1:], kernel, stride, padding, dilation))


def _with_bias(weight: Shape, outputs: int, settings: Mapping[str, Any]) -> dict[str, Shape]:
    shapes = {"weight": weight}
    if settings["bias"]:
        shapes["bias"] = (outputs,)
    return shapes


def conv_parameters(input_shape: Shape, settings: Mapping[str, Any]) -> dict[str, Shape]:
    """``(C_out, C_in/groups, K_h, K_w)`` and ``(C_out,)``, as PyTorch's ``Conv2d``."""
    channels_per_group = input_shape[0] // settings.get("groups", 1)
    weight = (settings["out_channels"], channels_per_group, *settings["kernel"])
    return _with_bias(weight, settings["out_channels"], settings)


def dense_parameters(input_shape: Shape, settings: Mapping[str, Any]) -> dict[str, Shape]:
    return _with_bias((settings["out_features"], input_shape[0]), settings["out_features"], settings)


def transposed_output_sizes(input_size, kernel, stride, padding, dilation, output_padding) -> tuple[int, ...]:
    """``(size - 1)*s - 2p + d(k - 1) + output_padding + 1`` per axis (PyTorch's ``ConvTranspose2d``).

    The same rule as :func:`symcnn.symbolic.ops.transposed_output_size` (a test keeps them equal).

    >>> transposed_output_sizes((3, 4), (2, 3), (2, 1), (1, 0), (1, 1), (1, 0))
    (5, 6)
    """
    return tuple((size - 1) * s - 2 * p + d * (k - 1) + a + 1
                 for size, k, s, p, d, a in zip(input_size, kernel, stride, padding, dilation, output_padding))


def conv_transpose_output(input_shape: Shape, settings: Mapping[str, Any]) -> Shape:
    """The output of a transposed convolution; its output padding must be smaller than its stride or its
    dilation (PyTorch's rule: else it adds rows that no input element reaches), and the output not empty."""
    kernel, stride, padding, dilation = _window(settings)
    output_padding = settings["output_padding"]
    for axis, extra in enumerate(output_padding):
        if extra >= stride[axis] and extra >= dilation[axis]:
            raise ValueError(f"output_padding: must be smaller than the stride or the dilation (PyTorch's rule), "
                             f"got {extra} with stride {stride[axis]} and dilation {dilation[axis]}")
    sizes = transposed_output_sizes(input_shape[1:], kernel, stride, padding, dilation, output_padding)
    if min(sizes) < 1:
        raise ValueError(f"padding: the output would be empty ({sizes[0]}x{sizes[1]}): (size - 1)*stride "
                         f"- 2*padding + dilation*(kernel - 1) + output_padding + 1 must be at least 1")
    return (settings["out_channels"], *sizes)


def conv_transpose_parameters(input_shape: Shape, settings: Mapping[str, Any]) -> dict[str, Shape]:
    """``(C_in, C_out, K_h, K_w)`` and ``(C_out,)``, as PyTorch's ``ConvTranspose2d``."""
    weight = (input_shape[0], settings["out_channels"], *settings["kernel"])
    return _with_bias(weight, settings["out_channels"], settings)
