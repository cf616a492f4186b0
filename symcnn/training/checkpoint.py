"""Checkpoints: a training run's whole state in one ``.npz``, written atomically, read back with distrust.

A checkpoint (format 4, :data:`CHECKPOINT_FORMAT`) is an ``.npz`` written by ``np.savez`` (no
pickles) that holds:

- ``param/<name>`` and the optimizer's state of each parameter, in the network's dtype and shapes:
  ``velocity/<name>`` (SGD's momentum buffers) or ``exp_avg/<name>`` and ``exp_avg_sq/<name>``
  (Adam's and AdamW's moments m and v, PyTorch's names; :data:`~symcnn.training.optimizers.STATE_KINDS`);
- ``buffer/<name>``: the network's buffers (batch norm's ``bn1.running_mean``, ``bn1.running_var``
  in its dtype, ``bn1.num_batches_tracked`` as int64), where it has any;
- ``order``: the current epoch's shuffle, a permutation of the training images;
- ``metadata``: JSON (UTF-8, as uint8): ``format``, ``spec``, ``spec_digest``, ``dtype``,
  ``config``, ``epoch``, ``step``, ``rng_state``, ``history``, ``running_loss``, ``seen``,
  ``input_mean``, ``input_std``, ``data`` (the training data's name, size and SHA-256), ``masks``
  (the dropout generator's ``seed`` and ``step``, :attr:`symcnn.runtime.network.Network.mask_state`)
  and ``optimizer_step`` (the updates made: Adam's t);
- ``digest``: the SHA-256 of every other array's name, dtype, shape and bytes (hex, as uint8).

:func:`load_checkpoint` trusts none of it. It reads every header before any array (at most
:data:`MAX_CHECKPOINT_BYTES`), then checks every key's presence, type and range, that the
arrays are finite and ``order`` is a permutation, the digest, and, given the network, that the
spec, the dtype and every shape are the network's. A problem is one ``ValueError`` line
starting ``resume:``. Checkpoints of formats 1 (no digest, no data fingerprint), 2 (no
``masks``: no spec had dropout then) and 3 (SGD only: no optimizer settings in ``config``, no
``optimizer_step``) are still read, with every other check.

Example:
    >>> import pathlib, tempfile
    >>> from symcnn import Network
    >>> from symcnn.train_config import TrainConfig
    >>> from symcnn.training.trainer import Trainer
    >>> trainer = Trainer(Network.from_spec("digits", seed=0), TrainConfig(epochs=1))
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.npz"
    >>> save_checkpoint(path, trainer)
    >>> checkpoint = load_checkpoint(path, trainer.net)
    >>> checkpoint.metadata["format"], checkpoint.metadata["epoch"], sorted(checkpoint.params)
    (4, 0, ['conv1.bias', 'conv1.weight', 'fc1.bias', 'fc1.weight'])
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np

from symcnn.files import atomic_open

from symcnn.train_config import TrainConfig
from symcnn.training.data import all_finite
from symcnn.training.npz import NpzReader, format_bytes
from symcnn.training.optimizers import STATE_KINDS

__all__ = ["CHECKPOINT_FORMAT", "MAX_CHECKPOINT_BYTES", "Checkpoint", "save_checkpoint", "load_checkpoint",
           "data_fingerprint", "check_writable"]

CHECKPOINT_FORMAT = 4
READABLE_FORMATS = (1, 2, 3, 4)

#: The most a checkpoint's arrays may take together, checked from their headers before any is read.
MAX_CHECKPOINT_BYTES = 4 * 2**30
#: The most its metadata (JSON) may take: the history of a very long run is far smaller.
MAX_METADATA_BYTES = 16 * 2**20

_METADATA_KEYS = {"format", "spec", "spec_digest", "dtype", "config", "epoch", "step", "rng_state", "history",
                  "running_loss", "seen", "input_mean", "input_std"}
_KEYS_OF_FORMAT = {1: _METADATA_KEYS, 2: _METADATA_KEYS | {"data"}, 3: _METADATA_KEYS | {"data", "masks"},
                   4: _METADATA_KEYS | {"data", "masks", "optimizer_step"}}
#: The settings of a format 2 or 3 checkpoint's config (SGD only); format 4 holds every TrainConfig field.
_SETTINGS_BEFORE_4 = {"epochs", "batch", "lr", "momentum", "weight_decay", "seed", "schedule", "warmup",
                      "label_smoothing"}
#: Every kind of optimizer state array (``<kind>/<parameter name>``).
_STATE_KINDS = tuple(sorted({kind for kinds in STATE_KINDS.values() for kind in kinds}))
_HISTORY_KEYS = {"epoch", "train_loss", "test_loss", "test_accuracy", "seconds"}
_DTYPES = ("float32", "float64")


class Checkpoint(NamedTuple):
    """A checkpoint's contents, checked: its metadata, parameters by name, the optimizer's state by kind
    and name (``optimizer_state["velocity"]["fc1.weight"]``), the epoch's shuffle (``None`` between
    epochs) and the network's buffers by name (running statistics)."""

    metadata: dict
    params: dict
    optimizer_state: dict
    order: Optional[np.ndarray]
    buffers: dict

    @property
    def velocity(self) -> dict:
        """SGD's momentum buffers by name (empty for Adam and AdamW)."""
        return self.optimizer_state.get("velocity", {})


