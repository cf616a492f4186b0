"""Compiling says so while it takes long: a bar on a terminal, a few plain lines elsewhere, nothing
when it is quick, and nothing after it ends. The display is driven by a fake clock (ticks called
by hand), so that no test depends on how fast this machine is."""

import io
import time

import numpy as np

from symcnn.runtime.compiling import first_call
from symcnn.runtime.network import Network
from symcnn.runtime.progress import CompileProgress


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _progress(terminal: bool, clock: _Clock) -> CompileProgress:
    # tick=3600: the ticking thread never ticks during a test; the test calls session.tick() itself.
    return CompileProgress("the digits kernels for float32", stream=io.StringIO(), delay=1.0, every=15.0,
                           tick=3600, terminal=terminal, clock=clock, label="digits (float32)")


def test_plain_lines_when_stderr_is_not_a_terminal_one_at_first_then_every_15_s_and_one_at_the_end():
    clock = _Clock()
    progress = _progress(terminal=False, clock=clock)
    with progress.session(total=3) as session:
        session.started("conv1_grad_weight")
        session.started("conv1_forward")
        clock.now = 0.5
        session.tick()  # under a second: quiet
        assert progress.stream.getvalue() == ""
        clock.now = 1.2
        session.tick()
        session.finished("conv1_forward")
        for now in (2.0, 5.0, 10.0):  # ticks every fraction of a second print nothing new
            clock.now = now
            session.tick()
        clock.now = 16.3
        session.tick()
        session.finished("conv1_grad_weight")
        session.started("fc1_forward")
        session.finished("fc1_forward")
        clock.now = 20.0
    lines = progress.stream.getvalue().splitlines()
    assert lines == [
        "symcnn: compiling the digits kernels for float32 (first use; numba caches them): 0 of 3 kernels ready, "
        "3 left; compiling conv1_grad_weight, conv1_forward",
        "symcnn: compiling: 1 of 3 kernels ready, 2 left; compiling conv1_grad_weight",
        "symcnn: compiled 3 kernels in 20.0 s",
    ]
    assert "\r" not in progress.stream.getvalue()


def test_a_bar_on_a_terminal_shows_what_is_ready_what_is_left_and_what_compiles_and_is_cleared_at_the_end():
    clock = _Clock()
    progress = _progress(terminal=True, clock=clock)
    with progress.session(total=17, ready=2) as session:
        for kernel in ("conv1_grad_weight", "conv2_grad_weight", "conv2_forward"):
            session.started(kernel)
        clock.now = 1.5
        session.tick()
        session.finished("conv2_grad_weight")
        shown = progress.stream.getvalue()
        last = shown.rsplit("\r", 1)[1]  # the bar as it stands: tqdm redraws it after a carriage return
        assert last.startswith("symcnn: compiling digits (float32): 3/17 ready |")
        assert last.rstrip().endswith(", 14 left; compiling conv1_grad_weight, conv2_forward")
    cleared = progress.stream.getvalue()[len(shown):]
    assert cleared.strip(" \r") == ""  # tqdm(leave=False) blanked its line at the end


def test_a_quick_session_prints_nothing_and_the_time_of_sessions_adds_up():
    clock = _Clock()
    progress = _progress(terminal=False, clock=clock)
    for _ in range(3):  # three first calls of 0.4 s each: the third passes the second in total
        with progress.session(total=1) as session:
            session.started("relu1_forward")
            clock.now += 0.4
            session.tick()
            session.finished("relu1_forward")
    lines = progress.stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("symcnn: compiling the digits kernels")
    assert lines[1] == "symcnn: compiled 1 kernel in 0.4 s"


def test_a_note_during_a_session_is_one_line():
    clock = _Clock()
    progress = _progress(terminal=False, clock=clock)
    with progress.session(total=2) as session:
        session.note("symcnn: compile workers failed on 1 kernel(s)")
    assert progress.stream.getvalue() == "symcnn: compile workers failed on 1 kernel(s)\n"


class _SlowFirstCall:
    """Stands for a numba dispatcher whose first call compiles for ``seconds``."""

    def __init__(self, seconds: float):
        self.seconds, self.signatures = seconds, []

    def __call__(self, *arguments):
        time.sleep(self.seconds)
        self.signatures.append("compiled")
        return "result"


def test_a_first_call_that_no_pass_prepared_shows_the_networks_progress_and_nothing_after_it_returns(capsys):
    net = Network.from_spec("digits")
    net.forward(np.zeros((1, 1, 8, 8), dtype=np.float32))  # some kernels ready already: counted as ready, not compiled
    net._progress = CompileProgress("the digits kernels for float32", delay=0.3, every=0.4, tick=0.05,
                                    terminal=False)
    slow = _SlowFirstCall(0.9)
    net._functions["slow"] = slow
    assert first_call(net, "slow", slow, []) == "result"
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("symcnn: compiling the digits kernels for float32 (first use; numba caches them): ")
    assert lines[0].endswith("; compiling slow")
    assert lines[-1].startswith("symcnn: compiled 1 kernel in ")
    time.sleep(0.3)
    assert capsys.readouterr().err == ""  # the ticking thread ended with the call
