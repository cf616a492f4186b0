"""The module's whole pass as one autograd node (symcnn.torch.whole_pass): bit for bit the layer-by-layer
path's logits, gradients, running statistics and dropout masks; taken only where nothing observes the
layers; PyTorch's checks of saved tensors kept."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import symcnn.torch  # noqa: E402
from symcnn.runtime.network import Network  # noqa: E402
from tests.graphs.graph_specs import GRAPH  # noqa: E402
from tests.interop.torch_specs import STATEFUL  # noqa: E402
from tests.kernels_helpers import network_for  # noqa: E402

F = torch.nn.functional



@pytest.fixture(scope="module")
def small_net(tmp_path_factory):
    return network_for(STATEFUL, tmp_path_factory.mktemp("spec"), seed=2)


@pytest.fixture(scope="module")
def graph_net(tmp_path_factory):
    """The graph tests' example: a residual add and a concat of three."""
    return network_for(GRAPH, tmp_path_factory.mktemp("graph"), seed=2)


def _node(logits: torch.Tensor) -> str:
    return type(logits.grad_fn).__name__


def _observed(model):
    """A forward hook on the first layer: the pass goes layer by layer."""
    return getattr(model, model.spec.layers[0].label).register_forward_hook(lambda *arguments: None)


def _step(model, x, labels, layer_by_layer: bool):
    """One forward and backward pass from the same state: the node, logits, every gradient, the buffers
    and the mask step after it (the module's state then put back)."""
    model.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    state, buffers = dict(model.masks.state), {name: value.clone() for name, value in model.named_buffers()}
    hook = _observed(model) if layer_by_layer else None
    logits = model(x)
    F.cross_entropy(logits, labels).backward()
    if hook is not None:
        hook.remove()
    result = {"node": _node(logits), "logits": logits.detach(), "input": x.grad,
              **{name: parameter.grad for name, parameter in model.named_parameters()},
              **{name: value.clone() for name, value in model.named_buffers()}, "step": model.masks.step}
    model.masks.state = state
    for name, value in model.named_buffers():
        value.copy_(buffers[name])
    return result


# The architectures of document 003 compile every kernel of a residual and a depthwise network for each
# dtype (about 4.5 minutes each on 2 cores): marked slow. The default run keeps the small spec (every kind
# of state) and digits; CI also runs a small graph (a residual add and a concat: heavy, about 65 s).
LARGE = pytest.mark.slow


# Bit for bit, either dtype is as strict a check as the other; each is a compile of about 20-40 s. The default and heavy
# runs take the one the session compiles for other tests anyway (tests/conftest.py shares the kernel cache): float64
# for the small spec and the graph (the module tests here and test_torch_modes.py, test_graph_networks.py and
# test_torch_graphs.py run them in float64), float32 for digits (the training and README tests).
_DEFAULT_DTYPE = {"small": "float64", "graph": "float64", "digits": "float32"}


@pytest.mark.parametrize("spec, dtype", [
    pytest.param(spec, dtype, marks=(pytest.mark.heavy if spec == "graph" else ()) if _DEFAULT_DTYPE.get(spec) == dtype
                 else LARGE)
    for spec in ("small", "graph", "digits", "resnet-mini", "mobilenet-mini") for dtype in ("float64", "float32")])
def test_the_whole_pass_equals_the_layer_by_layer_pass_bit_for_bit(spec, dtype, request):
    built = {"small": "small_net", "graph": "graph_net"}
    spec = request.getfixturevalue(built[spec]).spec if spec in built else spec
    model = symcnn.torch.from_spec(spec, dtype=dtype, seed=5)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((6, *model.spec.input_shape)), dtype=getattr(torch, dtype))
    labels = torch.tensor(rng.integers(0, model.spec.classes, 6))
    # A tensor read by three layers or more gets their gradients' sum: the Network adds them in one kernel,
    # autograd two at a time in its own order, so the gradients before it are equal to rounding only.
    gradients_exact = all(len(readers) < 3 for readers in model.spec.consumers().values())
    parameters = {name for name, _ in model.named_parameters()} | {"input"}
    for mode in ("train", "eval"):
        getattr(model, mode)()
        whole, layers = _step(model, x, labels, False), _step(model, x, labels, True)
        assert (whole.pop("node"), layers.pop("node")) == ("WholePassBackward", "LayerFunctionBackward")
        assert whole.keys() == layers.keys()
        for name in whole:
            ours, theirs = torch.as_tensor(whole[name]), torch.as_tensor(layers[name])
            if gradients_exact or name not in parameters:
                assert torch.equal(ours, theirs), (mode, name)
            else:
                torch.testing.assert_close(ours, theirs, rtol=1e-5 if dtype == "float32" else 1e-13, atol=1e-7,
                                           msg=f"{mode}, {name}")
    with torch.no_grad():  # inference: the whole pass too, no autograd node (in evaluation mode with the folds
        logits = model(x)  # of symcnn.codegen.folding, so equal to rounding)
        assert logits.grad_fn is None
        hook = _observed(model)
        torch.testing.assert_close(logits, model(x), rtol=1e-5 if dtype == "float32" else 1e-12, atol=1e-6)
        hook.remove()


