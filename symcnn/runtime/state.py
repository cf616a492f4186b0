"""What a :class:`~symcnn.runtime.network.Network` keeps besides its parameters, and its modes: batch
norm's buffers (running statistics), training and evaluation mode, and the dropout generator's state.

A mixin of ``Network`` (it reads the network's spec, dtype and array checks). Never imports SymPy.

Example:
    >>> from symcnn.runtime.network import Network
    >>> net = Network.from_spec("digits")
    >>> net.eval() is net, net.training, net.mask_state
    (True, False, {'seed': 0, 'step': 0})
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from symcnn import registry
from symcnn.runtime.masks import draw_mask
from symcnn.spec import LayerSpec

__all__ = ["LayerState"]


class LayerState:
    """Buffers, modes and dropout masks of a network (see :class:`~symcnn.runtime.network.Network`)."""

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        """The buffers by name (batch norm's running statistics). Assigning a dict replaces them,
        checked (names; C-contiguous arrays of the dtype, int64 counters, shapes; finite values);
        :meth:`load_buffers` also converts."""
        return self._buffers

    @buffers.setter
    def buffers(self, buffers) -> None:
        if not isinstance(buffers, dict):
            raise ValueError(f"buffers: must be a dict of arrays by name, got {type(buffers).__name__}")
        if buffers.keys() != self._buffer_shapes.keys():
            missing, extra = set(self._buffer_shapes) - set(buffers), set(buffers) - set(self._buffer_shapes)
            raise ValueError(f"buffers: missing {sorted(missing)}, unexpected {sorted(map(str, extra))}")
        for name, shape in self._buffer_shapes.items():
            self._check_array(buffers[name], name, shape, np.dtype(np.int64) if name in self._counters else None)
            if not self._all_finite(buffers[name]) or (name in self._counters and buffers[name].min(initial=0) < 0):
                raise ValueError(f"{name}: holds NaN, infinite or negative values")
        self._buffers = buffers

    def load_buffers(self, buffers: dict) -> None:
        """Replace the buffers (from a checkpoint or a PyTorch ``state_dict``), converted and checked."""
        if not isinstance(buffers, dict):
            raise ValueError(f"buffers: must be a dict of arrays by name, got {type(buffers).__name__}")
        converted = {}
        for name, value in buffers.items():
            array = np.asarray(value)
            if array.dtype.kind not in "fiu":
                raise ValueError(f"{name}: must hold real numbers, got {array.dtype}")
            dtype = np.int64 if name in self._counters else self.dtype
            converted[name] = np.array(array, dtype=dtype, order="C")  # a copy; a count stays 0-d
        self.buffers = converted

    # --- modes and masks ----------------------------------------------------------------------

    def train(self, mode: bool = True) -> "LayerState":
        """Training mode (``mode`` True, as at the start) or evaluation mode; returns the network."""
        if not isinstance(mode, (bool, np.bool_)):
            raise ValueError(f"mode: must be True or False, got {mode!r}")
        self.training = bool(mode)
        return self

    def eval(self) -> "LayerState":
        """Evaluation mode: batch norm uses its running statistics and leaves them unchanged, dropout
        passes its input on; returns the network."""
        return self.train(False)

    def _mode(self, training) -> bool:
        if training is None:
            return self.training
        if not isinstance(training, (bool, np.bool_)):
            raise ValueError(f"training: must be True, False or None (the network's mode), got {training!r}")
        return bool(training)

    @property
    def mask_state(self) -> dict:
        """The dropout generator's state, ``{"seed": s, "step": t}``: the next training pass draws the
        masks of step ``t``, then ``t`` counts it. Kept in checkpoints; assigning sets it, checked."""
        return dict(self._mask_state)

    @mask_state.setter
    def mask_state(self, state) -> None:
        if not isinstance(state, dict) or set(state) != {"seed", "step"} or not all(
                isinstance(state[key], (int, np.integer)) and not isinstance(state[key], (bool, np.bool_))
                and 0 <= state[key] < 2**64 for key in state):
            raise ValueError(f"mask_state: must be {{'seed': s, 'step': t}}, integers in [0, 2**64), got {state!r}")
        self._mask_state = {key: int(value) for key, value in state.items()}

    def masks(self, batch: int, step: Optional[int] = None) -> dict[str, np.ndarray]:
        """The dropout masks, by layer label, that the training pass ``step`` (default: the last one)
        draws for a batch of ``batch`` images: what that pass multiplied by, recomputed (for checks)."""
        step = self._mask_state["step"] - 1 if step is None else step
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"step: must be an integer >= 0 (a training pass), got {step!r}")
        masks = {}
        for layer in (layer for layer in self.spec.layers if layer.label in self._masked):
            masks[layer.label] = np.empty((batch, *layer.input_shape), dtype=self.dtype)
            self._draw(layer, masks[layer.label], int(step))
        return masks

    def _draw(self, layer: LayerSpec, mask: np.ndarray, step: int) -> None:
        drop = layer.settings[registry.get(layer.kind).mask_drop]
        draw_mask(mask, self._mask_state["seed"], layer.index, step, drop)
