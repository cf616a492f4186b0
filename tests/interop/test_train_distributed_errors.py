"""``symcnn train --distributed`` refuses in one line, exit 2, before any work: outside torchrun (the environment
variables missing), without PyTorch, and with a batch that leaves a process no image."""

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
