"""Ctrl-C inside an import ends the command with one line and status 130 (CPython would mangle it)."""

import gc
import signal
import subprocess
import sys
import textwrap

import pytest

from symcnn.cli import interrupt


def test_an_interrupt_during_an_import_exits_130_with_one_line(tmp_path):
    (tmp_path / "slow_module.py").write_text(textwrap.dedent("""
        import os, signal, time
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while this module loads
        time.sleep(30)
    """))
    program = textwrap.dedent("""
        import sys
        from symcnn.cli.interrupt import interrupts_end_cleanly
        print("before", flush=False)
        with interrupts_end_cleanly():
            import slow_module
        print("not reached")
    """)
    # (``python -c`` puts its working directory first on sys.path: slow_module is found there)
    done = subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (130, "before\n", "symcnn: interrupted\n")


def test_outside_an_import_it_is_the_usual_keyboard_interrupt():
    # The garbage collector off: Python may run the signal's handler inside a gc callback (hypothesis registers
    # one), where the KeyboardInterrupt is "ignored" with a warning instead of reaching pytest.raises.
    gc.disable()
    try:
        with interrupt.interrupts_end_cleanly():
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
    finally:
        gc.enable()


def test_the_previous_handler_comes_back_and_an_ignored_interrupt_stays_ignored():
    before = signal.getsignal(signal.SIGINT)
    with interrupt.interrupts_end_cleanly():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupt.interrupts_end_cleanly():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
