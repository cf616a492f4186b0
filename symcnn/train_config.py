"""A training run's settings, validated, and how a spec's recommended settings fill them in.

The settings come from three places, each overriding the one before: :class:`TrainConfig`'s
defaults, the spec's ``[training]`` table (its recommended recipe, validated with the spec) and
what the caller states (``symcnn train`` options, ``Network.fit`` arguments).

Example:
    >>> TrainConfig.resolve({"lr": 0.01, "epochs": 12}, epochs=3, lr=None).lr
    0.01
    >>> TrainConfig.resolve({"lr": 0.01, "epochs": 12}, epochs=3, lr=None).epochs
    3
    >>> TrainConfig(label_smoothing=1.0)
    Traceback (most recent call last):
    ...
    ValueError: label_smoothing: must be a number in [0, 1), got 1.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Mapping

__all__ = ["TrainConfig", "SPEC_TRAINING_KEYS"]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 15
    batch: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    schedule: str = "cosine"  # "cosine": lr decays to 0 over the run, step by step; or "constant"
    warmup: float = 1.0  # epochs over which lr rises linearly from 0 (deep linear stacks need it)
    label_smoothing: float = 0.0  # targets (1 - s) * one_hot + s / classes, as torch's CrossEntropyLoss

    def __post_init__(self):
        for name in ("epochs", "batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: must be an integer >= 0, got {self.seed!r}")
        if not (_is_number(self.lr) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr: must be a positive number, got {self.lr!r}")
        if not (_is_number(self.momentum) and 0 <= self.momentum < 1):
            raise ValueError(f"momentum: must be in [0, 1), got {self.momentum!r}")
        if not (_is_number(self.weight_decay) and math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay: must be a number >= 0, got {self.weight_decay!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule: must be cosine or constant, got {self.schedule!r}")
        if not (_is_number(self.warmup) and 0 <= self.warmup <= self.epochs):
            raise ValueError(f"warmup: must be a number of epochs in [0, {self.epochs}], got {self.warmup!r}")
        if not (_is_number(self.label_smoothing) and 0 <= self.label_smoothing < 1):
            raise ValueError(f"label_smoothing: must be a number in [0, 1), got {self.label_smoothing!r}")

    @classmethod
    def resolve(cls, recommended: Mapping, **stated) -> "TrainConfig":
        """The defaults, overridden by a spec's ``recommended`` settings, overridden by the
        ``stated`` ones that are not ``None``."""
        settings = dict(recommended)
        settings.update({name: value for name, value in stated.items() if value is not None})
        return cls(**settings)

    def learning_rate(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate at a global step: a linear warm-up from 0 over ``warmup`` epochs,
        then cosine decay to 0 at the end of the run (or constant)."""
        warmup_steps = self.warmup * steps_per_epoch
        if step < warmup_steps:
            return self.lr * (step + 1) / warmup_steps
        if self.schedule == "constant":
            return self.lr
        total = self.epochs * steps_per_epoch
        progress = (step - warmup_steps) / max(total - warmup_steps, 1)
        return self.lr * 0.5 * (1 + math.cos(math.pi * progress))


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


#: What a spec's ``[training]`` table may recommend: every setting but the seed (a run's choice).
SPEC_TRAINING_KEYS = tuple(f.name for f in fields(TrainConfig) if f.name != "seed")