# --- writing ----------------------------------------------------------------------------------


def check_writable(path, field: str) -> Path:
    """``path`` as a :class:`~pathlib.Path`, once it is known that a file can be written there: not a
    directory, in a directory that exists (or can be made) and accepts a new file. Checked before a
    long run starts, so that its first epoch is not lost to a typo. ``ValueError`` names ``field``.

    >>> check_writable(tempfile.gettempdir(), "checkpoint")
    Traceback (most recent call last):
    ...
    ValueError: checkpoint: '/tmp' is a directory; name a file
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{field}: must be a path, got {type(path).__name__}")
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{field}: {str(target)!r} is a directory; name a file")
    if target.exists() and not target.is_file():
        raise ValueError(f"{field}: {str(target)!r} exists and is not a regular file")
    directory = target.parent
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{field}: {str(directory)!r} is a file, not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".probe")
        os.close(handle)
        os.unlink(probe)
    except (OSError, ValueError) as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise ValueError(f"{field}: cannot write a file in {str(directory)!r}: {reason}") from None
    return target


def data_fingerprint(data) -> dict:
    """The name, training-set size and SHA-256 of a :class:`~symcnn.training.data.Dataset`'s arrays:
    what a resumed run checks that it trains on the same data."""
    digest = hashlib.sha256()
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array)
    return {"name": str(data.name), "train_size": len(data.x_train), "sha256": digest.hexdigest()}


def _digest(arrays: dict) -> str:
    digest = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        digest.update(json.dumps([key, array.dtype.str, list(array.shape)]).encode())
        digest.update(array)
    return digest.hexdigest()


def save_checkpoint(path, trainer) -> None:
    """Parameters, optimizer state, epoch, position, shuffle, RNG states, history and the data's
    fingerprint of a :class:`~symcnn.training.trainer.Trainer`, with a digest, written atomically."""
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
        "data": getattr(trainer, "data_fingerprint", None),
        "masks": trainer.net.mask_state,
        "optimizer_step": trainer.optimizer.steps,
    }
    arrays = {f"param/{name}": value for name, value in trainer.net.params.items()}
    for kind, values in trainer.optimizer.state.items():
        arrays.update({f"{kind}/{name}": value for name, value in values.items()})
    arrays.update({f"buffer/{name}": value for name, value in getattr(trainer.net, "buffers", {}).items()})
    if state.order is not None:
        arrays["order"] = state.order
    arrays["metadata"] = np.frombuffer(json.dumps(metadata, allow_nan=False).encode(), dtype=np.uint8)
    arrays["digest"] = np.frombuffer(_digest(arrays).encode(), dtype=np.uint8)

    with atomic_open(path, "wb", parents=True) as stream:  # the umask's mode, fsynced, never half-written
        np.savez(stream, **arrays)


# --- reading ----------------------------------------------------------------------------------


def load_checkpoint(path, net=None) -> Checkpoint:
    """A checkpoint, checked (see the module's docstring); with ``net`` (a
    :class:`~symcnn.runtime.network.Network`), also checked to fit it. ``ValueError`` when anything
    is missing, damaged, out of range or made for another network."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"resume: no such checkpoint: {path}")
    with NpzReader(path, "resume", path.name, MAX_CHECKPOINT_BYTES, what="a symcnn checkpoint") as archive:
        if "metadata" not in archive.members:
            raise ValueError(f"resume: {path.name} is not a symcnn checkpoint (it has no metadata)")
        metadata = _read_metadata(archive)
        _check_metadata(metadata, archive.error)
        if net is not None:
            _check_fits(metadata, net, path)
        _check_headers(archive, metadata, net)
        arrays = {key: archive.read(key) for key in archive.members}
    if metadata["format"] >= 2:
        stored = arrays.pop("digest").tobytes().decode("ascii", errors="replace")
        if stored != _digest(arrays):
            raise archive.error("digest", "does not match the contents (the file was altered or damaged)")
    params, buffers = _arrays_of("param", arrays), _arrays_of("buffer", arrays)
    optimizer_state = {kind: _arrays_of(kind, arrays) for kind in STATE_KINDS[metadata["config"]["optimizer"]]}
    for key, value in arrays.items():
        if key.startswith(("param/", "buffer/", *(f"{kind}/" for kind in optimizer_state))) and not all_finite(value):
            raise archive.error(key, "holds NaN or infinite values")
    for name, value in optimizer_state.get("exp_avg_sq", {}).items():
        if (value < 0).any():  # a mean of squares: its square root is taken
            raise archive.error(f"exp_avg_sq/{name}", "holds negative values")
    order = arrays.get("order")
    if order is not None and not np.array_equal(np.sort(order), np.arange(len(order))):
        raise archive.error("order", f"must be a permutation of 0..{len(order) - 1} (the epoch's shuffle)")
    return Checkpoint(metadata, params, optimizer_state, order, buffers)


