"""Graph specs in PyTorch: the add and concat kernels as operators of several inputs (against PyTorch's own,
gradcheck and opcheck), and a graph spec as an nn.Module whose fan-outs autograd sums, equal to the plain
PyTorch twin and to the Network."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import symcnn.torch  # noqa: E402
from symcnn.bench.torch_twin import torch_model  # noqa: E402
from symcnn.torch.modules import SymcnnGraph  # noqa: E402
from symcnn.torch.operators import layer_operators  # noqa: E402
from tests.graphs.graph_specs import GRAPH  # noqa: E402
from tests.kernels_helpers import network_for  # noqa: E402


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return network_for(GRAPH, tmp_path_factory.mktemp("spec"))


@pytest.mark.parametrize("label, twin", [("sum", lambda x, x2: x + x2),
                                         ("concat4", lambda *tensors: torch.cat(tensors, dim=1))])
def test_add_and_concat_operators_take_several_inputs(net, label, twin):
    layer = next(layer for layer in net.spec.layers if layer.label == label)
    operators = layer_operators(net, layer)
    assert operators.parameters == ()
    rng = np.random.default_rng(0)
    inputs = [torch.tensor(rng.standard_normal((2, *shape)), requires_grad=True) for shape in layer.input_shapes]
    out = operators(*inputs)
    torch.testing.assert_close(out, twin(*inputs), rtol=0, atol=0)
    upstream = torch.randn_like(out)
    for grad, expected in zip(torch.autograd.grad(out, inputs, upstream),
                              torch.autograd.grad(twin(*inputs), inputs, upstream)):
        torch.testing.assert_close(grad, expected, rtol=0, atol=0)
    assert torch.autograd.gradcheck(operators, tuple(inputs))
    torch.library.opcheck(operators.forward, tuple(inputs))
    names = ["x", "x2", "x3"][:len(inputs)]
    assert sorted(operators.gradients) == names
    assert [operators.gradient_signature(name).kernel for name in names] == \
        [f"{label}_grad_input"] + [f"{label}_grad_input{number}" for number in range(2, len(inputs) + 1)]
    message = rf"^{label}: x2: expected a tensor of shape \(N, 4, 8, 8\), got \(2, 4, 8, 7\)"
    with pytest.raises(ValueError, match=message):
        operators(inputs[0], inputs[1][..., :7], *inputs[2:])


def test_a_graph_spec_is_a_module_equal_to_the_twin_and_the_network(net):
    model = symcnn.torch.from_spec(net.spec, dtype="float64", seed=4)
    assert isinstance(model, SymcnnGraph) and list(model.state_dict()) == list(net.params)
    rng = np.random.default_rng(1)
    for parameter in model.parameters():
        parameter.data = torch.tensor(rng.standard_normal(parameter.shape) * 0.5)
    twin = torch_model(net.spec, {name: value.detach().numpy() for name, value in model.state_dict().items()})
    x = torch.tensor(rng.standard_normal((3, *net.spec.input_shape)), requires_grad=True)
    labels = torch.tensor([2, 0, 1])
    losses, grads = [], []
    for module in (model, twin):
        loss = torch.nn.functional.cross_entropy(module(x), labels)
        grads.append(torch.autograd.grad(loss, [x, *module.parameters()]))
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-12)
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    net.load_params({name: value.detach().numpy() for name, value in model.state_dict().items()})
    loss, network_grads = net.loss_and_grads(x.detach().numpy(), labels.numpy())
    assert loss == pytest.approx(losses[0], rel=1e-12)
    torch.testing.assert_close(torch.tensor(network_grads["input"]), grads[0][0], rtol=1e-10, atol=1e-12)
    for (name, _), ours in zip(model.named_parameters(), grads[0][1:]):
        torch.testing.assert_close(torch.tensor(network_grads[name]), ours, rtol=1e-10, atol=1e-12)


def test_a_joining_op_is_no_single_layer():
    with pytest.raises(ValueError, match=r"^kind: add joins several layers' outputs; it is no single layer"):
        symcnn.torch.layer("add", (4, 8, 8))
