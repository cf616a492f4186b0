"""Checks shared by every boundary: one-line ``ValueError`` messages naming the field.

Example:
    >>> pair(2, "stride", minimum=1)
    (2, 2)
    >>> pair(0, "stride", minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: stride: must be an integer >= 1, got 0
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

__all__ = ["integer", "number", "pair", "check_window", "output_sizes", "check_adaptive_output"]


def integer(value, field: str, minimum: int, maximum: Optional[int] = None) -> int:
    """``value`` as an ``int`` of at least ``minimum`` and at most ``maximum`` (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            import numpy

            if isinstance(value, numpy.integer):
                value = int(value)
        except ImportError:
            pass
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{field}: must be an integer >= {minimum}, got {_short(value)}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{field}: at most {maximum:,} (symcnn's limit), got {_short(value)}")
    return value


def number(value, field: str, interval: Optional[tuple[float, float]] = None) -> float:
    """``value`` as a ``float``: finite and positive, or in ``[low, high)`` where ``interval`` is given.

    >>> number(1, "p", (0, 1))
    Traceback (most recent call last):
    ...
    ValueError: p: must be a number in [0, 1), got 1
    """
    finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if interval is not None and not (finite and interval[0] <= value < interval[1]):
        raise ValueError(f"{field}: must be a number in [{interval[0]:g}, {interval[1]:g}), got {_short(value)}")
    if not finite or (interval is None and value <= 0):
        raise ValueError(f"{field}: must be a positive number, got {_short(value)}")
    return float(value)


def _short(value) -> str:
    """``repr(value)``, cut to a readable length (a hostile value can be a megabyte of digits)."""
    if isinstance(value, int) and value.bit_length() >= 200:
        return f"an integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def pair(value, field: str, minimum: int, maximum: Optional[int] = None) -> tuple[int, int]:
    """An int or a pair of ints as ``(height, width)``, each at least ``minimum`` (and at most ``maximum``)."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{field}: must be an integer or a pair [height, width], got {_short(list(value))}")
        return integer(value[0], field, minimum, maximum), integer(value[1], field, minimum, maximum)
    number = integer(value, field, minimum, maximum)
    return number, number


def output_sizes(input_size: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                 padding: Sequence[int] = (0, 0), dilation: Sequence[int] = (1, 1)) -> tuple[int, ...]:
    """``floor((size + 2p - d(k - 1) - 1) / s) + 1`` per axis, in integers.

    The same rule as :func:`symcnn.symbolic.ops.output_size` (a test keeps them equal), for the code that
    must not import SymPy: spec validation and the runtime.

    >>> output_sizes((32, 32), (3, 3), (1, 1), (1, 1))
    (32, 32)
    """
    return tuple((size + 2 * p - d * (k - 1) - 1) // s + 1
                 for size, k, s, p, d in zip(input_size, kernel, stride, padding, dilation))


def check_window(
    input_size: Sequence[int],
    kernel: Sequence[int],
    padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
    field: str = "kernel",
) -> None:
    """Refuse a (dilated) kernel larger than the (padded) input, naming both sizes.

    >>> check_window((3, 3), (4, 1))
    Traceback (most recent call last):
    ...
    ValueError: kernel: the kernel (4x1) is larger than the input (3x3)
    """
    extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    padded = [size + 2 * p for size, p in zip(input_size, padding)]
    if any(e > s for e, s in zip(extent, padded)):
        kernel_text = f"{kernel[0]}x{kernel[1]}"
        if tuple(dilation) != (1, 1):
            kernel_text += f" at dilation {dilation[0]}x{dilation[1]}, spanning {extent[0]}x{extent[1]}"
        input_text = "padded input" if any(padding) else "input"
        raise ValueError(f"{field}: the kernel ({kernel_text}) is larger than the {input_text} "
                         f"({padded[0]}x{padded[1]})")


def check_adaptive_output(input_size: Sequence[int], output: Sequence[int], field: str = "output") -> tuple[int, ...]:
    """An adaptive pool's ``output`` size, refused where it is larger than the input along an axis
    (a window then holds a single input position, repeated: nothing to pool).

    >>> check_adaptive_output((5, 5), (3, 5))
    (3, 5)
    >>> check_adaptive_output((5, 5), (6, 3))
    Traceback (most recent call last):
    ...
    ValueError: output: must be at most the input's size along each axis (5x5), got 6x3
    """
    if any(out > size for out, size in zip(output, input_size)):
        raise ValueError(f"{field}: must be at most the input's size along each axis "
                         f"({input_size[0]}x{input_size[1]}), got {output[0]}x{output[1]}")
    return tuple(output)
