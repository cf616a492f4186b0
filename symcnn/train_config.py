"""A training run's settings, validated; its learning-rate schedule; how a spec's recommended settings fill them in.

The settings come from three places, each overriding the one before: :class:`TrainConfig`'s
defaults, the spec's ``[training]`` table (its recommended recipe, validated with the spec) and
what the caller states (``symcnn train`` options, ``Network.fit`` arguments). A setting that only
some optimizers or schedules read (``momentum``, ``beta1``, ``step_size``, ...) is refused when
stated for a run that would not read it; the spec's recommendation of one is dropped when the
caller chooses another optimizer or schedule.

The schedules are document 003's formulas (:func:`step_decay`, :func:`cosine_annealing`) after a
linear warm-up; :meth:`TrainConfig.learning_rate` says which PyTorch scheduler each one equals.

Example:
    >>> TrainConfig.resolve({"lr": 0.01, "epochs": 12}, epochs=3, lr=None).lr
    0.01
    >>> TrainConfig.resolve({"lr": 0.01, "epochs": 12}, epochs=3, lr=None).epochs
    3
    >>> TrainConfig(optimizer="adam").lr  # each optimizer's default peak learning rate
    0.01
    >>> TrainConfig(label_smoothing=1.0)
    Traceback (most recent call last):
    ...
    ValueError: label_smoothing: must be a number in [0, 1), got 1.0
    >>> TrainConfig.resolve({}, optimizer="adam", momentum=0.5)
    Traceback (most recent call last):
    ...
    ValueError: momentum: is a setting of sgd, not of the optimizer adam
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Mapping, Optional

__all__ = ["TrainConfig", "SPEC_TRAINING_KEYS", "OPTIMIZERS", "SCHEDULES", "DEFAULT_LR", "step_decay",
           "cosine_annealing"]

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "constant", "step")
#: The peak learning rate when none is given: measured on the shipped specs (docs/training.md). Adam's is
#: ten times torch.optim.Adam's default, 0.001, with which these short runs underfit (93% on the digits).
DEFAULT_LR = {"sgd": 0.05, "adam": 0.01, "adamw": 0.01}

#: The settings that only some optimizers (or schedules) read: setting -> (which, the ones that read it).
_READ_ONLY_BY = {
    "momentum": ("optimizer", ("sgd",)),
    "nesterov": ("optimizer", ("sgd",)),
    "beta1": ("optimizer", ("adam", "adamw")),
    "beta2": ("optimizer", ("adam", "adamw")),
    "eps": ("optimizer", ("adam", "adamw")),
    "step_size": ("schedule", ("step",)),
    "gamma": ("schedule", ("step",)),
}


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
    batch: int = 32
    lr: Optional[float] = None  # the peak learning rate; None: the optimizer's DEFAULT_LR
    momentum: float = 0.9  # sgd's
    weight_decay: float = 5e-4  # added to the gradient as wd * p (sgd, adam); decoupled, p *= 1 - lr * wd (adamw)
    seed: int = 0
    schedule: str = "cosine"  # "cosine": lr decays to 0 over the run, step by step; "constant"; or "step"
    warmup: float = 1.0  # epochs over which lr rises linearly from 0 (deep linear stacks need it)
    label_smoothing: float = 0.0  # targets (1 - s) * one_hot + s / classes, as torch's CrossEntropyLoss
    optimizer: str = "sgd"  # "sgd" (momentum, optionally Nesterov's), "adam" or "adamw" (symcnn.training.optimizers)
    nesterov: bool = False  # sgd's
    beta1: float = 0.9  # adam's and adamw's decay rates of the gradient's first and second moments
    beta2: float = 0.999
    eps: float = 1e-8  # adam's and adamw's, added to the denominator
    step_size: Optional[int] = None  # the step schedule's epochs between two decays (it needs one)
    gamma: float = 0.1  # the step schedule's factor at each decay

    def __post_init__(self):
        for name in ("epochs", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: must be an integer >= 0, got {self.seed!r}")
        if not (isinstance(self.optimizer, str) and self.optimizer in OPTIMIZERS):
            raise ValueError(f"optimizer: must be {', '.join(OPTIMIZERS[:-1])} or {OPTIMIZERS[-1]}, "
                             f"got {self.optimizer!r}")
        if self.lr is None:  # a frozen dataclass: its own default, filled in once
            object.__setattr__(self, "lr", DEFAULT_LR[self.optimizer])
        if not _positive(self.lr):
            raise ValueError(f"lr: must be a positive number, got {self.lr!r}")
        if not (_is_number(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum: must be in [0, 1), got {self.momentum!r}")
        if not (_is_number(self.weight_decay) and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay: must be a number >= 0, got {self.weight_decay!r}")
        if not (isinstance(self.schedule, str) and self.schedule in SCHEDULES):
            raise ValueError(f"schedule: must be {', '.join(SCHEDULES[:-1])} or {SCHEDULES[-1]}, got {self.schedule!r}")
        if not (_is_number(self.warmup) and 0 <= self.warmup <= self.epochs):
            raise ValueError(f"warmup: must be a number of epochs in [0, {self.epochs}], got {self.warmup!r}")
        if not (_is_number(self.label_smoothing) and 0 <= self.label_smoothing < 1):
            raise ValueError(f"label_smoothing: must be a number in [0, 1), got {self.label_smoothing!r}")
        self._check_optimizer_settings()
        self._check_schedule_settings()

    def _check_optimizer_settings(self) -> None:
        if not isinstance(self.nesterov, bool):
            raise ValueError(f"nesterov: must be true or false, got {self.nesterov!r}")
        if self.nesterov and self.optimizer != "sgd":
            raise ValueError(f"nesterov: is a setting of sgd, not of the optimizer {self.optimizer}")
        if self.nesterov and self.momentum == 0:  # torch.optim.SGD refuses it too: it would be plain SGD
            raise ValueError("nesterov: needs a momentum > 0, got momentum 0")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            if not (_is_number(value) and 0 <= value < 1):
                raise ValueError(f"{name}: must be a number in [0, 1), got {value!r}")
        if not _positive(self.eps):
            raise ValueError(f"eps: must be a positive number, got {self.eps!r}")

    def _check_schedule_settings(self) -> None:
        if not _positive(self.gamma):
            raise ValueError(f"gamma: must be a positive number, got {self.gamma!r}")
        if self.step_size is None:
            if self.schedule == "step":
                raise ValueError("step_size: the step schedule needs it (the epochs between two decays by gamma)")
        elif isinstance(self.step_size, bool) or not isinstance(self.step_size, int) or self.step_size < 1:
            raise ValueError(f"step_size: must be an integer >= 1 (epochs), got {self.step_size!r}")
        elif self.schedule != "step":
            raise ValueError(f"step_size: is a setting of the step schedule, not of {self.schedule}")

    @classmethod
    def resolve(cls, recommended: Mapping, **stated) -> "TrainConfig":
        """The defaults, overridden by a spec's ``recommended`` settings, overridden by the
        ``stated`` ones that are not ``None``. A stated setting that the run's optimizer or schedule
        does not read is refused; a recommended one is dropped (it was meant for another recipe)."""
        stated = {name: value for name, value in stated.items() if value is not None}
        settings = {**recommended, **stated}
        chosen = {"optimizer": settings.get("optimizer", "sgd"), "schedule": settings.get("schedule", "cosine")}
        for name in [name for name in settings if name in _READ_ONLY_BY]:
            which, readers = _READ_ONLY_BY[name]
            if chosen[which] in readers or chosen[which] not in OPTIMIZERS + SCHEDULES:  # (a bad one: refused below)
                continue
            if name in stated:
                owners = " and ".join(readers) if which == "optimizer" else f"the {readers[0]} schedule"
                of = f"the optimizer {chosen[which]}" if which == "optimizer" else chosen[which]
                raise ValueError(f"{name}: is a setting of {owners}, not of {of}")
            del settings[name]
        return cls(**settings)

    def reads(self, name: str) -> bool:
        """Whether this run reads the setting ``name`` (``beta1`` is Adam's; SGD has no use for it).

        >>> TrainConfig().reads("momentum"), TrainConfig().reads("beta1")
        (True, False)
        """
        if name not in _READ_ONLY_BY:
            return True
        which, readers = _READ_ONLY_BY[name]
        return getattr(self, which) in readers

    def learning_rate(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate at a global step: a linear warm-up from 0 over ``warmup`` epochs,
        ``lr * (step + 1) / warmup_steps``, then the schedule:

        - ``constant``: ``lr``;
        - ``cosine``: :func:`cosine_annealing` from ``lr`` to 0 over the steps after the warm-up
          (document 003's cosine annealing with η_min = 0, t counted from the warm-up's end).
          PyTorch: ``CosineAnnealingLR(T_max=steps after the warm-up, eta_min=0)`` stepped every batch,
          after ``LinearLR(1 / warmup_steps, 1, total_iters=warmup_steps - 1)`` by ``SequentialLR``;
        - ``step``: :func:`step_decay`, ``lr * gamma ** (epoch // step_size)`` with the epoch counted
          from the run's start (document 003's step decay; the rate is constant within an epoch), and
          multiplied by the warm-up's ramp while it lasts. PyTorch: ``StepLR(step_size * steps_per_epoch,
          gamma)`` stepped every batch, chained with that ``LinearLR`` by ``ChainedScheduler``.

        >>> config = TrainConfig(epochs=6, lr=0.1, warmup=1, schedule="step", step_size=2, gamma=0.5)
        >>> [round(config.learning_rate(step, 2), 6) for step in range(0, 12, 2)]
        [0.05, 0.1, 0.05, 0.05, 0.025, 0.025]
        """
        warmup_steps = self.warmup * steps_per_epoch
        rate = self.lr
        if self.schedule == "step":
            rate = step_decay(self.lr, self.gamma, self.step_size, step // steps_per_epoch)
        if step < warmup_steps:
            return rate * (step + 1) / warmup_steps
        if self.schedule == "cosine":
            total = self.epochs * steps_per_epoch
            return cosine_annealing(step - warmup_steps, max(total - warmup_steps, 1), self.lr)
        return rate


def step_decay(lr: float, gamma: float, step_size: int, epoch: int) -> float:
    """Document 003's step decay, ``η_t = η_0 × γ^⌊t/step_size⌋`` with ``t`` the epoch: the closed form
    of PyTorch's ``StepLR(step_size, gamma)`` (which multiplies by ``gamma`` at each boundary instead).

    >>> [step_decay(0.1, 0.5, 2, epoch) for epoch in range(5)]
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """
    return lr * gamma ** (epoch // step_size)


def cosine_annealing(t: float, period: float, lr_max: float, lr_min: float = 0.0) -> float:
    """Document 003's cosine annealing, ``η_t = η_min + (η_max − η_min)(1 + cos(πt/T))/2`` with
    ``T = period``: the closed form of PyTorch's ``CosineAnnealingLR(T_max=period, eta_min=lr_min)``
    (which updates the rate recursively, equal to rounding). symcnn's runs anneal to ``lr_min = 0``.

    >>> cosine_annealing(0, 10, 0.1), cosine_annealing(5, 10, 0.1), cosine_annealing(10, 10, 0.1)
    (0.1, 0.05, 0.0)
    """
    # (lr_max - 0.0) * 0.5 * (1 + cos(pi * progress)): the same floating-point operations as before
    # lr_min was a parameter, so that existing runs are unchanged bit for bit.
    return lr_min + (lr_max - lr_min) * 0.5 * (1 + math.cos(math.pi * (t / period)))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(value) -> bool:
    return _is_number(value) and math.isfinite(value) and value > 0


#: What a spec's ``[training]`` table may recommend: every setting but the seed (a run's choice).
SPEC_TRAINING_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name != "seed")
