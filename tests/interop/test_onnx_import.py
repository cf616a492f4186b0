"""symcnn import: the PyTorch twins of the shipped specs exported with torch.onnx.export, imported, and
compared with the originals (logits and gradients); hand-built graphs for MatMul+Add, a final Softmax and
the refusals. (Graphs with adds and concats: test_onnx_graphs.py.)"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from symcnn.bench.bench import torch_model  # noqa: E402
from symcnn.onnx.importer import convert  # noqa: E402
from symcnn.runtime.network import Network  # noqa: E402
from symcnn.spec import load_spec, parse_spec  # noqa: E402
from tests.kernels_helpers import COMPILES_KERNELS, toml_of  # noqa: E402

ACTIVATIONS = {"name": "acts", "input": [2, 9, 8], "layers": [
    {"type": "conv2d", "name": "conv_a", "out_channels": 4, "kernel": [3, 2], "stride": [2, 1], "padding": [1, 0],
     "dilation": [1, 2]},
    {"type": "leaky_relu", "alpha": 0.2}, {"type": "avgpool2d", "kernel": 2, "stride": 1},
    {"type": "elu", "alpha": 0.5},
    {"type": "conv2d", "name": "conv_b", "out_channels": 3, "kernel": 1, "bias": False}, {"type": "sigmoid"},
    {"type": "maxpool2d", "kernel": 2, "stride": [1, 2]}, {"type": "tanh"}, {"type": "global_avgpool"},
    {"type": "flatten"}, {"type": "dense", "name": "head", "out_features": 3},
]}


def _export(model, input_shape, path):
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated; the torch.export one needs onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, *input_shape),), str(path), dynamo=False,
                          input_names=["x"], output_names=["logits"])


@COMPILES_KERNELS
@pytest.mark.parametrize("spec_name", ["digits", "seed004-text", "acts"])
def test_an_exported_twin_imports_to_the_same_network(spec_name, cli, tmp_path):
    if spec_name == "acts":
        (tmp_path / "acts.toml").write_text(toml_of(ACTIVATIONS))
        spec_name = str(tmp_path / "acts.toml")
    original = Network.from_spec(spec_name, dtype="float64", seed=2)
    twin = torch_model(original.spec, {name: value.astype(np.float32) for name, value in original.params.items()})
    _export(twin, original.spec.input_shape, tmp_path / "model.onnx")
    status, _, err = cli("import", tmp_path / "model.onnx", "-o", tmp_path / "imported.toml",
                         "--params", tmp_path / "imported.npz")
    assert status == 0, err
    imported = Network.from_spec(tmp_path / "imported.toml", dtype="float64")
    assert [(layer.kind, layer.name, dict(layer.settings)) for layer in imported.spec.layers] == \
        [(layer.kind, layer.name, dict(layer.settings)) for layer in original.spec.layers]
    with np.load(tmp_path / "imported.npz") as params:
        imported.load_params(dict(params))
    rng = np.random.default_rng(0)
    x, labels = rng.standard_normal((4, *original.spec.input_shape)), rng.integers(0, original.spec.classes, 4)
    twin = twin.double()
    tx = torch.tensor(x, requires_grad=True)
    logits = twin(tx)
    torch.nn.functional.cross_entropy(logits, torch.tensor(labels)).backward()
    np.testing.assert_allclose(imported.forward(x), logits.detach().numpy(), rtol=1e-9, atol=1e-10)
    _, grads = imported.loss_and_grads(x, labels)
    np.testing.assert_allclose(grads["input"], tx.grad.numpy(), rtol=1e-8, atol=1e-11)
    for name, parameter in twin.named_parameters():
        np.testing.assert_allclose(grads[name], parameter.grad.numpy(), rtol=1e-8, atol=1e-11, err_msg=name)


@COMPILES_KERNELS
def test_an_imported_spec_generates_and_trains(cli, tmp_path):
    _export(torch_model(load_spec("digits"), Network.from_spec("digits").params), (1, 8, 8), tmp_path / "d.onnx")
    assert cli("import", tmp_path / "d.onnx", "-o", tmp_path / "mine.toml")[0] == 0
    assert 'name = "mine"' in (tmp_path / "mine.toml").read_text()
    status, _, err = cli("generate", tmp_path / "mine.toml", "--out", tmp_path / "kernels")
    assert status == 0, err
    assert (tmp_path / "kernels" / "mine" / "conv1.py").is_file()
    status, out, err = cli("train", tmp_path / "mine.toml", "--epochs", "1", "--no-progress")
    assert status == 0, err


def _graph(nodes, initializers, input_shape=(1, 1, 2, 3), output="y", extra_inputs=()):
    return helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape)), *extra_inputs],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(value, np.float32), name) for name, value in initializers.items()]))


def test_matmul_add_is_a_dense_layer_and_a_final_softmax_is_the_loss():
    weight, bias = np.arange(24.0).reshape(6, 4), np.array([1.0, 2.0, 3.0, 4.0])
    model = _graph([helper.make_node("Flatten", ["x"], ["f"], name="flat"),
                    helper.make_node("MatMul", ["f", "W"], ["m"], name="mm"),
                    helper.make_node("Add", ["m", "b"], ["z"], name="add"),
                    helper.make_node("Softmax", ["z"], ["y"], name="probabilities", axis=1)], {"W": weight, "b": bias})
    imported = convert(model, "mm")
    assert imported.layers == [{"type": "flatten"}, {"type": "dense", "name": "fc1", "out_features": 4, "bias": True}]
    np.testing.assert_array_equal(imported.params["fc1.weight"], weight.T)
    np.testing.assert_array_equal(imported.params["fc1.bias"], bias)
    assert "its final Softmax (probabilities) is the loss's" in imported.spec_text()
    assert imported.spec().classes == 4


def test_a_weight_named_like_a_reserved_label_names_its_layer_otherwise():
    """A layer takes its weight's name (``fc.weight`` -> ``fc``) unless the package reserves it (``Folds``:
    the generated package's FOLDS table), where the spec would be refused."""
    model = _graph([helper.make_node("Flatten", ["x"], ["f"], name="flat"),
                    helper.make_node("Gemm", ["f", "Folds.weight", "Folds.bias"], ["y"], name="fc", transB=1)],
                   {"Folds.weight": np.ones((4, 6)), "Folds.bias": np.zeros(4)})
    imported = convert(model, "reserved")
    assert imported.layers[-1]["name"] == "fc1" and set(imported.params) == {"fc1.weight", "fc1.bias"}
    assert [layer.label for layer in parse_spec(imported.spec_text()).layers][-1] == "fc1"


