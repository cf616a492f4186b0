"""Batch norm and dropout inside PyTorch: the module's buffers by nn.BatchNorm2d's names, train() and eval()
switching the kernels, running statistics as PyTorch updates them, dropout masks of symcnn's generator (the
Network's at the same seed and step); against the plain PyTorch twin in float64, opcheck and gradcheck."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import symcnn.torch  # noqa: E402
from symcnn.bench.torch_twin import torch_model  # noqa: E402
from symcnn.runtime.masks import draw_mask as draw_mask_array  # noqa: E402
from symcnn.torch.operators import draw_mask, layer_operators, running_statistics_operator  # noqa: E402
from tests.interop.torch_specs import STATEFUL  # noqa: E402
from tests.kernels_helpers import network_for  # noqa: E402

F = torch.nn.functional

DROPOUT = "dropout3"
TOLERANCE = dict(rtol=1e-10, atol=1e-12)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    return network_for(STATEFUL, tmp_path_factory.mktemp("spec"))


def _twin(model, masks: bool = True):
    """The plain PyTorch twin with the model's state; its dropout multiplies by a mask the test sets (a fixed
    mask's module multiplies in both modes), or without ``masks`` is ``nn.Dropout``."""
    twin = torch_model(model.spec, {name: value.numpy() for name, value in model.state_dict().items()},
                       masks={DROPOUT: np.ones((1, 3, 5, 4))} if masks else None)
    twin.load_state_dict(model.state_dict())  # strict: the same names, shapes and buffers
    return twin


def _mask(batch: int, seed: int, step: int) -> torch.Tensor:
    mask = np.empty((batch, 3, 5, 4))
    draw_mask_array(mask, seed, 3, step, 0.4)
    return torch.tensor(mask)


def test_the_state_dict_holds_the_buffers_by_pytorch_names_and_round_trips(net):
    model = symcnn.torch.from_spec(net.spec, dtype="float64", seed=2)
    twin = torch_model(net.spec, {name: np.zeros_like(value) for name, value in net.params.items()})
    assert list(model.state_dict()) == list(twin.state_dict())  # bn.weight, ..., bn.num_batches_tracked, fc...
    for name, value in {**net.params, **net.buffers}.items():
        assert model.state_dict()[name].dtype == torch.tensor(value).dtype
    twin.load_state_dict(model.state_dict())
    rng = np.random.default_rng(0)
    twin.bn.running_mean.copy_(torch.tensor(rng.standard_normal(3)))
    twin.bn.running_var.copy_(torch.tensor(rng.uniform(0.5, 2, 3)))
    twin.bn.num_batches_tracked.fill_(7)
    model.load_state_dict(twin.state_dict())
    for name, value in twin.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)
    assert model.bn.num_batches_tracked.dtype == torch.int64 and model.double().bn.num_batches_tracked.item() == 7


