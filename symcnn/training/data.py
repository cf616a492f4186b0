"""Data for training: the shipped handwritten digits, or a user's ``.npz``, fitted to a spec.

The digits (``symcnn/training/datasets/digits.npz``: 1,797 real 8×8 images from scikit-learn, no download)
are split once, stratified, with a fixed seed: 1,438 for training, 359 held out. Pixels are
scaled to [0, 1]. For a spec whose input is larger than 1×8×8 the images are resized with
bilinear interpolation (PyTorch's ``align_corners=False``) and repeated over the channels, so
that document 004's 3×32×32 network trains on real images.

Example:
    >>> data = load_digits((1, 8, 8))
    >>> data.x_train.shape, data.x_test.shape
    ((1438, 1, 8, 8), (359, 1, 8, 8))
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

__all__ = ["Dataset", "load_digits", "load_npz", "load_data", "resize_bilinear", "stratified_split"]

DIGITS_PATH = Path(__file__).resolve().parent / "datasets" / "digits.npz"
TEST_FRACTION = 0.2
SPLIT_SEED = 0


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
        """Inputs shifted and scaled by the training set's mean and standard deviation."""
        mean, std = float(self.x_train.mean()), float(self.x_train.std())
        std = std if std > 0 else 1.0
        return replace(self, x_train=(self.x_train - mean) / std, x_test=(self.x_test - mean) / std,
                       mean=mean, std=std)


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
    stratified like the digits. Raises ``ValueError`` naming the array and the constraint."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"data: no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in ("x", "y") if key not in archive.files]
            if missing:
                raise ValueError(f"data: {path.name} has no array {missing[0]!r} (it needs x and y)")
            x, y = archive["x"], archive["y"]
    except (OSError, EOFError) as error:
        raise ValueError(f"data: cannot read {path}: {error}") from None
    except ValueError as error:
        if str(error).startswith("data:"):
            raise
        raise ValueError(f"data: cannot read {path}: {error}") from None
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(input_shape):
        raise ValueError(f"data: x must have shape (N, {', '.join(map(str, input_shape))}) for this spec, "
                         f"got {x.shape}")
    if x.dtype.kind not in "fiu":
        raise ValueError(f"data: x must be numeric, got dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise ValueError("data: x holds NaN or infinite values")
    if y.shape != (x.shape[0],) or y.dtype.kind not in "iu":
        raise ValueError(f"data: y must be integer labels of shape ({x.shape[0]},), got {y.dtype} {y.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"data: need at least 2 examples, got {x.shape[0]}")
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(f"data: y must lie in [0, {classes - 1}] for this spec, got {y.min()}..{y.max()}")
    train, test = stratified_split(y.astype(np.int64))
    x = x.astype(np.float64)
    return Dataset(path.stem, x[train], y[train].astype(np.int64), x[test], y[test].astype(np.int64))


def load_data(source: str, input_shape: tuple[int, int, int], classes: int) -> Dataset:
    """``digits`` or a path to an ``.npz`` file."""
    if source == "digits":
        if classes < 10:
            raise ValueError(f"data: digits has 10 classes, the spec's last layer gives {classes}")
        return load_digits(input_shape)
    if not str(source).endswith(".npz"):
        raise ValueError(f"data: must be 'digits' or a path to an .npz file, got {source!r}")
    return load_npz(source, input_shape, classes)
