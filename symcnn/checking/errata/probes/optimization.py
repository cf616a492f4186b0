"""Document 003's optimization claims, checked against symcnn's optimizers
(:mod:`symcnn.training.optimizers`) and learning-rate schedules (:mod:`symcnn.train_config`), over short
runs at drawn numbers.

- **SGD with momentum** and **Adam**: a claim is one update, from the state before a step to the state
  after it. At each step of a run the claim is given the state symcnn holds before the step (``theta``,
  ``v_prev``, ``m_prev``, the step number ``t``) and a drawn gradient ``dL/dtheta``, and its lines are
  compared with symcnn's state after the step (``v``, ``m``, ``theta_next``): every step of the run agrees
  if and only if the claim's whole run does. SGD runs :func:`~symcnn.training.optimizers.sgd_momentum_update`
  in exact rational arithmetic, and the :class:`~symcnn.training.optimizers.SGD` optimizer in float64, as a
  training run does; Adam takes square roots, so the :class:`~symcnn.training.optimizers.Adam` optimizer
  (which calls :func:`~symcnn.training.optimizers.adam_update` and counts ``t``) runs in float64 only.
- **step decay** and **cosine annealing**: the rate at each step against
  :func:`~symcnn.train_config.step_decay` (exact) and :func:`~symcnn.train_config.cosine_annealing`, and
  against :meth:`~symcnn.train_config.TrainConfig.learning_rate` as a training run reads it.

Weight decay is 0 throughout (the document has none; symcnn's adds ``λθ`` to ``∇L``, the gradient of an L2
penalty in the loss), and SGD is not Nesterov's. A value computed in float64 agrees within
:data:`RELATIVE` of its size (rounding); one computed exactly, exactly.

Example:
    >>> case = next(iter(SGD_MOMENTUM.cases({})))
    >>> case.label
    'step 1 of sgd_momentum_update on 1 parameter, mu = 9/10, eta = 1/10, in exact arithmetic'
    >>> given, derived = SGD_MOMENTUM.evidence(case, {})[:2]
    >>> given["theta"].tolist(), given["dL/dtheta"].tolist(), derived["v"].tolist(), derived["theta_next"].tolist()
    ([-4], [2], [2], [-21/5])
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import Any, Mapping, NamedTuple

import numpy as np
import sympy
from sympy import Array

from symcnn.checking.errata.probes.core import Case, Evidence, Probe, rationals
from symcnn.train_config import TrainConfig, cosine_annealing, step_decay
from symcnn.training.optimizers import SGD, Adam, sgd_momentum_update

__all__ = ["SGD_MOMENTUM", "ADAM", "STEP_DECAY", "COSINE_ANNEALING", "RELATIVE"]

#: How closely a value symcnn computes in float64 must agree with the claim's exact value, relative to
#: the largest of the values compared (at least 1): rounding, many orders of magnitude below any term.
RELATIVE = 1e-12
_FLOAT64 = "computed in float64"
_STEPS = 4


def _exact(value) -> sympy.Rational:
    """A float (or a NumPy float) as the exact number it is, or a decimal setting as written (``"0.9"``)."""
    return sympy.Rational(str(value)) if isinstance(value, str) else sympy.Rational(Fraction(float(value)))


def _tolerance(values) -> float:
    """The agreement allowed with ``values`` (an array or a number) computed in float64."""
    return RELATIVE * max([1.0, *(abs(float(value)) for value in np.ravel(values))])


def _array(values) -> Array:
    """Numbers (floats among them) as an exact array."""
    return Array([_exact(value) if isinstance(value, (float, np.floating)) else value for value in values])


class _Run(NamedTuple):
    """A run of an optimizer: its label, number of parameters, hyperparameters (as the claim reads them,
    exact) and whether symcnn's optimizer class runs it in float64 (else its update function, exactly)."""

    label: str
    parameters: int
    settings: Mapping[str, str]
    float64: bool


