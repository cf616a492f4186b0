"""symcnn import of grouped and depthwise convolutions, transposed convolutions, batch and layer norm and dropout:
PyTorch models exported with torch.onnx.export (in training mode, which keeps every node, and in evaluation
mode, which folds a batch norm into the convolution before it and drops the dropouts), imported, and compared
with the PyTorch model: logits and gradients in both modes, and the running statistics after a training
step (the momentum mapped: ONNX's is 1 - PyTorch's). Checked with the NumPy reference (nothing compiles);
the generated kernels inside PyTorch in the slow test at the end."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from symcnn.bench.numpy_network import NumpyNetwork  # noqa: E402
from symcnn.onnx.importer import convert  # noqa: E402
from symcnn.spec import load_spec  # noqa: E402

nn = torch.nn
F = torch.nn.functional
P = 0.3  # the dropout's drop probability


class FixedMask(nn.Module):
    """Inverted dropout with a given mask in training mode (the identity in evaluation mode): the PyTorch
    model's training pass with the mask the reference is given (PyTorch's own dropout draws its own)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.mask = mask

    def forward(self, x):
        return x * self.mask / (1 - P) if self.training else x


def _model() -> nn.Sequential:
    """Every new op once: a grouped convolution, batch norm (PyTorch's defaults), dropout, a transposed
    convolution (stride, padding, output_padding, dilation), batch norm of other momentum and eps, a depthwise
    convolution and layer norm; statistics and scales that are not the initial ones."""
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(
        conv=nn.Conv2d(2, 4, 3, padding=1, groups=2), bn=nn.BatchNorm2d(4), relu=nn.ReLU(), drop=nn.Dropout(P),
        up=nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1, dilation=2),
        bn2=nn.BatchNorm2d(3, momentum=0.2, eps=1e-3), act=nn.Sigmoid(),
        depthwise=nn.Conv2d(3, 3, 3, padding=1, groups=3, bias=False), tanh=nn.Tanh(), ln=nn.LayerNorm([3, 10, 10]),
        flat=nn.Flatten(), fc=nn.Linear(300, 5)))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.3)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.2)
            elif isinstance(module, nn.LayerNorm):
                module.weight.normal_(1, 0.2)
                module.bias.normal_(0, 0.2)
    return model


def _import(model, path, cli, training: bool):
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated; the torch.export one needs onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 2, 4, 4),), str(path), dynamo=False, opset_version=17,
                          training=torch.onnx.TrainingMode.TRAINING if training else torch.onnx.TrainingMode.EVAL,
                          do_constant_folding=not training, input_names=["x"], output_names=["logits"])
    status, _, err = cli("import", path, "-o", path.with_suffix(".toml"), "--params", path.with_suffix(".npz"))
    assert status == 0, err
    spec = load_spec(path.with_suffix(".toml"))
    with np.load(path.with_suffix(".npz")) as stored:
        state = {name: value.astype(np.float64) if value.dtype.kind == "f" else value for name, value in stored.items()}
    return spec, {name: state[name] for name in spec.parameter_shapes()}, {name: state[name] for name in
                                                                           spec.buffer_shapes()}


