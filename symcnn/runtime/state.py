"""What a :class:`~symcnn.runtime.network.Network` keeps, and its modes: its parameters, batch norm's
buffers (running statistics), training and evaluation mode, and the dropout generator's state; the checks
of every array set or loaded.

A mixin of ``Network`` (it reads the network's spec and dtype). Never imports SymPy.

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

__all__ = ["LayerState", "describe_array", "loss_targets"]


def describe_array(array) -> str:
    """What ``array`` is, for an error message: ``a non-contiguous float32 array of shape (2, 3)``."""
    if not isinstance(array, np.ndarray):
        return f"a {type(array).__name__}"
    layout = "" if array.flags.c_contiguous else "non-contiguous "
    return f"a {layout}{array.dtype} array of shape {array.shape}"


def loss_targets(labels, batch: int, classes: int, dtype, label_smoothing: float = 0.0) -> np.ndarray:
    """The loss's target rows of ``labels`` (checked): one-hot rows, or with label smoothing ``s`` the rows
    ``(1 - s) * one_hot + s / classes`` (PyTorch's ``CrossEntropyLoss(label_smoothing=s)``). Each row sums to
    1, as the generated loss gradient assumes.

    >>> loss_targets(np.array([2, 0]), 2, 3, np.float32)
    array([[0., 0., 1.],
           [1., 0., 0.]], dtype=float32)
    """
    if (not isinstance(labels, np.ndarray) or labels.shape != (batch,)
            or not np.issubdtype(labels.dtype, np.integer)):
        raise ValueError(f"labels: expected an integer array of shape ({batch},), got {describe_array(labels)}")
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"labels: must lie in [0, {classes - 1}], got values from {labels.min()} to {labels.max()}")
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, (int, float)) \
            or not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing: must be a number in [0, 1), got {label_smoothing!r}")
    targets = np.full((batch, classes), label_smoothing / classes, dtype=dtype)
    targets[np.arange(batch), labels] += 1 - label_smoothing
    return targets


class LayerState:
    """Parameters, buffers, modes and dropout masks of a network (see :class:`~symcnn.runtime.network.Network`)."""

    def _initial_params(self, seed: int) -> dict[str, np.ndarray]:
        """He-initialized weights from ``seed``, zero biases, and a normalization's scale at the registry's constant."""
        rng = np.random.default_rng(seed)
        params = {}
        constants = {f"{layer.name}.{role}": value for layer in self.spec.layers if layer.name
                     for role, value in registry.get(layer.kind).initial.items()}
        for name, shape in self.spec.parameter_shapes().items():
            if name in constants:  # a normalization's scale: 1, as PyTorch starts it
                params[name] = np.full(shape, constants[name], dtype=self.dtype)
            elif name.endswith(".bias"):
                params[name] = np.zeros(shape, dtype=self.dtype)
            else:
                fan_in = int(np.prod(shape[1:]))
                params[name] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(self.dtype)
        return params

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The parameters by name. Assigning a dict replaces them, checked at once (names, and
        C-contiguous finite arrays of the dtype and shapes); :meth:`load_params` also converts."""
        return self._params

    @params.setter
    def params(self, params) -> None:
        self._check_params(params, finite=True)
        self._params = params

    def _check_params(self, params: Optional[dict] = None, finite: bool = False) -> None:
        """Names, dtype, shapes and layout before every pass (an array replaced in the dict is caught);
        values finite too where parameters are set or loaded (a pass does not scan them)."""
        if params is None and not finite:  # before a pass: the current parameters
            params = self._params
        if not isinstance(params, dict):
            raise ValueError(f"params: must be a dict of arrays by name, got {type(params).__name__}")
        expected = self._parameter_shapes
        if params.keys() != expected.keys():
            missing, extra = set(expected) - set(params), set(params) - set(expected)
            raise ValueError(f"params: missing {sorted(missing)}, unexpected {sorted(map(str, extra))}")
        for name, shape in expected.items():
            self._check_array(params[name], name, shape)
            if finite and not self._all_finite(params[name]):
                raise ValueError(f"{name}: holds NaN or infinite values (as {self.dtype})")

    def load_params(self, params: dict) -> None:
        """Replace the parameters (e.g. from a PyTorch ``state_dict`` as NumPy arrays), converted to
        the network's dtype and checked: real, finite, the spec's names and shapes."""
        if not isinstance(params, dict):
            raise ValueError(f"params: must be a dict of arrays by name, got {type(params).__name__}")
        converted = {}
        for name, value in params.items():
            try:
                array = np.asarray(value)
            except (ValueError, TypeError) as error:
                raise ValueError(f"{name}: cannot be read as an array ({error})") from None
            if array.dtype.kind not in "fiu":  # complex would lose its imaginary part, silently
                raise ValueError(f"{name}: must hold real numbers, got {array.dtype}")
            with np.errstate(over="ignore"):  # beyond the dtype's range: inf, refused by the setter
                converted[name] = np.ascontiguousarray(array, dtype=self.dtype)
        self.params = converted  # checked (names, shapes, finite values) before anything is replaced

    # --- checks ---------------------------------------------------------------------------

    def _check_array(self, array, name: str, shape: tuple, dtype=None) -> None:
        dtype = self.dtype if dtype is None else dtype
        if (not isinstance(array, np.ndarray) or array.dtype != dtype or tuple(array.shape) != tuple(shape)
                or not array.flags.c_contiguous):
            expected = ", ".join(str(size) for size in shape)
            raise ValueError(f"{name}: expected a C-contiguous {dtype} array of shape ({expected}), "
                             f"got {describe_array(array)}")

    @staticmethod
    def _all_finite(array: np.ndarray) -> bool:
        """No NaN or infinity in a float array: its sum first (cheap), every value when the sum is not finite."""
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(array.sum()):
                return True
        return bool(np.isfinite(array).all())

    # --- buffers ------------------------------------------------------------------------------

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