@pytest.mark.heavy
def test_k_training_steps_equal_the_twin_and_the_network(net):
    """Training mode: batch statistics, running statistics updated with momentum 0.3 and the unbiased
    variance, the dropout masks of symcnn's generator; losses, every gradient, parameters and buffers after
    each of K steps of SGD equal the twin's (fed the same masks) and the Network's at the same seed and step."""
    model = symcnn.torch.from_spec(net.spec, dtype="float64", seed=9)
    net.load_params({name: model.state_dict()[name].numpy().copy() for name in net.params})  # not shared
    net.load_buffers({name: model.state_dict()[name].numpy().copy() for name in net.buffers})
    net.mask_state = {"seed": 9, "step": 0}
    net.train()
    twin = _twin(model)
    optimizers = [torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9) for module in (model, twin)]
    rng = np.random.default_rng(3)
    for step in range(3):
        x = rng.standard_normal((6, 2, 5, 4))
        labels = rng.integers(0, 3, 6)
        twin.get_submodule(DROPOUT).mask = _mask(6, 9, step)
        results = []
        for module, optimizer in zip((model, twin), optimizers):
            optimizer.zero_grad()
            inputs = torch.tensor(x, requires_grad=True)
            loss = F.cross_entropy(module(inputs), torch.tensor(labels))
            loss.backward()
            results.append((loss.item(), inputs.grad, {name: p.grad.clone() for name, p in module.named_parameters()}))
            optimizer.step()
        assert results[0][0] == pytest.approx(results[1][0], rel=1e-12)
        torch.testing.assert_close(results[0][1], results[1][1], **TOLERANCE)
        for name, grad in results[1][2].items():
            torch.testing.assert_close(results[0][2][name], grad, **TOLERANCE)
        loss, grads = net.loss_and_grads(x, labels)  # the Network draws its masks at its own step: the same
        assert loss == pytest.approx(results[0][0], rel=1e-12), step
        torch.testing.assert_close(torch.tensor(grads["input"]), results[0][1], **TOLERANCE)
        np.testing.assert_array_equal(net.masks(6)[DROPOUT], _mask(6, 9, step).numpy())
        for name, value in net.buffers.items():  # the Network's update: before its parameters move
            torch.testing.assert_close(model.state_dict()[name], torch.tensor(value), **TOLERANCE)
        net.load_params({name: model.state_dict()[name].numpy().copy() for name in net.params})  # not shared
    assert model.mask_state == {"seed": 9, "step": 3} == net.mask_state
    assert model.bn.num_batches_tracked.item() == 3
    for name, value in twin.state_dict().items():  # parameters and running statistics after K steps
        torch.testing.assert_close(model.state_dict()[name], value, **TOLERANCE)
    assert not torch.equal(model.bn.running_var, torch.ones(3))


def test_evaluation_mode_uses_the_running_statistics_and_passes_dropout_by(net):
    model = symcnn.torch.from_spec(net.spec, dtype="float64", seed=1)
    rng = np.random.default_rng(4)
    model.load_state_dict({**model.state_dict(), "bn.running_mean": torch.tensor(rng.standard_normal(3)),
                           "bn.running_var": torch.tensor(rng.uniform(0.5, 2, 3)),
                           "bn.weight": torch.tensor(rng.standard_normal(3))})
    twin = _twin(model, masks=False)
    model.eval(), twin.eval()
    assert not model.training and not model.bn.training and model.mask_state["step"] == 0
    x = torch.tensor(rng.standard_normal((1, 2, 5, 4)), requires_grad=True)  # one image: fine in evaluation
    outputs = [module(x) for module in (model, twin)]
    torch.testing.assert_close(outputs[0], outputs[1], **TOLERANCE)
    upstream = torch.randn_like(outputs[0])
    grads = [torch.autograd.grad(out, [x, *module.parameters()], upstream) for out, module in zip(outputs,
                                                                                                (model, twin))]
    for ours, theirs in zip(*grads):
        torch.testing.assert_close(ours, theirs, **TOLERANCE)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    model(x)
    for name, value in model.state_dict().items():  # evaluation leaves the buffers and the generator alone
        assert torch.equal(value, before[name])
    assert model.mask_state["step"] == 0
    identity = torch.ones(2, 3, 5, 4, dtype=torch.float64)
    assert model.get_submodule(DROPOUT)(identity) is identity  # the input itself, as nn.Dropout's


def test_batch_norm_in_training_mode_needs_more_than_one_value_per_channel():
    bn = symcnn.torch.layer("batchnorm2d", (3, 1, 1), dtype="float64")
    with pytest.raises(ValueError, match=r"^layer: input: batch normalization in training mode needs more "
                                         r"than one value per channel"):
        bn(torch.ones(1, 3, 1, 1, dtype=torch.float64))
    assert bn.eval()(torch.ones(1, 3, 1, 1, dtype=torch.float64)).shape == (1, 3, 1, 1)


@pytest.mark.heavy
def test_a_generated_batch_norm_replaces_nn_batchnorm2d():
    reference = torch.nn.BatchNorm2d(4, momentum=0.1).double()
    generated = symcnn.torch.layer("batchnorm2d", (4, 3, 5), dtype="float64")
    with torch.no_grad():
        reference.weight.uniform_(0.5, 2), reference.bias.normal_()
    generated.load_state_dict(reference.state_dict())
    for _ in range(3):
        x = torch.randn(5, 4, 3, 5, dtype=torch.float64) * 3 + 1
        torch.testing.assert_close(generated(x), reference(x), **TOLERANCE)
    for name, value in reference.state_dict().items():
        torch.testing.assert_close(generated.state_dict()[name], value, **TOLERANCE)
    generated.eval(), reference.eval()
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    torch.testing.assert_close(generated(x), reference(x), **TOLERANCE)


