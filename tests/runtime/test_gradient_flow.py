"""A backward pass computes the gradients of only the tensors that lead to a parameter (or to the input, when its
gradient is asked for): no input gradient of the first layer with parameters, and none through the layers before
it (symcnn.runtime.gradient_flow)."""

from __future__ import annotations

import numpy as np
import pytest

from symcnn.bench.bench import forward_flops, layer_flops, train_step_flops
from symcnn.runtime.gradient_flow import tensors_needing_gradients
from symcnn.runtime.loader import load_kernels
from symcnn.runtime.network import Network
from symcnn.spec import parse_spec, spec_toml


def _spec(name: str, input_shape: list, *layers: dict) -> str:
    """A classifier spec's TOML text: ``layers``, then the softmax cross-entropy."""
    return spec_toml({"name": name, "input": input_shape, "loss": "softmax_cross_entropy", "layers": list(layers)})


CONV = {"type": "conv2d", "name": "c1", "kernel": 3, "padding": 1}
# a pooling before the first convolution, and a flatten before a dense layer's input
POOL_FIRST = _spec("pool-first", [1, 8, 8], {"type": "maxpool2d", "kernel": 2}, CONV | {"out_channels": 4},
                   {"type": "relu"}, {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 3})
MLP = _spec("mlp-gradient-flow", [1, 4, 4], {"type": "flatten"}, {"type": "dense", "name": "fc1", "out_features": 8},
            {"type": "relu"}, {"type": "dense", "name": "fc2", "out_features": 3})
# a parameter-free branch from the input joining a convolution of it
RESIDUAL_FROM_INPUT = _spec("residual-from-input", [2, 4, 4], {"type": "relu", "name": "r0"},
                            CONV | {"out_channels": 2}, {"type": "add", "name": "sum", "inputs": ["r0", "c1"]},
                            {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 3})


def test_no_gradient_is_needed_before_the_first_parameters_unless_the_inputs_is_asked_for():
    labels = [layer.label for layer in parse_spec(POOL_FIRST).layers]
    assert labels == ["maxpool2d0", "c1", "relu2", "flatten3", "fc"]
    assert tensors_needing_gradients(parse_spec(POOL_FIRST), input_gradient=False) == {"c1", "relu2", "flatten3", "fc"}
    assert tensors_needing_gradients(parse_spec(POOL_FIRST), input_gradient=True) == {"input", *labels}
    mlp = parse_spec(MLP)
    assert tensors_needing_gradients(mlp, input_gradient=False) == {"fc1", "relu2", "fc2"}
    # a join of a parameter-free branch and a convolution needs its gradient; the branch itself does not
    residual = parse_spec(RESIDUAL_FROM_INPUT)
    assert tensors_needing_gradients(residual, input_gradient=False) == {"c1", "sum", "flatten3", "fc"}


def test_a_train_steps_count_leaves_out_every_input_gradient_no_parameter_needs():
    mlp, pool_first = parse_spec(MLP), parse_spec(POOL_FIRST)
    fc1 = layer_flops(mlp.layers[1])
    assert fc1 == 2 * 16 * 8 and train_step_flops(mlp) == 3 * forward_flops(mlp) - fc1
    c1 = layer_flops(pool_first.layers[1])
    assert c1 == 2 * 4 * 4 * 4 * 9 and train_step_flops(pool_first) == 3 * forward_flops(pool_first) - c1


@pytest.mark.heavy
@pytest.mark.parametrize("text", [POOL_FIRST, MLP, RESIDUAL_FROM_INPUT])
def test_a_train_steps_parameter_gradients_are_those_of_a_full_backward_pass(text):
    """Without the input's gradient, no kernel computes a gradient before the first parameters; every
    parameter's gradient is the full pass's bit for bit, and the loss too."""
    spec = parse_spec(text)
    net = Network(spec, load_kernels(spec), dtype="float64", seed=3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, *spec.input_shape))
    labels = rng.integers(0, 3, 5).astype(np.int64)
    loss_full, grads_full = net.loss_and_grads(x, labels, input_gradient=True)
    net.profile = {}
    loss, grads = net.loss_and_grads(x, labels, input_gradient=False)
    called, net.profile = set(net.profile), None
    needed = tensors_needing_gradients(spec, input_gradient=False)
    first = next(layer for layer in spec.layers if layer.parameter_shapes())
    assert not any(kernel.startswith(f"{first.label}_grad_input") for kernel in called), called
    for layer in spec.layers:
        if layer.label not in needed:  # no kernel of its gradient runs
            assert not any(kernel.startswith(f"{layer.label}_grad") for kernel in called), (layer.label, called)
    assert loss == loss_full and "input" in grads_full and "input" not in grads
    assert grads.keys() == grads_full.keys() - {"input"}
    for name, gradient in grads.items():
        np.testing.assert_array_equal(gradient, grads_full[name], err_msg=name)
