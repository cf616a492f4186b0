"""symcnn import of graphs: a torchvision-style residual network (basic blocks with batch norm, one
strided with a 1x1 projection shortcut, and a concat), exported by torch.onnx.export, imports as add and
concat layers naming their inputs and computes what the PyTorch model computes (checked with the NumPy
reference: nothing compiles); hand-built Sum and Concat nodes, and the refusals."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from symcnn.bench.numpy_network import NumpyNetwork  # noqa: E402
from symcnn.onnx.importer import convert  # noqa: E402
from symcnn.spec import load_spec  # noqa: E402

nn = torch.nn


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block: two 3x3 convolutions with batch norm, and the input (or its 1x1
    projection, where the block strides or widens) added before the last ReLU."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.downsample = None
        if stride != 1 or channels_in != channels_out:
            self.downsample = nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride, bias=False),
                                            nn.BatchNorm2d(channels_out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class SmallResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.layer1 = BasicBlock(4, 4)
        self.layer2 = BasicBlock(4, 6, stride=2)
        self.side = nn.Conv2d(4, 2, 1, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.layer1(self.relu(self.stem(x)))
        joined = torch.cat([self.layer2(x), self.side(x)], dim=1)  # DenseNet's join, along channels
        return self.fc(torch.flatten(self.pool(joined), 1))


def _model() -> nn.Module:
    """The network in evaluation mode, with batch-norm statistics and scales that are not the initial ones."""
    torch.manual_seed(0)
    model = SmallResNet()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            channels = module.num_features
            module.running_mean.copy_(torch.randn(channels) * 0.3)
            module.running_var.copy_(torch.rand(channels) + 0.5)
            module.weight.data.copy_(torch.rand(channels) + 0.5)
            module.bias.data.copy_(torch.randn(channels) * 0.2)
    return model.eval()


def test_an_exported_residual_network_imports_as_a_graph(cli, tmp_path):
    model = _model()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated; the torch.export one needs onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 2, 8, 8),), str(tmp_path / "resnet.onnx"), dynamo=False,
                          input_names=["x"], output_names=["logits"])
    status, _, err = cli("import", tmp_path / "resnet.onnx", "-o", tmp_path / "resnet.toml",
                         "--params", tmp_path / "resnet.npz")
    assert status == 0, err
    spec = load_spec(tmp_path / "resnet.toml")
    joins = [(layer.kind, layer.inputs) for layer in spec.layers if layer.kind in ("add", "concat")]
    assert [kind for kind, _ in joins] == ["add", "add", "concat"]
    assert joins[0][1][1] == "relu1"  # the first block adds its input, the stem's ReLU
    readers = spec.consumers()
    assert readers["relu1"] == ("conv1", "add5") and len(readers["relu6"]) == 3  # the block's input fans out
    with np.load(tmp_path / "resnet.npz") as stored:
        params = {name: value.astype(np.float64) for name, value in stored.items()}
    x = np.random.default_rng(0).standard_normal((3, 2, 8, 8))
    model = model.double()  # the exported float32 weights, exactly
    tx = torch.tensor(x, requires_grad=True)
    logits = model(tx)
    labels = np.array([0, 2, 1])
    torch.nn.functional.cross_entropy(logits, torch.tensor(labels)).backward()
    reference = NumpyNetwork(spec, params, training=False)
    # batch norm folded into the convolutions by the exporter, in float32: agreement to float32's rounding
    np.testing.assert_allclose(reference.forward(x), logits.detach().numpy(), rtol=1e-5, atol=1e-6)
    _, grads = reference.loss_and_grads(x, labels)
    np.testing.assert_allclose(grads["input"], tx.grad.numpy(), rtol=1e-4, atol=1e-7)


def _graph(nodes, initializers, input_shape=(1, 2, 4, 4)):
    return helper.make_model(helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(value, np.float32), name) for name, value in initializers.items()]))


def _head(source: str) -> list:
    return [helper.make_node("Flatten", [source], ["f"], name="flat"),
            helper.make_node("Gemm", ["f", "fc.weight"], ["y"], name="fc", transB=1)]


def test_sum_of_three_and_a_concat_of_the_input():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="r"), helper.make_node("Sigmoid", ["x"], ["s"], name="s"),
             helper.make_node("Sum", ["r", "s", "x"], ["t"], name="total"),
             helper.make_node("Concat", ["t", "x"], ["c"], name="join", axis=1), *_head("c")]
    imported = convert(_graph(nodes, {"fc.weight": np.ones((3, 64))}), "sums")
    assert imported.layers[:4] == [{"type": "relu"}, {"type": "sigmoid", "inputs": ["input"]},
                                   {"type": "add", "inputs": ["relu0", "sigmoid1", "input"]},
                                   {"type": "concat", "inputs": ["add2", "input"]}]
    spec = imported.spec()
    assert spec.consumers()["input"] == ("relu0", "sigmoid1", "add2", "concat3")
    assert spec.layers[3].output_shape == (4, 4, 4)


@pytest.mark.parametrize("nodes, initializers, message", [
    ([helper.make_node("Relu", ["x"], ["r"], name="r"), helper.make_node("Add", ["r", "c"], ["y"], name="shift")],
     {"c": [1.0]}, r"^node 'shift' \(Add\): adds or joins a constant; symcnn's add joins layers' outputs"),
    ([helper.make_node("Concat", ["x", "x"], ["y"], name="tall", axis=2)], {},
     r"^node 'tall' \(Concat\): axis = 2 is not supported \(symcnn supports 1\)"),
    ([helper.make_node("Concat", ["x"], ["y"], name="alone", axis=1)], {},
     r"^node 'alone' \(Concat\): joins 1 tensor; symcnn's concat takes two or more"),
    ([helper.make_node("Relu", ["later"], ["y"], name="early")], {},
     r"^node 'early' \(Relu\): reads 'later', which no node before it makes"),
    ([helper.make_node("Relu", ["x"], ["y"], name="r"), helper.make_node("Relu", ["x"], ["dead"], name="dead")], {},
     r"^model: its output 'y' is not the last layer's"),
])
def test_a_graph_symcnn_cannot_import_is_refused_in_one_line(nodes, initializers, message):
    with pytest.raises(ValueError, match=message):
        convert(_graph(nodes, initializers), "bad")
