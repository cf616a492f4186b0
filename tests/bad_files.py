"""Builders of damaged and hostile files for the bad-input tests: ``.npz`` archives made by hand
(forged ``.npy`` headers, deflate bombs), and checkpoints taken apart and put back together.

The checkpoint digest is recomputed here from the format docs/training.md states (SHA-256 over the
arrays in name order: ``json.dumps([name, dtype.str, shape])`` then the bytes), not imported from
symcnn, so that a tampered checkpoint with a correct digest tests the field checks behind it.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
import zipfile

import numpy as np
from numpy.lib import format as npy_format


def npy_bytes(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array, allow_pickle=True)
    return stream.getvalue()


def forged_npy(shape: tuple, descr: str = "<f8", payload: bytes = b"", fortran_order: bool = False) -> bytes:
    """A ``.npy`` whose header says ``shape`` and ``descr`` whatever the payload holds."""
    stream = io.BytesIO()
    npy_format.write_array_header_1_0(stream, {"descr": descr, "fortran_order": fortran_order, "shape": shape})
    return stream.getvalue() + payload


def zip_bytes(members: dict, compression: int = zipfile.ZIP_STORED) -> bytes:
    """An archive of ``name -> bytes`` members, written as given (duplicates allowed)."""
    stream = io.BytesIO()
    with zipfile.ZipFile(stream, "w", compression=compression) as archive, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)  # wanted, when a test asks for them
        for name, data in members.items() if isinstance(members, dict) else members:
            archive.writestr(name, data)
    return stream.getvalue()


def npz_bytes(**arrays) -> bytes:
    stream = io.BytesIO()
    np.savez(stream, **arrays)
    return stream.getvalue()


def labelled_images(count: int, classes: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``count`` 1x8x8 images whose brightest pixel names their class (learnable, small)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % classes
    images = rng.random((count, 1, 8, 8)) * 0.1
    images[np.arange(count), 0, labels % 8, labels // 8] = 1.0
    return images, labels


# --- checkpoints ----------------------------------------------------------------------------------


def read_checkpoint(path) -> tuple[dict, dict]:
    """``(arrays, metadata)`` of a checkpoint, the digest left out."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files if key != "digest"}
    metadata = json.loads(arrays.pop("metadata").tobytes().decode())
    return arrays, metadata


def digest(arrays: dict) -> str:
    hasher = hashlib.sha256()
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        hasher.update(json.dumps([key, array.dtype.str, list(array.shape)]).encode())
        hasher.update(array.tobytes())
    return hasher.hexdigest()


def write_checkpoint(path, arrays: dict, metadata, redigest: bool = True,
                     metadata_bytes: bytes | None = None) -> None:
    """A checkpoint of these arrays and metadata, with a digest that matches them (``redigest``) or
    none at all."""
    text = metadata_bytes if metadata_bytes is not None else json.dumps(metadata).encode()
    arrays = {**arrays, "metadata": np.frombuffer(text, dtype=np.uint8)}
    if redigest:
        arrays["digest"] = np.frombuffer(digest(arrays).encode(), dtype=np.uint8)
    with open(path, "wb") as stream:
        np.savez(stream, **arrays)
