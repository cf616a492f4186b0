"""All of a layer's gradients in one kernel (``<label>_backward``, symcnn.codegen.backward): generated where
the gradients read the same statistics (batch and layer normalization), each statistic computed once, the
bias's gradient stored from one; the same gradients as the separate kernels; called by the runtime only when
a pass needs every gradient of the layer. The gradients themselves are checked against SymPy, PyTorch, NumPy
and finite differences in test_normalization_kernels.py, which now runs through these kernels."""

from __future__ import annotations

import numpy as np
import pytest

from symcnn.codegen.backward import backward_kernel, statistic_count
from symcnn.codegen.network import layer_kernels
from symcnn.runtime.network import Network
from symcnn.spec import parse_spec
from tests.codegen.test_normalization_kernels import SMALL
from tests.kernels_helpers import network_for, random_params, toml_of


def kernels_by_name(layer) -> dict:
    return {kernel.name: kernel for kernel in layer_kernels(layer)}


def test_a_backward_kernel_is_made_where_gradients_share_statistics_and_only_there():
    spec = parse_spec(toml_of(SMALL))
    made = {layer.label: sorted(name for name in kernels_by_name(layer) if name.endswith("backward"))
            for layer in spec.layers}
    assert made["bn1"] == ["bn1_backward", "bn1_eval_backward"]
    assert made["ln1"] == ["ln1_backward"] and made["ln2"] == ["ln2_backward"]
    assert made["conv1"] == made["fc1"] == made["relu2"] == []  # no statistics: nothing to share


@pytest.mark.parametrize("prefix", ["", "eval_"], ids=["training", "evaluation"])
def test_each_statistic_is_computed_once_and_the_bias_gradient_is_read_from_one(prefix):
    layer = parse_spec(toml_of(SMALL)).layers[1]
    kernels = kernels_by_name(layer)
    backward = kernels[f"bn1_{prefix}backward"]
    separate = [kernels[f"bn1_{prefix}grad_{what}"] for what in ("input", "weight", "bias")]
    # training: the mean, the variance and two sums in the input's and the weight's kernels; evaluation: two sums
    assert [statistic_count(kernel) for kernel in separate] == ([4, 4, 0] if not prefix else [0, 2, 0])
    assert statistic_count(backward) == (4 if not prefix else 2)
    assert backward.arguments[-3:] == ("grad_input", "grad_weight", "grad_bias")
    (bias,) = [phase for phase in backward.phases if phase.output == "grad_bias"]
    assert [term.loops for term in bias.terms] == [()] and "stat" in bias.terms[0].update  # a statistic read
    assert separate[2].terms[0].loops  # where its own kernel sums over the batch and the map


def test_no_backward_kernel_when_nothing_would_be_shared():
    conv = parse_spec(toml_of(SMALL)).layers[0]
    from symcnn.codegen.lower import layer_formula
    from symcnn.registry import differentiable
    from symcnn.symbolic.adjoint import derive_gradient

    formula, values = layer_formula(conv)
    gradients = [derive_gradient(formula, tensor.role) for tensor in formula.operands if differentiable(tensor.role)]
    separate = [kernel for kernel in layer_kernels(conv) if "grad" in kernel.name]
    assert backward_kernel(conv, gradients, values, separate) is None


#: test_normalization_kernels.py's network without its first convolution: batch norm first, it reads the input,
#: so that a pass may need its parameters' gradients but not its input's. One spec for every test here: the
#: session compiles it once.
BN_FIRST = {**SMALL, "layers": SMALL["layers"][1:]}


def passes(net: Network, x, labels, training: bool, **options):
    """The loss, the gradients and the kernels one pass called (the profile's names)."""
    net.profile = {}
    loss, grads = net.loss_and_grads(x, labels, training=training, **options)
    called, net.profile = set(net.profile), None
    return loss, grads, called


@pytest.mark.heavy
@pytest.mark.parametrize("training", [True, False], ids=["training", "evaluation"])
def test_the_runtime_calls_it_and_gets_the_separate_kernels_gradients(tmp_path, monkeypatch, training):
    net = network_for(BN_FIRST, tmp_path)
    rng = np.random.default_rng(5)
    net.load_params(random_params(net, rng))
    x, labels = rng.standard_normal((3, 2, 5, 4)), np.array([0, 3, 1])
    loss, grads, called = passes(net, x, labels, training)
    mode = "" if training else "eval_"
    kept = "_saved" if training else ""  # reading the statistics its forward pass kept (codegen.saved_statistics)
    assert f"bn1_{mode}backward{kept}" in called and f"bn1_{mode}grad_weight" not in called
    assert f"ln2_backward{kept}" in called  # layer norm's kernels are the same in both modes
    assert not {"ln1_backward", "ln1_backward_saved"} & called  # a kernel fused with the ReLU's instead
    monkeypatch.setattr(Network, "_backward_kernel", lambda *arguments: None)  # each gradient's own kernel
    separate_loss, separate_grads, separate_called = passes(net, x, labels, training)
    assert not any(name.endswith(("backward", "backward_saved")) for name in separate_called)
    assert loss == separate_loss and sorted(grads) == sorted(separate_grads)  # the forward pass: the same kernels
    for name, gradient in grads.items():
        # the same sums, to rounding (a sum may vectorize in another order in another kernel)
        np.testing.assert_allclose(gradient, separate_grads[name], rtol=1e-12, atol=1e-15, err_msg=name)


@pytest.mark.heavy
def test_a_pass_that_needs_only_some_gradients_calls_their_own_kernels(tmp_path):
    net = network_for(BN_FIRST, tmp_path)
    rng = np.random.default_rng(6)
    x, labels = rng.standard_normal((3, 2, 5, 4)), np.array([0, 3, 1])
    _, grads, called = passes(net, x, labels, True, input_gradient=False)
    assert not {"bn1_backward", "bn1_backward_saved"} & called and {"bn1_grad_weight", "bn1_grad_bias"} <= called
    assert "bn1_grad_input" not in called and "input" not in grads
    _, _, called = passes(net, x, labels, True)
    assert "bn1_backward_saved" in called  # reading the statistics its forward pass kept
    logits, values, saved = net._forward(x, True)
    grads = net._backward(values, saved, np.ones_like(logits), True, True, parameters={"bn1.weight"})
    assert "bn1.weight" in grads and "bn1.bias" not in grads
