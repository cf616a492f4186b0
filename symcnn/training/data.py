"""Data for training: the shipped handwritten digits, or a user's ``.npz``, fitted to a spec.

The digits (``symcnn/training/datasets/digits.npz``: 1,797 real 8×8 images from scikit-learn, no download)
are split once, stratified, with a fixed seed: 1,438 for training, 359 held out. Pixels are
scaled to [0, 1]. For a spec whose input is larger than 1×8×8 the images are resized with
bilinear interpolation (PyTorch's ``align_corners=False``) and repeated over the channels, so
that document 004's 3×32×32 network trains on real images.

A user's file is read with :class:`~symcnn.training.npz.NpzReader`: every array's header is
checked (dtype, shape, at most :data:`MAX_DATA_BYTES`) before the array is loaded, and every
problem is one ``ValueError`` line naming the file and the array.

Example:
    >>> data = load_digits((1, 8, 8))
    >>> data.x_train.shape, data.x_test.shape
    ((1438, 1, 8, 8), (359, 1, 8, 8))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from symcnn.training.npz import NpzReader

__all__ = ["Dataset", "load_digits", "load_npz", "load_data", "resize_bilinear", "stratified_split",
           "check_dataset", "all_finite", "MAX_DATA_BYTES"]

DIGITS_PATH = Path(__file__).resolve().parent / "datasets" / "digits.npz"
TEST_FRACTION = 0.2
SPLIT_SEED = 0

#: The most an ``.npz`` of training data may hold (its arrays together, as stored), checked from
#: the headers before anything is loaded. Training keeps a few copies of ``x`` (float64 for the
#: split and the standardization, then the network's dtype), so this is about what a machine with
#: 16-32 GB can train on. Raise it in Python to read a larger file.
MAX_DATA_BYTES = 4 * 2**30


@dataclass(frozen=True)
class Dataset:
    """Train and held-out arrays: ``x`` (N, C, H, W) float, ``y`` (N,) int64 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: float = 0.0  # the standardization applied to x: (raw - mean) / std
    std: float = 1.0

    def astype(self, dtype) -> "Dataset":
        return replace(self, x_train=np.ascontiguousarray(self.x_train, dtype=dtype),
                       x_test=np.ascontiguousarray(self.x_test, dtype=dtype))

    def standardized(self) -> "Dataset":
        """Inputs shifted and scaled by the training set's mean and standard deviation.

        Finite inputs so large that the mean, the deviation or ``(x - mean) / std`` overflow
        (values near 1e308) are refused, naming ``x``, rather than turned into NaN.
        """
        with np.errstate(over="ignore", invalid="ignore"):
            mean, std = float(self.x_train.mean()), float(self.x_train.std())
            std = std if std > 0 else 1.0
            x_train, x_test = (self.x_train - mean) / std, (self.x_test - mean) / std
        if not (math.isfinite(mean) and math.isfinite(std) and all_finite(x_train) and all_finite(x_test)):
            largest = max(float(np.abs(self.x_train).max(initial=0)), float(np.abs(self.x_test).max(initial=0)))
            raise ValueError(f"data: {self.name}: x: values as large as {largest:.3g} overflow the standardization "
                             "(x - mean) / std; scale x to a smaller range")
        return replace(self, x_train=x_train, x_test=x_test, mean=mean, std=std)


def stratified_split(labels: np.ndarray, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED):
    """Train and test indices with each class in the same proportion in both (fixed by ``seed``)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        cut = int(round(len(members) * test_fraction))
        test.append(members[:cut])
        train.append(members[cut:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def resize_bilinear(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize ``(N, C, h, w)`` to ``(N, C, height, width)`` by bilinear interpolation.

    Pixel centres as PyTorch's ``interpolate(mode="bilinear", align_corners=False)``.
    """
    _, _, source_height, source_width = images.shape

    def axis(target: int, source: int):
        position = (np.arange(target) + 0.5) * source / target - 0.5
        position = np.clip(position, 0, source - 1)
        low = np.floor(position).astype(int)
        high = np.minimum(low + 1, source - 1)
        return low, high, position - low

    row_low, row_high, row_weight = axis(height, source_height)
    col_low, col_high, col_weight = axis(width, source_width)
    top = images[:, :, row_low, :] * (1 - row_weight)[:, None] + images[:, :, row_high, :] * row_weight[:, None]
    return top[:, :, :, col_low] * (1 - col_weight) + top[:, :, :, col_high] * col_weight


def load_digits(input_shape: tuple[int, int, int]) -> Dataset:
    """The shipped digits, fitted to a spec's ``(C, H, W)`` input."""
    with np.load(DIGITS_PATH) as archive:
        images = archive["images"].astype(np.float64) / 16.0
        labels = archive["labels"].astype(np.int64)
    channels, height, width = input_shape
    x = images[:, None, :, :]
    if (height, width) != (8, 8):
        x = resize_bilinear(x, height, width)
    x = np.repeat(x, channels, axis=1)
    train, test = stratified_split(labels)
    return Dataset("digits", x[train], labels[train], x[test], labels[test])