def _arrays_of(kind: str, arrays: dict) -> dict:
    """The arrays named ``<kind>/<name>``, by name."""
    return {key[len(kind) + 1:]: value for key, value in arrays.items() if key.startswith(f"{kind}/")}


def _read_metadata(archive: NpzReader) -> dict:
    member = archive.members["metadata"]
    if member.dtype != np.uint8 or len(member.shape) != 1 or member.nbytes > MAX_METADATA_BYTES:
        raise archive.error("metadata", f"must be at most {format_bytes(MAX_METADATA_BYTES)} of JSON as uint8, "
                                        f"got {member.dtype} of shape {member.shape}")

    def refuse_constant(name: str):
        raise ValueError(f"holds {name}")

    def finite_float(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"holds the number {text}, too large")
        return value

    try:
        metadata = json.loads(archive.read("metadata").tobytes().decode("utf-8"),
                              parse_constant=refuse_constant, parse_float=finite_float)
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise archive.error("metadata", f"is not valid JSON ({str(error) or type(error).__name__})") from None
    if not isinstance(metadata, dict):
        raise archive.error("metadata", f"must be a JSON object, got {type(metadata).__name__}")
    if not _integer(metadata.get("format")) or metadata["format"] not in READABLE_FORMATS:
        raise ValueError(f"resume: {archive.name} has checkpoint format {metadata.get('format')!r}, this symcnn "
                         f"reads {', '.join(map(str, READABLE_FORMATS[:-1]))} and {READABLE_FORMATS[-1]}")
    return metadata


def _integer(value, low: int = 0, high: Optional[int] = None) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool) and value >= low
            and (high is None or value <= high))


def _real(value, low: float = -math.inf) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= low


