"""The optimizers' compiled parallel updates of large arrays against the NumPy path of the same formulas
(both in symcnn.training.optimizers), bit for bit, in float32 and float64."""

from __future__ import annotations

import numpy as np
import pytest

from symcnn.training.optimizers import (PARALLEL_MIN, SGD, Adam, AdamW, adam_arrays, adam_coefficients, adam_step,
                                        compiled, sgd_momentum_arrays, sgd_momentum_update, sgd_step)

SIZE = PARALLEL_MIN + 4099  # a last chunk that CHUNK does not fill


def _arrays(dtype, count: int, seed: int = 0, shape=(SIZE,)):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for _ in range(count)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum, weight_decay, nesterov", [(0.9, 0.0, False), (0.9, 1e-2, False),
                                                              (0.5, 5e-4, True), (0.0, 0.0, False)])
def test_sgd_with_momentum_equals_the_numpy_formula(dtype, momentum, weight_decay, nesterov):
    param, grad, velocity = _arrays(dtype, 3)
    expected = sgd_momentum_update(param, grad, velocity, 0.03, momentum, weight_decay, nesterov)
    sgd_momentum_arrays(param, grad, velocity, 0.03, momentum, weight_decay, nesterov)
    assert param.dtype == velocity.dtype == dtype
    np.testing.assert_array_equal(param, expected.param)
    np.testing.assert_array_equal(velocity, expected.velocity)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("settings", [{}, {"weight_decay": 1e-2}, {"beta1": 0.3, "beta2": 0.6, "eps": 1e-3},
                                      {"weight_decay": 0.3, "decoupled": True}],
                         ids=["adam", "l2", "other-lerp-branch", "adamw"])
def test_adam_equals_the_numpy_formula(dtype, settings):
    param, grad, exp_avg = _arrays(dtype, 3)
    exp_avg_sq = np.abs(_arrays(dtype, 1, seed=1)[0])
    for step in (1, 7):
        coefficients = adam_coefficients(step, 0.01, **settings)
        expected = adam_step(param, grad, exp_avg, exp_avg_sq, coefficients)
        adam_arrays(param, grad, exp_avg, exp_avg_sq, coefficients)
        for ours, theirs in zip((param, exp_avg, exp_avg_sq), expected):
            assert ours.dtype == dtype
            np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_plain_sgd_is_theta_minus_lr_times_the_gradient(dtype):
    param, grad = _arrays(dtype, 2, shape=(SIZE // 8, 8))
    expected = param - dtype(0.05) * grad
    sgd_step(param, grad, 0.05)
    np.testing.assert_array_equal(param, expected)
    small, small_grad = _arrays(dtype, 2, shape=(3, 5))  # the NumPy path: the same formula
    expected = small - dtype(0.05) * small_grad
    sgd_step(small, small_grad, 0.05)  # (small_grad consumed: scaled in place)
    np.testing.assert_array_equal(small, expected)


def test_only_large_contiguous_arrays_of_one_float_dtype_are_compiled():
    param, grad = _arrays(np.float32, 2)
    assert compiled(param, grad)
    assert not compiled(param[:100], grad[:100])  # small: NumPy's path
    assert not compiled(param, grad.astype(np.float64))
    assert not compiled(param[::2], grad[::2]) and not compiled(param, grad[:-1])
    wide = np.zeros((SIZE, 2), np.float32)
    assert not compiled(param, wide[:, 0])  # a strided view
    assert not compiled(param.astype(np.float16), grad.astype(np.float16))
    frozen = param.copy()
    frozen.flags.writeable = False
    assert not compiled(frozen, grad)


@pytest.mark.parametrize("optimizer_class, settings", [(SGD, {"momentum": 0.9, "weight_decay": 1e-3}),
                                                       (Adam, {"weight_decay": 1e-3}), (AdamW, {"weight_decay": 1e-2})])
def test_the_optimizers_update_large_and_small_arrays_as_the_formulas(optimizer_class, settings):
    """A large parameter (the compiled pass) and a small one (NumPy) move as the pure function moves them."""
    params = dict(zip(("big", "small"), (_arrays(np.float32, 1)[0], _arrays(np.float32, 1, shape=(7,))[0])))
    reference = {name: value.copy() for name, value in params.items()}
    ours, theirs = optimizer_class(params, **settings), optimizer_class(reference, **settings)
    for step in range(3):
        grads = {name: _arrays(np.float32, 1, seed=10 + step, shape=value.shape)[0] for name, value in params.items()}
        ours.step(params, grads, lr=0.02)
        for name, value in reference.items():  # by the formulas, on whole arrays
            state = [theirs.state[kind][name] for kind in theirs.state_kinds]
            if optimizer_class is SGD:
                update = sgd_momentum_update(value, grads[name], *state, 0.02, theirs.momentum, theirs.weight_decay)
            else:
                update = adam_step(value, grads[name], *state, adam_coefficients(
                    step + 1, 0.02, weight_decay=theirs.weight_decay, decoupled=theirs.decoupled))
            value[...] = update[0]
            for kind, new in zip(theirs.state_kinds, update[1:]):
                theirs.state[kind][name] = new
    for name in params:
        np.testing.assert_array_equal(params[name], reference[name], err_msg=name)
        for kind in ours.state_kinds:
            np.testing.assert_array_equal(ours.state[kind][name], theirs.state[kind][name], err_msg=f"{kind} {name}")


def test_a_network_train_step_moves_each_parameter_by_lr_times_its_gradient(monkeypatch):
    """digits' dense weight (2,560 values) takes the compiled pass (from 2^11 here), its convolution NumPy's:
    both θ − η g. (digits: the network the default run compiles anyway.)"""
    from symcnn.runtime.network import Network
    from symcnn.training import optimizers

    monkeypatch.setattr(optimizers, "PARALLEL_MIN", 1 << 11)
    net = Network.from_spec("digits", seed=2)
    rng = np.random.default_rng(4)
    x, labels = rng.standard_normal((3, *net.spec.input_shape)).astype(np.float32), np.array([1, 0, 7])
    _, grads = net.loss_and_grads(x, labels, input_gradient=False)
    expected = {name: value - np.float32(0.125) * grads[name] for name, value in net.params.items()}
    assert compiled(net.params["fc1.weight"], grads["fc1.weight"]) and not compiled(net.params["conv1.weight"],
                                                                                     grads["conv1.weight"])
    net.train_step(x, labels, lr=0.125)
    for name, value in expected.items():
        np.testing.assert_array_equal(net.params[name], value, err_msg=name)
