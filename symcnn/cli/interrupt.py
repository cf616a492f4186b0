"""Ctrl-C as one line, wherever it lands: an interrupt inside an import ends the command at once.

Why: Python raises ``KeyboardInterrupt`` wherever the main thread happens to be. Inside an import that
C code started (NumPy loading ``datetime`` through ``PyCapsule_Import``, for one) CPython turns it into an
``ImportError`` with a page of advice, or, after our handler has printed its line, ends the process by
SIGINT instead of status 130. Nothing a user keeps is open while a module loads (every file symcnn writes
goes through a temporary and a rename), so there the command simply stops; everywhere else the interrupt
is the usual ``KeyboardInterrupt`` that the commands catch (``train`` saves its checkpoint first).

Example:
    >>> with interrupts_end_cleanly():
    ...     pass  # run a command; Ctrl-C prints "symcnn: interrupted" and exits 130
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Iterator, Optional

__all__ = ["MESSAGE", "interrupts_end_cleanly"]

MESSAGE = "symcnn: interrupted"
STATUS = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


def _inside_import(frame: Optional[FrameType]) -> bool:
    """True when importlib's machinery is on the stack (the frame chain spans C calls)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _on_interrupt(signum: int, frame: Optional[FrameType]) -> None:
    if not _inside_import(frame):
        raise KeyboardInterrupt
    try:
        sys.stdout.flush()  # what was printed before stays printed
    except Exception:  # a closed pipe: nothing more to keep
        pass
    os.write(2, (MESSAGE + "\n").encode())
    os._exit(STATUS)


@contextmanager
def interrupts_end_cleanly() -> Iterator[None]:
    """Install the handler for the duration of a command (the main thread only), then restore the old one.

    A SIGINT that the caller ignores (``nohup``, a background job) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, _on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