def test_a_dropout_layer_drops_p_of_its_elements_and_scales_the_others():
    p = 0.3
    dropout = symcnn.torch.layer("dropout", (8, 16, 16), p=p, seed=5)
    x = torch.rand(16, 8, 16, 16) + 0.5  # no zeros of its own
    first, second = dropout(x), dropout(x)
    assert dropout.mask_state == {"seed": 5, "step": 2}  # a layer on its own counts its passes
    for step, out in enumerate((first, second)):
        kept = out != 0
        np.testing.assert_array_equal(kept.numpy(), _layer_mask(x.shape, 5, 0, step, p))
        torch.testing.assert_close(out[kept], x[kept] / (1 - p))
        dropped = 1 - kept.double().mean().item()
        assert abs(dropped - p) < 5 * np.sqrt(p * (1 - p) / x.numel())  # five standard deviations
    assert 0.5 < (first.ne(0) == second.ne(0)).double().mean().item() < 0.7  # independent masks: p²+(1-p)² agree
    assert dropout.eval()(x) is x


def _layer_mask(shape, seed, layer, step, p):
    mask = np.empty(tuple(shape))
    draw_mask_array(mask, seed, layer, step, p)
    return mask.astype(bool)


def test_masks_follow_the_first_image_so_that_a_split_batch_draws_the_whole_batch_masks(net):
    """Two processes' shares of a batch (rows 0-3 and 4-5) multiply by the whole batch's masks: the outputs
    are the whole batch's (batch norm in evaluation mode, so that its statistics do not differ by share)."""
    x = torch.randn(6, 2, 5, 4, dtype=torch.float64)
    whole = symcnn.torch.from_spec(net.spec, dtype="float64", seed=3)
    whole.bn.eval()
    expected = whole(x)
    shares = []
    for rows in (slice(0, 4), slice(4, 6)):
        part = symcnn.torch.from_spec(net.spec, dtype="float64", seed=3)
        part.bn.eval()
        part.first_image = rows.start
        shares.append(part(x[rows]))
        assert part.first_image == rows.start
    torch.testing.assert_close(torch.cat(shares), expected, **TOLERANCE)
    assert not torch.equal(shares[1], whole(x)[4:])  # the next step's masks differ
    with pytest.raises(ValueError, match=r"^first_image: must be an integer >= 0"):
        whole.first_image = -1
    with pytest.raises(ValueError, match=r"^mask_state: must be"):
        whole.mask_state = {"seed": 1}


def test_the_new_operators_pass_gradcheck_and_opcheck(net):
    rng = np.random.default_rng(5)
    bn_layer, dropout_layer = net.spec.layers[1], net.spec.layers[3]

    def tensor(*shape, grad=True, positive=False):
        values = rng.uniform(0.5, 2, shape) if positive else rng.standard_normal(shape)
        return torch.tensor(values, requires_grad=grad)

    x, weight, bias = tensor(2, 3, 5, 4), tensor(3), tensor(3)  # gradcheck: two passes per element
    running = (tensor(3, grad=False), tensor(3, grad=False, positive=True))
    mask = _mask(2, 0, 0)
    cases = [(layer_operators(net, bn_layer), (x, weight, bias)),
             (layer_operators(net, bn_layer, evaluation=True), (x, weight, bias, *running)),
             (layer_operators(net, dropout_layer), (x, mask))]
    for operators, arguments in cases:
        assert torch.autograd.gradcheck(operators, arguments)
        torch.library.opcheck(operators.forward, arguments)
        values = dict(zip(operators.signatures[f"{operators.prefix}forward"].inputs, arguments))
        values["grad_output"] = torch.randn_like(x)
        for name, operator in operators.gradients.items():
            signature = operators.gradient_signature(name)
            torch.library.opcheck(operator, tuple(values[argument].detach() for argument in signature.inputs))
    assert layer_operators(net, bn_layer, evaluation=True).parameters == ("weight", "bias", "running_mean",
                                                                          "running_var")
    assert sorted(layer_operators(net, dropout_layer).gradients) == ["x"]
    update = running_statistics_operator(net, bn_layer)
    buffers = (running[0].clone(), running[1].clone(), torch.tensor(0))
    torch.library.opcheck(update, (x.detach(), *buffers))
    torch.library.opcheck(torch.ops.symcnn.draw_mask.default, (x.detach(), -5, 3, 2**40, 2, 0.4))
    np.testing.assert_array_equal(draw_mask(x, 2**64 - 5, 3, 2**40, 0.4, first_image=2).numpy(),
                                  _layer_mask_at(x.shape, 2**64 - 5, 3, 2**40, 0.4, 2))
    with pytest.raises(ValueError, match=r"^conv: has no evaluation-mode kernels \(conv2d is the same in both"):
        layer_operators(net, net.spec.layers[0], evaluation=True)