def _check_metadata(metadata: dict, error: Callable[[str, str], ValueError]) -> None:
    """Every key of ``metadata``: present, of its type, in its range, consistent with the others."""
    expected = _KEYS_OF_FORMAT[metadata["format"]]
    missing, unknown = sorted(expected - set(metadata)), sorted(set(metadata) - expected)
    if missing or unknown:
        raise error("metadata", f"has no {missing[0]!r}" if missing else f"has an unknown key {unknown[0]!r}")

    def require(key: str, valid: bool, constraint: str) -> None:
        if not valid:
            raise error(f"metadata.{key}", f"must be {constraint}, got {metadata[key]!r:.60}")

    require("spec", isinstance(metadata["spec"], str), "a spec name")
    require("spec_digest", isinstance(metadata["spec_digest"], str), "a string")
    require("dtype", isinstance(metadata["dtype"], str) and metadata["dtype"] in _DTYPES, "float32 or float64")
    config = metadata["config"]
    # Format 1 may predate a setting (its default then applies); formats 2 and 3 hold every one of
    # their time (SGD's; the optimizer settings' defaults apply), format 4 every one.
    names = {f.name for f in fields(TrainConfig)} if metadata["format"] >= 4 else _SETTINGS_BEFORE_4
    require("config", isinstance(config, dict) and (set(config) == names if metadata["format"] >= 2
                                                    else set(config) <= names),
            f"an object with the settings {', '.join(sorted(names))}")
    try:
        config = metadata["config"] = asdict(TrainConfig(**config))
    except ValueError as problem:
        raise error("metadata.config", str(problem)) from None
    require("epoch", _integer(metadata["epoch"]), "an integer >= 0")
    require("step", _integer(metadata["step"]), "an integer >= 0")
    require("seen", _integer(metadata["seen"]), "an integer >= 0")
    require("running_loss", _real(metadata["running_loss"]), "a finite number")
    require("input_mean", _real(metadata["input_mean"]), "a finite number")
    require("input_std", _real(metadata["input_std"]) and metadata["input_std"] > 0, "a positive number")
    _check_rng_state(metadata, require)
    if metadata["format"] >= 4:
        require("optimizer_step", _integer(metadata["optimizer_step"]), "an integer >= 0")
    if metadata["format"] >= 3:
        masks = metadata["masks"]
        require("masks", isinstance(masks, dict) and set(masks) == {"seed", "step"}
                and all(_integer(value, 0, 2**64 - 1) for value in masks.values()),
                "the dropout generator's {\"seed\": s, \"step\": t}, integers in [0, 2**64)")
    _check_history(metadata, require)
    if metadata["format"] >= 2:
        data = metadata["data"]
        require("data", data is None or (
            isinstance(data, dict) and set(data) == {"name", "train_size", "sha256"} and isinstance(data["name"], str)
            and _integer(data["train_size"], 1) and isinstance(data["sha256"], str) and len(data["sha256"]) == 64),
            "null or an object with the data's name, train_size and sha256")
        step = metadata["step"]
        require("step", step == 0 or data is not None, "0 in a checkpoint without the data's fingerprint")
        if data is not None:
            batch, size = config["batch"], data["train_size"]
            require("step", step <= math.ceil(size / batch), f"at most {math.ceil(size / batch)} "
                    f"(batches of {batch} in {size} images)")
            require("seen", step == 0 or metadata["seen"] == min(step * batch, size),
                    f"{min(step * batch, size)} after {step} batches of {batch}")


def _check_rng_state(metadata: dict, require) -> None:
    state = metadata["rng_state"]
    inner = state.get("state") if isinstance(state, dict) else None
    require("rng_state", isinstance(state, dict) and set(state) == {"bit_generator", "state", "has_uint32", "uinteger"}
            and state["bit_generator"] == "PCG64" and isinstance(inner, dict) and set(inner) == {"state", "inc"}
            and _integer(inner["state"], 0, 2**128 - 1) and _integer(inner["inc"], 0, 2**128 - 1)
            and _integer(state["has_uint32"], 0, 1) and _integer(state["uinteger"], 0, 2**32 - 1),
            "the state of NumPy's PCG64 generator")


def _check_history(metadata: dict, require) -> None:
    history = metadata["history"]
    require("history", isinstance(history, list) and len(history) == metadata["epoch"],
            f"a list of one record per completed epoch ({metadata['epoch']})")
    for number, record in enumerate(history, start=1):
        require("history", isinstance(record, dict) and set(record) == _HISTORY_KEYS
                and _integer(record["epoch"]) and record["epoch"] == number
                and all(_real(record[key]) for key in ("train_loss", "test_loss"))
                and _real(record["test_accuracy"]) and 0 <= record["test_accuracy"] <= 1
                and _real(record["seconds"], 0),
                f"records of {', '.join(sorted(_HISTORY_KEYS))}; record {number} is not")


def _check_fits(metadata: dict, net, path: Path) -> None:
    spec = net.spec
    if metadata["spec"] != spec.name or metadata["spec_digest"] != spec.digest():
        raise ValueError(f"resume: {path} was made for spec {metadata['spec']!r}, not {spec.name!r} "
                         "(or for a different version of it)")
    if metadata["dtype"] != str(net.dtype):
        raise ValueError(f"resume: {path} holds {metadata['dtype']} parameters, this run uses {net.dtype}")