class _Step(NamedTuple):
    """One step of a run: the state before it and the gradient (``given``), the state after it (``derived``)."""

    given: dict[str, Any]
    derived: dict[str, Any]


def _steps_cases(runs: tuple[_Run, ...]) -> list[Case]:
    cases = []
    for index, run in enumerate(runs):
        settings = ", ".join(f"{key} = {value}" for key, value in run.settings.items())
        who = f"symcnn's {run.label} optimizer" if run.float64 else run.label
        on = f"{run.parameters} parameter{'s' if run.parameters > 1 else ''}"
        arithmetic = "float64" if run.float64 else "exact arithmetic"
        cases += [Case(f"step {step} of {who} on {on}, {settings}, in {arithmetic}", {"run": index, "step": step})
                  for step in range(1, _STEPS + 1)]
    return cases


def _evidence(step: _Step, float64: bool, shape: tuple[int], intermediate: tuple[str, ...] = ()) -> Evidence:
    """The evidence of one step: the state after it exactly, or, computed in float64, within rounding;
    the claim may define the ``intermediate`` tensors too (Adam's bias-corrected moments)."""
    shapes = {name: shape for name in (*step.derived, *intermediate)}
    if not float64:
        return Evidence(step.given, step.derived, shapes)
    tolerances = {name: _tolerance(value) for name, value in step.derived.items()}
    derived = {name: _array(value) for name, value in step.derived.items()}
    return Evidence(step.given, derived, shapes, tolerances, origin=_FLOAT64)


# --- SGD with momentum ---------------------------------------------------------------------------------

_SGD_RUNS = (
    _Run("sgd_momentum_update", 1, {"mu": "9/10", "eta": "1/10"}, float64=False),
    _Run("sgd_momentum_update", 2, {"mu": "1/2", "eta": "1/4"}, float64=False),
    _Run("SGD", 3, {"mu": "0.9", "eta": "0.05"}, float64=True),  # symcnn's default momentum and learning rate
)


@functools.lru_cache(maxsize=None)
def _sgd_run(index: int) -> tuple[_Step, ...]:
    run = _SGD_RUNS[index]
    mu, eta = (_exact(run.settings[key]) for key in ("mu", "eta"))
    theta = rationals(31 + index, run.parameters)
    gradients = rationals(41 + index, run.parameters * _STEPS)
    velocity = [sympy.Integer(0)] * run.parameters  # PyTorch's first step, v = g, is mu·0 + g
    if run.float64:
        params = {"theta": np.array([float(value) for value in theta])}
        optimizer = SGD(params, momentum=float(mu), weight_decay=0.0)
    steps = []
    for step in range(_STEPS):
        gradient = gradients[step * run.parameters:(step + 1) * run.parameters]
        given = {"mu": mu, "eta": eta, "P": run.parameters, "theta": _array(theta), "v_prev": _array(velocity),
                 "dL/dtheta": Array(gradient)}
        if run.float64:
            optimizer.step(params, {"theta": np.array([float(value) for value in gradient])}, lr=float(eta))
            theta, velocity = params["theta"].copy(), optimizer.state["velocity"]["theta"].copy()
        else:
            updates = [sgd_momentum_update(p, g, v, lr=eta, momentum=mu) for p, g, v in zip(theta, gradient, velocity)]
            theta, velocity = [update.param for update in updates], [update.velocity for update in updates]
        steps.append(_Step(given, {"v": velocity, "theta_next": theta} if run.float64 else
                           {"v": Array(velocity), "theta_next": Array(theta)}))
    return tuple(steps)


def _sgd_evidence(case: Case, options) -> Evidence:
    run = _SGD_RUNS[case.values["run"]]
    return _evidence(_sgd_run(case.values["run"])[case.values["step"] - 1], run.float64, (run.parameters,))


