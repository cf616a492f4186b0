"""The one atomic write: a reader sees the old file or the new one, never half of one.

Every file symcnn writes (generated kernel packages, reports and PDFs, checkpoints, plots, the
errata) goes through this module. Each write:

- writes a temporary sibling, ``.<name>.<8 random characters>.tmp``, in the target's own
  directory (a rename is atomic only within one file system), flushes and fsyncs it, then
  renames it onto the target with ``os.replace``;
- gives a new file the mode the user's umask gives (``0o666 & ~umask``, as ``open`` would; not
  ``mkstemp``'s private ``0o600``), and a file that exists already keeps its own mode; directories
  created get ``0o777 & ~umask``;
- removes its temporary when anything goes wrong, the interruption included.

A process killed outright (``kill -9``, a power cut) cannot clean up: its temporaries and staging
directories stay behind. **Rule:** the next successful write of the same target removes the
target's leftovers, ``.<name>.<8 characters>.tmp`` and ``.<name>.<8 characters>.previous``, that
have not changed for :data:`STALE_AFTER_SECONDS` (an hour). Younger ones may belong to a writer
still at work, and are left alone.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as directory:
    ...     write_text(Path(directory) / "note.txt", "hello\\n")
    ...     replace_directory(Path(directory) / "package", {"__init__.py": "", "kernel.py": "x = 1\\n"})
    ...     sorted(str(path.relative_to(directory)) for path in Path(directory).rglob("*"))
    ['note.txt', 'package', 'package/__init__.py', 'package/kernel.py']
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
import time
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import IO, Iterator, Mapping, Optional, Union

__all__ = ["write_text", "write_bytes", "atomic_open", "replace_directory", "remove_stale_leftovers",
           "STALE_AFTER_SECONDS"]

#: Leftovers of an interrupted write older than this (seconds since their last change) are removed
#: by the next successful write of the same target.
STALE_AFTER_SECONDS = 3600.0

PathLike = Union[str, os.PathLike]

# Enough attempts to outlast every concurrent writer: each failed attempt of ours is another
# writer's success (see _swap_in).
_SWAP_ATTEMPTS = 10_000


def _leftover_name(target: Path, suffix: str) -> Path:
    """A fresh sibling name ``.<name>.<8 random hex digits><suffix>``."""
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}{suffix}")


def _leftover_pattern(target: Path) -> re.Pattern:
    # 8 characters: ours (hex) and tempfile's (a-z, 0-9, _), which earlier versions of symcnn used.
    return re.compile(rf"\.{re.escape(target.name)}\.[a-z0-9_]{{8}}\.(tmp|previous)\Z")


def _existing_mode(path: Path) -> Optional[int]:
    """The permission bits of ``path`` if it exists, else ``None``."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _clock() -> float:
    """Now, as leftovers' ages are measured (one function, so that a test can move it on)."""
    return time.time()


def remove_stale_leftovers(target: PathLike, older_than: float = STALE_AFTER_SECONDS) -> list[Path]:
    """Remove ``target``'s temporaries and set-aside copies left by killed writers (see the rule in
    the module's docstring); returns what was removed. Never fails: a leftover that cannot be
    removed now is tried again at the next write."""
    target = Path(target)
    pattern = _leftover_pattern(target)
    removed = []
    try:
        candidates = [entry for entry in os.scandir(target.parent) if pattern.match(entry.name)]
    except OSError:
        return removed
    for entry in candidates:
        try:
            status = entry.stat(follow_symlinks=False)
            # ctime too: a rename (setting a directory aside) touches it, not the mtime
            if _clock() - max(status.st_mtime, status.st_ctime) < older_than:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _create_temporary(target: Path) -> tuple[int, Path]:
    """Create a new temporary sibling of ``target`` for writing: its descriptor and path.

    ``os.open`` with mode ``0o666`` lets the kernel apply the umask (and any default ACL), as for
    any new file; an existing target's mode is copied onto it.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        temporary = _leftover_name(target, ".tmp")
        try:
            descriptor = os.open(temporary, flags, 0o666)
        except FileExistsError:
            continue
        mode = _existing_mode(target)
        if mode is not None:
            try:
                os.chmod(temporary, mode)
            except BaseException:
                os.close(descriptor)
                os.unlink(temporary)
                raise
        return descriptor, temporary
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(target))


@contextmanager
def atomic_open(path: PathLike, mode: str = "wb", *, encoding: str = "utf-8",
                parents: bool = False) -> Iterator[IO]:
    """A file object whose contents replace ``path`` when the ``with`` block ends without an error.

    For writers that need a file object (``np.savez``, matplotlib's ``savefig``). ``mode`` is
    ``"wb"`` or ``"w"`` (text, no newline translation); ``parents`` creates missing directories.
    An exception inside the block leaves ``path`` as it was and removes the temporary.

    Example:
        >>> import numpy as np, tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as directory:
        ...     with atomic_open(Path(directory) / "arrays.npz") as stream:
        ...         np.savez(stream, weight=np.ones(3))
        ...     float(np.load(Path(directory) / "arrays.npz")["weight"].sum())
        3.0
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = _create_temporary(path)
    try:
        text_options = {"encoding": encoding, "newline": ""} if mode == "w" else {}
        try:
            stream = os.fdopen(descriptor, mode, **text_options)
        except BaseException:
            os.close(descriptor)
            raise
        with stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())  # the data on disk before the name points at it
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    remove_stale_leftovers(path)