def test_a_training_export_imports_every_layer_and_computes_what_the_model_computes(cli, tmp_path):
    model = _model()
    spec, params, buffers = _import(model, tmp_path / "model.onnx", cli, training=True)
    assert [(layer.kind, layer.label) for layer in spec.layers] == [
        ("conv2d", "conv"), ("batchnorm2d", "bn"), ("relu", "relu2"), ("dropout", "dropout3"),
        ("conv_transpose2d", "up"), ("batchnorm2d", "bn2"), ("sigmoid", "sigmoid6"), ("conv2d", "depthwise"),
        ("tanh", "tanh8"), ("layernorm", "ln"), ("flatten", "flatten10"), ("dense", "fc")]
    settings = {layer.label: dict(layer.settings) for layer in spec.layers}
    assert settings["conv"]["groups"] == 2 and settings["depthwise"]["groups"] == 3
    assert (settings["bn"]["momentum"], settings["bn"]["eps"]) == (0.1, 1e-5)  # ONNX's 0.9 is PyTorch's 0.1
    assert (settings["bn2"]["momentum"], settings["bn2"]["eps"]) == (0.2, 1e-3)
    assert settings["dropout3"]["p"] == P
    assert {key: settings["up"][key] for key in ("stride", "padding", "output_padding", "dilation")} == \
        {"stride": (2, 2), "padding": (1, 1), "output_padding": (1, 1), "dilation": (2, 2)}
    assert buffers["bn.num_batches_tracked"] == 0 and buffers["bn.num_batches_tracked"].shape == ()
    model = model.double()  # the exported float32 weights, exactly
    for name, value in model.state_dict().items():
        if name in buffers and name.endswith(("mean", "var")):
            np.testing.assert_allclose(buffers[name], value.numpy(), rtol=1e-7)

    rng = np.random.default_rng(1)
    x, labels = rng.standard_normal((3, 2, 4, 4)), np.array([4, 0, 2])
    mask = (rng.random((3, 4, 4, 4)) >= P).astype(np.float64)
    # training mode: the batch's statistics, the running ones updated, the same mask on both sides
    model.drop = FixedMask(torch.tensor(mask))
    model.train()
    _compare(model, NumpyNetwork(spec, params), x, labels, {"dropout3": mask})
    updated = NumpyNetwork(spec, params, {name: value.copy() for name, value in buffers.items()})
    updated.forward(x, {"dropout3": mask})  # one training pass, as the model's above
    for name in ("bn.running_mean", "bn.running_var", "bn2.running_mean", "bn2.running_var"):
        np.testing.assert_allclose(updated.buffers[name], model.state_dict()[name].numpy(), rtol=1e-6, atol=1e-7)
    assert updated.buffers["bn.num_batches_tracked"] == 1
    # evaluation mode: the running statistics, dropout the identity
    model.eval()
    _compare(model, NumpyNetwork(spec, params, updated.buffers, training=False), x, labels, None)


def _compare(model, reference, x, labels, masks):
    tx = torch.tensor(x, requires_grad=True)
    logits = model(tx)
    F.cross_entropy(logits, torch.tensor(labels)).backward()
    np.testing.assert_allclose(reference.forward(x, masks), logits.detach().numpy(), rtol=1e-6, atol=1e-7)
    _, grads = reference.loss_and_grads(x, labels, masks) if masks else _evaluation_grads(reference, x, labels)
    np.testing.assert_allclose(grads["input"], tx.grad.numpy(), rtol=1e-5, atol=1e-8)
    for name, parameter in model.named_parameters():
        np.testing.assert_allclose(grads[name], parameter.grad.numpy(), rtol=1e-5, atol=1e-8, err_msg=name)
    model.zero_grad()


def _evaluation_grads(reference, x, labels):
    """The reference's gradients of an evaluation pass: its batch norms read the running statistics
    (``training`` is False) and each dropout is given the mask 1 - p, which its x * mask / (1 - p) passes on."""
    masks = {layer.label: np.full((len(x), *layer.input_shape), 1 - layer.settings["p"])
             for layer in reference.spec.layers if layer.kind == "dropout"}
    return reference.loss_and_grads(x, labels, masks)


def test_an_evaluation_export_folds_batch_norm_and_drops_dropout_and_still_imports(cli, tmp_path):
    model = _model().eval()
    spec, params, buffers = _import(model, tmp_path / "model.onnx", cli, training=False)
    kinds = [layer.kind for layer in spec.layers]
    assert "dropout" not in kinds and kinds.count("batchnorm2d") == 1  # bn folded into conv; bn2 after up kept
    x = np.random.default_rng(2).standard_normal((3, 2, 4, 4))
    expected = model.double()(torch.tensor(x)).detach().numpy()
    reference = NumpyNetwork(spec, params, buffers, training=False)
    np.testing.assert_allclose(reference.forward(x), expected, rtol=1e-5, atol=1e-6)  # folded in float32


def _graph(nodes, initializers, input_shape=(1, 2, 4, 4)):
    return helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(value, np.float32), name) for name, value in initializers.items()]))


HEAD = [helper.make_node("Flatten", ["h"], ["f"], name="flat"),
        helper.make_node("Gemm", ["f", "fc.weight"], ["y"], name="fc", transB=1)]


def test_dropout_of_an_old_opset_and_a_layer_norm_without_shift():
    nodes = [helper.make_node("Dropout", ["x"], ["d"], name="drop", ratio=0.25),
             helper.make_node("LayerNormalization", ["d", "scale"], ["h"], name="norm", axis=1, epsilon=1e-3), *HEAD]
    imported = convert(_graph(nodes, {"scale": np.full((2, 4, 4), 2.0), "fc.weight": np.ones((3, 32))}), "old")
    assert imported.layers[:2] == [{"type": "dropout", "p": 0.25}, {"type": "layernorm", "name": "ln1", "eps": 0.001}]
    np.testing.assert_array_equal(imported.params["ln1.bias"], np.zeros((2, 4, 4)))
    assert imported.spec().layers[1].kind == "layernorm"


