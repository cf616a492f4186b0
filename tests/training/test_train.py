"""Training (symcnn train, symcnn.training.trainer): real data, exact resume, atomic checkpoints, curves, errors."""

from __future__ import annotations

import json
import stat

import numpy as np
import pytest

from symcnn import Network
from symcnn.training.data import load_data, load_digits, resize_bilinear, stratified_split
from symcnn.training.trainer import TrainConfig, Trainer, load_checkpoint, save_checkpoint




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


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adam_trains_the_digits_network(digits_data, optimizer):
    """A short run with Adam's (AdamW's) default learning rate learns: 4 epochs reach 94.99% (seed 0)."""
    trainer = Trainer(Network.from_spec("digits", seed=0), TrainConfig(epochs=4, seed=0, optimizer=optimizer))
    history = trainer.fit(digits_data, progress=False)
    assert history[-1]["test_accuracy"] >= 0.93 and history[-1]["train_loss"] < history[0]["train_loss"] / 2
    assert trainer.optimizer.name == optimizer and trainer.optimizer.steps == 4 * 45  # 1,438 images, batch 32


def _trainer(epochs=2, seed=3, **settings):
    settings.setdefault("lr", 0.05)
    return Trainer(Network.from_spec("digits", seed=seed), TrainConfig(epochs=epochs, batch=64, seed=seed, **settings))


#: The optimizers (and schedules) whose runs must resume exactly: their whole state is in the checkpoint.
RESUMED_RECIPES = {
    "sgd": {},
    "sgd-nesterov-step": {"nesterov": True, "schedule": "step", "step_size": 1, "gamma": 0.5},
    "adam": {"optimizer": "adam", "lr": 0.01},
    "adamw": {"optimizer": "adamw", "lr": 0.01, "weight_decay": 0.05},
}


def _assert_same_state(resumed: Trainer, uninterrupted: Trainer) -> None:
    for name, value in uninterrupted.net.params.items():
        np.testing.assert_array_equal(resumed.net.params[name], value, err_msg=name)
    assert resumed.optimizer.steps == uninterrupted.optimizer.steps
    for kind, arrays in uninterrupted.optimizer.state.items():
        for name, value in arrays.items():
            np.testing.assert_array_equal(resumed.optimizer.state[kind][name], value, err_msg=f"{kind}/{name}")