def test_the_module_trains_through_the_whole_pass_as_the_network_does(small_net):
    net = Network(small_net.spec, small_net.kernels, dtype="float64", seed=2)  # a fresh one: this test steps it
    model = symcnn.torch.from_spec(net.spec, dtype="float64", seed=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    rng = np.random.default_rng(1)
    for _ in range(3):  # dropout masks, running statistics and parameters all carry from step to step
        x, labels = rng.standard_normal((8, 2, 5, 4)), rng.integers(0, 3, 8)
        expected = net.train_step(x, labels, lr=0.05)
        optimizer.zero_grad()
        logits = model(torch.tensor(x))
        assert _node(logits) == "WholePassBackward"
        loss = F.cross_entropy(logits, torch.tensor(labels))
        loss.backward()
        optimizer.step()
        assert loss.item() == pytest.approx(expected, rel=1e-13)  # PyTorch's loss and SGD step: the last bits differ
    for name, value in model.state_dict().items():
        np.testing.assert_allclose(value.numpy(), {**net.params, **net.buffers}[name], rtol=1e-12, atol=1e-14)


def test_layer_by_layer_wherever_something_observes_the_layers():
    model = symcnn.torch.from_spec("digits", dtype="float64")
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    assert _node(model(x)) == "WholePassBackward"
    model.relu1.eval()  # a layer in another mode than the module
    assert _node(model(x)) != "WholePassBackward"
    model.relu1.train()
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False):  # a dispatch mode sees the operators
        assert _node(model(x)) != "WholePassBackward"
    handle = torch.nn.modules.module.register_module_forward_hook(lambda *arguments: None)
    assert _node(model(x)) != "WholePassBackward"
    handle.remove()
    replaced = copy.deepcopy(model)
    assert _node(replaced(x)) == "WholePassBackward"  # a copy keeps the path
    replaced.fc1 = torch.nn.Linear(replaced.fc1.weight.shape[1], 10, dtype=torch.float64)
    assert _node(replaced(x)) != "WholePassBackward"  # a replaced layer runs as itself
    half = model.to(torch.float32)
    assert _node(half(torch.randn(3, 1, 8, 8, requires_grad=True))) == "WholePassBackward"
    with pytest.raises(ValueError, match="x: expected a tensor of shape"):  # the layers' checks speak
        model(torch.randn(3, 1, 9, 9))


def test_saved_tensors_changed_in_place_before_backward_raise_as_layer_by_layer():
    model = symcnn.torch.from_spec("digits", dtype="float64")
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    loss = model(x * 1).sum()
    with torch.no_grad():
        model.conv1.weight.add_(1.0)  # as an optimizer step between forward and backward would
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_two_forward_passes_then_their_backward_passes_accumulate_each_ones_gradients():
    model = symcnn.torch.from_spec("digits", dtype="float64")
    rng = np.random.default_rng(3)
    batches = [torch.tensor(rng.standard_normal((4, 1, 8, 8))) for _ in range(2)]
    losses = [model(x).square().mean() for x in batches]  # both passes' activations alive at once
    for loss in reversed(losses):
        loss.backward()
    together = {name: parameter.grad.clone() for name, parameter in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    for x in batches:
        model(x).square().mean().backward()
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(together[name], parameter.grad, rtol=1e-14, atol=0)


def test_frozen_parameters_get_no_gradient_and_the_whole_pass_passes_gradcheck():
    model = symcnn.torch.from_spec("digits", dtype="float64")
    model.conv1.weight.requires_grad_(False)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    model(x).sum().backward()
    assert model.conv1.weight.grad is None and model.fc1.weight.grad is not None
    assert torch.autograd.gradcheck(lambda x: model(x), (x,), eps=1e-6, atol=1e-6)


def test_a_copy_of_a_module_with_batch_norm_is_its_own_and_takes_the_whole_pass(small_net):
    model = symcnn.torch.from_spec(small_net.spec, dtype="float64")  # batch norm and dropout: a pass changes state
    copied = copy.deepcopy(model)  # its running-statistics operator is shared, its tensors copied
    x = torch.randn(2, *model.spec.input_shape, dtype=torch.float64, requires_grad=True)
    assert torch.equal(model(x), copied(x))
    logits, copied_logits = model(x), copied(x)  # both at their next mask step: the same masks again
    assert torch.equal(logits, copied_logits) and _node(copied_logits) == "WholePassBackward"
    with torch.no_grad():
        next(copied.parameters()).add_(1.0)
    assert not torch.equal(model(x), copied(x))  # the same masks: only the parameter differs


@LARGE  # lenet5 compiled in float32 for this test alone: 45 s
def test_where_the_network_fuses_a_tanh_gradient_the_whole_pass_equals_the_layers_to_rounding():
    model = symcnn.torch.from_spec("lenet5", dtype="float32", seed=1)  # tanh -> average pool: fused
    rng = np.random.default_rng(4)
    x = torch.tensor(rng.standard_normal((4, *model.spec.input_shape)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, model.spec.classes, 4))
    whole, layers = _step(model, x, labels, False), _step(model, x, labels, True)
    assert torch.equal(whole["logits"], layers["logits"])
    for name, _ in model.named_parameters():
        torch.testing.assert_close(whole[name], layers[name], rtol=1e-5, atol=1e-6)
