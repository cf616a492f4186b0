"""Kernels claimed for compiling across processes: processes that start one network at once share the work.

numba compiles a kernel in each process that needs it and finds it in no cache, so two processes that
start the same network at once (the ranks of a data-parallel run, two ``symcnn train`` in two terminals,
a test session's workers) would each compile every kernel: twice the work for one result. Before it
compiles a kernel, :func:`symcnn.runtime.compiling.compile_jobs` claims it: an exclusive ``flock`` on a
small file beside the kernel's numba cache (a different cache, a different claim: processes that
would not share the result do not wait for each other). A kernel another process holds is left for
last; by then that process has usually written it to the cache, and it is loaded, or, if it has not
(it compiled other types, or died: the system drops a dead process's locks), compiled here.

Claims are advisory and never wait while holding another (no deadlock); the files stay, empty,
one per kernel, where numba keeps its own. Where no claim can be made (no ``fcntl``: Windows; a cache directory
that cannot be written), every claim succeeds and each process compiles what it needs, as numba alone
would.

Example:
    >>> import tempfile
    >>> directory = tempfile.mkdtemp()
    >>> mine, theirs = Claims(), Claims()
    >>> mine.take("conv1_forward", directory), theirs.take("conv1_forward", directory)
    (True, False)
    >>> mine.release("conv1_forward"); theirs.wait("conv1_forward", directory, timeout=1.0)
    True
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Optional

try:
    import fcntl
except ImportError:  # Windows: no claims, numba's behaviour
    fcntl = None

__all__ = ["Claims", "claim_directory", "claim_name", "WAIT_SECONDS"]

#: The longest a process waits for another's kernel before compiling it itself (another process may be
#: stopped, not dead: its claim then never ends). Long enough for the slowest kernel on a loaded machine.
WAIT_SECONDS = 600.0


def claim_directory(dispatcher) -> Optional[str]:
    """Where numba writes ``dispatcher``'s cache (numba has no public call for it), or None without one."""
    path = getattr(getattr(dispatcher, "_cache", None), "_cache_path", None)
    return path if isinstance(path, str) else None


def claim_name(module: str, kernel: str, signatures: tuple) -> str:
    """A claim's key: the kernel's module and name and the argument types it is compiled for.

    >>> claim_name("symcnn_kernels_seed004.conv1", "conv1_forward", (("float32[:, :, :, ::1]",),))
    'symcnn_kernels_seed004.conv1.conv1_forward.f1f2d5673461'
    """
    digest = hashlib.sha256(repr(tuple(map(str, signatures))).encode()).hexdigest()[:12]
    return f"{module}.{kernel}.{digest}"


class Claims:
    """The claims one process holds, by key (thread-safe: a compile worker's thread takes its job's)."""

    def __init__(self):
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, key: str, directory: Optional[str]) -> bool:
        """Claim ``key`` if no other process holds it; True when this process may compile it."""
        if fcntl is None or directory is None:
            return True
        try:
            os.makedirs(directory, exist_ok=True)
            handle = os.open(Path(directory) / f"{key}.claim", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # a cache directory that cannot be written: numba will not write there either
            return True
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(handle)
            return False
        with self._lock:
            self._held[key] = handle
        return True

    def wait(self, key: str, directory: Optional[str], timeout: Optional[float] = None, poll: float = 0.05) -> bool:
        """Claim ``key``, waiting while another process holds it; False after ``timeout`` seconds
        (default :data:`WAIT_SECONDS`)."""
        deadline = time.monotonic() + (WAIT_SECONDS if timeout is None else timeout)
        while not self.take(key, directory):
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)
        return True

    def release(self, key: str) -> None:
        """End this process's claim of ``key`` (nothing if it holds none)."""
        with self._lock:
            handle = self._held.pop(key, None)
        if handle is not None:
            os.close(handle)  # closing the only descriptor of the file ends its lock

    def release_all(self) -> None:
        """End every claim this process holds."""
        with self._lock:
            keys = list(self._held)
        for key in keys:
            self.release(key)
