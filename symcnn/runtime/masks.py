"""Dropout masks from a counter-based generator: each element a function of (seed, layer, step, element).

A mask element does not come from a stream that a run consumes in order: it is a hash of where it
sits, so that it is the same whatever the thread count, however the batch is split, and after a
resume from a checkpoint that stored only ``(seed, step)``. The hash is SplitMix64 (Steele, Lea and
Flood, 2014; Java's ``SplittableRandom``), with ``mix`` its output function (Stafford's variant 13)
and ``γ = 0x9E3779B97F4A7C15``, all arithmetic modulo 2**64:

- the pass's key: ``key = absorb(absorb(absorb(0, seed), layer), step)`` with
  ``absorb(k, word) = mix((k XOR word) + γ)``: the seed (modulo 2**64), the layer's index in the
  spec, and the step (the count of training passes before this one);
- element ``e`` (row-major over the whole batch): ``bits = mix(key + (e + 1)·γ)``, SplitMix64's
  ``(e + 1)``-th output from the state ``key``; ``u = (bits >> 11) / 2**53``, uniform on
  ``[0, 1)`` in steps of ``2**-53``; the element is dropped (0) when ``u < p``, else kept (1).

A process that holds rows ``first_image, first_image + 1, ...`` of a batch split across processes
(data-parallel training) draws those rows of the whole batch's mask: its element ``e`` is the whole
batch's element ``first_image·(elements per image) + e``.

Example:
    >>> import numpy as np
    >>> mask = np.empty((2, 8), dtype=np.float32)
    >>> draw_mask(mask, seed=0, layer=2, step=0, drop=0.5)
    >>> mask.tolist() == reference_mask((2, 8), 0, 2, 0, 0.5).tolist()
    True
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["GAMMA", "pass_key", "draw_mask", "reference_mask"]

_WORD = 2**64 - 1
GAMMA = 0x9E3779B97F4A7C15
_MIX_1, _MIX_2 = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _mix(z: int) -> int:
    """SplitMix64's output function on a Python int (modulo 2**64)."""
    z = ((z ^ (z >> 30)) * _MIX_1) & _WORD
    z = ((z ^ (z >> 27)) * _MIX_2) & _WORD
    return z ^ (z >> 31)


def pass_key(seed: int, layer: int, step: int) -> int:
    """The key of one layer's mask at one training pass (see the module's docstring)."""
    key = 0
    for word in (seed, layer, step):
        key = _mix(((key ^ (word & _WORD)) + GAMMA) & _WORD)
    return key


# numba: every operand a uint64, so that the arithmetic wraps modulo 2**64 (an int64 mixed in
# would turn the expression into floats).
_GAMMA_U, _MIX_1_U, _MIX_2_U = np.uint64(GAMMA), np.uint64(_MIX_1), np.uint64(_MIX_2)
_SHIFTS = (np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11))


@njit(cache=True, parallel=True)
def _fill(flat, images, key, drop):
    """``flat`` (the mask's elements, row-major) set to 0 or 1, in parallel over the images; each
    element depends only on ``key`` and its own position."""
    per_image = flat.size // images
    unit = 2.0 ** -53
    for image in prange(images):
        for offset in range(per_image):
            position = image * per_image + offset
            z = key + np.uint64(position + 1) * _GAMMA_U
            z = (z ^ (z >> _SHIFTS[0])) * _MIX_1_U
            z = (z ^ (z >> _SHIFTS[1])) * _MIX_2_U
            z = z ^ (z >> _SHIFTS[2])
            flat[position] = 0.0 if float(z >> _SHIFTS[3]) * unit < drop else 1.0


def draw_mask(mask: np.ndarray, seed: int, layer: int, step: int, drop: float, first_image: int = 0) -> None:
    """Fill ``mask`` (C-contiguous, batch axis first, float) with the 0s and 1s of layer ``layer``'s
    mask at training pass ``step``: each element 0 with probability ``drop``. With ``first_image``, the
    rows of the whole batch's mask from that row on (see the module's docstring)."""
    images = max(mask.shape[0], 1)
    # Element e of the rows from first_image on is the whole batch's element skip + e: its
    # (skip + e + 1)-th output from key, i.e. the (e + 1)-th from key + skip·γ.
    skip = first_image * (mask.size // images)
    key = (pass_key(seed, layer, step) + skip * GAMMA) & _WORD
    _fill(mask.reshape(-1), images, np.uint64(key), float(drop))


def reference_mask(shape: tuple, seed: int, layer: int, step: int, drop: float, first_image: int = 0) -> np.ndarray:
    """The same mask in plain Python integers, element by element: the definition, for tests."""
    key = pass_key(seed, layer, step)
    skip = first_image * int(np.prod(shape[1:]))
    values = [0.0 if (_mix((key + (skip + position + 1) * GAMMA) & _WORD) >> 11) * 2.0 ** -53 < drop else 1.0
              for position in range(int(np.prod(shape)))]
    return np.array(values).reshape(shape)