def write_bytes(path: PathLike, data: bytes, *, parents: bool = False) -> None:
    """Replace ``path`` with ``data``, atomically (see the module's docstring)."""
    with atomic_open(path, "wb", parents=parents) as stream:
        stream.write(data)


def write_text(path: PathLike, text: str, *, encoding: str = "utf-8", parents: bool = False) -> None:
    """Replace ``path`` with ``text`` (no newline translation), atomically."""
    write_bytes(path, text.encode(encoding), parents=parents)


def _write_new_file(path: Path, data: bytes, mode: Optional[int]) -> None:
    """Write a file that does not exist yet (inside a private staging directory), fsynced."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
                         | getattr(os, "O_BINARY", 0), 0o666)
    with os.fdopen(descriptor, "wb") as stream:
        if mode is not None:
            os.chmod(path, mode)
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())


def _create_staging(target: Path) -> Path:
    """A new empty sibling directory of ``target``: the umask's mode, or ``target``'s own."""
    for _ in range(100):
        staging = _leftover_name(target, ".tmp")
        try:
            os.mkdir(staging, 0o777)
        except FileExistsError:
            continue
        mode = _existing_mode(target)
        if mode is not None:
            os.chmod(staging, mode)
        return staging
    raise FileExistsError(errno.EEXIST, "no free staging name", str(target))


def _checked_relative(relative: str) -> PurePosixPath:
    path = PurePosixPath(relative)
    if path.is_absolute() or not path.parts or ".." in path.parts:
        raise ValueError(f"files: {relative!r} must be a relative path inside the directory")
    return path


def _swap_in(staging: Path, target: Path) -> None:
    """Rename ``staging`` to ``target``, setting aside whatever is there.

    Several processes may replace one target at once. Each sets the current version aside under a
    name of its own (``.<name>.<random>.previous``), so no two collide; when another writer moves
    the target first, or swaps its own version in between our two renames, we try again. Each
    failure of ours is another writer's success, so this ends; the target ends as one complete
    version, the last one swapped in.
    """
    set_aside: list[Path] = []
    try:
        for _ in range(_SWAP_ATTEMPTS):
            try:
                os.rename(staging, target)  # replaces a missing target or an empty directory
                return
            except OSError as error:
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                    raise
            previous = _leftover_name(target, ".previous")
            try:
                os.rename(target, previous)
                set_aside.append(previous)
            except FileNotFoundError:
                pass  # another writer set it aside first: our rename can succeed now
        raise OSError(errno.EBUSY, f"could not swap in a new version after {_SWAP_ATTEMPTS} attempts "
                                   "(too many concurrent writers)", str(target))
    except BaseException:
        if set_aside and not os.path.lexists(target):  # interrupted between the renames: put it back
            try:
                os.rename(set_aside[-1], target)
                set_aside.pop()
            except OSError:
                pass
        raise
    finally:
        for previous in set_aside:
            shutil.rmtree(previous, ignore_errors=True)


def replace_directory(target: PathLike, files: Mapping[str, Union[str, bytes]]) -> None:
    """Replace the directory ``target`` by one holding exactly ``files`` (relative path -> text or
    bytes), as a whole.

    The files are written into a staging directory next to ``target`` (``.<name>.<random>.tmp``),
    fsynced, then swapped in with renames. An interruption before the swap leaves the old
    directory whole; several concurrent writers all succeed, and ``target`` ends as one of their
    versions, complete. A file that existed in the old directory keeps its mode.
    """
    target = Path(target)
    checked = {_checked_relative(relative): content for relative, content in files.items()}
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _create_staging(target)
    try:
        for relative, content in sorted(checked.items()):
            path = staging.joinpath(*relative.parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            data = content.encode("utf-8") if isinstance(content, str) else content
            _write_new_file(path, data, _existing_mode(target.joinpath(*relative.parts)))
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    remove_stale_leftovers(target)
