"""Say on stderr which kernels compile and how many are left, while compiling takes long.

numba compiles a generated kernel the first time it is needed (seed004's take 40-50 s from nothing),
and loads it from its on-disk cache afterwards (a few milliseconds). A :class:`CompileProgress`
says nothing while its compiling has taken less than ``delay`` seconds in total (loading from the
cache stays quiet), then shows:

- on a terminal, a tqdm bar: kernels ready of the total, how many are left, which are compiling now;
- elsewhere (a CI log, a file), plain lines: one when it starts to show, one every ``every`` seconds,
  and one when done; never a bar's carriage returns.

A progress object lives as long as its network and counts the seconds of all its sessions, so that
many short first calls add up to one notice, not many.

Example (a session that ends quickly prints nothing):
    >>> import io
    >>> progress = CompileProgress("the digits kernels for float32", stream=io.StringIO())
    >>> with progress.session(total=1) as session:
    ...     session.started("conv1_forward")
    ...     session.finished("conv1_forward")
    >>> progress.stream.getvalue()
    ''
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, TextIO

__all__ = ["CompileProgress", "Session"]

#: At most this many names of kernels compiling now are shown (then "+ 2 more").
SHOWN_NAMES = 2


class Session:
    """One run of compiling (or loading) a list of kernels: what is ready, what is compiling now."""

    def __init__(self, progress: "CompileProgress", total: int):
        self._progress = progress
        self.total = total
        self.ready = 0
        self.initial = 0  # ready before the session: not counted as compiled by it
        self.compiling: list[str] = []  # in the order they started
        self.started_at = progress.clock()
        self._bar = None  # the tqdm bar, once shown on a terminal
        self._shown = False
        self._last_line: Optional[float] = None

    # --- what the compiling code reports --------------------------------------------------------

    def started(self, kernel: str) -> None:
        """``kernel`` is compiling (or loading) now."""
        with self._progress.lock:
            if kernel not in self.compiling:  # (a kernel a worker compiled is then loaded here)
                self.compiling.append(kernel)
            self._refresh()

    def finished(self, kernel: str) -> None:
        """``kernel`` is ready."""
        with self._progress.lock:
            if kernel in self.compiling:
                self.compiling.remove(kernel)
            self.ready += 1
            if self._bar is not None:
                self._bar.set_postfix_str(self._postfix(), refresh=False)
                self._bar.update(1)  # (redrawn at most every 0.2 s: mininterval)
                self._bar.refresh()

    def stopped(self, kernel: str) -> None:
        """``kernel`` stopped compiling without being ready (its worker failed: compiled later here)."""
        with self._progress.lock:
            if kernel in self.compiling:
                self.compiling.remove(kernel)
            self._refresh()

    def note(self, message: str) -> None:
        """One line on the stream now (a worker failed, ...), above the bar if one is shown."""
        with self._progress.lock:
            if self._bar is not None:
                self._bar.write(message, file=self._progress.stream)
            else:
                print(message, file=self._progress.stream, flush=True)

    # --- what the display shows -----------------------------------------------------------------

    def describe(self) -> str:
        """``3 of 17 kernels ready, 14 left; compiling conv1_grad_weight, conv2_grad_weight``."""
        text = f"{self.ready} of {self.total} kernels ready, {self.total - self.ready} left"
        if self.compiling:
            names = self.compiling[:SHOWN_NAMES]
            more = len(self.compiling) - len(names)
            text += "; compiling " + ", ".join(names) + (f" + {more} more" if more else "")
        return text

    def _postfix(self) -> str:
        left = f"{self.total - self.ready} left"
        return f"{left}; compiling {', '.join(self.compiling[:SHOWN_NAMES])}" if self.compiling else left

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=True)

    def tick(self) -> None:
        """Show, refresh or print, as the time says (called every fraction of a second)."""
        progress = self._progress
        with progress.lock:
            now = progress.clock()
            if not self._shown:
                if progress.spent + now - self.started_at < progress.delay:
                    return
                self._shown = True
                if progress.terminal:
                    self._bar = progress.make_bar(self)
                    self._refresh()
                else:
                    self._line(f"symcnn: compiling {progress.what} (first use; numba caches them): {self.describe()}")
                return
            if self._bar is not None:
                self._bar.refresh()
            elif now - self._last_line >= progress.every:
                self._line(f"symcnn: compiling: {self.describe()}")

    def close(self) -> None:
        with self._progress.lock:
            seconds = self._progress.clock() - self.started_at
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            elif self._shown:
                self._line(f"symcnn: compiled {progress_count(self.ready - self.initial)} in {seconds:.1f} s")
            self._progress.spent += seconds

    def _line(self, text: str) -> None:
        print(text, file=self._progress.stream, flush=True)
        self._last_line = self._progress.clock()


def progress_count(count: int) -> str:
    """``1 kernel``, ``17 kernels``."""
    return f"{count} kernel{'' if count == 1 else 's'}"


class CompileProgress:
    """The progress display of one network's compiling: ``what`` names its kernels in the lines (``the
    seed004 kernels for float32``), ``label`` on the bar (``seed004 (float32)``; default ``what``).
    ``stream`` defaults to ``sys.stderr`` at the time of each session (so that a test's captured stderr
    is the one written to); ``terminal`` to whether that stream is a terminal."""

    def __init__(self, what: str, stream: Optional[TextIO] = None, delay: float = 1.0, every: float = 15.0,
                 tick: float = 0.2, terminal: Optional[bool] = None, clock: Callable[[], float] = time.monotonic,
                 label: Optional[str] = None):
        self.what, self.label = what, label or what
        self._stream, self._terminal = stream, terminal
        self.delay, self.every, self.tick_seconds, self.clock = delay, every, tick, clock
        self.spent = 0.0  # seconds of the sessions so far
        self.lock = threading.RLock()

    @property
    def stream(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stderr

    @property
    def terminal(self) -> bool:
        if self._terminal is not None:
            return self._terminal
        try:
            return bool(self.stream.isatty())
        except (AttributeError, ValueError):  # a closed or odd stream: no bar
            return False

    def make_bar(self, session: Session):
        """The tqdm bar of ``session`` (on a terminal): cleared when the session ends."""
        from tqdm import tqdm  # here: a session that never shows does not import it

        # Counts before names, names last: a narrow terminal cuts the line at its end.
        return tqdm(total=session.total, initial=session.ready, desc=f"symcnn: compiling {self.label}",
                    unit="kernel", file=self.stream, leave=False, dynamic_ncols=True, mininterval=0.2,
                    bar_format="{desc}: {n_fmt}/{total_fmt} ready |{bar:12}| {elapsed}{postfix}")  # ", 14 left; ..."

    @contextmanager
    def session(self, total: int, ready: int = 0) -> Iterator[Session]:
        """A session over ``total`` kernels, ``ready`` of them already done: a thread ticks its display
        until the block ends; nothing is printed after it ends."""
        session = Session(self, total)
        session.ready = session.initial = ready
        done = threading.Event()

        def ticker() -> None:
            while not done.wait(self.tick_seconds):
                session.tick()

        thread = threading.Thread(target=ticker, name="symcnn-compile-progress", daemon=True)
        thread.start()
        try:
            yield session
        finally:
            done.set()
            thread.join()
            session.close()
