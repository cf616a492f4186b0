"""The generated kernels as PyTorch operators: against PyTorch's own layers, opcheck, gradcheck (float64),
torch.compile, and refusals before any kernel runs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from symcnn.runtime.network import Network  # noqa: E402
from symcnn.torch.operators import layer_operators  # noqa: E402
from tests.kernels_helpers import network_for  # noqa: E402

F = torch.nn.functional

#: Every op on main, at small shapes, with PyTorch's functional twin.
SPEC = {"name": "torch-ops", "input": [2, 7, 6], "layers": [
    {"type": "conv2d", "name": "conv", "out_channels": 3, "kernel": [3, 2], "stride": [2, 1], "padding": 1,
     "dilation": [1, 2]},
    {"type": "leaky_relu", "alpha": 0.1},
    {"type": "maxpool2d", "kernel": 2, "stride": 1},
    {"type": "elu", "alpha": 0.7},
    {"type": "avgpool2d", "kernel": [2, 1]},
    {"type": "sigmoid"},
    {"type": "tanh"},
    {"type": "relu"},
    {"type": "global_avgpool"},
    {"type": "flatten"},
    {"type": "dense", "name": "fc", "out_features": 4},
]}
TWINS = {
    "conv": lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1, dilation=(1, 2)),
    "leaky_relu1": lambda x: F.leaky_relu(x, 0.1), "maxpool2d2": lambda x: F.max_pool2d(x, 2, 1),
    "elu3": lambda x: F.elu(x, 0.7), "avgpool2d4": lambda x: F.avg_pool2d(x, (2, 1)),
    "sigmoid5": torch.sigmoid, "tanh6": torch.tanh, "relu7": F.relu,
    "global_avgpool8": lambda x: x.mean((2, 3), keepdim=True), "flatten9": lambda x: x.flatten(1),
    "fc": F.linear,
}


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return network_for(SPEC, tmp_path_factory.mktemp("spec"))


def _arguments(layer, rng, dtype=torch.float64, batch=3):
    shapes = [(batch, *layer.input_shape), *layer.parameter_shapes().values()]
    return [torch.tensor(rng.standard_normal(shape), dtype=dtype, requires_grad=True) for shape in shapes]


@pytest.mark.parametrize("index", range(len(SPEC["layers"])))
def test_each_layer_equals_pytorch_and_passes_gradcheck_and_opcheck(net, index):
    layer = net.spec.layers[index]
    operators = layer_operators(net, layer)
    arguments = _arguments(layer, np.random.default_rng(index))
    out = operators(*arguments)
    expected = TWINS[layer.label](*arguments)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    if operators.reshape:  # a view in the module, as in the Network; its kernel is an operator all the same
        assert layer.kind == "flatten" and out.data_ptr() == arguments[0].data_ptr()
        torch.testing.assert_close(operators.forward(*arguments), expected, rtol=0, atol=0)
    upstream = torch.randn_like(out)
    grads = torch.autograd.grad(out, arguments, upstream)
    expected_grads = torch.autograd.grad(expected, arguments, upstream)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-11, atol=1e-12)
    if layer.kind != "maxpool2d":  # gradcheck's finite differences cross max-pool ties: checked above instead
        assert torch.autograd.gradcheck(operators, tuple(arguments))
    torch.library.opcheck(operators.forward, tuple(arguments))
    saved = operators.forward(*[argument.detach() for argument in arguments])
    saved = saved if isinstance(saved, tuple) else (saved,)
    for name, operator in operators.gradients.items():  # each gradient operator is an operator too
        signature = operators.gradient_signature(name)
        values = dict(zip(operators.signatures[f"{layer.label}_forward"].inputs, arguments))
        values.update(zip(operators.signatures[f"{layer.label}_forward"].outputs, saved))
        values["grad_output"] = upstream
        torch.library.opcheck(operator, tuple(values[argument].detach() for argument in signature.inputs))


def test_float32_and_zero_copy_outputs(net):
    conv = layer_operators(net, net.spec.layers[0])
    x, weight, bias = _arguments(net.spec.layers[0], np.random.default_rng(0), torch.float32)
    torch.testing.assert_close(conv(x, weight, bias), TWINS["conv"](x, weight, bias), rtol=1e-5, atol=1e-5)
    transposed = x.detach().transpose(2, 3).contiguous().transpose(2, 3)  # same values, not contiguous
    assert not transposed.is_contiguous()
    torch.testing.assert_close(conv(transposed, weight, bias), conv(x, weight, bias))


def test_under_torch_compile_forward_and_backward_match_eager(net):
    conv, fc = layer_operators(net, net.spec.layers[0]), layer_operators(net, net.spec.layers[-1])
    (x, weight, bias), (_, fc_weight, fc_bias) = (_arguments(net.spec.layers[0], np.random.default_rng(1)),
                                                 _arguments(net.spec.layers[-1], np.random.default_rng(2)))

    def model(x):
        features = conv(x, weight, bias).mean((2, 3))  # (N, 3), padded to the dense layer's inputs
        return fc(F.pad(features, (0, fc_weight.shape[1] - features.shape[1])), fc_weight, fc_bias).sum()

    eager = model(x)
    eager_grad = torch.autograd.grad(eager, weight)[0]
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)(x)
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(torch.autograd.grad(compiled, weight)[0], eager_grad)


@pytest.mark.parametrize("change, message", [
    (lambda x, w, b: (x[:, :, :5], w, b), r"conv: x: expected a tensor of shape \(N, 2, 7, 6\), got \(3, 2, 5, 6\)"),
    (lambda x, w, b: (x.float(), w, b), "conv: weight: expected a float32 tensor \\(as x\\), got float64"),
    (lambda x, w, b: (x.int(), w, b), "conv: x: expected a float32 or float64 tensor, got int32"),
    (lambda x, w, b: (x, w[:2], b), r"conv: weight: expected a tensor of shape \(3, 2, 3, 2\), got \(2, 2, 3, 2\)"),
    (lambda x, w, b: (x, w, b.to("meta")), "conv: bias: the generated kernels run on the CPU, got a tensor on meta"),
    (lambda x, w, b: (x[:0], w, b), r"conv: x: expected a tensor of shape \(N, 2, 7, 6\), got \(0, 2, 7, 6\)"),
])
def test_a_wrong_tensor_is_refused_in_one_line_before_any_kernel_runs(net, change, message):
    conv = layer_operators(net, net.spec.layers[0])
    arguments = [argument.detach() for argument in _arguments(net.spec.layers[0], np.random.default_rng(0))]
    with pytest.raises(ValueError, match=message):
        conv(*change(*arguments))


def test_repeated_layers_share_kernels_but_each_has_its_operators():
    net = Network.from_spec("seed004")
    operators = [layer_operators(net, layer) for layer in net.spec.layers]
    assert len({operator.forward.name() for operator in operators}) == len(net.spec.layers)
    assert layer_operators(net, net.spec.layers[0]) is operators[0]  # registered once per process


def test_an_output_that_autograd_or_the_caller_holds_is_never_written_by_a_later_call(net):
    """The outputs' memory is reused (symcnn.torch.outputs) only once no tensor refers to it: here the
    convolution's output is held by autograd alone (the leaky ReLU saves its input) while a second pass runs."""
    conv, act = layer_operators(net, net.spec.layers[0]), layer_operators(net, net.spec.layers[1])
    x1, weight, bias = _arguments(net.spec.layers[0], np.random.default_rng(5))
    x2 = torch.randn_like(x1)
    first = act(conv(x1, weight, bias)).sum()
    address = conv(x1, weight, bias).data_ptr()  # dropped at once: its memory is free again
    kept = conv(x2, weight, bias)
    assert kept.data_ptr() == address  # reused
    second = act(conv(x2, weight, bias)).sum()  # another conv output: kept is alive
    assert conv(x1, weight, bias).data_ptr() != kept.data_ptr()
    for loss, x in ((first, x1), (second, x2)):
        expected = F.leaky_relu(TWINS["conv"](x, weight, bias), 0.1).sum()
        torch.testing.assert_close(torch.autograd.grad(loss, weight)[0], torch.autograd.grad(expected, weight)[0],
                                   rtol=1e-11, atol=1e-12)


def test_a_gradient_operator_refuses_to_be_differentiated(net):
    conv = layer_operators(net, net.spec.layers[0])
    x, weight, bias = _arguments(net.spec.layers[0], np.random.default_rng(6))
    out = conv(x, weight, bias)
    signature = conv.gradient_signature("weight")
    values = {"x": x, "weight": weight, "bias": bias, "grad_output": torch.ones_like(out, requires_grad=True)}
    grad_weight = conv.gradients["weight"](*(values[name] for name in signature.inputs))
    torch.testing.assert_close(grad_weight, torch.autograd.grad(out.sum(), weight)[0])
    with pytest.raises(RuntimeError, match="a gradient operator of the generated kernels has no gradient itself"):
        grad_weight.sum().backward()
    with pytest.raises(RuntimeError, match="has no gradient itself"):  # a second derivative, through the layer
        torch.autograd.grad(torch.autograd.grad(conv(x, weight, bias).pow(2).sum(), weight, create_graph=True)[0]
                            .sum(), x)
