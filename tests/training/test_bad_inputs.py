"""Bad input never crashes, hangs, corrupts or silently misleads: data files, checkpoints, training and
the runtime's Python API. Each family: a table of hand-written cases, then hypothesis-generated damage
(bytes truncated or flipped, random dtypes, shapes and key sets). Every refusal is one ``ValueError``
line naming the field; anything that is accepted must be whole (the arrays the file held, checked)."""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symcnn import Network
from symcnn.training import data as data_module
from symcnn.training.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from symcnn.training.data import Dataset, load_digits, load_npz
from symcnn.training.trainer import TrainConfig, Trainer, TrainingDiverged
from tests.bad_files import (
    forged_npy,
    labelled_images,
    npy_bytes,
    npz_bytes,
    read_checkpoint,
    write_checkpoint,
    zip_bytes,
)

SHAPE, CLASSES = (1, 8, 8), 10


def refused(call, *fragments) -> str:
    """The one-line ValueError of ``call()``, which must name every fragment."""
    with pytest.raises(ValueError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message and message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def write(tmp_path, content: bytes, name: str = "data.npz"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


GOOD_X, GOOD_Y = labelled_images(40)
GOOD_NPZ = npz_bytes(x=GOOD_X, y=GOOD_Y)


# --- training data files ----------------------------------------------------------------------------

HUGE = (10**10, 1, 8, 8)


@pytest.mark.parametrize("content, fragments", [
    (b"", ["data.npz is not an .npz archive"]),
    (b"PK\x03\x04 not really", ["data.npz is not an .npz archive"]),
    (GOOD_NPZ[:len(GOOD_NPZ) // 2], ["data.npz is not an .npz archive"]),
    (GOOD_NPZ[:-10], ["data.npz is not an .npz archive"]),
    (zip_bytes({"readme.txt": b"hello"}), ["data.npz: readme.txt: is not a .npy array"]),
    (zip_bytes({"x.npy": forged_npy(HUGE), "y.npy": npy_bytes(GOOD_Y)}), ["x: shape (10000000000, 1, 8, 8)", "TiB",
                                                                         "over the limit of 4 GiB"]),
    (zip_bytes({"x.npy": forged_npy((41, 1, 8, 8), payload=GOOD_X.tobytes()), "y.npy": npy_bytes(GOOD_Y)}),
     ["x: the header describes", "truncated or corrupted"]),
    (zip_bytes({"x.npy": forged_npy((-40, 1, 8, 8)), "y.npy": npy_bytes(GOOD_Y)}), ["x:"]),
    (zip_bytes({"x.npy": forged_npy((40, 1, 8, 8), descr="|O"), "y.npy": npy_bytes(GOOD_Y)}), ["x: holds object"]),
    (zip_bytes([("x.npy", npy_bytes(GOOD_X)), ("x.npy", npy_bytes(GOOD_X)), ("y.npy", npy_bytes(GOOD_Y))]),
     ["x: appears twice"]),
    (npz_bytes(x=GOOD_X.astype(object), y=GOOD_Y), ["x: holds object"]),
    (zip_bytes({f"a{number}.npy": b"" for number in range(10001)}), ["holds 10001 files, more than the 10000"]),
    (npz_bytes(x=GOOD_X + 0j, y=GOOD_Y), ["x must hold real numbers", "complex128"]),
    (npz_bytes(x=GOOD_X > 0.5, y=GOOD_Y), ["x must hold real numbers", "bool"]),
    (npz_bytes(x=GOOD_X.astype(str), y=GOOD_Y), ["x must hold real numbers"]),
    (npz_bytes(x=GOOD_X[:, 0], y=GOOD_Y), ["x must have shape (N, 1, 8, 8)"]),
    (npz_bytes(x=GOOD_X, y=GOOD_Y[:-1]), ["y must be integer labels of shape (40,)"]),
    (npz_bytes(x=GOOD_X, y=GOOD_Y.astype(float)), ["y must be integer labels"]),
    (npz_bytes(x=GOOD_X, y=GOOD_Y - 1), ["y must lie in [0, 9]", "-1..8"]),
    (npz_bytes(x=GOOD_X, y=GOOD_Y + 1), ["y must lie in [0, 9]"]),
    (npz_bytes(x=GOOD_X), ["has no array 'y'"]),
    (npz_bytes(y=GOOD_Y), ["has no array 'x'"]),
    (npz_bytes(x=np.where(GOOD_X > 0.5, np.nan, GOOD_X), y=GOOD_Y), ["x holds NaN or infinite values"]),
    (npz_bytes(x=np.where(GOOD_X > 0.5, -np.inf, GOOD_X), y=GOOD_Y), ["x holds NaN or infinite values"]),
    (npz_bytes(x=GOOD_X[:1], y=GOOD_Y[:1]), ["need at least 2 examples"]),
    (npz_bytes(x=GOOD_X[:2], y=GOOD_Y[:2]), ["y: 2 images leave none to hold out", "at least 3 images"]),
    (npz_bytes(x=GOOD_X[:10], y=GOOD_Y[:10]), ["y: 10 images leave none to hold out", "at least 3 images"]),
])
def test_a_bad_data_file_is_one_line_naming_the_file_and_the_array(tmp_path, content, fragments):
    path = write(tmp_path, content)
    message = refused(lambda: load_npz(path, SHAPE, CLASSES), *fragments)
    assert message.startswith("data: ") and "data.npz" in message


def test_a_deflate_bomb_is_refused_from_its_header_before_it_is_expanded(tmp_path, monkeypatch):
    """1 MiB of zeros deflates to about a kilobyte; with a limit of 256 KiB it is refused by its header."""
    monkeypatch.setattr(data_module, "MAX_DATA_BYTES", 256 * 2**10)
    zeros = np.zeros((2048, 1, 8, 8))
    bomb = zip_bytes({"x.npy": npy_bytes(zeros), "y.npy": npy_bytes(np.zeros(2048, np.int64))},
                     compression=zipfile.ZIP_DEFLATED)
    assert len(bomb) < 10_000
    refused(lambda: load_npz(write(tmp_path, bomb), SHAPE, CLASSES), "x: shape (2048, 1, 8, 8) of float64 takes 1 MiB",
            "over the limit of 256 KiB")


def test_data_as_large_as_1e308_is_refused_where_the_standardization_overflows(tmp_path):
    signs = np.where(np.arange(40) % 2, 1.0, -1.0)[:, None, None, None]
    path = write(tmp_path, npz_bytes(x=np.full((40, 1, 8, 8), 1e308) * signs, y=GOOD_Y))
    data = load_npz(path, SHAPE, CLASSES)  # finite: loading accepts it
    refused(data.standardized, "data: data: x: values as large as 1e+308 overflow the standardization")


def test_a_good_file_in_any_layout_loads_whole(tmp_path):
    """Fortran order, float32 pixels, uint8 labels, compression: all read, equal to what was written."""
    stream_path = tmp_path / "data.npz"
    np.savez_compressed(stream_path, x=np.asfortranarray(GOOD_X.astype(np.float32)), y=GOOD_Y.astype(np.uint8))
    data = load_npz(stream_path, SHAPE, CLASSES)
    assert len(data.x_train) + len(data.x_test) == 40 and data.x_train.flags.c_contiguous
    assert sorted(np.concatenate([data.y_train, data.y_test]).tolist()) == sorted(GOOD_Y.tolist())


def _valid_dataset(data: Dataset) -> bool:
    parts = [(data.x_train, data.y_train), (data.x_test, data.y_test)]
    return all(x.shape[1:] == SHAPE and np.isfinite(x).all() and len(x) == len(y) and len(x) > 0
               and y.min() >= 0 and y.max() < CLASSES for x, y in parts)


def damaged(data, content: bytes) -> bytes:
    """``content`` truncated (sometimes) and with 1 to 4 bytes flipped at offsets hypothesis draws."""
    content = bytearray(content)
    if data.draw(st.booleans(), label="truncate"):
        content = content[:data.draw(st.integers(0, len(content) - 1), label="length")]
    for offset in data.draw(st.lists(st.integers(0, max(len(content) - 1, 0)), min_size=1, max_size=4), label="flips"):
        if content:
            content[offset] ^= data.draw(st.integers(1, 255), label="mask")
    return bytes(content)


@given(st.data())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_damaged_data_bytes_are_refused_or_read_whole(tmp_path, data):
    """Truncate the archive, or flip bytes at random offsets (headers, payload, central directory):
    either one ValueError line, or data that passed every check."""
    path = write(tmp_path, damaged(data, GOOD_NPZ), "fuzz.npz")
    try:
        loaded = load_npz(path, SHAPE, CLASSES)
    except ValueError as error:
        assert "\n" not in str(error) and str(error).startswith("data: ")
    else:
        assert _valid_dataset(loaded)


_DTYPES = ["float16", "float32", "float64", "int8", "uint8", "int64", "uint64", "bool", "complex64", "U3", "S2", "V4",
           "datetime64[s]", "object"]


_SHAPES = [(), (0,), (3,), (20,), (20, 1, 8, 8), (2, 1, 8, 8), (0, 1, 8, 8), (20, 8, 8), (20, 1, 8, 9), (20, 1)]


@st.composite
def _arrays(draw):
    """An array of a random dtype and shape, its values drawn from a few finite and non-finite ones."""
    dtype = np.dtype(draw(st.sampled_from(_DTYPES)))
    shape = draw(st.sampled_from(_SHAPES))
    pool = draw(st.lists(st.sampled_from([0.0, 1.0, 3.0, 9.0, 12.0, -3.5, 1e308, np.nan, np.inf]), min_size=1,
                         max_size=3))
    if dtype.kind not in "fc":
        pool = [value for value in pool if math.isfinite(value) and 0 <= value < 256] or [0.0]
    values = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).choice(pool, size=shape)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(values).astype(dtype)


@given(st.dictionaries(st.sampled_from(["x", "y", "z", "x.npy", "labels"]), _arrays(), max_size=3))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_arrays_under_random_keys_are_refused_or_read_whole(tmp_path, arrays):
    path = tmp_path / "random.npz"
    with open(path, "wb") as stream:
        np.savez(stream, **arrays)
    try:
        loaded = load_npz(path, SHAPE, CLASSES)
    except ValueError as error:
        assert "\n" not in str(error) and str(error).startswith("data: ")
    else:
        assert _valid_dataset(loaded)


# --- datasets handed to training --------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_data():
    x, y = labelled_images(60)
    return Dataset("small", x[:45], y[:45], x[45:], y[45:]).standardized()


def _trainer(epochs=2, batch=8, seed=0):
    return Trainer(Network.from_spec("digits", seed=seed), TrainConfig(epochs=epochs, batch=batch, seed=seed))


@pytest.mark.parametrize("change, fragments", [
    (lambda d: replace(d, x_test=d.x_test[:0], y_test=d.y_test[:0]), ["data: x_test is empty", "held-out"]),
    (lambda d: replace(d, x_train=d.x_train[:0], y_train=d.y_train[:0]), ["data: x_train is empty"]),
    (lambda d: replace(d, x_train=np.where(d.x_train > 1, np.nan, d.x_train)), ["data: x_train holds NaN"]),
    (lambda d: replace(d, x_test=d.x_test * 1e300), ["data: x_test holds NaN or infinite values (as float32)"]),
    (lambda d: replace(d, y_train=d.y_train + 5), ["data: y_train must lie in [0, 9]"]),
    (lambda d: replace(d, y_test=d.y_test.astype(float)), ["data: y_test must be integer labels"]),
    (lambda d: replace(d, x_train=d.x_train[:, :, :4]), ["data: x_train must be a real array of shape (N, 1, 8, 8)"]),
    (lambda d: replace(d, std=0.0), ["data: std must be positive"]),
    (lambda d: replace(d, mean=float("nan")), ["data: mean must be a finite number"]),
    (lambda d: (d.x_train, d.y_train), ["data: must be a symcnn.training.data.Dataset, got tuple"]),
])
def test_a_bad_dataset_is_refused_before_training(small_data, change, fragments):
    trainer = _trainer()
    before = {name: value.copy() for name, value in trainer.net.params.items()}
    refused(lambda: trainer.fit(change(small_data), progress=False), *fragments)
    assert all(np.array_equal(before[name], value) for name, value in trainer.net.params.items())


@pytest.mark.heavy
def test_parameters_that_stop_being_finite_stop_the_run(small_data, tmp_path):
    """A finite loss with gradients that overflow (what a NaN-swallowing ReLU allows): the step that
    makes the parameters non-finite stops the run, and the last checkpoint stays the good one."""
    trainer = _trainer(epochs=2)
    checkpoint = tmp_path / "run.npz"
    real = trainer.net.loss_and_grads

    def overflowing(*args, **kwargs):
        loss, grads = real(*args, **kwargs)
        if trainer.state.epoch == 1:
            grads["fc1.weight"][:] = np.inf
        return loss, grads

    trainer.net.loss_and_grads = overflowing
    with pytest.raises(TrainingDiverged, match=r"parameters hold NaN or infinite values after epoch 2, batch 1: "
                                               r"training diverged"):
        trainer.fit(small_data, progress=False, checkpoint=checkpoint)
    assert load_checkpoint(checkpoint).metadata["epoch"] == 1


# --- checkpoints ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mid_epoch(small_data, tmp_path_factory):
    """A checkpoint taken by Ctrl-C after batch 3 of epoch 2."""
    path = tmp_path_factory.mktemp("checkpoints") / "mid.npz"

    def ctrl_c(epoch, step):
        if (epoch, step) == (1, 3):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _trainer(epochs=3).fit(small_data, progress=False, checkpoint=path, on_step=ctrl_c)
    return path


def _resume(path, data, batch=8):
    trainer = _trainer(epochs=3, batch=batch)
    trainer.resume(path)
    trainer.fit(data, progress=False)
    return trainer


def test_the_mid_epoch_checkpoint_is_good_and_resumes(mid_epoch, small_data):
    metadata, _, _, order, _ = load_checkpoint(mid_epoch)
    assert (metadata["format"], metadata["epoch"], metadata["step"]) == (CHECKPOINT_FORMAT, 1, 3)
    assert metadata["data"]["train_size"] == 45 and sorted(order) == list(range(45))
    assert len(_resume(mid_epoch, small_data).state.history) == 3


def _tampered(tmp_path, mid_epoch, change_metadata=None, change_arrays=None, redigest=True):
    arrays, metadata = read_checkpoint(mid_epoch)
    if change_metadata is not None:
        change_metadata(metadata)
    if change_arrays is not None:
        change_arrays(arrays)
    path = tmp_path / "tampered.npz"
    write_checkpoint(path, arrays, metadata, redigest=redigest)
    return path


def _set(key, value):
    def change(metadata):
        metadata[key] = value
    return change


def _delete(key):
    return lambda metadata: metadata.pop(key)


def _set_in(outer, key, value):
    def change(metadata):
        metadata[outer][key] = value
    return change


METADATA_CASES = [
    (_set("format", 5), "checkpoint format 5, this symcnn reads 1, 2, 3 and 4"),
    (_set("format", True), "checkpoint format True"),
    (_set("format", "2"), "checkpoint format '2'"),
    *[(_delete(key), f"metadata: has no '{key}'") for key in
      ("spec", "spec_digest", "dtype", "config", "epoch", "step", "rng_state", "history", "running_loss", "seen",
       "input_mean", "input_std", "data", "masks", "optimizer_step")],
    (_set("surprise", 1), "metadata: has an unknown key 'surprise'"),
    (_set("spec", ["digits"]), "metadata.spec: must be a spec name"),
    (_set("spec", "seed004"), "was made for spec 'seed004', not 'digits'"),
    (_set("spec_digest", "0" * 64), "was made for spec 'digits'"),
    (_set("dtype", "float16"), "metadata.dtype: must be float32 or float64"),
    (_set("dtype", "float64"), "holds float64 parameters, this run uses float32"),
    (_set("dtype", ["float32"]), "metadata.dtype"),
    (_set("epoch", "1"), "metadata.epoch: must be an integer >= 0"),
    (_set("epoch", -1), "metadata.epoch"),
    (_set("epoch", 1.0), "metadata.epoch"),
    (_set("epoch", 7), "metadata.history: must be a list of one record per completed epoch (7)"),
    (_set("step", 10**6), "metadata.step: must be at most 6"),
    (_set("step", -3), "metadata.step"),
    (_set("step", None), "metadata.step"),
    (_set("seen", 40), "metadata.seen: must be 24 after 3 batches of 8"),
    (_set("running_loss", "x"), "metadata.running_loss"),
    (_set("input_std", 0), "metadata.input_std: must be a positive number"),
    (_set("input_mean", None), "metadata.input_mean"),
    (_set("optimizer_step", -1), "metadata.optimizer_step: must be an integer >= 0"),
    (_set("optimizer_step", 2.0), "metadata.optimizer_step"),
    (_set_in("config", "optimizer", "adam"), "is not part of a checkpoint of the optimizer adam"),  # velocity/
    (_set_in("config", "optimizer", "rmsprop"), "metadata.config: optimizer: must be sgd, adam or adamw"),
    (_set_in("config", "nesterov", "yes"), "metadata.config: nesterov: must be true or false"),
    (_set("history", {}), "metadata.history"),
    (_set("history", [{"epoch": 1}]), "metadata.history"),
    (_set("history", [None]), "metadata.history"),
    (_set("config", []), "metadata.config"),
    (_set_in("config", "lr", -1), "metadata.config: lr: must be a positive number"),
    (_set_in("config", "batch", 0), "metadata.config: batch"),
    (_set_in("config", "batch", 16), "metadata.seen: must be 45 after 3 batches of 16"),
    (lambda m: m["config"].pop("lr"), "metadata.config: must be an object with the settings"),
    (_set("rng_state", {"bit_generator": "MT19937", "state": {"key": [0], "pos": 0}}),
     "metadata.rng_state: must be the state of NumPy's PCG64 generator"),
    (_set_in("rng_state", "state", {"state": -1, "inc": 1}), "metadata.rng_state"),
    (_set_in("rng_state", "state", {"state": 2**128, "inc": 1}), "metadata.rng_state"),
    (_set_in("rng_state", "has_uint32", 2), "metadata.rng_state"),
    (_set_in("rng_state", "uinteger", "0"), "metadata.rng_state"),
    (_set("rng_state", None), "metadata.rng_state"),
    (_set("data", None), "metadata.step: must be 0 in a checkpoint without the data's fingerprint"),
    (_set("data", {"name": "x", "train_size": 45}), "metadata.data"),
    (_set_in("data", "train_size", 0), "metadata.data"),
    (_set_in("data", "sha256", "abc"), "metadata.data"),
    (_set_in("data", "train_size", 44), "order: must be integers of shape (44,)"),
]


@pytest.mark.parametrize("change, fragment", METADATA_CASES)
def test_tampered_metadata_is_one_line_naming_the_field(tmp_path, mid_epoch, small_data, change, fragment):
    path = _tampered(tmp_path, mid_epoch, change_metadata=change)
    message = refused(lambda: _resume(path, small_data), fragment)
    assert message.startswith("resume: ")


def _array(key, make):
    def change(arrays):
        arrays[key] = make(arrays[key]) if key in arrays else make(None)
    return change


def _drop(key):
    return lambda arrays: arrays.pop(key)


ARRAY_CASES = [
    (_array("param/conv1.weight", lambda a: np.where(a > 0, np.nan, a).astype(a.dtype)),
     "param/conv1.weight: holds NaN or infinite values"),
    (_array("velocity/fc1.bias", lambda a: a + np.float32(np.inf)), "velocity/fc1.bias: holds NaN or infinite values"),
    (_array("param/fc1.bias", lambda a: a.astype(np.complex64)), "param/fc1.bias: must be float32 of shape (10,)"),
    (_array("param/fc1.bias", lambda a: a.astype(np.float64)), "param/fc1.bias: must be float32"),
    (_array("param/fc1.bias", lambda a: a[:5]),
     "param/fc1.bias: must be float32 of shape (10,), got float32 of shape (5,)"),
    (_drop("velocity/conv1.bias"), "velocity/conv1.bias: is missing"),
    (_drop("param/conv1.bias"), "param/conv1.bias: is missing"),
    (_array("param/conv9.weight", lambda _: np.zeros(3, np.float32)), "unexpected ['conv9.weight']"),
    (_array("extra", lambda _: np.zeros(3)), "extra: is not part of a symcnn checkpoint"),
    (_array("order", lambda a: -1 - a), "order: must be a permutation of 0..44"),
    (_array("order", lambda a: np.zeros_like(a)), "order: must be a permutation"),
    (_array("order", lambda a: a.astype(np.float64)), "order: must be integers of shape (45,)"),
    (_array("order", lambda a: a[:-1]), "order: must be integers of shape (45,)"),
    (_drop("order"), "order: is missing"),
]


@pytest.mark.parametrize("change, fragment", ARRAY_CASES)
def test_tampered_arrays_are_one_line_naming_the_array(tmp_path, mid_epoch, small_data, change, fragment):
    path = _tampered(tmp_path, mid_epoch, change_arrays=change)
    message = refused(lambda: _resume(path, small_data), fragment)
    assert message.startswith("resume: ")


def test_an_altered_checkpoint_fails_its_digest(tmp_path, mid_epoch, small_data):
    change = _array("param/fc1.weight", lambda a: a * np.float32(1.5))
    refused(lambda: _resume(_tampered(tmp_path, mid_epoch, change_arrays=change, redigest=False), small_data),
            "resume: tampered.npz: digest: is missing")
    path = _tampered(tmp_path, mid_epoch, change_arrays=change)
    arrays, metadata = read_checkpoint(path)
    write_checkpoint(path, {**arrays, "param/fc1.weight": arrays["param/fc1.weight"] * np.float32(2)}, metadata)
    _resume(path, small_data)  # a consistent digest: accepted (the digest guards against damage, not forgery)
    with np.load(mid_epoch) as archive:
        stored = {key: archive[key] for key in archive.files}
    stored["param/fc1.bias"] = stored["param/fc1.bias"] + np.float32(1)
    with open(path, "wb") as stream:
        np.savez(stream, **stored)
    refused(lambda: _resume(path, small_data), "resume: tampered.npz: digest: does not match the contents")


@pytest.mark.parametrize("metadata_bytes, fragment", [
    (b"\xff\xfe", "metadata: is not valid JSON"),
    (b"[1, 2]", "metadata: must be a JSON object, got list"),
    (b'{"format": NaN}', "metadata: is not valid JSON (holds NaN)"),
    (b'{"format": 1e999}', "metadata: is not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "metadata: is not valid JSON"),
])
def test_metadata_that_is_not_json_is_one_line(tmp_path, mid_epoch, small_data, metadata_bytes, fragment):
    arrays, _ = read_checkpoint(mid_epoch)
    path = tmp_path / "tampered.npz"
    write_checkpoint(path, arrays, None, metadata_bytes=metadata_bytes)
    refused(lambda: _resume(path, small_data), fragment)


def test_resuming_on_other_data_or_another_batch_is_refused(mid_epoch, small_data):
    other = replace(small_data, x_train=small_data.x_train[:40], y_train=small_data.y_train[:40], name="other")
    refused(lambda: _resume(mid_epoch, other), "resume: ", "was trained on other data ('small', 45 training images)",
            "not this run's 'other' (40)")
    shifted = replace(small_data, x_train=small_data.x_train + 0.5)  # same size, other values
    refused(lambda: _resume(mid_epoch, shifted), "was trained on other data")
    refused(lambda: _resume(mid_epoch, small_data, batch=16), "stopped within an epoch of batches of 8",
            "batch 8, not 16")


#: The settings that format 4 added to a checkpoint's config (with Adam, AdamW and the step schedule).
_FORMAT_4_SETTINGS = ("optimizer", "nesterov", "beta1", "beta2", "eps", "step_size", "gamma")


def _as_format(metadata: dict, number: int) -> None:
    """``metadata`` of the current format as an older symcnn wrote it (SGD's; no optimizer_step)."""
    metadata["format"] = number
    del metadata["optimizer_step"]
    for name in _FORMAT_4_SETTINGS:
        del metadata["config"][name]


def test_a_format_1_checkpoint_still_resumes(tmp_path, mid_epoch, small_data):
    """What symcnn wrote before checkpoints had a digest: read, every other field checked."""
    arrays, metadata = read_checkpoint(mid_epoch)
    _as_format(metadata, 1)
    del metadata["data"], metadata["masks"]
    del metadata["config"]["label_smoothing"]  # older than the setting: its default applies
    path = tmp_path / "format1.npz"
    write_checkpoint(path, arrays, metadata, redigest=False)
    resumed, expected = _resume(path, small_data), _resume(mid_epoch, small_data)
    for name, value in expected.net.params.items():
        np.testing.assert_array_equal(resumed.net.params[name], value)
    shorter = replace(small_data, x_train=small_data.x_train[:40], y_train=small_data.y_train[:40])
    refused(lambda: _resume(path, shorter), "stopped within an epoch of 45 training images")


def test_a_format_2_checkpoint_still_resumes(tmp_path, mid_epoch, small_data):
    """What symcnn wrote before dropout: no generator state (no spec could draw masks)."""
    arrays, metadata = read_checkpoint(mid_epoch)
    _as_format(metadata, 2)
    del metadata["masks"]
    path = tmp_path / "format2.npz"
    write_checkpoint(path, arrays, metadata)
    resumed, expected = _resume(path, small_data), _resume(mid_epoch, small_data)
    for name, value in expected.net.params.items():
        np.testing.assert_array_equal(resumed.net.params[name], value)


def test_a_format_3_checkpoint_still_resumes(tmp_path, mid_epoch, small_data):
    """What symcnn wrote before Adam: SGD's settings and momentum buffers, no optimizer_step."""
    arrays, metadata = read_checkpoint(mid_epoch)
    _as_format(metadata, 3)
    path = tmp_path / "format3.npz"
    write_checkpoint(path, arrays, metadata)
    checkpoint = load_checkpoint(path)
    assert checkpoint.metadata["config"]["optimizer"] == "sgd" and sorted(checkpoint.optimizer_state) == ["velocity"]
    assert checkpoint.velocity.keys() == checkpoint.params.keys()
    resumed, expected = _resume(path, small_data), _resume(mid_epoch, small_data)
    for name, value in expected.net.params.items():
        np.testing.assert_array_equal(resumed.net.params[name], value)
    metadata["config"]["beta1"] = 0.9  # a format-3 config holds the settings of its time, no other
    write_checkpoint(path, arrays, metadata)
    refused(lambda: _resume(path, small_data), "metadata.config: must be an object with the settings")


# --- Adam's checkpoints: its moments and step count ---------------------------------------------------


def _adam_trainer(optimizer="adam", epochs=3):
    return Trainer(Network.from_spec("digits", seed=0),
                   TrainConfig(epochs=epochs, batch=8, seed=0, optimizer=optimizer))


@pytest.fixture(scope="module")
def adam_mid_epoch(small_data, tmp_path_factory):
    """An Adam run's checkpoint taken by Ctrl-C after batch 3 of epoch 2."""
    path = tmp_path_factory.mktemp("checkpoints") / "adam.npz"

    def ctrl_c(epoch, step):
        if (epoch, step) == (1, 3):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _adam_trainer().fit(small_data, progress=False, checkpoint=path, on_step=ctrl_c)
    return path


def test_an_adam_checkpoint_holds_its_moments_and_step(adam_mid_epoch):
    checkpoint = load_checkpoint(adam_mid_epoch, _adam_trainer().net)
    assert checkpoint.metadata["optimizer_step"] == 6 + 3  # 45 images in batches of 8: 6 an epoch
    assert sorted(checkpoint.optimizer_state) == ["exp_avg", "exp_avg_sq"] and checkpoint.velocity == {}
    for moments in checkpoint.optimizer_state.values():
        assert moments.keys() == checkpoint.params.keys()
        assert all(value.any() for value in moments.values())


@pytest.mark.parametrize("change, fragment", [
    (_drop("exp_avg_sq/fc1.weight"), "exp_avg_sq/fc1.weight: is missing"),
    (_array("exp_avg_sq/fc1.bias", lambda a: -a), "exp_avg_sq/fc1.bias: holds negative values"),
    (_array("exp_avg/conv1.bias", lambda a: a + np.float32(np.nan)), "exp_avg/conv1.bias: holds NaN"),
    (_array("exp_avg/conv1.bias", lambda a: a[:2]), "exp_avg/conv1.bias: must be float32 of shape (16,)"),
    (_array("velocity/fc1.bias", lambda _: np.zeros(10, np.float32)),
     "velocity/fc1.bias: is not part of a checkpoint of the optimizer adam"),
])
def test_tampered_adam_state_is_one_line_naming_the_array(tmp_path, adam_mid_epoch, small_data, change, fragment):
    path = _tampered(tmp_path, adam_mid_epoch, change_arrays=change)
    message = refused(lambda: load_checkpoint(path, _adam_trainer().net), fragment)
    assert message.startswith("resume: ")


def test_a_checkpoint_resumes_only_with_its_optimizer(adam_mid_epoch, mid_epoch, small_data):
    refused(lambda: _adam_trainer("adamw").resume(adam_mid_epoch),
            "resume: ", "was trained with the optimizer adam, this run uses adamw; continue it with adam")
    refused(lambda: _adam_trainer().resume(mid_epoch), "was trained with the optimizer sgd, this run uses adam")


def test_a_checkpoint_never_unpickles(tmp_path, mid_epoch, small_data):
    arrays, metadata = read_checkpoint(mid_epoch)
    arrays["order"] = arrays["order"].astype(object)
    path = tmp_path / "pickled.npz"
    np.savez(path, **arrays, metadata=np.frombuffer(json.dumps(metadata).encode(), np.uint8))
    refused(lambda: _resume(path, small_data), "order: holds object values")


@given(st.data())
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_damaged_checkpoint_bytes_are_refused_or_resume_exactly(tmp_path, mid_epoch, small_data, data):
    path = write(tmp_path, damaged(data, mid_epoch.read_bytes()), "fuzz.npz")
    try:
        checkpoint = load_checkpoint(path, _trainer().net)
    except ValueError as error:
        assert "\n" not in str(error) and str(error).startswith("resume: ")
    else:  # the damage hit bytes nothing reads (a timestamp, a version field): the contents are intact
        original = load_checkpoint(mid_epoch)
        assert checkpoint.metadata == original.metadata
        for name, value in original.params.items():
            np.testing.assert_array_equal(checkpoint.params[name], value)


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**130, 2**130) | st.floats(allow_nan=False)
                     | st.text(max_size=5),
                     lambda inner: (st.lists(inner, max_size=3)
                                    | st.dictionaries(st.text(max_size=5), inner, max_size=3)),
                     max_leaves=8)


@given(key=st.sampled_from(["format", "spec", "dtype", "config", "epoch", "step", "rng_state", "history",
                            "running_loss", "seen", "input_mean", "input_std", "data", "masks", "optimizer_step"]),
       value=_JSON)
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_json_in_any_metadata_field_is_refused_or_consistent(tmp_path, mid_epoch, small_data, key, value):
    path = _tampered(tmp_path, mid_epoch, change_metadata=_set(key, value))
    try:
        trainer = _resume(path, small_data)
    except ValueError as error:
        assert "\n" not in str(error) and str(error).startswith("resume: ")
    else:
        assert len(trainer.state.history) == 3


@given(st.dictionaries(st.sampled_from(["param/conv1.weight", "param/fc1.bias", "velocity/fc1.bias", "order",
                                        "metadata", "digest", "other"]), _arrays(), max_size=3))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_random_arrays_in_a_checkpoint_are_refused(tmp_path, mid_epoch, small_data, replacements):
    arrays, metadata = read_checkpoint(mid_epoch)
    arrays.update({key: value for key, value in replacements.items() if key not in ("metadata", "digest")})
    path = tmp_path / "random.npz"
    write_checkpoint(path, arrays, metadata)
    if "metadata" in replacements or "digest" in replacements:
        with np.load(path, allow_pickle=True) as archive:  # the test's own file, object arrays and all
            stored = {key: archive[key] for key in archive.files}
        stored.update({key: replacements[key] for key in ("metadata", "digest") if key in replacements})
        np.savez(path, **stored)
    if not replacements:
        _resume(path, small_data)
        return
    message = refused(lambda: _resume(path, small_data))  # no shape drawn is a checkpoint's own
    assert message.startswith("resume: ")


# --- the runtime's Python API -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def net():
    return Network.from_spec("digits", seed=0)


X = np.zeros((2, 1, 8, 8), np.float32)
LABELS = np.array([1, 2])


@pytest.mark.parametrize("call, field", [
    (lambda net: net.train_step(X, LABELS, lr="0.1"), "lr"),
    (lambda net: net.train_step(X, LABELS, lr=True), "lr"),
    (lambda net: net.train_step(X, LABELS, lr=float("nan")), "lr"),
    (lambda net: net.train_step(X, LABELS, lr=None), "lr"),
    (lambda net: setattr(net, "params", [1, 2]), "params"),
    (lambda net: setattr(net, "params", None), "params"),
    (lambda net: setattr(net, "params", {}), "params"),
    (lambda net: setattr(net, "params", {**net.params, "fc1.bias": np.full(10, np.nan, np.float32)}), "fc1.bias"),
    (lambda net: setattr(net, "params", {**net.params, "fc1.bias": np.zeros(10)}), "fc1.bias"),
    (lambda net: net.load_params([1, 2]), "params"),
    (lambda net: net.load_params({**net.params, "fc1.bias": np.zeros(10, np.complex64)}), "fc1.bias"),
    (lambda net: net.load_params({**net.params, "fc1.bias": ["a"] * 10}), "fc1.bias"),
    (lambda net: net.load_params({**net.params, "fc1.bias": [[1], [2, 3]]}), "fc1.bias"),
    (lambda net: net.load_params({**net.params, "fc1.bias": np.full(10, 1e300)}), "fc1.bias"),
    (lambda net: net.load_params({**net.params, "conv1.weight": np.full((16, 1, 3, 3), -np.inf)}), "conv1.weight"),
    (lambda net: net.load_params({**net.params, 3: np.zeros(2)}), "params"),
    (lambda net: net.forward(np.full((2, 1, 8, 8), np.nan, np.float32)), "x"),
    (lambda net: net.forward(np.full((2, 1, 8, 8), np.inf, np.float32)), "x"),
    (lambda net: net.forward([[0.0]]), "x"),
    (lambda net: net.loss_and_grads(np.full((2, 1, 8, 8), np.nan, np.float32), LABELS), "x"),
    (lambda net: net.loss_and_grads(X, LABELS, input_gradient="no"), "input_gradient"),
    (lambda net: net.loss_and_grads(X, LABELS, label_smoothing="0.1"), "label_smoothing"),
    (lambda net: net.loss_and_grads(X, [1, 2]), "labels"),
    (lambda net: net.train_step(np.full((2, 1, 8, 8), np.nan, np.float32), LABELS), "x"),
    (lambda net: Network.from_spec("digits", dtype=["float32"]), "dtype"),
    (lambda net: Network.from_spec("digits", dtype=np.float32), "dtype"),
    (lambda net: Network.from_spec("digits", seed=1.5), "seed"),
    (lambda net: Network.from_spec("digits", seed=-1), "seed"),
    (lambda net: Network.from_spec("digits", seed="1"), "seed"),
    (lambda net: Network.from_spec(None), "spec"),
    (lambda net: Network("digits", net.kernels), "spec"),
    (lambda net: Network(net.spec, None), "kernels"),
    (lambda net: net.fit(epochs=1.5, progress=False), "epochs"),
    (lambda net: net.fit(lr="0.1", progress=False), "lr"),
    (lambda net: net.fit(seed=1.5, progress=False), "seed"),
    (lambda net: net.fit(checkpoint=3, epochs=1, progress=False), "checkpoint"),
    (lambda net: net.fit(data=3, progress=False), "data"),
    (lambda net: Trainer("digits", TrainConfig()), "net"),
    (lambda net: Trainer(net, {"epochs": 1}), "config"),
    (lambda net: Trainer(net, TrainConfig()).evaluate(X[:0], LABELS[:0]), "x"),
    (lambda net: Trainer(net, TrainConfig()).evaluate(X, LABELS, batch=0), "batch"),
    (lambda net: Trainer(net, TrainConfig()).evaluate(X, [1, 2]), "y"),
    (lambda net: Trainer(net, TrainConfig()).fit(load_digits(SHAPE), progress=False, on_epoch=3), "on_epoch"),
    (lambda net: TrainConfig(momentum="0.9"), "momentum"),
    (lambda net: TrainConfig(schedule=["cosine"]), "schedule"),
    (lambda net: TrainConfig(warmup=float("nan")), "warmup"),
    (lambda net: TrainConfig(batch=2.0), "batch"),
])
def test_a_bad_argument_is_a_value_error_naming_it(net, call, field):
    before = {name: value.copy() for name, value in net.params.items()}
    refused(lambda: call(net), f"{field}: ")
    assert net.params.keys() == before.keys()
    assert all(np.array_equal(before[name], value) for name, value in net.params.items())  # nothing changed


def test_an_output_path_is_checked_before_training(tmp_path, small_data):
    trainer = _trainer(epochs=1)
    (tmp_path / "file").write_text("")
    for path, fragment in [(tmp_path, "is a directory"), (tmp_path / "file" / "run.npz", "is a file, not a directory")]:
        refused(lambda path=path: trainer.fit(small_data, progress=False, checkpoint=path), "checkpoint: ", fragment)
    assert trainer.state.epoch == 0 and not trainer.state.history