def _layer_mask_at(shape, seed, layer, step, p, first):
    mask = np.empty(tuple(shape))
    draw_mask_array(mask, seed, layer, step, p, first_image=first)
    return mask


def test_the_running_statistics_update_is_pytorchs(net):
    update = running_statistics_operator(net, net.spec.layers[1])
    x = torch.randn(3, 3, 5, 4, dtype=torch.float64) * 2 + 1
    mean, var, count = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64), torch.tensor(4)
    expected_mean, expected_var = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
    F.batch_norm(x, expected_mean, expected_var, training=True, momentum=0.3, eps=1e-3)
    update(x, mean, var, count)
    torch.testing.assert_close(mean, expected_mean, **TOLERANCE)
    torch.testing.assert_close(var, expected_var, **TOLERANCE)
    assert count.item() == 5
    with pytest.raises(ValueError, match=r"^bn: running_var: expected a tensor of shape \(3,\), got \(4,\)"):
        update(x, mean, torch.ones(4, dtype=torch.float64), count)


def test_under_torch_compile_both_modes_match_eager(net):
    model = symcnn.torch.from_spec(net.spec, dtype="float64", seed=6)
    eager = symcnn.torch.from_spec(net.spec, dtype="float64", seed=6)
    compiled = torch.compile(model, backend="aot_eager")
    x = torch.randn(4, 2, 5, 4, dtype=torch.float64)
    for _ in range(2):
        torch.testing.assert_close(compiled(x), eager(x), **TOLERANCE)
    for name, value in eager.state_dict().items():  # the running statistics updated under compile too
        torch.testing.assert_close(model.state_dict()[name], value, **TOLERANCE)
    model.eval(), eager.eval()
    torch.testing.assert_close(compiled(x), eager(x), **TOLERANCE)


def test_a_shipped_graph_spec_with_batch_norm_loads_into_its_twin_and_back():
    model = symcnn.torch.from_spec("resnet-mini", seed=0)
    twin = torch_model(model.spec, {name: value.numpy() for name, value in model.state_dict().items()})
    assert list(model.state_dict()) == list(twin.state_dict())
    twin.load_state_dict(model.state_dict())
    model.load_state_dict(twin.state_dict())
    assert [name for name, _ in model.named_buffers()][:3] == [
        "stem_bn.running_mean", "stem_bn.running_var", "stem_bn.num_batches_tracked"]


@pytest.mark.slow
def test_resnet_mini_trains_and_evaluates_as_its_twin():
    model = symcnn.torch.from_spec("resnet-mini", dtype="float64", seed=0)
    twin = torch_model(model.spec, {name: value.numpy() for name, value in model.state_dict().items()})
    x, labels = torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.tensor([0, 3, 9, 3])
    for module in (model, twin):
        optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
        for _ in range(2):
            optimizer.zero_grad()
            F.cross_entropy(module(x), labels).backward()
            optimizer.step()
    for name, value in twin.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value, **TOLERANCE)
    torch.testing.assert_close(model.eval()(x), twin.eval()(x), **TOLERANCE)
