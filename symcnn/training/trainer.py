"""Minibatch SGD with momentum on the generated kernels: progress, checkpoints, exact resume.

:class:`Trainer` holds everything a run's future depends on: parameters, the momentum buffers,
the epoch and the position within it, the epoch's shuffle and the random generator's state.
A checkpoint stores all of it (atomically, through :mod:`symcnn.files`), so that a resumed
run reproduces an uninterrupted one exactly. SGD follows PyTorch's ``torch.optim.SGD``:
``g = grad + weight_decay * p``, ``v = momentum * v + g``, ``p = p - lr * v``; the loss is the
softmax cross-entropy, with label smoothing as ``torch.nn.CrossEntropyLoss(label_smoothing=...)``.
The settings are a :class:`~symcnn.train_config.TrainConfig`.

Example:
    >>> from symcnn import Network
    >>> from symcnn.training.data import load_digits
    >>> trainer = Trainer(Network.from_spec("digits"), TrainConfig(epochs=3, batch=32, seed=0))
    >>> history = trainer.fit(load_digits((1, 8, 8)).standardized(), progress=False)
    >>> history[-1]["test_accuracy"] > 0.9
    True
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np

from symcnn.files import atomic_open
from symcnn.training.data import Dataset
from symcnn.train_config import TrainConfig

# Training is the layer below the runtime: it drives a Network through the object it is handed
# and names the class only in annotations, so that Network.fit (in the runtime) can import the
# trainer at module level and the dependency runs one way (runtime -> training). The import-linter
# contract in pyproject.toml skips TYPE_CHECKING imports (exclude_type_checking_imports).
if TYPE_CHECKING:
    from symcnn.runtime.network import Network

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "save_checkpoint", "load_checkpoint", "CHECKPOINT_FORMAT"]


class TrainingDiverged(RuntimeError):
    """The loss stopped being a finite number: the learning rate is too high for this network."""

CHECKPOINT_FORMAT = 1


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


def save_checkpoint(path, trainer: "Trainer") -> None:
    """Parameters, momentum, epoch, position, shuffle, RNG state and history, written atomically."""
    state = trainer.state
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "spec": trainer.net.spec.name,
        "spec_digest": trainer.net.spec.digest(),
        "dtype": str(trainer.net.dtype),
        "config": asdict(trainer.config),
        "epoch": state.epoch,
        "step": state.step,
        "rng_state": trainer.rng.bit_generator.state,
        "history": state.history,
        "running_loss": state.running_loss,
        "seen": state.seen,
        "input_mean": trainer.input_stats[0],
        "input_std": trainer.input_stats[1],
    }
    arrays = {f"param/{name}": value for name, value in trainer.net.params.items()}
    arrays.update({f"velocity/{name}": value for name, value in trainer.velocity.items()})
    if state.order is not None:
        arrays["order"] = state.order
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode(), dtype=np.uint8)

    with atomic_open(path, "wb", parents=True) as stream:
        np.savez(stream, **arrays)


def load_checkpoint(path) -> tuple[dict, dict, dict, Optional[np.ndarray]]:
    """``(metadata, params, velocity, order)`` from a checkpoint; ``ValueError`` when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"resume: no such checkpoint: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            metadata = json.loads(archive["metadata"].tobytes().decode())
            params = {key[6:]: archive[key] for key in archive.files if key.startswith("param/")}
            velocity = {key[9:]: archive[key] for key in archive.files if key.startswith("velocity/")}
            order = archive["order"] if "order" in archive.files else None
    except (OSError, ValueError, KeyError, EOFError, json.JSONDecodeError) as error:
        raise ValueError(f"resume: {path} is not a symcnn checkpoint ({error})") from None
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"resume: {path} has checkpoint format {metadata.get('format')!r}, "
                         f"this symcnn reads {CHECKPOINT_FORMAT}")
    return metadata, params, velocity, order


class Trainer:
    """Trains ``net`` with minibatch SGD (momentum, weight decay) on a :class:`~symcnn.training.data.Dataset`."""

    def __init__(self, net: Network, config: TrainConfig):
        self.net = net
        self.config = config
        self.velocity = {name: np.zeros_like(value) for name, value in net.params.items()}
        self.rng = np.random.default_rng(config.seed)
        self.state = _State(rng_state=self.rng.bit_generator.state)
        self.input_stats = (0.0, 1.0)  # the standardization the network was trained with

    # --- checkpoints ----------------------------------------------------------------------

    def resume(self, path) -> None:
        """Continue from a checkpoint of the same spec: parameters, optimizer, position, RNG."""
        metadata, params, velocity, order = load_checkpoint(path)
        spec = self.net.spec
        if metadata["spec"] != spec.name or metadata["spec_digest"] != spec.digest():
            raise ValueError(f"resume: {path} was made for spec {metadata['spec']!r}, not {spec.name!r} "
                             "(or for a different version of it)")
        if metadata["dtype"] != str(self.net.dtype):
            raise ValueError(f"resume: {path} holds {metadata['dtype']} parameters, this run uses {self.net.dtype}")
        self.net.load_params(params)
        if set(velocity) != set(self.net.params):
            raise ValueError(f"resume: {path} has no complete optimizer state")
        self.velocity = {name: np.ascontiguousarray(value) for name, value in velocity.items()}
        self.rng.bit_generator.state = metadata["rng_state"]
        self.state = _State(epoch=metadata["epoch"], step=metadata["step"], order=order,
                            rng_state=metadata["rng_state"], history=metadata["history"],
                            running_loss=metadata["running_loss"], seen=metadata["seen"])

    # --- training -------------------------------------------------------------------------

    def _sgd(self, grads: dict, lr: float) -> None:
        config, dtype = self.config, self.net.dtype.type
        for name, parameter in self.net.params.items():
            gradient = grads[name]
            if config.weight_decay:
                gradient = gradient + dtype(config.weight_decay) * parameter
            velocity = self.velocity[name]
            velocity *= dtype(config.momentum)
            velocity += gradient
            parameter -= dtype(lr) * velocity

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch: int = 256) -> tuple[float, float]:
        """Mean loss and accuracy on ``(x, y)`` (inputs as the network was trained on them)."""
        correct, total_loss = 0, 0.0
        for start in range(0, len(x), batch):
            xb, yb = x[start:start + batch], y[start:start + batch]
            logits = self.net.forward(xb)
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

        data = data.astype(self.net.dtype)
        self.input_stats = (data.mean, data.std)
        state, config = self.state, self.config
        batches = math.ceil(len(data.x_train) / config.batch)
        # Ctrl-C sets a flag that is acted on between batches: never in the middle of an update,
        # so that the checkpoint it writes is a consistent state to resume from.
        interrupted = []
        previous_handler = None
        if threading.current_thread() is threading.main_thread():
            previous_handler = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
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
                        self._sgd(grads, config.learning_rate(state.epoch * batches + state.step, batches))
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
                if on_epoch is not None:
                    on_epoch(record)
        except KeyboardInterrupt:
            if checkpoint is not None:
                save_checkpoint(checkpoint, self)
            raise
        finally:
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)
        return state.history
