"""The optimizers: SGD with momentum (optionally Nesterov's), Adam and AdamW, as ``torch.optim`` computes them.

Two layers:

- pure functions of one update, :func:`sgd_momentum_update` and :func:`adam_update`, on NumPy arrays
  or floats: document 003's formulas, written in PyTorch's order of operations (so that float32
  stays close to PyTorch's), each docstring saying how the two agree. They are also compiled by numba
  (``register_jitable``) into this module's kernels, which update a large array with them element by
  element in one parallel pass instead of NumPy's chain of whole-array operations (:func:`compiled`);
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
from numba import njit, prange
from numba.extending import overload, register_jitable

__all__ = ["SGDUpdate", "AdamUpdate", "AdamCoefficients", "sgd_momentum_update", "adam_update", "adam_coefficients",
           "adam_step", "SGD", "Adam", "AdamW",
           "OPTIMIZER_CLASSES", "STATE_KINDS", "make_optimizer", "PARALLEL_MIN", "CHUNK", "compiled", "sgd_step",
           "sgd_momentum_arrays", "adam_arrays"]


class SGDUpdate(NamedTuple):
    param: object
    velocity: object


class AdamUpdate(NamedTuple):
    param: object
    exp_avg: object  # m
    exp_avg_sq: object  # v


@register_jitable
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

    The step's scalars (``1−β₁``, ``η/(1−β₁ᵗ)``, ...) are computed once, in double precision as PyTorch
    does (:func:`adam_coefficients`); then each element is updated by :func:`adam_step`.

    >>> update = adam_update(1.0, 0.5, 0.0, 0.0, step=1, lr=0.1)
    >>> round(update.param, 6), round(update.exp_avg, 12), round(update.exp_avg_sq, 12)  # (ε moves θ by 2e-9)
    (0.9, 0.05, 0.00025)
    """
    coefficients = adam_coefficients(step, lr, beta1, beta2, eps, weight_decay, decoupled)
    return adam_step(param, grad, exp_avg, exp_avg_sq, coefficients)


class AdamCoefficients(NamedTuple):
    """The scalars of one Adam step, in double precision (Python floats; an array's dtype takes them at
    each operation, as NumPy and PyTorch round a scalar that meets a tensor)."""

    l2: float  # λ added to the gradient times θ (Adam's weight decay), else 0
    decays: bool  # AdamW's decay: θ scaled by ``shrink`` first
    shrink: float  # 1 − ηλ
    weight1: float  # 1 − β₁, m's interpolation weight toward g
    complement1: float  # 1 − (1 − β₁), the weight from g's end
    from_start: bool  # torch.lerp's branch: from m's end when the weight is under 1/2
    beta2: float
    weight2: float  # 1 − β₂
    step_size: float  # η/(1 − β₁ᵗ)
    root_correction2: float  # √(1 − β₂ᵗ)
    eps: float


def adam_coefficients(step: int, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                      weight_decay: float = 0.0, decoupled: bool = False) -> AdamCoefficients:
    """The scalars of step number ``step`` of Adam (AdamW with ``decoupled``), computed as PyTorch computes them.

    >>> adam_coefficients(1, lr=0.1).step_size  # η/(1 − β₁¹)
    1.0000000000000002
    """
    weight1 = 1 - beta1
    return AdamCoefficients(
        l2=weight_decay if weight_decay and not decoupled else 0.0, decays=bool(weight_decay and decoupled),
        shrink=1 - lr * weight_decay, weight1=weight1, complement1=1 - weight1, from_start=abs(weight1) < 0.5,
        beta2=beta2, weight2=1 - beta2, step_size=lr / (1 - beta1 ** step), root_correction2=(1 - beta2 ** step) ** 0.5,
        eps=eps)


@register_jitable
def adam_step(param, grad, exp_avg, exp_avg_sq, c: AdamCoefficients) -> AdamUpdate:
    """One Adam step of each element from its scalars ``c`` (:func:`adam_update`): NumPy arrays or floats, or
    one element inside a compiled kernel (this module's :func:`adam_arrays` compiles this function).

    >>> adam_step(1.0, 0.5, 0.0, 0.0, adam_coefficients(1, lr=0.1)).exp_avg
    0.04999999999999999
    """
    if c.l2:
        grad = grad + c.l2 * param
    if c.decays:
        param = param * c.shrink
    exp_avg = _lerp(exp_avg, grad, c.weight1, c.complement1, c.from_start)
    exp_avg_sq = exp_avg_sq * c.beta2 + c.weight2 * grad * grad
    denominator = _sqrt(exp_avg_sq) / c.root_correction2 + c.eps
    return AdamUpdate(param - c.step_size * exp_avg / denominator, exp_avg, exp_avg_sq)