@pytest.mark.parametrize("recipe", RESUMED_RECIPES)
def test_resume_after_an_epoch_equals_an_uninterrupted_run(digits_data, tmp_path, recipe):
    settings = RESUMED_RECIPES[recipe]
    uninterrupted = _trainer(epochs=3, **settings)
    uninterrupted.fit(digits_data, progress=False)
    first = _trainer(epochs=3, **settings)
    stop_after_one = tmp_path / "one.npz"

    class Stop(Exception):
        pass

    def stop(record):
        if record["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        first.fit(digits_data, progress=False, checkpoint=stop_after_one, on_epoch=stop)
    resumed = _trainer(epochs=3, **settings)
    resumed.resume(stop_after_one)
    history = resumed.fit(digits_data, progress=False)
    _assert_same_state(resumed, uninterrupted)
    timeless = lambda records: [{k: v for k, v in r.items() if k != "seconds"} for r in records]  # noqa: E731
    assert timeless(history) == timeless(uninterrupted.state.history)


@pytest.mark.parametrize("recipe", RESUMED_RECIPES)
def test_ctrl_c_mid_epoch_saves_a_checkpoint_that_resumes_exactly(digits_data, tmp_path, recipe):
    settings = RESUMED_RECIPES[recipe]
    uninterrupted = _trainer(epochs=2, **settings)
    uninterrupted.fit(digits_data, progress=False)
    checkpoint = tmp_path / "ctrl-c.npz"
    interrupted = _trainer(epochs=2, **settings)

    def ctrl_c(epoch, step):
        if epoch == 1 and step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(digits_data, progress=False, checkpoint=checkpoint, on_step=ctrl_c)
    metadata, *_ = load_checkpoint(checkpoint)
    assert (metadata["epoch"], metadata["step"], metadata["optimizer_step"]) == (1, 7, 23 + 7)  # 23 batches an epoch
    resumed = _trainer(epochs=2, **settings)
    resumed.resume(checkpoint)
    resumed.fit(digits_data, progress=False)
    _assert_same_state(resumed, uninterrupted)


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


def test_checkpoints_and_plots_get_the_umasks_mode(tmp_path, umask):
    umask(0o027)
    path = tmp_path / "runs" / "run.npz"
    save_checkpoint(path, _trainer(epochs=1))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and stat.S_IMODE(path.parent.stat().st_mode) == 0o750
    path.chmod(0o600)
    save_checkpoint(path, _trainer(epochs=1))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # an existing file keeps its mode
    pytest.importorskip("matplotlib")
    from symcnn.cli.train import plot_history

    history = [{"epoch": epoch, "train_loss": 1.0 / epoch, "test_loss": 1.0, "test_accuracy": 0.5} for epoch in (1, 2)]
    plot_history(history, tmp_path / "curves.png", "digits")
    assert stat.S_IMODE((tmp_path / "curves.png").stat().st_mode) == 0o640
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["curves.png", "runs"]


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
    ({"x": np.zeros((4, 1, 8, 9)), "y": np.zeros(4, int)}, "data: bad.npz: x must have shape (N, 1, 8, 8)"),
    ({"x": np.full((4, 1, 8, 8), np.nan), "y": np.zeros(4, int)}, "data: bad.npz: x holds NaN"),
    ({"x": np.zeros((4, 1, 8, 8)), "y": np.array([0, 1, 2, 10])}, "data: bad.npz: y must lie in [0, 9]"),
    ({"x": np.zeros((4, 1, 8, 8)), "y": np.zeros(4)}, "data: bad.npz: y must be integer labels"),
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


def test_cli_trains_with_adam_and_refuses_to_resume_with_another_optimizer(tmp_path, cli):
    checkpoint = tmp_path / "adam.npz"
    status, out, err = cli("train", "digits", "--optimizer", "adam", "--beta2", "0.99", "--epochs", "2",
                           "--schedule", "step", "--step-size", "1", "--gamma", "0.5", "--json", "--no-progress",
                           "--checkpoint", str(checkpoint))
    assert status == 0, err
    summary = json.loads(out)
    config = summary["config"]
    assert (config["optimizer"], config["lr"], config["beta1"], config["beta2"]) == ("adam", 0.01, 0.9, 0.99)
    assert (config["schedule"], config["step_size"], config["gamma"]) == ("step", 1, 0.5)
    assert summary["test_accuracy"] > 0.8
    assert ("lr 0.01 (1-epoch warm-up, step decay x0.5 every 1 epoch), adam (betas 0.9, 0.99, eps 1e-08), "
            "weight decay 0.0005 (L2)") in err
    status, out, err = cli("train", "digits", "--epochs", "3", "--resume", str(checkpoint), "--no-progress")
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "--resume: " in err and "was trained with the optimizer adam, this run uses sgd" in err


@pytest.mark.parametrize("argv, message", [
    (["--optimizer", "adma"], "--optimizer: invalid choice: 'adma'; did you mean 'adam'?"),
    (["--optimizer", "adam", "--beta1", "1"], "--beta1: must be a number in [0, 1), got 1.0"),
    (["--optimizer", "adamw", "--beta2", "-0.5"], "--beta2: must be a number in [0, 1), got -0.5"),
    (["--optimizer", "adam", "--eps", "0"], "--eps: must be a positive number, got 0.0"),
    (["--schedule", "step", "--step-size", "2", "--gamma", "0"], "--gamma: must be a positive number, got 0.0"),
    (["--schedule", "step", "--step-size", "0"], "--step-size: must be an integer >= 1 (epochs), got 0"),
    (["--schedule", "step"], "--step-size: the step schedule needs it"),
    (["--step-size", "3"], "--step-size: is a setting of the step schedule, not of cosine"),
    (["--nesterov", "--momentum", "0"], "--nesterov: needs a momentum > 0, got momentum 0"),
    (["--optimizer", "adam", "--momentum", "0.5"], "--momentum: is a setting of sgd, not of the optimizer adam"),
    (["--optimizer", "adam", "--nesterov"], "--nesterov: is a setting of sgd, not of the optimizer adam"),
    (["--beta1", "0.8"], "--beta1: is a setting of adam and adamw, not of the optimizer sgd"),
])
def test_bad_optimizer_options_are_one_line_and_exit_2(cli, argv, message):
    status, out, err = cli("train", "digits", "--no-progress", *argv)
    assert status == 2 and out == "" and "Traceback" not in err
    assert message in err and err.count("\n") == 1


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


# --- label smoothing and the spec's recommended settings ------------------------------------------


def _torch_loss_and_grads(net, x, labels, label_smoothing):
    """The same network in PyTorch (symcnn.bench.bench.torch_model) with nn.CrossEntropyLoss(label_smoothing=)."""
    import torch

    from symcnn.bench.bench import torch_model

    model = torch_model(net.spec, net.params)
    loss = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)(model(torch.tensor(x)), torch.tensor(labels))
    loss.backward()
    positions = {layer.name: position for position, layer in enumerate(net.spec.layers) if layer.name}
    grads = {name: getattr(model[positions[name.rsplit(".", 1)[0]]], name.rsplit(".", 1)[1]).grad.numpy()
             for name in net.params}
    return loss.item(), grads