#: One step of SGD with momentum (``v``, ``theta_next``), against symcnn's.
SGD_MOMENTUM = Probe("each step of runs of symcnn's sgd_momentum_update (exact) and SGD optimizer (float64)",
                     lambda options: _steps_cases(_SGD_RUNS), _sgd_evidence)

# --- Adam ----------------------------------------------------------------------------------------------

_ADAM_RUNS = (
    # symcnn's defaults (TrainConfig's betas and eps, Adam's learning rate), then numbers where every term shows.
    _Run("Adam", 1, {"beta1": "0.9", "beta2": "0.999", "epsilon": "1e-8", "eta": "0.01"}, float64=True),
    _Run("Adam", 2, {"beta1": "1/2", "beta2": "3/4", "epsilon": "1/10", "eta": "1/4"}, float64=True),
    _Run("Adam", 3, {"beta1": "0", "beta2": "1/2", "epsilon": "1/2", "eta": "1"}, float64=True),
)


@functools.lru_cache(maxsize=None)
def _adam_run(index: int) -> tuple[_Step, ...]:
    run = _ADAM_RUNS[index]
    beta1, beta2, epsilon, eta = (_exact(run.settings[key]) for key in ("beta1", "beta2", "epsilon", "eta"))
    params = {"theta": np.array([float(value) for value in rationals(51 + index, run.parameters)])}
    gradients = rationals(61 + index, run.parameters * _STEPS)
    optimizer = Adam(params, beta1=float(beta1), beta2=float(beta2), eps=float(epsilon), weight_decay=0.0)
    steps = []
    for step in range(_STEPS):
        gradient = gradients[step * run.parameters:(step + 1) * run.parameters]
        given = {"beta1": beta1, "beta2": beta2, "epsilon": epsilon, "eta": eta, "P": run.parameters,
                 "t": optimizer.steps + 1, "theta": _array(params["theta"]),
                 "m_prev": _array(optimizer.state["exp_avg"]["theta"]),
                 "v_prev": _array(optimizer.state["exp_avg_sq"]["theta"]), "dL/dtheta": Array(gradient)}
        optimizer.step(params, {"theta": np.array([float(value) for value in gradient])}, lr=float(eta))
        steps.append(_Step(given, {"m": optimizer.state["exp_avg"]["theta"].copy(),
                                   "v": optimizer.state["exp_avg_sq"]["theta"].copy(),
                                   "theta_next": params["theta"].copy()}))
    return tuple(steps)


def _adam_evidence(case: Case, options) -> Evidence:
    run = _ADAM_RUNS[case.values["run"]]
    return _evidence(_adam_run(case.values["run"])[case.values["step"] - 1], True, (run.parameters,),
                     intermediate=("mhat", "vhat"))


#: One step of Adam (``m``, ``v``, ``theta_next``), against symcnn's optimizer.
ADAM = Probe("each step of runs of symcnn's Adam optimizer (adam_update; float64)",
             lambda options: _steps_cases(_ADAM_RUNS), _adam_evidence)

# --- learning-rate schedules ---------------------------------------------------------------------------


class _Schedule(NamedTuple):
    """A training run's schedule: its :class:`TrainConfig` settings and steps per epoch."""

    settings: Mapping[str, Any]
    steps_per_epoch: int

    def config(self) -> TrainConfig:
        return TrainConfig(**self.settings)

    def words(self) -> str:
        config = self.config()
        warmup = f"after a warm-up of {config.warmup:g} epoch" if config.warmup else "no warm-up"
        return (f"a run of {config.epochs} epochs of {self.steps_per_epoch} steps, {warmup}, "
                f"TrainConfig.learning_rate")


_STEP_RUNS = (
    _Schedule({"epochs": 6, "lr": 0.1, "schedule": "step", "step_size": 2, "gamma": 0.5, "warmup": 0}, 2),
    _Schedule({"epochs": 5, "lr": 0.05, "schedule": "step", "step_size": 1, "gamma": 0.1, "warmup": 1}, 3),
)


