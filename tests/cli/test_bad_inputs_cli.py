"""Bad input at the command line (train, bench): exit status 2 and exactly one line on stderr, never a
traceback; output paths checked before any training; Ctrl-C at any moment is one line and status 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.bad_files import (
    forged_npy,
    labelled_images,
    npy_bytes,
    npz_bytes,
    read_checkpoint,
    write_checkpoint,
    zip_bytes,
)

ROOT = Path(__file__).resolve().parents[2]


def one_line_error(status: int, out: str, err: str, *fragments) -> str:
    assert status == 2, err
    assert out == "" and "Traceback" not in err and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("data")
    x, y = labelled_images(60)
    good = npz_bytes(x=x, y=y)
    files = {
        "good": good,
        "truncated": good[:len(good) // 3],
        "flipped": good[:200] + bytes([good[200] ^ 0xFF]) + good[201:],
        "huge": zip_bytes({"x.npy": forged_npy((10**10, 1, 8, 8)), "y.npy": npy_bytes(y)}),
        "ten": npz_bytes(x=x[:10], y=y[:10]),
        "overflow": npz_bytes(x=np.where(np.arange(60)[:, None, None, None] % 2, 1e308, -1e308) * np.ones_like(x), y=y),
    }
    for name, content in files.items():
        (directory / f"{name}.npz").write_bytes(content)
    return directory


@pytest.mark.parametrize("name, fragments", [
    ("truncated", ["--data: truncated.npz is not an .npz archive, or is damaged"]),
    ("flipped", ["--data: flipped.npz"]),
    ("huge", ["--data: huge.npz: x: shape (10000000000, 1, 8, 8) of float64", "over the limit of 4 GiB"]),
    ("ten", ["--data: ten.npz: y: 10 images leave none to hold out", "at least 3 images"]),
    ("overflow", ["--data: overflow: x: values as large as 1e+308 overflow the standardization"]),
])
def test_bad_data_files_exit_2_with_one_line(cli, data_files, name, fragments):
    one_line_error(*cli("train", "digits", "--data", data_files / f"{name}.npz", "--no-progress"), *fragments)


@given(offset=st.integers(0, 2000), mask=st.integers(1, 255), cut=st.integers(0, 3000))
@settings(max_examples=10, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_damaged_data_never_shows_a_traceback(cli, data_files, tmp_path_factory, offset, mask, cut):
    content = bytearray((data_files / "good.npz").read_bytes())
    content[offset % len(content)] ^= mask
    path = tmp_path_factory.mktemp("fuzz") / "fuzz.npz"
    path.write_bytes(bytes(content[:len(content) - cut]))
    status, out, err = cli("train", "digits", "--data", path, "--epochs", "1", "--no-progress", "--json")
    assert "Traceback" not in err
    if status != 0:
        one_line_error(status, out, err, "--data: ")


@pytest.fixture(scope="module")
def mid_epoch_checkpoint(tmp_path_factory, data_files):
    """A checkpoint of `train digits --data good.npz` stopped (as by Ctrl-C) within epoch 2."""
    from symcnn import Network
    from symcnn.training.data import load_data
    from symcnn.training.trainer import TrainConfig, Trainer

    path = tmp_path_factory.mktemp("checkpoints") / "run.npz"
    data = load_data(str(data_files / "good.npz"), (1, 8, 8), 10).standardized()
    trainer = Trainer(Network.from_spec("digits", seed=0), TrainConfig(epochs=3, batch=8, seed=0))

    def ctrl_c(epoch, step):
        if (epoch, step) == (1, 2):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trainer.fit(data, progress=False, checkpoint=path, on_step=ctrl_c)
    return path


def test_a_mid_epoch_checkpoint_resumes_only_on_its_own_data_and_batch(cli, data_files, mid_epoch_checkpoint):
    common = ["--resume", mid_epoch_checkpoint, "--epochs", "3", "--no-progress", "--seed", "0"]
    status, out, err = cli("train", "digits", "--data", data_files / "good.npz", "--batch", "8", *common)
    assert status == 0 and "resumed from" in out, err
    one_line_error(*cli("train", "digits", "--batch", "8", *common), "--resume: ", "was trained on other data",
                   "resume with the same data")
    one_line_error(*cli("train", "digits", "--data", data_files / "good.npz", "--batch", "16", *common),
                   "--resume: ", "batch 8, not 16")


@pytest.mark.parametrize("tamper, fragment", [
    (lambda arrays, metadata: metadata.update(step="3"), "--resume: run.npz: metadata.step: must be an integer >= 0"),
    (lambda arrays, metadata: metadata["rng_state"].update(bit_generator="MT19937"), "metadata.rng_state"),
    (lambda arrays, metadata: arrays.update(order=-1 - arrays["order"]), "order: must be a permutation"),
    (lambda arrays, metadata: arrays["param/fc1.weight"].fill(np.nan), "param/fc1.weight: holds NaN"),
    (lambda arrays, metadata: arrays.update({"param/fc1.bias": arrays["param/fc1.bias"] + 1j}),
     "param/fc1.bias: must be float32"),
    (lambda arrays, metadata: metadata["history"].clear(), "metadata.history"),
])
def test_a_tampered_checkpoint_exits_2_with_one_line(cli, tmp_path, data_files, mid_epoch_checkpoint, tamper, fragment):
    arrays, metadata = read_checkpoint(mid_epoch_checkpoint)
    arrays = {key: value.copy() for key, value in arrays.items()}
    tamper(arrays, metadata)
    path = tmp_path / "run.npz"
    write_checkpoint(path, arrays, metadata)
    one_line_error(*cli("train", "digits", "--data", data_files / "good.npz", "--batch", "8", "--resume", path,
                        "--no-progress"), fragment)


def test_a_truncated_checkpoint_exits_2_with_one_line(cli, tmp_path, mid_epoch_checkpoint):
    path = tmp_path / "run.npz"
    path.write_bytes(mid_epoch_checkpoint.read_bytes()[:-100])
    one_line_error(*cli("train", "digits", "--resume", path, "--no-progress"),
                   "--resume: run.npz is not a symcnn checkpoint, or is damaged")


# --- output paths, checked before training ----------------------------------------------------------


@pytest.mark.parametrize("option, target, fragment", [
    ("--checkpoint", "a-directory", "is a directory; name a file"),
    ("--checkpoint", "a-file/run.npz", "is a file, not a directory"),
    ("--plot", "a-directory.png", "is a directory; name a file"),
])
def test_an_output_path_that_cannot_be_written_fails_before_training(cli, tmp_path, option, target, fragment):
    pytest.importorskip("matplotlib")
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "a-directory.png").mkdir()
    (tmp_path / "a-file").write_text("")
    status, out, err = cli("train", "digits", option, tmp_path / target, "--no-progress", "--epochs", "1")
    one_line_error(status, out, err, f"{option}: ", fragment)  # out == "": not even the run's first line


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into a read-only directory")
def test_an_unwritable_directory_fails_before_training(cli, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        one_line_error(*cli("train", "digits", "--checkpoint", locked / "run.npz", "--no-progress"),
                       "--checkpoint: cannot write a file in")
    finally:
        locked.chmod(0o700)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no one can create a file")
def test_a_directory_no_one_can_write_fails_before_training(cli):
    one_line_error(*cli("train", "digits", "--checkpoint", "/proc/run.npz", "--no-progress"),
                   "--checkpoint: cannot write a file in '/proc'")


# --- bench limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, fragments", [
    (["--batch", "100000000"], ["--batch: 100000000 images of digits need about", "more than half this machine's"]),
    (["--threads", "100000"], ["--threads: must be at most", "per logical core"]),
    (["--threads", "0"], ["--threads: must be an integer >= 1"]),
])
def test_bench_limits_are_checked_before_any_work(cli, monkeypatch, argv, fragments):
    from symcnn.bench import bench

    monkeypatch.setattr(bench, "sgemm_gflops", lambda *a, **k: pytest.fail("work started"))
    one_line_error(*cli("bench", "digits", *argv), *fragments)


def test_the_bench_memory_estimate_counts_activations_and_columns():
    from symcnn.bench.bench import memory_per_image
    from symcnn.spec import load_spec

    # digits: layer inputs and outputs 64+1024, 1024+1024, 1024+256, 256+256, 256+10 floats; conv1's columns 9*64
    activations = (64 + 1024) + (1024 + 1024) + (1024 + 256) + (256 + 256) + (256 + 10)
    assert memory_per_image(load_spec("digits")) == 4 * (6 * activations + 3 * 9 * 64)


# --- Ctrl-C -----------------------------------------------------------------------------------------


def test_ctrl_c_while_the_command_starts_is_one_line(cli, monkeypatch):
    from symcnn.cli import main

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(main, "_build_parser", interrupted)
    status, out, err = cli("train", "digits")
    assert (status, out, err) == (130, "", "symcnn: interrupted\n")


@pytest.mark.parametrize("delay", [0.1, 0.4, 1.5])
def test_ctrl_c_at_any_moment_of_a_real_run_is_one_line_and_status_130(delay):
    """Whenever SIGINT lands (imports, the kernels' loading, training), no traceback: one line.

    The delay counts from when Python is about to run symcnn's ``__main__`` (the process says so on
    stderr), not from the fork: on a loaded machine a signal 0.1 s after the fork can land while the
    interpreter itself is still starting ("Could not import runpy module"), or 0.1 s after that while runpy
    is still importing the ``symcnn`` package to find its ``__main__`` (a CI run, 2026-12-07), before
    symcnn can do anything. So the package and the module that catches Ctrl-C are imported before the mark."""
    start = ("import runpy, sys, symcnn, symcnn.cli.interrupt; print('started', file=sys.stderr, flush=True); "
             "runpy.run_module('symcnn', run_name='__main__', alter_sys=True)")
    process = subprocess.Popen([sys.executable, "-c", start, "train", "digits", "--epochs", "1000", "--no-progress",
                                "--json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stderr.readline() == "started\n"
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(("symcnn: interrupted",
                                                                              "symcnn train: interrupted at epoch"))


def test_an_output_that_would_overwrite_the_data_is_refused(cli, data_files, tmp_path):
    data = tmp_path / "data.npz"
    data.write_bytes((data_files / "good.npz").read_bytes())
    one_line_error(*cli("train", "digits", "--data", data, "--checkpoint", data, "--no-progress"),
                   "--checkpoint: ", "is the --data file")
    assert data.read_bytes() == (data_files / "good.npz").read_bytes()


def test_ctrl_c_before_training_does_not_claim_a_checkpoint(cli, monkeypatch, tmp_path):
    from symcnn.training.trainer import Trainer

    def interrupted(self, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_prepared", interrupted)
    checkpoint = tmp_path / "run.npz"
    status, _, err = cli("train", "digits", "--checkpoint", checkpoint, "--no-progress", "--json")
    assert status == 130 and err.endswith("\nsymcnn train: interrupted at epoch 1, batch 0\n")  # no "saved to"
    assert not checkpoint.exists()
