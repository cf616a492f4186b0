"""Training a network with batch and layer normalization: the running statistics are kept in
checkpoints and restored by an exact resume; held-out data is evaluated in evaluation mode."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from symcnn.training.checkpoint import load_checkpoint
from symcnn.training.data import load_digits
from symcnn.training.trainer import TrainConfig, Trainer
from tests.kernels_helpers import network_for

SPEC = {"name": "digits-norm", "input": [1, 8, 8], "layers": [
    {"type": "conv2d", "name": "conv1", "out_channels": 4, "kernel": 3, "padding": 1},
    {"type": "batchnorm2d", "name": "bn1"},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel": 2},
    {"type": "flatten"},
    {"type": "dense", "name": "fc1", "out_features": 16},
    {"type": "layernorm", "name": "ln1"},
    {"type": "relu"},
    {"type": "dense", "name": "fc2", "out_features": 10},
]}


@pytest.fixture(scope="module")
def digits_data():
    data = load_digits((1, 8, 8)).standardized()
    return replace(data, x_train=data.x_train[:400], y_train=data.y_train[:400], x_test=data.x_test[:200],
                   y_test=data.y_test[:200])


def _trainer(directory, epochs=2, seed=3):
    return Trainer(network_for(SPEC, directory, dtype="float32", seed=seed),
                   TrainConfig(epochs=epochs, batch=32, lr=0.05, seed=seed))


def test_resume_mid_epoch_restores_the_running_statistics_exactly(digits_data, tmp_path):
    uninterrupted = _trainer(tmp_path)
    uninterrupted.fit(digits_data, progress=False)
    checkpoint = tmp_path / "ctrl-c.npz"
    interrupted = _trainer(tmp_path)

    def ctrl_c(epoch, step):
        if epoch == 1 and step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(digits_data, progress=False, checkpoint=checkpoint, on_step=ctrl_c)
    saved = load_checkpoint(checkpoint, interrupted.net)
    assert sorted(saved.buffers) == ["bn1.num_batches_tracked", "bn1.running_mean", "bn1.running_var"]
    assert int(saved.buffers["bn1.num_batches_tracked"]) == 13 + 5  # 400 images in batches of 32: 13 a epoch
    resumed = _trainer(tmp_path)
    resumed.resume(checkpoint)
    for name, value in saved.buffers.items():
        np.testing.assert_array_equal(resumed.net.buffers[name], value, err_msg=name)
    history = resumed.fit(digits_data, progress=False)
    for name, value in uninterrupted.net.params.items():
        np.testing.assert_array_equal(resumed.net.params[name], value, err_msg=name)
    for name, value in uninterrupted.net.buffers.items():
        np.testing.assert_array_equal(resumed.net.buffers[name], value, err_msg=name)
    timeless = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
    assert timeless(history) == timeless(uninterrupted.state.history)


def test_held_out_data_is_evaluated_in_evaluation_mode(digits_data, tmp_path):
    trainer = _trainer(tmp_path, epochs=1)
    trainer.fit(digits_data, progress=False)
    net = trainer.net
    assert net.training  # the mode is the network's again after the evaluation
    before = {name: value.copy() for name, value in net.buffers.items()}
    x_test = digits_data.x_test.astype(np.float32)
    loss, accuracy = trainer.evaluate(x_test, digits_data.y_test)
    for name, value in before.items():  # evaluation leaves the running statistics alone
        np.testing.assert_array_equal(net.buffers[name], value)
    logits = net.forward(x_test, training=False)
    assert accuracy == np.mean(logits.argmax(axis=1) == digits_data.y_test)
    assert trainer.state.history[0]["test_accuracy"] == accuracy
    train_mode = net.forward(x_test[:50], training=True)  # the batch's statistics: other scores
    assert not np.allclose(train_mode, logits[:50])


def test_a_checkpoint_of_another_networks_buffers_is_refused(digits_data, tmp_path):
    trainer = _trainer(tmp_path, epochs=1)
    checkpoint = tmp_path / "run.npz"
    trainer.fit(digits_data, progress=False, checkpoint=checkpoint)
    arrays = dict(np.load(checkpoint))
    del arrays["buffer/bn1.running_var"]
    damaged = tmp_path / "damaged.npz"
    np.savez(damaged, **arrays)
    with pytest.raises(ValueError, match=r"^resume: .*buffer.*missing \['bn1.running_var'\]"):
        load_checkpoint(damaged, trainer.net)


# Long runs (numba compiling several specs, or several processes): `pytest -m slow` (pyproject.toml).
pytestmark = pytest.mark.slow
