"""DistributedDataParallel with gloo on the CPU: K steps of two processes on this machine (loopback only),
each on half of every batch, equal K steps of one process on the whole batches (float64); and
``symcnn train --distributed`` under torchrun equals ``symcnn train`` in one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import symcnn.torch  # noqa: E402
from tests.kernels_helpers import toml_of  # noqa: E402

STEPS, PER_PROCESS, WORLD = 3, 6, 2
#: Summation order differs (two half-batch means averaged by all-reduce against one mean): rounding only.
TOLERANCE = dict(rtol=1e-10, atol=1e-12)


def _batches():
    rng = np.random.default_rng(11)
    images = rng.standard_normal((STEPS, WORLD * PER_PROCESS, 1, 8, 8))
    labels = rng.integers(0, 10, (STEPS, WORLD * PER_PROCESS))
    return torch.tensor(images), torch.tensor(labels)


def _train(model, rank: int, world: int):
    """SGD with momentum on this process's share of each batch; the losses seen."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images, labels = _batches()
    share = slice(rank * len(labels[0]) // world, (rank + 1) * len(labels[0]) // world)
    losses = []
    for step in range(STEPS):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images[step][share]), labels[step][share])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _worker(rank: int, port: int, directory: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                         world_size=WORLD)
    try:
        model = symcnn.torch.from_spec("digits", dtype="float64", seed=5)
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        losses = _train(ddp, rank, WORLD)
        torch.save({"state": model.state_dict(), "losses": losses}, f"{directory}/rank{rank}.pt")
        torch.distributed.barrier()  # leave together: gloo's connections close in order
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_process_ddp_equals_one_process_on_the_concatenated_batches(tmp_path):
    torch.multiprocessing.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    single = symcnn.torch.from_spec("digits", dtype="float64", seed=5)
    single_losses = _train(single, 0, 1)
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD)]
    for name, expected in single.state_dict().items():
        for result in results:  # every replica holds the same parameters, the single process's
            torch.testing.assert_close(result["state"][name], expected, **TOLERANCE)
    assert results[0]["state"]["conv1.weight"].ne(symcnn.torch.from_spec("digits", dtype="float64", seed=5)
                                                    .state_dict()["conv1.weight"]).any()  # it did train
    for step in range(STEPS):  # each half-batch loss differs; their mean is the whole batch's loss
        mean = sum(result["losses"][step] for result in results) / WORLD
        assert mean == pytest.approx(single_losses[step], rel=1e-10)



# --- symcnn train --distributed ----------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
#: A dropout between the convolution and the dense layer, so that the processes' masks are checked too.
DROPOUT_SPEC = {"name": "ddp-dropout", "input": [1, 8, 8], "layers": [
    {"type": "conv2d", "name": "conv1", "out_channels": 4, "kernel": 3, "padding": 1}, {"type": "relu"},
    {"type": "dropout", "p": 0.3}, {"type": "flatten"}, {"type": "dense", "name": "fc1", "out_features": 10}]}
#: float64, batches of 9 over 50 training images: shares of 4 and 5 rows, a last batch of 5.
OPTIONS = ["--data", "small.npz", "--batch", "9", "--dtype", "float64", "--seed", "3", "--no-progress",
           "--optimizer", "adam", "--label-smoothing", "0.1"]


def _symcnn(arguments: list, directory: Path, processes: int = 1) -> str:
    """``symcnn train ...`` in one process, or under torchrun in ``processes`` (loopback, a free port)."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
                 "-m", "symcnn"] if processes > 1 else [sys.executable, "-m", "symcnn"])
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(launcher + arguments, cwd=directory, capture_output=True, text=True, env=environment,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def test_symcnn_train_distributed_equals_one_process_and_resumes(tmp_path):
    """Two processes of ``symcnn train --distributed`` (the module under DDP) for one epoch, then resumed from
    rank 0's checkpoint for a second, equal one process of plain ``symcnn train`` (the Network) for two:
    parameters, Adam's moments, the dropout generator's step and the history."""
    (tmp_path / "spec.toml").write_text(toml_of(DROPOUT_SPEC), encoding="utf-8")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "small.npz", x=rng.standard_normal((60, 1, 8, 8)), y=np.arange(60) % 10)
    _symcnn(["train", "spec.toml", "--epochs", "2", "--checkpoint", "single.npz", *OPTIONS], tmp_path)
    first = _symcnn(["train", "spec.toml", "--epochs", "1", "--checkpoint", "half.npz", "--distributed", *OPTIONS],
                    tmp_path, processes=2)
    assert first.count("data-parallel in 2 processes") == 1  # rank 0 alone prints
    _symcnn(["train", "spec.toml", "--epochs", "2", "--resume", "half.npz", "--checkpoint", "ddp.npz",
             "--distributed", *OPTIONS], tmp_path, processes=2)
    with np.load(tmp_path / "single.npz") as single, np.load(tmp_path / "ddp.npz") as ddp:
        assert sorted(single.files) == sorted(ddp.files)
        compared = [name for name in single.files if name.startswith(("param/", "exp_avg"))]
        assert len(compared) == 12
        for name in compared:
            np.testing.assert_allclose(ddp[name], single[name], rtol=1e-10, atol=1e-13, err_msg=name)
        metadata = [json.loads(archive["metadata"].tobytes()) for archive in (single, ddp)]
    assert metadata[1]["masks"] == metadata[0]["masks"] == {"seed": 3, "step": 12}  # 6 batches an epoch
    for ours, theirs in zip(metadata[1]["history"], metadata[0]["history"]):
        for key in ("train_loss", "test_loss", "test_accuracy"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-10)


# Long runs (numba compiling several specs, or several processes): `pytest -m slow` (pyproject.toml).
pytestmark = pytest.mark.slow
