"""Training (symcnn train, symcnn.train): real data, exact resume, atomic checkpoints, curves, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from symcnn import Network
from symcnn.data import load_data, load_digits, resize_bilinear, stratified_split
from symcnn.train import TrainConfig, Trainer, load_checkpoint, save_checkpoint




@pytest.fixture(scope="module")
def digits_data():
    return load_digits((1, 8, 8)).standardized()


def test_digits_are_real_split_stratified_and_fixed():
    data = load_digits((1, 8, 8))
    assert len(data.x_train) + len(data.x_test) == 1797
    assert data.x_train.min() == 0 and data.x_train.max() == 1
    train_share = np.bincount(data.y_train) / len(data.y_train)
    test_share = np.bincount(data.y_test) / len(data.y_test)
    assert np.abs(train_share - test_share).max() < 0.01
    again = load_digits((1, 8, 8))
    assert np.array_equal(data.y_test, again.y_test) and np.array_equal(data.x_test, again.x_test)
    train, test = stratified_split(data.y_train)
    assert not set(train) & set(test)


def test_resizing_for_seed004_is_bilinear_and_replicated():
    data = load_digits((3, 32, 32))
    assert data.x_train.shape[1:] == (3, 32, 32)
    assert np.array_equal(data.x_train[:, 0], data.x_train[:, 2])
    torch = pytest.importorskip("torch")
    images = np.random.default_rng(0).random((2, 1, 8, 8))
    expected = torch.nn.functional.interpolate(torch.tensor(images), size=(32, 32), mode="bilinear",
                                               align_corners=False).numpy()
    np.testing.assert_allclose(resize_bilinear(images, 32, 32), expected, atol=1e-12)


def test_digits_network_reaches_97_percent(digits_data):
    """The documented default run (seed 0): >= 97% held-out accuracy (docs/training.md)."""
    trainer = Trainer(Network.from_spec("digits", seed=0), TrainConfig(epochs=15, batch=32, lr=0.05,
                                                                        weight_decay=5e-4, seed=0))
    history = trainer.fit(digits_data, progress=False)
    assert history[-1]["test_accuracy"] >= 0.97
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def _trainer(epochs=2, seed=3):
    return Trainer(Network.from_spec("digits", seed=seed), TrainConfig(epochs=epochs, batch=64, lr=0.05, seed=seed))


def test_resume_after_an_epoch_equals_an_uninterrupted_run(digits_data, tmp_path):
    uninterrupted = _trainer(epochs=3)
    uninterrupted.fit(digits_data, progress=False)
    first = _trainer(epochs=3)
    stop_after_one = tmp_path / "one.npz"

    class Stop(Exception):
        pass

    def stop(record):
        if record["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        first.fit(digits_data, progress=False, checkpoint=stop_after_one, on_epoch=stop)
    resumed = _trainer(epochs=3)
    resumed.resume(stop_after_one)
    history = resumed.fit(digits_data, progress=False)
    for name, value in uninterrupted.net.params.items():
        np.testing.assert_array_equal(resumed.net.params[name], value, err_msg=name)
    timeless = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
    assert timeless(history) == timeless(uninterrupted.state.history)


def test_ctrl_c_mid_epoch_saves_a_checkpoint_that_resumes_exactly(digits_data, tmp_path):
    uninterrupted = _trainer(epochs=2)
    uninterrupted.fit(digits_data, progress=False)
    checkpoint = tmp_path / "ctrl-c.npz"
    interrupted = _trainer(epochs=2)

    def ctrl_c(epoch, step):
        if epoch == 1 and step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(digits_data, progress=False, checkpoint=checkpoint, on_step=ctrl_c)
    metadata, *_ = load_checkpoint(checkpoint)
    assert (metadata["epoch"], metadata["step"]) == (1, 7)
    resumed = _trainer(epochs=2)
    resumed.resume(checkpoint)
    resumed.fit(digits_data, progress=False)
    for name, value in uninterrupted.net.params.items():
        np.testing.assert_array_equal(resumed.net.params[name], value, err_msg=name)


def test_a_checkpoint_of_another_spec_is_refused(digits_data, tmp_path):
    trainer = _trainer(epochs=1)
    save_checkpoint(tmp_path / "digits.npz", trainer)
    other = Trainer(Network.from_spec("seed004-text"), TrainConfig())
    with pytest.raises(ValueError, match=r"resume: .* was made for spec 'digits', not 'seed004-text'"):
        other.resume(tmp_path / "digits.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a symcnn checkpoint"):
        trainer.resume(tmp_path / "junk.npz")


def test_an_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    trainer = _trainer(epochs=1)
    path = tmp_path / "run.npz"
    save_checkpoint(path, trainer)
    before = path.read_bytes()

    def broken_savez(stream, **arrays):
        stream.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, trainer)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]


def test_cli_train_json_summary_checkpoint_and_plot(tmp_path, cli):
    pytest.importorskip("matplotlib")
    checkpoint, plot = tmp_path / "run.npz", tmp_path / "curves.png"
    status, out, err = cli("train", "digits", "--epochs", "2", "--batch", "64", "--json",
                           "--checkpoint", str(checkpoint), "--plot", str(plot), "--no-progress")
    assert status == 0, err
    summary = json.loads(out)
    assert {"test_accuracy", "epochs", "seconds", "images_per_second"} <= set(summary)
    assert summary["epochs"] == 2 and 0.5 < summary["test_accuracy"] <= 1
    assert len(summary["history"]) == 2 and "epoch   1/2" in err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    status, out, err = cli("train", "digits", "--epochs", "3", "--batch", "64", "--resume",
                           str(checkpoint), "--no-progress")
    assert status == 0 and "resumed from" in out and "epoch   3/3" in out


def test_cli_trains_on_an_npz_file(tmp_path, cli):
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 10
    images = rng.random((60, 1, 8, 8)) * 0.1
    images[np.arange(60), 0, labels % 8, labels // 8] = 1.0  # a bright pixel that names the class
    np.savez(tmp_path / "data.npz", x=images, y=labels)
    status, out, _ = cli("train", "digits", "--data", str(tmp_path / "data.npz"), "--epochs", "3",
                         "--no-progress", "--json")
    assert status == 0 and json.loads(out)["data"] == "data"


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((4, 1, 8, 9)), "y": np.zeros(4, int)}, "data: x must have shape (N, 1, 8, 8)"),
    ({"x": np.full((4, 1, 8, 8), np.nan), "y": np.zeros(4, int)}, "data: x holds NaN"),
    ({"x": np.zeros((4, 1, 8, 8)), "y": np.array([0, 1, 2, 10])}, "data: y must lie in [0, 9]"),
    ({"x": np.zeros((4, 1, 8, 8)), "y": np.zeros(4)}, "data: y must be integer labels"),
    ({"x": np.zeros((4, 1, 8, 8))}, "has no array 'y'"),
])
def test_bad_npz_data_is_refused_with_one_line(tmp_path, cli, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    status, out, err = cli("train", "digits", "--data", str(tmp_path / "bad.npz"), "--no-progress")
    assert status == 2 and out == "" and "Traceback" not in err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, option", [
    (["--epochs", "0"], "--epochs"),
    (["--batch", "x"], "--batch"),
    (["--lr", "-1"], "--lr"),
    (["--momentum", "1.5"], "--momentum"),
    (["--weight-decay", "-0.1"], "--weight-decay"),
    (["--warmup", "99"], "--warmup"),
    (["--data", "mnist"], "--data"),
    (["--resume", "/nonexistent/run.npz"], "--resume"),
    (["--plot", "curves.jpg"], "--plot"),
    (["--checkpoint", "/nonexistent/dir/run.npz"], "--checkpoint"),
])
def test_bad_options_are_one_line_and_exit_2(cli, argv, option):
    status, out, err = cli("train", "digits", "--no-progress", *argv)
    assert status == 2 and out == "" and "Traceback" not in err
    assert option in err and err.count("\n") == 1


def test_learning_rate_warms_up_then_decays_to_zero():
    config = TrainConfig(epochs=4, lr=0.1, warmup=1.0)
    rates = [config.learning_rate(step, 10) for step in range(40)]
    assert rates[0] == pytest.approx(0.01) and rates[9] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(rates[10:], rates[11:])) and rates[-1] < 0.001
    assert TrainConfig(epochs=2, lr=0.1, warmup=0, schedule="constant").learning_rate(15, 10) == 0.1


def test_a_diverging_run_stops_with_a_clear_message(cli):
    status, out, err = cli("train", "digits", "--lr", "1e6", "--warmup", "0", "--epochs", "1",
                           "--no-progress")
    assert status == 1 and "training diverged; lower --lr" in err and "Traceback" not in err


def test_load_data_names_the_problem():
    with pytest.raises(ValueError, match="data: must be 'digits' or a path to an .npz file"):
        load_data("cifar", (1, 8, 8), 10)
    with pytest.raises(ValueError, match="data: digits has 10 classes"):
        load_data("digits", (1, 8, 8), 5)
