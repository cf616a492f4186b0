"""Minibatch training on the generated kernels (SGD with momentum, Adam, AdamW): progress, checkpoints, exact resume.

:class:`Trainer` holds everything a run's future depends on: parameters, the optimizer's state
(SGD's momentum buffers; Adam's moments and step count), the epoch and the position within it,
the epoch's shuffle, the random generator's state and the dropout masks' (the network's
:attr:`~symcnn.runtime.network.Network.mask_state`). A checkpoint stores all of it
(:mod:`symcnn.training.checkpoint`: atomically, with a digest, read back with every field
checked), so that a resumed run reproduces an uninterrupted one exactly; resuming refuses another
spec, dtype, optimizer or data set, and mid-epoch another batch size. The optimizers follow
``torch.optim`` (:mod:`symcnn.training.optimizers`); the learning rate follows the schedule of
:meth:`~symcnn.train_config.TrainConfig.learning_rate`; the loss is the softmax cross-entropy,
with label smoothing as ``torch.nn.CrossEntropyLoss(label_smoothing=...)``. The settings are a
:class:`~symcnn.train_config.TrainConfig`.

Example:
    >>> from symcnn import Network
    >>> from symcnn.training.data import load_digits
    >>> trainer = Trainer(Network.from_spec("digits"), TrainConfig(epochs=3, batch=32, seed=0))
    >>> history = trainer.fit(load_digits((1, 8, 8)).standardized(), progress=False)
    >>> history[-1]["test_accuracy"] > 0.9
    True
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, NamedTuple, Optional

import numpy as np

from symcnn.training.checkpoint import (CHECKPOINT_FORMAT, check_writable, data_fingerprint, load_checkpoint,
                                        save_checkpoint)
from symcnn.training.data import Dataset, all_finite, check_dataset
from symcnn.training.optimizers import make_optimizer
from symcnn.train_config import TrainConfig

# Training is the layer below the runtime: it drives a Network through the object it is handed
# and names the class only in annotations, so that Network.fit (in the runtime) can import the
# trainer at module level and the dependency runs one way (runtime -> training). The import-linter
# contract in pyproject.toml skips TYPE_CHECKING imports (exclude_type_checking_imports).
if TYPE_CHECKING:
    from symcnn.runtime.network import Network

__all__ = ["NETWORK_INTERFACE", "TrainConfig", "Trainer", "TrainingDiverged", "save_checkpoint", "load_checkpoint",
           "CHECKPOINT_FORMAT"]


class TrainingDiverged(RuntimeError):
    """The loss or the parameters stopped being finite: the learning rate is too high for this network."""


class _Resumed(NamedTuple):
    """What :meth:`Trainer.resume` read that :meth:`Trainer.fit` checks the data against."""

    path: object
    data: Optional[dict]  # the checkpoint's data fingerprint (None in format 1)
    step: int
    order: Optional[np.ndarray]


@dataclass
class _State:
    """What a run's future depends on, besides the parameters."""

    epoch: int = 0  # epochs completed
    step: int = 0  # batches completed in the current epoch
    order: Optional[np.ndarray] = None  # the current epoch's shuffle
    rng_state: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    running_loss: float = 0.0  # sum of the current epoch's batch losses
    seen: int = 0  # images of the current epoch so far


#: What the trainer uses of the network it drives: a :class:`~symcnn.runtime.network.Network`, or the data-parallel
#: one of ``symcnn train --distributed`` (:class:`symcnn.torch.distributed.DataParallelNetwork`), which must have
#: each of these too (tests/interop/test_train_distributed_errors.py).
NETWORK_INTERFACE = ("spec", "params", "loss_and_grads", "optimizer_step", "forward", "dtype")