@pytest.mark.heavy
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.35])
def test_label_smoothing_loss_and_gradients_match_torch(torch, label_smoothing):
    net = Network.from_spec("digits", dtype="float64", seed=1)
    rng = np.random.default_rng(7)
    x, labels = rng.standard_normal((6, 1, 8, 8)), rng.integers(0, 10, 6)
    loss, grads = net.loss_and_grads(x, labels, label_smoothing=label_smoothing)
    expected_loss, expected_grads = _torch_loss_and_grads(net, x, labels, label_smoothing)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    for name, expected in expected_grads.items():
        np.testing.assert_allclose(grads[name], expected, rtol=1e-9, atol=1e-12, err_msg=name)
    if label_smoothing:
        assert loss != pytest.approx(net.loss_and_grads(x, labels)[0])  # the option acts
    with pytest.raises(ValueError, match=r"label_smoothing: must be a number in \[0, 1\)"):
        net.loss_and_grads(x, labels, label_smoothing=1.0)


def test_a_run_with_label_smoothing_follows_torch_sgd_step_by_step(torch, digits_data):
    """Two epochs of the Trainer (momentum, weight decay, warm-up, cosine, label smoothing) against
    torch.optim.SGD and nn.CrossEntropyLoss(label_smoothing=) fed the same batches and rates."""
    from dataclasses import replace

    from symcnn.bench.bench import torch_model

    data = replace(digits_data, x_train=digits_data.x_train[:80], y_train=digits_data.y_train[:80])
    config = TrainConfig(epochs=2, batch=16, lr=0.05, weight_decay=1e-3, seed=4, label_smoothing=0.1)
    trainer = Trainer(Network.from_spec("digits", dtype="float64", seed=4), config)
    model = torch_model(trainer.net.spec, {name: value.copy() for name, value in trainer.net.params.items()})
    trainer.fit(data, progress=False)

    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    rng, step = np.random.default_rng(config.seed), 0
    for _ in range(config.epochs):
        order = rng.permutation(80)
        for start in range(0, 80, config.batch):
            index = order[start:start + config.batch]
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate(step, 5)
            optimizer.zero_grad()
            criterion(model(torch.tensor(data.x_train[index], dtype=torch.float64)),
                      torch.tensor(data.y_train[index])).backward()
            optimizer.step()
            step += 1
    positions = {layer.name: position for position, layer in enumerate(trainer.net.spec.layers) if layer.name}
    for name, value in trainer.net.params.items():
        layer_name, role = name.rsplit(".", 1)
        np.testing.assert_allclose(value, getattr(model[positions[layer_name]], role).detach().numpy(),
                                   rtol=1e-9, atol=1e-12, err_msg=name)


def test_seed004_ships_its_recommended_recipe():
    from symcnn.spec import load_spec

    training = load_spec("seed004").training
    config = TrainConfig.resolve(training)
    assert training and config.label_smoothing > 0 and config.lr < TrainConfig().lr  # see docs/training.md
    assert load_spec("digits").training == {}  # the digits run uses the defaults


