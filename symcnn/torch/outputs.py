"""The operators' output tensors, their memory reused once nothing refers to it any more.

Why: a fresh multi-megabyte tensor costs a page fault per 4 KiB on first touch (glibc hands large
blocks back to the system when they are freed), and the kernels that fill an activation are often
cheaper than that. Measured on ``seed004``, batch 64, one thread: the module's train step spent about
3 ms of its 18 ms faulting in fresh outputs (1,600 faults a step), where the Network reuses its arrays.

What keeps it correct: an output is a tensor on a NumPy array's memory (``torch.from_numpy``), and
that tensor's storage holds a reference to the array for as long as any tensor, view, ``.numpy()``
array or autograd's saved copy refers to the memory. The pool hands an array out again only when it
holds the one reference left, so a tensor given to the caller or to autograd is never written by a
later call. At most :data:`ARRAYS_PER_SHAPE` arrays of one shape are kept (those of a pass's
simultaneously live outputs); beyond that, an output is a plain new array that the pool forgets.

Example:
    >>> import numpy as np
    >>> pool = OutputPool()
    >>> first = pool.empty((2, 3), np.dtype(np.float32))
    >>> kept = first.data_ptr()
    >>> second = pool.empty((2, 3), np.dtype(np.float32))   # ``first`` is alive: other memory
    >>> second.data_ptr() != kept
    True
    >>> del first
    >>> pool.empty((2, 3), np.dtype(np.float32)).data_ptr() == kept   # nothing refers to it now: reused
    True
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import torch

__all__ = ["OutputPool", "OUTPUTS", "ARRAYS_PER_SHAPE", "SHAPES"]

#: Arrays kept per (shape, dtype): enough for the outputs of one shape alive at once in a pass.
ARRAYS_PER_SHAPE = 32

#: (shape, dtype) pairs kept before the pool starts over (many batch sizes: an evaluation's last batch, ...).
SHAPES = 256


def _references(arrays: list, index: int) -> int:
    return sys.getrefcount(arrays[index])


def _references_when_free() -> int:
    """What :func:`_references` says of an array that only the pool's list holds (measured, not assumed:
    CPython versions count a call's own references differently)."""
    return _references([np.empty(1)], 0)


class OutputPool:
    """Arrays by (shape, dtype), each handed out as a tensor while nothing else refers to it."""

    def __init__(self):
        self._arrays: dict[tuple, list[np.ndarray]] = {}
        self._free = _references_when_free()
        self._lock = threading.Lock()  # the search and the hand-out are one step: threads may call operators

    def empty(self, shape: tuple, dtype: np.dtype) -> torch.Tensor:
        """An uninitialized C-contiguous CPU tensor of ``shape`` and ``dtype`` that no live tensor shares."""
        return torch.from_numpy(self.empty_array(shape, dtype))

    def empty_array(self, shape: tuple, dtype: np.dtype) -> np.ndarray:
        """An uninitialized C-contiguous array of ``shape`` and ``dtype`` that nothing else refers to: it is
        handed out again once no array, view or tensor refers to it."""
        key = (shape, dtype)
        with self._lock:
            arrays = self._arrays.get(key)
            if arrays is None:
                if len(self._arrays) >= SHAPES:
                    self._arrays.clear()  # arrays in use stay alive through their tensors
                arrays = self._arrays[key] = []
            for index in range(len(arrays)):
                if _references(arrays, index) == self._free:
                    return arrays[index]
            array = np.empty(shape, dtype=dtype)
            if len(arrays) < ARRAYS_PER_SHAPE:
                arrays.append(array)
            return array

    def clear(self) -> None:
        """Forget every array (their memory goes back once no tensor refers to it)."""
        with self._lock:
            self._arrays.clear()

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays the pool keeps, in use or free."""
        with self._lock:
            return sum(array.nbytes for arrays in self._arrays.values() for array in arrays)


#: The pool that the generated kernels' operators allocate their outputs from.
OUTPUTS = OutputPool()