class Trainer:
    """Trains ``net`` with the optimizer of ``config`` on a :class:`~symcnn.training.data.Dataset`."""

    def __init__(self, net: Network, config: TrainConfig):
        # Checked by what the trainer uses (training sits below the runtime and does not import it).
        if not all(hasattr(net, name) for name in NETWORK_INTERFACE):
            raise ValueError(f"net: must be a symcnn Network, got {type(net).__name__}")
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config: must be a TrainConfig, got {type(config).__name__}")
        self.net = net
        self.config = config
        self.optimizer = make_optimizer(config, net.params)  # its state: checkpointed
        self.rng = np.random.default_rng(config.seed)
        self.state = _State(rng_state=self.rng.bit_generator.state)
        self.input_stats = (0.0, 1.0)  # the standardization the network was trained with
        self.data_fingerprint: Optional[dict] = None  # of the data being trained on (kept in checkpoints)
        self._resumed: Optional[_Resumed] = None  # what resume() read, for fit() to check the data against
        self.checkpoint_saved = False  # whether the last fit() wrote its checkpoint (at an epoch's end or Ctrl-C)

    # --- checkpoints ----------------------------------------------------------------------

    def resume(self, path, data: Optional[Dataset] = None) -> None:
        """Continue from a checkpoint of the same spec and dtype: parameters, optimizer, position, RNG.
        The data must be the checkpoint's, and within an epoch the batch size too: checked now when
        ``data`` is given (before anything changes), else by :meth:`fit`."""
        metadata, params, optimizer_state, order, buffers = load_checkpoint(path, self.net)  # every field checked
        optimizer = metadata["config"]["optimizer"]
        if optimizer != self.config.optimizer:  # its state is another optimizer's
            raise ValueError(f"resume: {path} was trained with the optimizer {optimizer}, this run uses "
                             f"{self.config.optimizer}; continue it with {optimizer}")
        batch = metadata["config"]["batch"]
        if metadata["step"] > 0 and batch != self.config.batch:
            raise ValueError(f"resume: {path} stopped within an epoch of batches of {batch}; continue it with "
                             f"batch {batch}, not {self.config.batch}")
        resumed = _Resumed(path, metadata.get("data"), metadata["step"], order)
        if data is not None:
            self._check_same_data(resumed, data_fingerprint(self._prepared(data)))
        self.net.load_params(params)
        if hasattr(self.net, "load_buffers"):  # the running statistics, as they were
            self.net.load_buffers(buffers)
        if "masks" in metadata:  # the dropout generator's state (format 3; no earlier spec had dropout)
            self.net.mask_state = metadata["masks"]
        # Adam's step count t is in format 4; older checkpoints are SGD's, which does not use it.
        self.optimizer.load_state(optimizer_state, metadata.get("optimizer_step", 0))
        self.rng.bit_generator.state = metadata["rng_state"]
        self.state = _State(epoch=metadata["epoch"], step=metadata["step"], order=order,
                            rng_state=metadata["rng_state"], history=metadata["history"],
                            running_loss=metadata["running_loss"], seen=metadata["seen"])
        self._resumed = resumed

    def _check_same_data(self, resumed: _Resumed, current: dict) -> None:
        """A resumed run's data must be the checkpoint's: its shuffle and position index it, and its
        history measures it."""
        path, recorded = resumed.path, resumed.data
        if recorded is not None and recorded["sha256"] != current["sha256"]:
            raise ValueError(f"resume: {path} was trained on other data ({recorded['name']!r}, "
                             f"{recorded['train_size']} training images), not this run's {current['name']!r} "
                             f"({current['train_size']}); resume with the same data")
        if resumed.step > 0 and len(resumed.order) != current["train_size"]:  # a format-1 checkpoint
            raise ValueError(f"resume: {path} stopped within an epoch of {len(resumed.order)} training images, "
                             f"this run's data has {current['train_size']}; resume with the same data")

    def _prepared(self, data: Dataset) -> Dataset:
        """``data`` in the network's dtype, checked (:func:`~symcnn.training.data.check_dataset`)."""
        if not isinstance(data, Dataset):
            raise ValueError(f"data: must be a symcnn.training.data.Dataset, got {type(data).__name__}")
        with np.errstate(over="ignore"):  # values beyond the dtype's range become inf: refused below
            data = data.astype(self.net.dtype)
        check_dataset(data, self.net.spec.input_shape, self.net.spec.classes)
        return data

    # --- training -------------------------------------------------------------------------

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch: int = 256) -> tuple[float, float]:
        """Mean loss and accuracy on ``(x, y)`` (inputs as the network was trained on them), in
        evaluation mode (batch norm's running statistics left unchanged, dropout passing its input on),
        whatever the network's mode."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch: must be an integer >= 1, got {batch!r}")
        if not isinstance(x, np.ndarray) or len(x) == 0:
            raise ValueError("x: evaluate needs at least one image")
        if not isinstance(y, np.ndarray) or y.shape != (len(x),) or y.dtype.kind not in "iu":
            raise ValueError(f"y: must be integer labels of shape ({len(x)},)")
        correct, total_loss = 0, 0.0
        for start in range(0, len(x), batch):
            xb, yb = x[start:start + batch], y[start:start + batch]
            logits = self.net.forward(xb, training=False)
            correct += int((logits.argmax(axis=1) == yb).sum())
            shifted = logits - logits.max(axis=1, keepdims=True)
            log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
            total_loss += float(-log_probabilities[np.arange(len(yb)), yb].sum())
        return total_loss / len(x), correct / len(x)

    def fit(self, data: Dataset, progress: bool = True, checkpoint=None,
            on_epoch: Optional[Callable[[dict], None]] = None,
            on_step: Optional[Callable[[int, int], None]] = None) -> list[dict]:
        """Train to ``config.epochs``; returns the history, one dict per epoch.

        ``checkpoint`` (a path) is written after every epoch and on Ctrl-C (then the
        ``KeyboardInterrupt`` propagates). ``on_step(epoch, step)`` is called after each batch.
        """
        from tqdm import tqdm

        self.checkpoint_saved = False
        for name, callback in (("on_epoch", on_epoch), ("on_step", on_step)):
            if callback is not None and not callable(callback):
                raise ValueError(f"{name}: must be callable or None, got {type(callback).__name__}")
        if checkpoint is not None:  # now, not after the first epoch
            checkpoint = check_writable(checkpoint, "checkpoint")
        data = self._prepared(data)
        self.data_fingerprint = data_fingerprint(data)
        if self._resumed is not None:
            self._check_same_data(self._resumed, self.data_fingerprint)
        self.input_stats = (data.mean, data.std)
        state, config = self.state, self.config
        batches = math.ceil(len(data.x_train) / config.batch)
        if state.step > batches:  # a format-1 checkpoint of another batch size (format 2 is checked on loading)
            raise ValueError(f"resume: the checkpoint stopped after batch {state.step} of an epoch, "
                             f"which has {batches} batches here")
        # Ctrl-C sets a flag that is acted on between batches: never in the middle of an update,
        # so that the checkpoint it writes is a consistent state to resume from.
        interrupted = []
        previous_handler = None
        if threading.current_thread() is threading.main_thread():
            previous_handler = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
        if hasattr(self.net, "train"):
            self.net.train()  # the steps in training mode (batch statistics), as PyTorch's loop sets
        try:
            while state.epoch < config.epochs:
                if state.order is None or state.step == 0:
                    state.order = self.rng.permutation(len(data.x_train))
                    state.rng_state = self.rng.bit_generator.state
                    state.running_loss, state.seen = 0.0, 0
                started = time.perf_counter()
                bar = tqdm(total=batches, initial=state.step, desc=f"epoch {state.epoch + 1}/{config.epochs}",
                           unit="batch", disable=not progress, leave=False, file=sys.stderr, dynamic_ncols=True)
                with bar:
                    while state.step < batches:
                        index = state.order[state.step * config.batch:(state.step + 1) * config.batch]
                        loss, grads = self.net.loss_and_grads(data.x_train[index], data.y_train[index],
                                                             label_smoothing=config.label_smoothing,
                                                             input_gradient=False)
                        if not math.isfinite(loss):
                            raise TrainingDiverged(
                                f"the loss is {loss} at epoch {state.epoch + 1}, batch {state.step + 1}: "
                                f"training diverged; lower --lr (now {config.lr})")
                        lr = config.learning_rate(state.epoch * batches + state.step, batches)
                        self.net.optimizer_step(self.optimizer, grads, lr)
                        if not all(all_finite(parameter) for parameter in self.net.params.values()):
                            raise TrainingDiverged(
                                f"the parameters hold NaN or infinite values after epoch {state.epoch + 1}, "
                                f"batch {state.step + 1}: training diverged; lower --lr (now {config.lr})")
                        state.step += 1
                        state.running_loss += loss * len(index)
                        state.seen += len(index)
                        bar.set_postfix(loss=f"{state.running_loss / state.seen:.4f}")
                        bar.update(1)
                        if on_step is not None:
                            on_step(state.epoch, state.step)
                        if interrupted:
                            raise KeyboardInterrupt
                test_loss, test_accuracy = self.evaluate(data.x_test, data.y_test)
                record = {"epoch": state.epoch + 1, "train_loss": state.running_loss / state.seen,
                          "test_loss": test_loss, "test_accuracy": test_accuracy,
                          "seconds": time.perf_counter() - started}
                state.history.append(record)
                state.epoch += 1
                state.step = 0
                state.order = None
                state.rng_state = self.rng.bit_generator.state
                if checkpoint is not None:
                    save_checkpoint(checkpoint, self)
                    self.checkpoint_saved = True
                if on_epoch is not None:
                    on_epoch(record)
        except KeyboardInterrupt:
            if checkpoint is not None:
                save_checkpoint(checkpoint, self)
                self.checkpoint_saved = True
            raise
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        return state.history
