"""DistributedDataParallel with gloo on the CPU: K steps of two processes on this machine (loopback only),
each on half of every batch, equal K steps of one process on the whole batches (float64)."""

from __future__ import annotations

import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import symcnn.torch  # noqa: E402

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


# Long runs (numba compiling several specs, or several processes): `pytest -m slow` (pyproject.toml).
pytestmark = pytest.mark.slow
