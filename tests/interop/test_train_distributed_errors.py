"""``symcnn train --distributed`` refuses in one line, exit 2, before any work: outside torchrun (the environment
variables missing), without PyTorch, and with a batch that leaves a process no image. And its data-parallel network
is one the trainer takes, in one process (the torchrun runs themselves are slow tests: test_torch_distributed.py)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("torch")

from symcnn.cli.train import _check_shares  # noqa: E402
from symcnn.training.data import Dataset  # noqa: E402


def test_outside_torchrun_the_missing_variables_are_named(cli, monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RANK", "0")
    status, out, err = cli("train", "digits", "--distributed")
    assert status == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("symcnn train: error: distributed: WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set: start the "
                          "processes with torchrun, e.g. torchrun --standalone --nproc-per-node 2 -m symcnn train "
                          "SPEC --distributed")


def test_without_pytorch_it_says_how_to_install_it(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "symcnn.torch.distributed", None)  # import fails as without torch
    status, _, err = cli("train", "digits", "--distributed")
    assert status == 2 and err.count("\n") == 1
    assert "distributed: needs PyTorch: pip install torch==2.13.0 'symcnn[torch]'" in err


def test_a_batch_that_leaves_a_process_without_an_image_is_refused():
    data = Dataset("d", np.zeros((21, 1, 2, 2)), np.zeros(21, dtype=np.int64), np.zeros((2, 1, 2, 2)),
                   np.zeros(2, dtype=np.int64))
    _check_shares(data, 10, 1)
    with pytest.raises(ValueError, match=r"^batch: 2 processes need an image each of every batch, but the last batch "
                                         r"of an epoch has 1 \(21 training images in batches of 10\)"):
        _check_shares(data, 10, 2)
    with pytest.raises(ValueError, match=r"^batch: 4 processes need an image each of every batch, but the last batch "
                                         r"of an epoch has 3"):
        _check_shares(data, 3, 4)


def test_the_data_parallel_network_has_what_the_trainer_uses_and_trains(tmp_path):
    """The trainer checks its network for ``NETWORK_INTERFACE``; the data-parallel network of ``symcnn train
    --distributed`` must pass that check and train. (It lacked ``optimizer_step`` once the trainer called it, and the
    check refused it; only the slow torchrun tests saw.) One process in a group of one, float64: an epoch of Adam
    equals the same epoch of the Network from the same parameters."""
    import torch.distributed as dist

    from symcnn.runtime.network import Network
    from symcnn.spec import load_spec
    from symcnn.torch.distributed import DataParallelNetwork
    from symcnn.train_config import TrainConfig
    from symcnn.training.trainer import NETWORK_INTERFACE, Trainer

    rng = np.random.default_rng(4)
    data = Dataset("tiny", rng.standard_normal((12, 1, 8, 8)), rng.integers(0, 10, 12).astype(np.int64),
                   rng.standard_normal((4, 1, 8, 8)), rng.integers(0, 10, 4).astype(np.int64))
    config = TrainConfig(epochs=1, batch=4, seed=2, optimizer="adam", lr=0.01)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        parallel = DataParallelNetwork(load_spec("digits"), dtype="float64", seed=5)
        assert all(hasattr(parallel, name) for name in NETWORK_INTERFACE)
        initial = {name: value.copy() for name, value in parallel.params.items()}
        parallel_history = Trainer(parallel, config).fit(data, progress=False)
    finally:
        dist.destroy_process_group()
    single = Network.from_spec("digits", dtype="float64")
    single.load_params({name: value.copy() for name, value in initial.items()})
    history = Trainer(single, config).fit(data, progress=False)
    assert parallel_history[0]["train_loss"] == pytest.approx(history[0]["train_loss"], rel=1e-10)
    for name, value in single.params.items():
        assert not np.array_equal(value, initial[name]), name  # trained
        np.testing.assert_allclose(parallel.params[name], value, rtol=1e-9, atol=1e-12, err_msg=name)