def _step_decay_cases(options) -> list[Case]:
    cases = [Case(f"t = {t}, step_size = {size}, gamma = 1/2, eta_0 = 1/10: step_decay, exactly",
                  {"t": t, "step_size": size, "gamma": sympy.Rational(1, 2), "eta_0": sympy.Rational(1, 10)})
             for size in (1, 2, 3) for t in range(2 * size + 2)]
    for run in _STEP_RUNS:
        config = run.config()
        first = int(config.warmup * run.steps_per_epoch)  # the document's rate has no warm-up
        for step in range(first, config.epochs * run.steps_per_epoch):
            epoch = step // run.steps_per_epoch
            cases.append(Case(f"step {step} (epoch t = {epoch}) of {run.words()}, step_size = {config.step_size}, "
                              f"gamma = {config.gamma}, eta_0 = {config.lr}",
                              {"t": epoch, "step_size": config.step_size, "gamma": _exact(str(config.gamma)),
                               "eta_0": _exact(str(config.lr)), "run": run, "step": step}))
    return cases


def _step_decay_evidence(case: Case, options) -> Evidence:
    values = case.values
    given = {key: values[key] for key in ("t", "step_size", "gamma", "eta_0")}
    if "run" not in values:
        rate = step_decay(values["eta_0"], values["gamma"], values["step_size"], values["t"])  # exact numbers in
        return Evidence(given, {"eta_t": rate})
    rate = values["run"].config().learning_rate(values["step"], values["run"].steps_per_epoch)
    return Evidence(given, {"eta_t": _exact(rate)}, tolerances={"eta_t": _tolerance(rate)}, origin=_FLOAT64)


#: Step decay's rate, against ``step_decay`` and a training run's step schedule (t: the epoch).
STEP_DECAY = Probe("symcnn's step_decay (exact) and TrainConfig.learning_rate with the step schedule (float64)",
                   _step_decay_cases, _step_decay_evidence)

_COSINE_RUNS = (
    _Schedule({"epochs": 2, "lr": 0.1, "schedule": "cosine", "warmup": 0}, 3),
    _Schedule({"epochs": 3, "lr": 0.05, "schedule": "cosine", "warmup": 1}, 2),
)


def _cosine_cases(options) -> list[Case]:
    cases = [Case(f"t = {t}, T = {period}, eta_max = 0.1, eta_min = 0.01: cosine_annealing",
                  {"t": t, "T": period, "eta_max": _exact("0.1"), "eta_min": _exact("0.01")})
             for period in (1, 2, 3, 4) for t in range(period + 1)]
    for run in _COSINE_RUNS:
        config = run.config()
        first, total = int(config.warmup * run.steps_per_epoch), config.epochs * run.steps_per_epoch
        for step in range(first, total):  # t and T counted from the warm-up's end, as the run does
            cases.append(Case(f"step {step} (t = {step - first}, T = {total - first}) of {run.words()}, "
                              f"eta_max = {config.lr}, eta_min = 0",
                              {"t": step - first, "T": total - first, "eta_max": _exact(str(config.lr)),
                               "eta_min": sympy.Integer(0), "run": run, "step": step}))
    return cases


def _cosine_evidence(case: Case, options) -> Evidence:
    values = case.values
    given = {key: values[key] for key in ("t", "T", "eta_max", "eta_min")}
    if "run" in values:
        rate = values["run"].config().learning_rate(values["step"], values["run"].steps_per_epoch)
    else:
        rate = cosine_annealing(values["t"], values["T"], float(values["eta_max"]), float(values["eta_min"]))
    return Evidence(given, {"eta_t": _exact(rate)}, tolerances={"eta_t": _tolerance(rate)}, origin=_FLOAT64)


#: Cosine annealing's rate, against ``cosine_annealing`` and a training run's cosine schedule.
COSINE_ANNEALING = Probe("symcnn's cosine_annealing and TrainConfig.learning_rate with the cosine schedule (float64)",
                         _cosine_cases, _cosine_evidence)
