"""Optimizers and learning-rate schedules (symcnn.training.optimizers, symcnn.train_config) against
torch.optim and torch.optim.lr_scheduler step by step, and against document 003's formulas as written."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from symcnn.train_config import TrainConfig, cosine_annealing, step_decay
from symcnn.training.optimizers import SGD, Adam, AdamW, adam_update, make_optimizer, sgd_momentum_update

SHAPES = {"conv1.weight": (4, 2, 3, 3), "conv1.bias": (4,), "fc1.weight": (3, 5)}
STEPS = 12


def _run_both(torch, ours_class, torch_class, settings: dict, torch_settings: dict, dtype=np.float64):
    """``STEPS`` updates of random gradients at a varying learning rate, by ours and by torch's, from the
    same parameters: both results."""
    rng = np.random.default_rng(11)
    params = {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}
    twins = {name: torch.nn.Parameter(torch.tensor(value.copy())) for name, value in params.items()}
    ours = ours_class(params, **settings)
    theirs = torch_class(list(twins.values()), lr=0.1, **torch_settings)
    for step in range(STEPS):
        lr = 0.05 * (1 + math.sin(step))  # a rate that moves both ways, as a schedule's would
        grads = {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}
        ours.step(params, grads, lr)
        for group in theirs.param_groups:
            group["lr"] = lr
        for name, twin in twins.items():
            twin.grad = torch.tensor(grads[name])
        theirs.step()
    assert ours.steps == STEPS
    return params, {name: twin.detach().numpy() for name, twin in twins.items()}, ours, theirs


@pytest.mark.parametrize("settings", [
    {"momentum": 0.9, "weight_decay": 0.0},
    {"momentum": 0.9, "weight_decay": 1e-2},
    {"momentum": 0.5, "weight_decay": 1e-2, "nesterov": True},
    {"momentum": 0.0, "weight_decay": 5e-4},
], ids=["momentum", "weight-decay", "nesterov", "plain"])
def test_sgd_follows_torch_optim_sgd(torch, settings):
    params, expected, ours, theirs = _run_both(torch, SGD, torch.optim.SGD, settings, settings)
    for name, value in expected.items():
        np.testing.assert_allclose(params[name], value, rtol=1e-12, atol=1e-14, err_msg=name)
    if settings["momentum"]:
        for twin, name in zip(theirs.param_groups[0]["params"], SHAPES):
            np.testing.assert_allclose(ours.state["velocity"][name], theirs.state[twin]["momentum_buffer"].numpy(),
                                       rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("ours_class, settings", [
    (Adam, {}),
    (Adam, {"weight_decay": 1e-2}),
    (Adam, {"beta1": 0.3, "beta2": 0.6, "eps": 1e-3}),  # beta1 < 0.5: torch.lerp's other branch
    (AdamW, {"weight_decay": 1e-2}),
    (AdamW, {"weight_decay": 0.3, "beta1": 0.8, "beta2": 0.99}),
], ids=["adam", "adam-l2", "adam-betas", "adamw", "adamw-betas"])
def test_adam_and_adamw_follow_torch_optim(torch, ours_class, settings):
    torch_class = {Adam: torch.optim.Adam, AdamW: torch.optim.AdamW}[ours_class]
    torch_settings = {"betas": (settings.get("beta1", 0.9), settings.get("beta2", 0.999)),
                      "eps": settings.get("eps", 1e-8), "weight_decay": settings.get("weight_decay", 0.0)}
    params, expected, ours, theirs = _run_both(torch, ours_class, torch_class, settings, torch_settings)
    for name, value in expected.items():
        np.testing.assert_allclose(params[name], value, rtol=1e-12, atol=1e-14, err_msg=name)
    for twin, name in zip(theirs.param_groups[0]["params"], SHAPES):
        state = theirs.state[twin]
        assert float(state["step"]) == ours.steps
        for kind in ("exp_avg", "exp_avg_sq"):
            np.testing.assert_allclose(ours.state[kind][name], state[kind].numpy(), rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("ours_class, torch_name, settings", [
    (SGD, "SGD", {"momentum": 0.9, "weight_decay": 1e-2, "nesterov": True}),
    (Adam, "Adam", {"weight_decay": 1e-2}),
    (AdamW, "AdamW", {"weight_decay": 1e-2}),
])
def test_float32_stays_close_to_torch(torch, ours_class, torch_name, settings):
    """In float32 the parameters stay within a few units in the last place of PyTorch's (which fuses
    some multiply-adds): the same operations in the same order, and the same float32 rounding."""
    torch_settings = dict(settings) if ours_class is SGD else {"weight_decay": settings["weight_decay"]}
    params, expected, _, _ = _run_both(torch, ours_class, getattr(torch.optim, torch_name), settings,
                                       torch_settings, dtype=np.float32)
    for name, value in expected.items():
        assert params[name].dtype == np.float32
        np.testing.assert_allclose(params[name], value, rtol=2e-6, atol=2e-6, err_msg=name)


# --- the single updates, against document 003's formulas as it writes them ----------------------------


def test_sgd_momentum_update_is_document_003s():
    """v_t = μv_{t-1} + ∇L, θ_{t+1} = θ_t - ηv_t (document 003), written out, over several steps."""
    rng = np.random.default_rng(3)
    theta, velocity, mu, eta = rng.standard_normal(6), np.zeros(6), 0.9, 0.1
    expected_theta, expected_velocity = theta.copy(), velocity.copy()
    for _ in range(5):
        gradient = rng.standard_normal(6)
        theta, velocity = sgd_momentum_update(theta, gradient, velocity, lr=eta, momentum=mu)
        expected_velocity = mu * expected_velocity + gradient
        expected_theta = expected_theta - eta * expected_velocity
    np.testing.assert_allclose(velocity, expected_velocity, rtol=1e-14)
    np.testing.assert_allclose(theta, expected_theta, rtol=1e-14)


def test_adam_update_is_document_003s_with_bias_correction():
    """m_t = β1 m + (1-β1)∇L, v_t = β2 v + (1-β2)(∇L)², θ = θ - η m̂/(√v̂ + ε), m̂ = m/(1-β1^t), v̂ = v/(1-β2^t)."""
    rng = np.random.default_rng(5)
    beta1, beta2, eps, eta = 0.9, 0.999, 1e-8, 0.01
    theta = rng.standard_normal(6)
    m, v = np.zeros(6), np.zeros(6)
    expected = (theta.copy(), m.copy(), v.copy())
    for t in range(1, 6):
        gradient = rng.standard_normal(6)
        theta, m, v = adam_update(theta, gradient, m, v, step=t, lr=eta, beta1=beta1, beta2=beta2, eps=eps)
        expected_theta, expected_m, expected_v = expected
        expected_m = beta1 * expected_m + (1 - beta1) * gradient
        expected_v = beta2 * expected_v + (1 - beta2) * gradient**2
        m_hat, v_hat = expected_m / (1 - beta1**t), expected_v / (1 - beta2**t)
        expected = (expected_theta - eta * m_hat / (np.sqrt(v_hat) + eps), expected_m, expected_v)
    for ours, theirs in zip((theta, m, v), expected):
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_the_updates_take_floats_and_adamw_decays_before_it_steps():
    decayed = adam_update(2.0, 0.0, 0.0, 0.0, step=1, lr=0.1, weight_decay=0.5, decoupled=True)
    assert decayed.param == 2.0 * (1 - 0.1 * 0.5) and isinstance(decayed.param, float)  # a zero gradient: no step
    l2 = adam_update(2.0, 0.0, 0.0, 0.0, step=1, lr=0.1, weight_decay=0.5)
    assert l2.param == pytest.approx(2.0 - 0.1, rel=1e-6)  # the penalty is the gradient, normalized: one lr
    nesterov = sgd_momentum_update(1.0, 1.0, 1.0, lr=0.1, momentum=0.5, nesterov=True)
    assert nesterov == (1.0 - 0.1 * (1.0 + 0.5 * 1.5), 1.5)


def test_make_optimizer_builds_the_configured_one():
    params = {"w": np.ones(3, np.float32)}
    sgd = make_optimizer(TrainConfig(momentum=0.5, nesterov=True, weight_decay=0.0), params)
    assert isinstance(sgd, SGD) and (sgd.momentum, sgd.nesterov) == (0.5, True)
    adamw = make_optimizer(TrainConfig(optimizer="adamw", beta1=0.8, eps=1e-6), params)
    assert type(adamw) is AdamW and (adamw.beta1, adamw.beta2, adamw.eps) == (0.8, 0.999, 1e-6)
    assert adamw.state["exp_avg_sq"]["w"].dtype == np.float32 and adamw.state["exp_avg"]["w"] is not params["w"]


# --- schedules --------------------------------------------------------------------------------------


def _torch_rates(torch, make_scheduler, steps: int, lr: float) -> list[float]:
    """The learning rate of each step under a torch scheduler stepped after every batch."""
    parameter = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    optimizer = torch.optim.SGD([parameter], lr=lr)
    with warnings.catch_warnings():  # SequentialLR's deprecation notices about its own step(epoch) call
        warnings.simplefilter("ignore")
        scheduler = make_scheduler(optimizer)
        rates = []
        for _ in range(steps):
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
    return rates


BATCHES = 7  # batches per epoch


@pytest.mark.parametrize("settings, build", [
    ({"schedule": "cosine", "warmup": 0},
     lambda s, o, total, w: s.CosineAnnealingLR(o, T_max=total, eta_min=0)),
    ({"schedule": "cosine", "warmup": 2},
     lambda s, o, total, w: s.SequentialLR(o, [s.LinearLR(o, 1 / w, 1.0, total_iters=w - 1),
                                               s.CosineAnnealingLR(o, T_max=total - w, eta_min=0)], milestones=[w])),
    ({"schedule": "step", "step_size": 2, "gamma": 0.3, "warmup": 0},
     lambda s, o, total, w: s.StepLR(o, step_size=2 * BATCHES, gamma=0.3)),
    ({"schedule": "step", "step_size": 2, "gamma": 0.5, "warmup": 1},
     lambda s, o, total, w: s.ChainedScheduler([s.LinearLR(o, 1 / w, 1.0, total_iters=w - 1),
                                                s.StepLR(o, step_size=2 * BATCHES, gamma=0.5)])),
    ({"schedule": "step", "step_size": 1, "gamma": 0.5, "warmup": 3},  # decays during the warm-up: a product
     lambda s, o, total, w: s.ChainedScheduler([s.LinearLR(o, 1 / w, 1.0, total_iters=w - 1),
                                                s.StepLR(o, step_size=BATCHES, gamma=0.5)])),
    ({"schedule": "constant", "warmup": 1},
     lambda s, o, total, w: s.LinearLR(o, 1 / w, 1.0, total_iters=w - 1)),
], ids=["cosine", "cosine-warmup", "step", "step-warmup", "step-within-warmup", "constant-warmup"])
def test_schedules_follow_torch_lr_schedulers(torch, settings, build):
    from torch.optim import lr_scheduler

    config = TrainConfig(epochs=8, lr=0.1, **settings)
    total, warmup_steps = config.epochs * BATCHES, int(config.warmup * BATCHES)
    expected = _torch_rates(torch, lambda o: build(lr_scheduler, o, total, warmup_steps), total, config.lr)
    rates = [config.learning_rate(step, BATCHES) for step in range(total)]
    np.testing.assert_allclose(rates, expected, rtol=1e-12, atol=1e-17)


def test_the_schedules_are_document_003s_formulas():
    """η_t = η_0 × γ^⌊t/step_size⌋ and η_t = η_min + (η_max - η_min)(1 + cos(πt/T))/2, as written."""
    for epoch in range(12):
        assert step_decay(0.1, 0.5, 3, epoch) == 0.1 * 0.5 ** math.floor(epoch / 3)
    for t in range(11):
        expected = 0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * t / 10)) / 2
        assert cosine_annealing(t, 10, 0.1, 0.001) == pytest.approx(expected, rel=1e-15)
    config = TrainConfig(epochs=4, lr=0.1, warmup=0, schedule="step", step_size=2, gamma=0.1)
    assert [config.learning_rate(step, 5) for step in (0, 9, 10, 19)] == [0.1, 0.1, 0.1 * 0.1, 0.1 * 0.1]


# --- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("settings, message", [
    ({"optimizer": "rmsprop"}, "optimizer: must be sgd, adam or adamw, got 'rmsprop'"),
    ({"optimizer": "adam", "beta1": 1.0}, "beta1: must be a number in [0, 1), got 1.0"),
    ({"optimizer": "adam", "beta2": -0.1}, "beta2: must be a number in [0, 1), got -0.1"),
    ({"optimizer": "adamw", "beta1": "0.9"}, "beta1: must be a number in [0, 1), got '0.9'"),
    ({"optimizer": "adam", "eps": 0}, "eps: must be a positive number, got 0"),
    ({"optimizer": "adam", "eps": float("inf")}, "eps: must be a positive number"),
    ({"schedule": "step", "step_size": 2, "gamma": 0}, "gamma: must be a positive number, got 0"),
    ({"schedule": "step", "step_size": 0}, "step_size: must be an integer >= 1 (epochs), got 0"),
    ({"schedule": "step", "step_size": 1.5}, "step_size: must be an integer >= 1"),
    ({"schedule": "step"}, "step_size: the step schedule needs it"),
    ({"schedule": "exponential"}, "schedule: must be cosine, constant or step, got 'exponential'"),
    ({"nesterov": True, "momentum": 0}, "nesterov: needs a momentum > 0, got momentum 0"),
    ({"nesterov": 1}, "nesterov: must be true or false, got 1"),
    ({"optimizer": "adam", "nesterov": True}, "nesterov: is a setting of sgd, not of the optimizer adam"),
    ({"optimizer": "adam", "momentum": 0.5}, "momentum: is a setting of sgd, not of the optimizer adam"),
    ({"beta2": 0.99}, "beta2: is a setting of adam and adamw, not of the optimizer sgd"),
    ({"gamma": 0.5}, "gamma: is a setting of the step schedule, not of cosine"),
    ({"schedule": "constant", "step_size": 3}, "step_size: is a setting of the step schedule, not of constant"),
    ({"optimizer": "adam", "lr": 0}, "lr: must be a positive number, got 0"),
])
def test_bad_settings_are_one_line_naming_the_setting(settings, message):
    with pytest.raises(ValueError) as error:
        TrainConfig.resolve({}, **settings)
    assert str(error.value) == message or str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_a_recommendation_for_another_optimizer_or_schedule_is_dropped():
    recommended = {"optimizer": "sgd", "momentum": 0.95, "nesterov": True, "schedule": "step", "step_size": 4,
                   "gamma": 0.2}
    config = TrainConfig.resolve(recommended, optimizer="adam", schedule="cosine")
    assert (config.optimizer, config.schedule, config.nesterov, config.step_size) == ("adam", "cosine", False, None)
    assert config.lr == 0.01 and not config.reads("momentum") and config.reads("beta1")
    kept = TrainConfig.resolve(recommended, lr=0.01)
    assert (kept.momentum, kept.nesterov, kept.step_size, kept.gamma) == (0.95, True, 4, 0.2)


def test_defaults_are_unchanged_and_each_optimizer_has_its_learning_rate():
    config = TrainConfig()
    assert (config.optimizer, config.lr, config.momentum, config.nesterov, config.schedule) == \
        ("sgd", 0.05, 0.9, False, "cosine")
    assert (TrainConfig(optimizer="adam").lr, TrainConfig(optimizer="adamw", lr=0.003).lr) == (0.01, 0.003)
