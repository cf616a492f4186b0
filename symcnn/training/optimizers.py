"""The optimizers: SGD with momentum (optionally Nesterov's), Adam and AdamW, as ``torch.optim`` computes them.

Two layers:

- pure functions of one update, :func:`sgd_momentum_update` and :func:`adam_update`, on NumPy arrays
  or floats: document 003's formulas, written in PyTorch's order of operations (so that float32
  stays close to PyTorch's), each docstring saying how the two agree;
- one class per optimizer (:class:`SGD`, :class:`Adam`, :class:`AdamW`) that holds its state
  arrays by kind and parameter name (``state["velocity"]["fc1.weight"]``) and updates a network's
  parameters in place with :meth:`~SGD.step`. :func:`make_optimizer` builds the one a
  :class:`~symcnn.train_config.TrainConfig` names; checkpoints store ``state`` and ``steps``.

Hyperparameters are Python floats: NumPy then computes in the arrays' dtype (a float32 array times
0.9 stays float32), while the bias corrections are computed in double precision, as PyTorch does.

Example:
    >>> import numpy as np
    >>> params = {"w": np.array([1.0, -2.0])}
    >>> optimizer = Adam(params, weight_decay=0.0)
    >>> optimizer.step(params, {"w": np.array([0.5, 0.5])}, lr=0.1)
    >>> params["w"], optimizer.steps  # the first step moves each weight by lr against its gradient's sign
    (array([ 0.9, -2.1]), 1)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

__all__ = ["SGDUpdate", "AdamUpdate", "sgd_momentum_update", "adam_update", "SGD", "Adam", "AdamW",
           "OPTIMIZER_CLASSES", "STATE_KINDS", "make_optimizer"]


class SGDUpdate(NamedTuple):
    param: object
    velocity: object


class AdamUpdate(NamedTuple):
    param: object
    exp_avg: object  # m
    exp_avg_sq: object  # v


def sgd_momentum_update(param, grad, velocity, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                        nesterov: bool = False) -> SGDUpdate:
    """One step of SGD with momentum, as ``torch.optim.SGD`` (dampening 0) computes it:

    ``g = ∇L + λθ``, ``v = μv + g``, ``θ = θ − η v`` (Nesterov: ``θ = θ − η (g + μ v)``).

    Without weight decay (λ = 0) this is document 003's ``v_t = μv_{t−1} + ∇L``, ``θ_{t+1} = θ_t − ηv_t``.
    PyTorch's first step sets ``v = g``, which is ``μ·0 + g``: the velocity starts at zero here.

    >>> sgd_momentum_update(1.0, 0.5, 0.0, lr=0.1, momentum=0.9)
    SGDUpdate(param=0.95, velocity=0.5)
    >>> sgd_momentum_update(0.95, 0.5, 0.5, lr=0.1, momentum=0.9)  # v = 0.9 * 0.5 + 0.5
    SGDUpdate(param=0.855, velocity=0.95)
    """
    if weight_decay:
        grad = grad + weight_decay * param
    velocity = velocity * momentum + grad
    direction = grad + momentum * velocity if nesterov else velocity
    return SGDUpdate(param - lr * direction, velocity)


def adam_update(param, grad, exp_avg, exp_avg_sq, step: int, lr: float, beta1: float = 0.9, beta2: float = 0.999,
                eps: float = 1e-8, weight_decay: float = 0.0, decoupled: bool = False) -> AdamUpdate:
    """Step number ``step`` (1 for the first) of Adam, or of AdamW (``decoupled``), as ``torch.optim.Adam``
    and ``torch.optim.AdamW`` compute it. Document 003's Adam (``∇L`` written ``g``):

    ``m_t = β₁m_{t−1} + (1−β₁)g``, ``v_t = β₂v_{t−1} + (1−β₂)g²``, ``θ_{t+1} = θ_t − η m̂_t/(√v̂_t + ε)``,

    with the bias corrections it uses without defining, ``m̂_t = m_t/(1−β₁ᵗ)``, ``v̂_t = v_t/(1−β₂ᵗ)``.
    PyTorch's order of operations, followed here: ``m`` as a linear interpolation
    (``m + (1−β₁)(g − m)``, which is ``β₁m + (1−β₁)g``), and the update as
    ``θ − (η/(1−β₁ᵗ)) m / (√v/√(1−β₂ᵗ) + ε)``, which is ``θ − η m̂/(√v̂ + ε)``.

    Weight decay: Adam adds ``λθ`` to the gradient (an L2 penalty, ``torch.optim.Adam``); AdamW first
    shrinks the parameter, ``θ = θ(1 − ηλ)``, and leaves the gradient alone (``torch.optim.AdamW``).

    >>> update = adam_update(1.0, 0.5, 0.0, 0.0, step=1, lr=0.1)
    >>> round(update.param, 6), round(update.exp_avg, 12), round(update.exp_avg_sq, 12)  # (ε moves θ by 2e-9)
    (0.9, 0.05, 0.00025)
    """
    if weight_decay:
        if decoupled:
            param = param * (1 - lr * weight_decay)
        else:
            grad = grad + weight_decay * param
    exp_avg = _lerp(exp_avg, grad, 1 - beta1)
    exp_avg_sq = exp_avg_sq * beta2 + (1 - beta2) * grad * grad
    bias_correction1 = 1 - beta1 ** step
    bias_correction2 = 1 - beta2 ** step
    step_size = lr / bias_correction1
    denominator = _sqrt(exp_avg_sq) / bias_correction2 ** 0.5 + eps
    return AdamUpdate(param - step_size * exp_avg / denominator, exp_avg, exp_avg_sq)


def _sqrt(value):
    """The square root of an array (element-wise) or of a float (a float)."""
    return np.sqrt(value) if isinstance(value, np.ndarray) else math.sqrt(value)


def _lerp(start, end, weight: float):
    """``start + weight (end − start)``, as ``torch.lerp`` rounds it (from the nearer end)."""
    if abs(weight) < 0.5:
        return start + weight * (end - start)
    return end - (end - start) * (1 - weight)


# --- optimizers holding their state ------------------------------------------------------------------


class SGD:
    """SGD with momentum and weight decay, optionally Nesterov's (``torch.optim.SGD``); state: ``velocity``."""

    name = "sgd"
    state_kinds = ("velocity",)

    def __init__(self, params: dict, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        self.momentum, self.weight_decay, self.nesterov = float(momentum), float(weight_decay), bool(nesterov)
        self.state = {kind: {name: np.zeros_like(value) for name, value in params.items()}
                      for kind in self.state_kinds}
        self.steps = 0  # updates made (Adam's t; SGD keeps the count too)

    def load_state(self, state: dict, steps: int) -> None:
        """Continue from a checkpoint's ``state`` (kind -> name -> array, checked by its reader) and ``steps``."""
        self.state = {kind: {name: np.ascontiguousarray(value) for name, value in state[kind].items()}
                      for kind in self.state_kinds}
        self.steps = int(steps)

    def step(self, params: dict, grads: dict, lr: float) -> None:
        """Update every parameter of ``params`` in place from ``grads`` at learning rate ``lr``."""
        self.steps += 1
        for name, parameter in params.items():
            parameter[...], self.state["velocity"][name] = sgd_momentum_update(
                parameter, grads[name], self.state["velocity"][name], float(lr), self.momentum, self.weight_decay,
                self.nesterov)


class Adam:
    """Adam with bias correction and L2 weight decay (``torch.optim.Adam``); state: ``exp_avg`` (m) and
    ``exp_avg_sq`` (v), and the step count t."""

    name = "adam"
    state_kinds = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def __init__(self, params: dict, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 weight_decay: float = 0.0):
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        self.weight_decay = float(weight_decay)
        self.state = {kind: {name: np.zeros_like(value) for name, value in params.items()}
                      for kind in self.state_kinds}
        self.steps = 0

    load_state = SGD.load_state

    def step(self, params: dict, grads: dict, lr: float) -> None:
        """Update every parameter of ``params`` in place from ``grads`` at learning rate ``lr``."""
        self.steps += 1
        exp_avgs, exp_avg_sqs = self.state["exp_avg"], self.state["exp_avg_sq"]
        for name, parameter in params.items():
            parameter[...], exp_avgs[name], exp_avg_sqs[name] = adam_update(
                parameter, grads[name], exp_avgs[name], exp_avg_sqs[name], self.steps, float(lr), self.beta1,
                self.beta2, self.eps, self.weight_decay, self.decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay, ``θ = θ(1 − ηλ)`` before the update (``torch.optim.AdamW``)."""

    name = "adamw"
    decoupled = True


OPTIMIZER_CLASSES = {cls.name: cls for cls in (SGD, Adam, AdamW)}
#: The state arrays of each optimizer, by kind (a checkpoint's ``<kind>/<parameter name>`` arrays).
STATE_KINDS = {name: cls.state_kinds for name, cls in OPTIMIZER_CLASSES.items()}


def make_optimizer(config, params: dict):
    """The optimizer that ``config`` (a :class:`~symcnn.train_config.TrainConfig`) names, with zero state
    shaped as ``params``.

    >>> from symcnn.train_config import TrainConfig
    >>> make_optimizer(TrainConfig(optimizer="adamw"), {"w": np.zeros(3)}).state["exp_avg"]["w"]
    array([0., 0., 0.])
    """
    if config.optimizer == "sgd":
        return SGD(params, config.momentum, config.weight_decay, config.nesterov)
    return OPTIMIZER_CLASSES[config.optimizer](params, config.beta1, config.beta2, config.eps, config.weight_decay)
