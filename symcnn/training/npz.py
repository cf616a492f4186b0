"""Read an ``.npz`` file that may be damaged or hostile: headers first, sizes bounded, never unpickled.

``np.load`` trusts an archive: a header that claims 10^10 images makes it allocate terabytes, a
deflate bomb expands until memory runs out, and a damaged file raises whatever ``zipfile``, ``zlib``
or NumPy's parser happens to raise. :class:`NpzReader` reads each member's ``.npy`` header without
loading the array, checks that the header agrees with the member's size, and refuses an array over
the caller's byte limit before allocating it; only then does it read the array (``allow_pickle``
off), checking its CRC. Every failure is one ``ValueError`` line naming the file and the array.

Example:
    >>> import io, numpy as np
    >>> stream = io.BytesIO()
    >>> np.savez(stream, x=np.zeros((2, 3)), y=np.arange(2))
    >>> with NpzReader(stream, label="data", name="demo.npz", max_bytes=1024) as archive:
    ...     archive.members["x"]
    ...     archive.read("y")
    Member(key='x', dtype=dtype('float64'), shape=(2, 3), nbytes=48)
    array([0, 1])
    >>> with NpzReader(stream, label="data", name="demo.npz", max_bytes=40) as archive:
    ...     pass
    Traceback (most recent call last):
    ...
    ValueError: data: demo.npz: x: shape (2, 3) of float64 takes 48 bytes, over the limit of 40 bytes
"""

from __future__ import annotations

import math
import struct
import tokenize
import zipfile
import zlib
from typing import NamedTuple

import numpy as np
from numpy.lib import format as npy_format

__all__ = ["Member", "NpzReader", "format_bytes"]

#: What a damaged archive makes ``zipfile``, ``zlib`` and NumPy's ``.npy`` parser raise.
#: (NumPy parses a header with ``tokenize`` and ``ast.literal_eval``: a damaged one raises their errors.)
_DAMAGE = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError,
           struct.error, OverflowError, KeyError, SyntaxError, TypeError, tokenize.TokenError, RecursionError)

#: NumPy's own default: a header longer than this is refused without being parsed.
_MAX_HEADER_SIZE = 10000
#: More arrays than any symcnn file holds (a checkpoint: two per parameter and three more); an
#: archive of millions of empty members would take minutes to list.
MAX_MEMBERS = 10000


def _printable(text: str) -> str:
    """``text`` as one short line: a member's name is whatever bytes the archive holds."""
    return text if text.isprintable() and len(text) <= 80 else repr(text)[:80]


class Member(NamedTuple):
    """One array of an archive, as its header describes it (nothing loaded)."""

    key: str  # the member's name without ``.npy``
    dtype: np.dtype
    shape: tuple
    nbytes: int  # what the array takes in memory


def format_bytes(count: int) -> str:
    """``4 GiB``, ``1.5 MiB``, ``48 bytes``.

    >>> format_bytes(4 * 2**30), format_bytes(3 * 2**19), format_bytes(48)
    ('4 GiB', '1.5 MiB', '48 bytes')
    """
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} bytes"