@pytest.mark.parametrize("table, message", [
    ("training = 3\n", "spec 'digits': training: must be a table"),
    ("[training]\nseed = 1\n", "spec 'digits': training: seed: unknown key"),
    ("[training]\nlr = -0.1\n", "spec 'digits': training.lr: must be a positive number"),
    ("[training]\nepochs = 2.5\n", "spec 'digits': training.epochs: must be an integer >= 1"),
    ("[training]\nlabel_smoothing = 1\n", "spec 'digits': training.label_smoothing: must be a number in [0, 1)"),
    ("[training]\nwarmup = 3\nepochs = 2\n", "spec 'digits': training.warmup: must be a number of epochs in [0, 2]"),
    ("[training]\nschedule = \"linear\"\n", "spec 'digits': training.schedule: must be cosine, constant or step"),
    ("[training]\nschedule = \"step\"\n", "spec 'digits': training.step_size: the step schedule needs it"),
    ("[training]\noptimizer = \"adam\"\nmomentum = 0.9\n",
     "spec 'digits': training.momentum: is a setting of sgd, not of the optimizer adam"),
    ("[training]\noptimizer = \"adam\"\nbeta2 = 1.0\n", "spec 'digits': training.beta2: must be a number in [0, 1)"),
    ("[training]\nnesterov = true\nmomentum = 0.0\n", "spec 'digits': training.nesterov: needs a momentum > 0"),
])
def test_a_bad_training_table_is_refused_with_one_line(table, message):
    from symcnn.spec import SPEC_DIR, parse_spec

    text = (SPEC_DIR / "digits.toml").read_text()
    # A table's keys follow it to the next header: a bare key goes before the first [[layers]].
    first_layer = text.index("[[layers]]")
    text = text[:first_layer] + table + text[first_layer:] if "[" not in table else text + table
    with pytest.raises(ValueError) as error:
        parse_spec(text)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_a_training_table_recommends_an_optimizer_and_a_schedule():
    from symcnn.spec import SPEC_DIR, parse_spec

    table = '[training]\noptimizer = "adamw"\nbeta2 = 0.99\nschedule = "step"\nstep_size = 3\ngamma = 0.5\n'
    spec = parse_spec((SPEC_DIR / "digits.toml").read_text() + table)
    config = TrainConfig.resolve(spec.training, epochs=6)
    assert (config.optimizer, config.beta2, config.lr, config.step_size, config.gamma) == ("adamw", 0.99, 0.01, 3, 0.5)
    assert config.learning_rate(3 * 10, 10) == pytest.approx(0.01 * 0.5)


def test_network_fit_takes_the_optimizer_settings(digits_data):
    net = Network.from_spec("digits", seed=0)
    before = {name: value.copy() for name, value in net.params.items()}
    with pytest.raises(ValueError, match=r"^beta1: is a setting of adam and adamw, not of the optimizer sgd$"):
        net.fit(digits_data, epochs=1, beta1=0.5, progress=False)
    assert all(np.array_equal(before[name], value) for name, value in net.params.items())  # refused before a step
    history = net.fit(digits_data, epochs=2, optimizer="adamw", beta1=0.8, schedule="step", step_size=1,
                      progress=False)
    assert len(history) == 2 and history[-1]["test_accuracy"] > 0.8


def test_cli_takes_the_spec_recommendations_unless_an_option_is_given(cli, monkeypatch):
    from dataclasses import replace

    import symcnn.spec

    real = symcnn.spec.load_spec
    recommended = {"epochs": 1, "batch": 64, "lr": 0.02, "label_smoothing": 0.1}
    monkeypatch.setattr(symcnn.spec, "load_spec", lambda name: replace(real(name), training=recommended))
    status, out, err = cli("train", "digits", "--lr", "0.03", "--json", "--no-progress")
    assert status == 0, err
    config = json.loads(out)["config"]
    assert (config["epochs"], config["batch"], config["lr"], config["label_smoothing"]) == (1, 64, 0.03, 0.1)
    assert config["weight_decay"] == TrainConfig().weight_decay
    assert "label smoothing 0.1 (epochs, batch, label_smoothing from the spec's [training] table)" in err
    status, out, err = cli("train", "digits", "--label-smoothing", "1", "--no-progress")
    assert status == 2 and err.strip().endswith("--label-smoothing: must be a number in [0, 1), got 1.0")


def test_a_class_count_the_data_cannot_fill_is_refused_before_any_kernel_is_generated(tmp_path, cli, monkeypatch):
    monkeypatch.setenv("SYMCNN_CACHE_DIR", str(tmp_path / "cache"))
    spec = tmp_path / "five.toml"
    spec.write_text('name = "five"\ninput = [1, 8, 8]\n[[layers]]\ntype = "flatten"\n'
                    '[[layers]]\ntype = "dense"\nname = "fc"\nout_features = 5\n')
    status, out, err = cli("train", str(spec), "--no-progress")
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "digits has 10 classes, the spec's last layer gives 5" in err
    assert "generating kernels" not in err and not (tmp_path / "cache").exists()
