"""Compiling says so, with progress, while it takes long; and never prints after the call returns."""

import time

from symcnn.runtime.network import Network


class _SlowFirstCall:
    """Stands for a numba dispatcher whose first call compiles for ``seconds``."""

    def __init__(self, seconds: float):
        self.seconds, self.signatures = seconds, []

    def __call__(self, *arguments):
        time.sleep(self.seconds)
        self.signatures.append("compiled")
        return "result"


def test_a_long_compile_prints_progress_lines_and_nothing_after_it_returns(capsys):
    net = Network.from_spec("digits")
    slow = _SlowFirstCall(0.9)
    net._functions["slow"] = slow
    assert net._compile(slow, [], first_delay=0.3, every=0.4) == "result"
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("symcnn: compiling the digits kernels for float32 (first use; numba caches them): ")
    assert len(lines) >= 2 and lines[1].startswith("symcnn: compiling: ")
    time.sleep(0.6)
    assert capsys.readouterr().err == ""  # the reporter ended with the call


def test_a_quick_compile_prints_nothing(capsys):
    net = Network.from_spec("digits")
    quick = _SlowFirstCall(0.0)
    assert net._compile(quick, [], first_delay=0.5) == "result"
    assert capsys.readouterr().err == ""