def load_npz(path, input_shape: tuple[int, int, int], classes: int) -> Dataset:
    """A user's ``.npz`` with ``x`` (N, C, H, W) and ``y`` (N,), checked against the spec, split
    stratified like the digits. Raises ``ValueError`` naming the file, the array and the constraint."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data: no such file: {path}")
    with NpzReader(path, "data", path.name, MAX_DATA_BYTES) as archive:
        missing = [key for key in ("x", "y") if key not in archive.members]
        if missing:
            raise ValueError(f"data: {path.name} has no array {missing[0]!r} (it needs x and y)")
        _check_headers(archive.members["x"], archive.members["y"], input_shape, path.name)
        x, y = archive.read("x"), archive.read("y")
    if not all_finite(x):
        raise ValueError(f"data: {path.name}: x holds NaN or infinite values")
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(f"data: {path.name}: y must lie in [0, {classes - 1}] for this spec, "
                         f"got {y.min()}..{y.max()}")
    y = y.astype(np.int64)
    train, test = stratified_split(y)
    if len(test) == 0:
        raise ValueError(f"data: {path.name}: y: {len(y)} images leave none to hold out: the split holds out "
                         f"{TEST_FRACTION:.0%} of each class, rounded, so some class needs at least "
                         f"{_smallest_class_held_out()} images")
    try:
        x = x.astype(np.float64)
    except MemoryError:
        raise ValueError(f"data: {path.name}: x: not enough memory to convert it to float64") from None
    return Dataset(path.stem, x[train], y[train], x[test], y[test])


def _check_headers(x, y, input_shape: tuple, file_name: str) -> None:
    """``x`` and ``y`` as their headers describe them (:class:`~symcnn.training.npz.Member`),
    checked before either is loaded."""
    expected = ", ".join(map(str, input_shape))
    if len(x.shape) != 4 or tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(f"data: {file_name}: x must have shape (N, {expected}) for this spec, got {x.shape}")
    if x.dtype.kind not in "fiu":
        raise ValueError(f"data: {file_name}: x must hold real numbers, got dtype {x.dtype}")
    if y.shape != (x.shape[0],) or y.dtype.kind not in "iu":
        raise ValueError(f"data: {file_name}: y must be integer labels of shape ({x.shape[0]},), "
                         f"got {y.dtype} {y.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"data: {file_name}: need at least 2 examples, got {x.shape[0]}")


def _smallest_class_held_out() -> int:
    """The fewest images of a class of which :func:`stratified_split` holds one out."""
    return next(count for count in range(1, 1000) if round(count * TEST_FRACTION) >= 1)


def all_finite(array: np.ndarray) -> bool:
    """No NaN and no infinity in ``array``; a sum first (cheap), the exact test when it overflows."""
    if array.dtype.kind not in "fc":
        return True
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(array.sum()):
            return True
    return bool(np.isfinite(array).all())


def check_dataset(data, input_shape: tuple, classes: int) -> None:
    """A :class:`Dataset` handed to training, checked as a file would be: arrays of the spec's input
    shape, finite, integer labels in ``[0, classes)``, a non-empty training and held-out set, a
    finite standardization. ``ValueError`` names the field."""
    if not isinstance(data, Dataset):
        raise ValueError(f"data: must be a symcnn.training.data.Dataset, got {type(data).__name__}")
    expected = ", ".join(map(str, input_shape))
    for part in ("train", "test"):
        x, y = getattr(data, f"x_{part}"), getattr(data, f"y_{part}")
        if (not isinstance(x, np.ndarray) or x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape)
                or x.dtype.kind not in "fiu"):
            raise ValueError(f"data: x_{part} must be a real array of shape (N, {expected}) for this spec, "
                             f"got {_describe(x)}")
        if not isinstance(y, np.ndarray) or y.shape != (len(x),) or y.dtype.kind not in "iu":
            raise ValueError(f"data: y_{part} must be integer labels of shape ({len(x)},), got {_describe(y)}")
        if len(x) == 0:
            held_out = " (the held-out loss and accuracy are measured on it every epoch)" if part == "test" else ""
            raise ValueError(f"data: x_{part} is empty{held_out}")
        if not all_finite(x):
            raise ValueError(f"data: x_{part} holds NaN or infinite values (as {x.dtype})")
        if y.min() < 0 or y.max() >= classes:
            raise ValueError(f"data: y_{part} must lie in [0, {classes - 1}] for this spec, got {y.min()}..{y.max()}")
    for name in ("mean", "std"):
        value = getattr(data, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"data: {name} must be a finite number, got {value!r}")
    if data.std <= 0:
        raise ValueError(f"data: std must be positive, got {data.std!r}")


def _describe(array) -> str:
    if not isinstance(array, np.ndarray):
        return f"a {type(array).__name__}"
    return f"{array.dtype} of shape {array.shape}"


def load_data(source: str, input_shape: tuple[int, int, int], classes: int) -> Dataset:
    """``digits`` or a path to an ``.npz`` file."""
    if source == "digits":
        if classes < 10:
            raise ValueError(f"data: digits has 10 classes, the spec's last layer gives {classes}")
        return load_digits(input_shape)
    if not str(source).endswith(".npz"):
        raise ValueError(f"data: must be 'digits' or a path to an .npz file, got {source!r}")
    return load_npz(source, input_shape, classes)
