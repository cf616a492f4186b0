"""Shared test settings: a reproducible hypothesis profile and the optional PyTorch oracle.

The ``ci`` profile (the default) is derandomized, so CI runs the same examples every time,
has no deadline (SymPy's first call to a function is slow) and a modest number of examples
to keep the suite fast. ``HYPOTHESIS_PROFILE=thorough`` runs more examples, still reproducibly.

Tests that need PyTorch take the ``torch`` fixture (or call :func:`require_torch`): they are
skipped, not failed, where PyTorch is not importable.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=30,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    deadline=None,
    max_examples=300,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def require_torch():
    """The ``torch`` module, or skip the calling test where PyTorch is not importable."""
    return pytest.importorskip("torch")


def session_cache_dir(tmp_path_factory) -> Path:
    """The test session's kernel cache: one directory for all its processes (pytest-xdist's workers share
    the parent of their own temporary directories), never the user's. A spec that tests in several files
    compile is then generated once and compiled once per dtype, whichever worker gets to it first:
    ``tests.kernels_helpers.network_for`` generates under a lock, and numba writes its cache files whole."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "kernel-cache"


@pytest.fixture(scope="session", autouse=True)
def kernel_cache(tmp_path_factory):
    """Every spec a test generates on demand (``SYMCNN_CACHE_DIR``) goes to :func:`session_cache_dir`; a
    test that needs an empty cache sets its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYMCNN_CACHE_DIR", str(session_cache_dir(tmp_path_factory)))
        yield


@pytest.fixture(scope="session")
def torch():
    """PyTorch, the independent oracle; skips the test where it is not installed."""
    return require_torch()


@pytest.fixture
def cli(capsys):
    """Run ``symcnn ARGV`` in this process: ``(exit status, stdout, stderr)``, whether main returns or
    argparse exits."""
    from symcnn.cli.main import main

    def run(*argv):
        try:
            status = main([str(arg) for arg in argv])
        except SystemExit as exit_:
            status = exit_.code
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


@pytest.fixture
def umask():
    """Set the process's umask for one test (``umask(0o077)``); the original is restored after it."""
    original = os.umask(0o022)
    os.umask(original)
    yield os.umask
    os.umask(original)


@pytest.fixture
def interrupt_third_write(monkeypatch):
    """A function that, once called, makes symcnn.files raise KeyboardInterrupt (a Ctrl-C) as it
    writes its third new file from then on."""
    from symcnn import files

    def arm():
        written = []
        original = files._write_new_file

        def interrupted(path, data, mode):
            written.append(path)
            if len(written) == 3:
                raise KeyboardInterrupt
            original(path, data, mode)

        monkeypatch.setattr(files, "_write_new_file", interrupted)

    return arm