def _check_buffer_header(archive: NpzReader, key: str, member, metadata: dict, net) -> None:
    """A buffer: the network's, of its shape, in the checkpoint's dtype (a counter: int64)."""
    name = key.split("/", 1)[1]
    if net is None:
        if member.dtype not in (np.dtype(metadata["dtype"]), np.dtype(np.int64)):
            raise archive.error(key, f"must be {metadata['dtype']} or int64, got {member.dtype}")
        return
    expected = net.spec.buffer_shapes()
    dtype = np.dtype(np.int64) if name.rsplit(".", 1)[1] in _counter_roles(net) else np.dtype(metadata["dtype"])
    if member.dtype != dtype or member.shape != tuple(expected[name]):
        raise archive.error(key, f"must be {dtype} of shape {tuple(expected[name])}, "
                                 f"got {member.dtype} of shape {member.shape}")


def _counter_roles(net) -> set:
    return {name.rsplit(".", 1)[1] for name, value in net.buffers.items() if value.dtype == np.int64}


def _check_headers(archive: NpzReader, metadata: dict, net) -> None:
    """Every array's name, dtype and shape, from its header, before any array is read."""
    members = archive.members
    buffers = {key.split("/", 1)[1] for key in members if key.startswith("buffer/")}
    expected_buffers = set(net.spec.buffer_shapes()) if net is not None else buffers
    if buffers != expected_buffers:
        missing, extra = sorted(expected_buffers - buffers), sorted(buffers - expected_buffers)
        raise archive.error("buffer", f"the network's buffers are {sorted(expected_buffers)}; missing {missing}, "
                                      f"unexpected {extra}")
    kinds = ("param", *STATE_KINDS[metadata["config"]["optimizer"]])  # the parameters and their optimizer state
    names = {key.split("/", 1)[1] for key in members if key.startswith(tuple(f"{kind}/" for kind in kinds))}
    expected = dict(net.spec.parameter_shapes()) if net is not None else None
    if expected is not None and names != set(expected):
        missing, extra = sorted(set(expected) - names), sorted(names - set(expected))
        raise archive.error("param", f"the network's parameters are {sorted(expected)}; missing {missing}, "
                                     f"unexpected {extra}")
    for key, member in members.items():
        kind, _, name = key.partition("/")
        if key == "metadata":
            continue
        if key == "digest" and metadata["format"] >= 2:
            if member.dtype != np.uint8 or member.shape != (64,):
                raise archive.error(key, f"must be 64 hex digits as uint8, got {member.dtype} of shape {member.shape}")
        elif key == "order":
            data = metadata.get("data")
            size = data["train_size"] if data else None
            wrong_size = size is not None and member.shape[0:1] != (size,)
            if member.dtype.kind not in "iu" or len(member.shape) != 1 or wrong_size:
                wanted = f"({size},)" if size is not None else "(N,)"
                raise archive.error(key, f"must be integers of shape {wanted}, "
                                         f"got {member.dtype} of shape {member.shape}")
        elif kind == "buffer" and name:
            _check_buffer_header(archive, key, member, metadata, net)
        elif kind in kinds and name:
            shape = expected[name] if expected is not None else members[f"param/{name}"].shape \
                if f"param/{name}" in members else None
            if member.dtype != np.dtype(metadata["dtype"]) or (shape is not None and member.shape != tuple(shape)):
                raise archive.error(key, f"must be {metadata['dtype']} of shape {shape}, "
                                         f"got {member.dtype} of shape {member.shape}")
        elif kind in _STATE_KINDS and name:
            raise archive.error(key, f"is not part of a checkpoint of the optimizer {metadata['config']['optimizer']}")
        else:
            raise archive.error(key, "is not part of a symcnn checkpoint")
    for name in sorted(names):
        for kind in kinds:
            if f"{kind}/{name}" not in members:
                raise archive.error(f"{kind}/{name}", "is missing (every parameter has its optimizer state)")
    if metadata["step"] > 0 and "order" not in members:
        raise archive.error("order", "is missing: a checkpoint taken within an epoch needs the epoch's shuffle")
    if metadata["format"] >= 2 and "digest" not in members:
        raise archive.error("digest", "is missing")