@pytest.mark.parametrize("nodes, initializers, message", [
    ([helper.make_node("LRN", ["x"], ["y"], name="lrn1", size=3)], {},
     r"node 'lrn1' \(LRN\): op not supported by symcnn import \(supported: AveragePool, BatchNormalization, Conv, "),
    ([helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="grouped", group=2)], {"w": np.ones((2, 1, 1, 1))},
     r"node 'grouped' \(ConvTranspose\): group = 2 is not supported \(symcnn supports 1\)"),
    ([helper.make_node("Conv", ["x", "w"], ["y"], name="lopsided", pads=[0, 1, 1, 1])], {"w": np.ones((1, 1, 1, 1))},
     r"node 'lopsided' \(Conv\): pads = \[0, 1, 1, 1\]: symcnn pads both sides alike"),
    ([helper.make_node("MaxPool", ["x"], ["y"], name="ceil", kernel_shape=[2, 2], ceil_mode=1)], {},
     r"node 'ceil' \(MaxPool\): ceil_mode = 1 is not supported"),
    ([helper.make_node("Relu", ["x"], ["r"], name="r"), helper.make_node("Add", ["r", "b"], ["y"], name="shift")],
     {"b": [1.0]}, r"node 'shift' \(Add\): adds or joins a constant"),
    ([helper.make_node("Softmax", ["x"], ["s"], name="early"), helper.make_node("Relu", ["s"], ["y"], name="r")],
     {}, r"node 'early' \(Softmax\): op not supported"),
])
def test_an_unsupported_node_is_refused_in_one_line_naming_it(nodes, initializers, message, cli, tmp_path):
    with pytest.raises(ValueError, match=message):
        convert(_graph(nodes, initializers, input_shape=(1, 2, 4, 4)), "bad")
    onnx.save(_graph(nodes, initializers, input_shape=(1, 2, 4, 4)), str(tmp_path / "bad.onnx"))
    status, out, err = cli("import", tmp_path / "bad.onnx", "-o", tmp_path / "bad.toml")
    assert status == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "bad.toml").exists()


def test_a_file_that_is_not_onnx_and_a_dynamic_input_are_refused(cli, tmp_path):
    (tmp_path / "junk.onnx").write_bytes(b"\xff not a protobuf \x00" * 3)
    status, _, err = cli("import", tmp_path / "junk.onnx", "-o", tmp_path / "s.toml")
    assert status == 2 and "is not an ONNX model" in err
    status, _, err = cli("import", tmp_path / "missing.onnx", "-o", tmp_path / "s.toml")
    assert status == 2 and "no such file" in err
    dynamic = _graph([helper.make_node("Relu", ["x"], ["y"])], {}, input_shape=("N", 1, "H", 4))
    with pytest.raises(ValueError, match=r"input 'x': expected a fixed \(N, C, H, W\) shape, got \['N', 1, 'H', 4\]"):
        convert(dynamic, "dynamic")
