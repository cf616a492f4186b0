"""A compile worker: ``python -m symcnn.runtime.compile_worker``, started by :mod:`symcnn.runtime.compiling`.

It imports one generated kernel package (under the name the network's process gave it: numba's
cache records the module a kernel was compiled in, and a cache entry is loaded by that name), then
compiles the kernels it is sent, one message at a time, each into numba's on-disk cache, and
answers each. It stops at the end of its input.

Messages are lines of base64 pickles, both ways (between two processes of the same program):
first ``{"directory", "package", "modules"}``, then one ``{"kernel", "module", "signatures"}`` per
kernel; each answered ``{"kernel", "seconds", "error"}`` (``error`` None, or the exception's line).
Whatever else the worker writes goes to stderr (its standard output is the answers' channel).
"""

from __future__ import annotations

import base64
import importlib
import os
import pickle
import sys
import time
from pathlib import Path
from typing import BinaryIO, Optional

__all__ = ["encode", "decode", "serve"]


def encode(message) -> bytes:
    """One message as a line."""
    return base64.b64encode(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)) + b"\n"


def decode(line: bytes):
    """The message of a line (from :func:`encode`)."""
    return pickle.loads(base64.b64decode(line))


def _receive(stream: BinaryIO) -> Optional[dict]:
    line = stream.readline()
    return decode(line) if line.strip() else None


def serve(requests: BinaryIO, answers: BinaryIO) -> None:
    """Answer ``requests`` until they end (see the module's docstring)."""
    from symcnn.runtime.loader import import_package

    first = _receive(requests)
    if first is None:
        return
    package = import_package(Path(first["directory"]), first["package"])
    # Every kernel module, as the network's process imports them: a module's import may set
    # process-wide LLVM options (the lane loops' interleave count), which every compile here must see.
    modules = {name: importlib.import_module(f"{package.__name__}.{name}") for name in first["modules"]}
    while (request := _receive(requests)) is not None:
        started, error = time.perf_counter(), None
        try:
            dispatcher = getattr(modules[request["module"]], request["kernel"])
            for signature in request["signatures"]:
                dispatcher.compile(signature)  # written to numba's cache as it is compiled
        except Exception as exception:  # noqa: BLE001 - told to the network's process, which compiles it itself
            lines = str(exception).strip().splitlines()
            error = f"{type(exception).__name__}: {lines[-1] if lines else ''}"
        answers.write(encode({"kernel": request["kernel"], "seconds": time.perf_counter() - started, "error": error}))
        answers.flush()


def main() -> None:
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed (numba's warnings, a debug setting) goes to stderr, not into the answers
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