class NpzReader:
    """The arrays of an ``.npz`` file (a path or a binary stream), read one by one on demand.

    ``label`` starts every error message (``data``, ``resume``), ``name`` names the file in it and
    ``what`` says what the file should have been (``an .npz archive``, ``a symcnn checkpoint``).
    Opening reads every member's header and refuses the archive when a header is damaged,
    disagrees with the member's size, describes an object array (which would need unpickling),
    or when the arrays take more than ``max_bytes`` together.
    """

    def __init__(self, source, label: str, name: str, max_bytes: int, what: str = "an .npz archive"):
        self.label, self.name, self.max_bytes, self.what = label, _printable(name), max_bytes, what
        self._zip = None
        try:
            self._zip = zipfile.ZipFile(source)
            self.members = self._read_headers()
        except ValueError as error:
            self.close()
            if str(error).startswith(f"{label}: "):
                raise
            raise self._damaged(error) from None
        except _DAMAGE as error:
            self.close()
            raise self._damaged(error) from None

    def __enter__(self) -> "NpzReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def error(self, key: str, message: str) -> ValueError:
        """``label: file: key: message`` as a ``ValueError``."""
        return ValueError(f"{self.label}: {self.name}: {_printable(key)}: {message}")

    def _damaged(self, error: BaseException) -> ValueError:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if isinstance(error, OSError) and error.strerror:
            return ValueError(f"{self.label}: cannot read {self.name}: {error.strerror}")
        return ValueError(f"{self.label}: {self.name} is not {self.what}, or is damaged ({reason})")

    def _read_headers(self) -> dict[str, Member]:
        members, total = {}, 0
        if len(self._zip.infolist()) > MAX_MEMBERS:
            raise ValueError(f"{self.label}: {self.name} holds {len(self._zip.infolist())} files, "
                             f"more than the {MAX_MEMBERS} arrays any symcnn file has")
        for info in self._zip.infolist():
            if info.is_dir():
                continue
            key = info.filename.removesuffix(".npy")
            if key in members:
                raise self.error(key, "appears twice in the archive")
            dtype, shape, header_size = self._read_header(info, key)
            if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
                raise self.error(key, f"holds {dtype} values; only plain numeric arrays are read (no pickles)")
            if any(not isinstance(size, int) or size < 0 for size in shape):
                raise self.error(key, f"has an invalid shape {shape}")
            nbytes = math.prod(shape) * dtype.itemsize
            total += nbytes
            if nbytes > self.max_bytes or total > self.max_bytes:
                described = f"shape {shape} of {dtype} takes {format_bytes(nbytes)}"
                raise self.error(key, f"{described}, over the limit of {format_bytes(self.max_bytes)}"
                                 + (" for all arrays together" if nbytes <= self.max_bytes else ""))
            if header_size + nbytes != info.file_size:
                raise self.error(key, f"the header describes {header_size + nbytes} bytes, the archive holds "
                                      f"{info.file_size} (truncated or corrupted)")
            members[key] = Member(key, dtype, tuple(shape), nbytes)
        return members

    def _read_header(self, info: zipfile.ZipInfo, key: str) -> tuple:
        """``(dtype, shape, header size)`` of one member, without reading its array."""
        try:
            with self._zip.open(info) as stream:
                version = npy_format.read_magic(stream)
                if version == (1, 0):
                    shape, _, dtype = npy_format.read_array_header_1_0(stream, _MAX_HEADER_SIZE)
                elif version == (2, 0):
                    shape, _, dtype = npy_format.read_array_header_2_0(stream, _MAX_HEADER_SIZE)
                else:
                    raise ValueError(f"unsupported .npy format version {version}")
                return dtype, shape, stream.tell()
        except _DAMAGE as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise self.error(key, f"is not a .npy array, or is damaged ({reason})") from None

    def read(self, key: str) -> np.ndarray:
        """The array ``key`` (C-contiguous), read after its header was checked; its CRC is verified."""
        member = self.members[key]
        name = f"{key}.npy" if f"{key}.npy" in self._zip.NameToInfo else key
        try:
            with self._zip.open(name) as stream:
                array = npy_format.read_array(stream, allow_pickle=False, max_header_size=_MAX_HEADER_SIZE)
                if stream.read(1):  # also reaches the end of the member, where zipfile checks the CRC
                    raise ValueError("data after the array")
        except MemoryError:
            raise self.error(key, f"not enough memory for {format_bytes(member.nbytes)}") from None
        except _DAMAGE as error:
            raise self._damaged(error) from None
        if array.dtype != member.dtype or array.shape != member.shape:  # the header changed under us
            raise self.error(key, "the array differs from its header (corrupted)")
        return array if array.flags.c_contiguous else np.ascontiguousarray(array)  # a 0-d array stays 0-d