def _sqrt(value):
    """The square root of an array (element-wise) or of a float (a float)."""
    return np.sqrt(value) if isinstance(value, np.ndarray) else math.sqrt(value)


@overload(_sqrt)
def _sqrt_compiled(value):
    """:func:`_sqrt` of one element in a compiled kernel: in its dtype, as NumPy's ``sqrt`` of an array."""
    return lambda value: np.sqrt(value)


@register_jitable
def _lerp(start, end, weight, complement, from_start: bool):
    """``start + weight (end − start)``, as ``torch.lerp`` rounds it (from the nearer end; ``complement`` is
    ``1 − weight``, ``from_start`` whether ``weight`` is under 1/2)."""
    if from_start:
        return start + weight * (end - start)
    return end - (end - start) * complement


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
            grad, velocity = grads[name], self.state["velocity"][name]
            if compiled(parameter, grad, velocity):  # one parallel pass, the same numbers
                sgd_momentum_arrays(parameter, grad, velocity, float(lr), self.momentum, self.weight_decay,
                                    self.nesterov)
                continue
            parameter[...], self.state["velocity"][name] = sgd_momentum_update(
                parameter, grad, velocity, float(lr), self.momentum, self.weight_decay, self.nesterov)


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
        coefficients = adam_coefficients(self.steps, float(lr), self.beta1, self.beta2, self.eps, self.weight_decay,
                                         self.decoupled)
        for name, parameter in params.items():
            arrays = (parameter, grads[name], exp_avgs[name], exp_avg_sqs[name])
            if compiled(*arrays):  # one parallel pass, the same numbers
                adam_arrays(*arrays, coefficients)
                continue
            parameter[...], exp_avgs[name], exp_avg_sqs[name] = adam_step(*arrays, coefficients)


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


# --- large arrays in one parallel pass ------------------------------------------------------------------
#
# Written with NumPy, an update of a parameter is a chain of whole-array operations, each a pass over
# memory with a temporary, on one thread: SGD with momentum makes six, Adam about a dozen. On a network of
# dense layers they cost more than the gradients: measured on suite-mlp-head (380,634 parameters, batch
# 64, 2 threads), Adam's NumPy step took 2.27 ms beside 1.90 ms for the loss and every gradient, SGD with
# momentum 0.61 ms, and Network.train_step's plain SGD 0.55 ms of a 2.4 ms step. The kernels below update
# each element once, by the very functions above (compiled by numba: register_jitable), in chunks of
# CHUNK elements in parallel. The scalars are given in the array's dtype, as NumPy rounds a Python float
# that meets a float32 array, and nothing is fused into a multiply-add (no fastmath): the numbers equal
# the NumPy path's bit for bit (tests/training/test_update_kernels.py). They are in this module, so that numba's
# cache of them, keyed by this file, is renewed when a formula above changes.

#: The size from which an update runs in the compiled parallel pass (:func:`compiled`); a smaller array's
#: update keeps NumPy's path, a few microseconds either way. Measured (docs/bench/update_steps.py and a sweep of
#: this value, Network.train_step, 2 threads): suite-mlp-head's 346,112-weight dense layer compiled, its batch-1
#: step 0.73-0.75 ms against 0.91; seed004's 81,920-weight one compiled, its batch-1 step 0.33-0.34 ms against
#: 0.30-0.31 ms on NumPy in place (a parallel region's start costs more than the update of 320 KiB in cache).
PARALLEL_MIN = 1 << 17
#: Elements per parallel work item: 16 KiB of float32, contiguous.
CHUNK = 4096