@pytest.mark.parametrize("node, initializers, message", [
    (helper.make_node("ConvTranspose", ["x", "w"], ["h"], name="grouped", group=2), {"w": np.ones((2, 1, 1, 1))},
     r"^node 'grouped' \(ConvTranspose\): group = 2 is not supported \(symcnn supports 1\)"),
    (helper.make_node("ConvTranspose", ["x", "w"], ["h"], name="sized", output_shape=[9, 9], strides=[2, 2]),
     {"w": np.ones((2, 1, 3, 3))}, r"^node 'sized' \(ConvTranspose\): output_shape = \[9, 9\]: symcnn's transposed"),
    (helper.make_node("LayerNormalization", ["x", "s"], ["h"], name="last", axis=-2), {"s": np.ones(4)},
     r"^node 'last' \(LayerNormalization\): axis = -2 with a scale of shape \(4,\): symcnn's layer norm normalizes"),
    (helper.make_node("LayerNormalization", ["x", "s"], ["h"], name="rows", axis=-1), {"s": np.ones(4)},
     r"^node 'rows' \(LayerNormalization\): ln1.weight: the model's array has shape \(4,\), the spec's layer needs "
     r"\(2, 4, 4\)"),
    (helper.make_node("InstanceNormalization", ["x", "s", "b"], ["h"], name="inorm"), {"s": [1, 1], "b": [0, 0]},
     r"^node 'inorm' \(InstanceNormalization\): op not supported by symcnn import \(supported: AveragePool, "
     r"BatchNormalization, Conv, ConvTranspose, Dropout, "),
])
def test_what_symcnn_cannot_import_is_refused_in_one_line_naming_the_node(node, initializers, message, cli, tmp_path):
    model = _graph([node, *HEAD], {**initializers, "fc.weight": np.ones((3, 32))})
    with pytest.raises(ValueError, match=message):
        convert(model, "bad").spec()
    onnx.save(model, str(tmp_path / "bad.onnx"))
    status, _, err = cli("import", tmp_path / "bad.onnx", "-o", tmp_path / "bad.toml")
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "bad.toml").exists()


@pytest.mark.slow
def test_the_imported_spec_runs_on_generated_kernels_inside_pytorch_as_the_model(cli, tmp_path):
    """The imported spec as symcnn's module (generated kernels as operators) with the imported parameters and
    running statistics: logits, every gradient and the running statistics after a training step equal the
    exported model's (fed symcnn's dropout mask), then evaluation mode."""
    import symcnn.torch
    from symcnn.torch.operators import draw_mask

    model = _model()
    spec, params, buffers = _import(model, tmp_path / "model.onnx", cli, training=True)
    ours = symcnn.torch.from_spec(spec, dtype="float64", seed=4)
    ours.load_state_dict({name: torch.tensor(value) for name, value in {**params, **buffers}.items()})
    model = model.double()
    x, labels = torch.randn(3, 2, 4, 4, dtype=torch.float64), torch.tensor([1, 4, 0])
    model.drop = FixedMask(draw_mask(torch.empty(3, 4, 4, 4, dtype=torch.float64), 4, 3, 0, P))
    for mode in ("train", "eval"):  # training mode (the mask of step 0), then evaluation mode
        getattr(ours, mode)(), getattr(model, mode)()
        results = []
        for module in (ours, model):
            inputs = x.clone().requires_grad_(True)
            loss = F.cross_entropy(module(inputs), labels)
            results.append((loss, torch.autograd.grad(loss, [inputs, *module.parameters()])))
        assert results[0][0].item() == pytest.approx(results[1][0].item(), rel=1e-6)
        for mine, theirs in zip(results[0][1], results[1][1]):
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-8)
        for name, value in model.state_dict().items():  # (ONNX keeps no count: ours starts at 0)
            if not name.endswith("num_batches_tracked"):
                torch.testing.assert_close(ours.state_dict()[name], value, rtol=1e-6, atol=1e-7)
        assert ours.bn.num_batches_tracked.item() == 1