def compiled(*arrays: np.ndarray) -> bool:
    """Whether ``arrays`` (a parameter, its gradient, its state) take the compiled pass: at least
    :data:`PARALLEL_MIN` elements, C-contiguous, of one float dtype and one shape, and writable."""
    first = arrays[0]
    return (isinstance(first, np.ndarray) and first.size >= PARALLEL_MIN  # the common small case: decided here
            and all(isinstance(array, np.ndarray) for array in arrays) and first.dtype in (np.float32, np.float64)
            and all(array.dtype == first.dtype and array.shape == first.shape and array.flags.c_contiguous
                    for array in arrays)
            and first.flags.writeable and all(array.flags.writeable for array in arrays[2:]))


def sgd_step(param: np.ndarray, grad: np.ndarray, lr: float) -> None:
    """Plain SGD in place, ``θ = θ − η g``: :func:`sgd_momentum_update` without momentum or weight decay (its
    velocity is the gradient, and none is kept); in one parallel pass where :func:`compiled` accepts the arrays.
    ``grad`` is consumed: afterwards it holds ``η g`` or ``g`` (the NumPy path scales it in place, no temporary).

    >>> param, grad = np.ones(PARALLEL_MIN, np.float32), np.full(PARALLEL_MIN, 0.5, np.float32)
    >>> sgd_step(param, grad, lr=0.1)
    >>> float(param[0]), float(param[-1])
    (0.949999988079071, 0.949999988079071)
    """
    lr = float(lr)  # a Python float: NumPy rounds it to a float32 array's dtype (a float64 NumPy scalar it would not)
    if compiled(param, grad):
        scalar = param.dtype.type
        _plain_sgd(param.reshape(-1), grad.reshape(-1), scalar(lr), scalar(0))
    else:  # the same numbers as sgd_momentum_update(param, grad, 0.0, lr).param, without its three temporaries
        grad *= lr
        param -= grad


def sgd_momentum_arrays(param: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float, momentum: float,
                        weight_decay: float, nesterov: bool) -> None:
    """:func:`~symcnn.training.optimizers.sgd_momentum_update` of every element, ``param`` and ``velocity``
    updated in place (arrays that :func:`compiled` accepts)."""
    scalar = param.dtype.type
    _sgd_momentum(param.reshape(-1), grad.reshape(-1), velocity.reshape(-1), scalar(lr), scalar(momentum),
                  scalar(weight_decay), bool(nesterov))


def adam_arrays(param: np.ndarray, grad: np.ndarray, exp_avg: np.ndarray, exp_avg_sq: np.ndarray,
                coefficients: AdamCoefficients) -> None:
    """:func:`~symcnn.training.optimizers.adam_step` of every element, ``param``, ``exp_avg`` and
    ``exp_avg_sq`` updated in place (arrays that :func:`compiled` accepts)."""
    scalar = param.dtype.type
    typed = AdamCoefficients(*(value if isinstance(value, bool) else scalar(value) for value in coefficients))
    _adam(param.reshape(-1), grad.reshape(-1), exp_avg.reshape(-1), exp_avg_sq.reshape(-1), typed)


@njit(parallel=True, cache=True)
def _plain_sgd(param, grad, lr, zero):
    for chunk in prange((param.size + CHUNK - 1) // CHUNK):
        for i in range(chunk * CHUNK, min(param.size, (chunk + 1) * CHUNK)):
            param[i] = sgd_momentum_update(param[i], grad[i], zero, lr, zero, zero, False).param


@njit(parallel=True, cache=True)
def _sgd_momentum(param, grad, velocity, lr, momentum, weight_decay, nesterov):
    for chunk in prange((param.size + CHUNK - 1) // CHUNK):
        for i in range(chunk * CHUNK, min(param.size, (chunk + 1) * CHUNK)):
            update = sgd_momentum_update(param[i], grad[i], velocity[i], lr, momentum, weight_decay, nesterov)
            param[i], velocity[i] = update.param, update.velocity


@njit(parallel=True, cache=True)
def _adam(param, grad, exp_avg, exp_avg_sq, coefficients):
    for chunk in prange((param.size + CHUNK - 1) // CHUNK):
        for i in range(chunk * CHUNK, min(param.size, (chunk + 1) * CHUNK)):
            update = adam_step(param[i], grad[i], exp_avg[i], exp_avg_sq[i], coefficients)
            param[i], exp_avg[i], exp_avg_sq[i] = update.param, update.exp_avg, update.exp_avg_sq
