"""An ONNX model as a symcnn spec and its parameters (``symcnn import MODEL.onnx -o SPEC.toml``).

The graph has one input and one output; in between, a chain (as a PyTorch ``nn.Sequential`` exports)
or a graph whose branches join: ``Add`` (or ``Sum``) of two or more tensors is an ``add`` layer (a
residual connection, as a torchvision ResNet block exports), ``Concat`` along axis 1 a ``concat``
layer, each naming its ``inputs``; a layer that reads another than the one just above names it too.
Each other node becomes layers by its op type through :data:`CONVERTERS`, one entry per op: a node of
another op, or with an attribute symcnn has no setting for, is refused in one line naming the node and
the op. ``MatMul`` followed by ``Add`` of a constant is one dense layer (as ``Gemm``); a final
``Softmax`` is dropped (the spec's loss, softmax cross-entropy, applies it to the logits).

``BatchNormalization`` is a ``batchnorm2d`` layer: its scale and shift the parameters ``weight`` and
``bias``, its mean and variance the buffers ``running_mean`` and ``running_var`` (with
``num_batches_tracked`` 0: ONNX does not keep the count), its ``epsilon`` the layer's ``eps`` and its
momentum PyTorch's, ``1 - momentum`` (ONNX weighs the running value by ``momentum``, PyTorch the batch's).
A model exported in evaluation mode usually has none left after a convolution: the exporter folds it
into the convolution's weights, and removes its dropouts (``Dropout`` nodes, of a model exported in
training mode, are ``dropout`` layers of the node's ratio).

Parameterized layers are named as the model names its weights (``conv1.weight`` gives ``conv1``)
where that is an identifier, else ``conv1``, ``conv2``, ``fc1``, ... in order.

Example:
    >>> import onnx.helper as h, numpy as np
    >>> from onnx import TensorProto, numpy_helper
    >>> weight = numpy_helper.from_array(np.ones((10, 16), np.float32), "fc.weight")
    >>> graph = h.make_graph([h.make_node("Flatten", ["x"], ["f"], name="flat"),
    ...                       h.make_node("Gemm", ["f", "fc.weight"], ["y"], name="fc", transB=1)], "g",
    ...                      [h.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
    ...                      [h.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], [weight])
    >>> imported = convert(h.make_model(graph), "tiny")
    >>> imported.layers
    [{'type': 'flatten'}, {'type': 'dense', 'name': 'fc', 'out_features': 10, 'bias': False}]
    >>> sorted(imported.params)
    ['fc.weight']
"""

from __future__ import annotations

import io
import keyword
import re
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple, Optional

import numpy as np
import onnx
from onnx import numpy_helper

from symcnn.files import write_bytes, write_text
from symcnn.spec import RESERVED_LABELS, NetworkSpec, parse_spec, spec_toml

__all__ = ["CONVERTERS", "Imported", "convert", "import_onnx"]


class Node(NamedTuple):
    """One ONNX node as a converter sees it: its attributes and constant inputs read, its data input apart."""

    name: str
    op: str
    attributes: dict[str, Any]
    constants: list[np.ndarray]  # the inputs after the data input, in order (weights, biases)

    def refuse(self, message: str) -> ValueError:
        return ValueError(f"node {self.name!r} ({self.op}): {message}")

    def attribute(self, key: str, default: Any, allowed: Optional[tuple] = None) -> Any:
        value = self.attributes.get(key, default)
        if allowed is not None and value not in allowed:
            raise self.refuse(f"{key} = {value!r} is not supported (symcnn supports {', '.join(map(repr, allowed))})")
        return value


class Layer(NamedTuple):
    """A spec layer table (without its name), its parameters by role (``weight``, ``bias``) and buffers
    (``running_mean``, ...)."""

    table: dict[str, Any]
    params: dict[str, np.ndarray] = {}
    kind_prefix: str = ""  # how an unnamed parameterized layer is called: conv, fc
    buffers: dict[str, np.ndarray] = {}


def _pair(node: Node, key: str, values: list, default: int) -> list:
    values = list(values) if values else [default, default]
    if len(values) != 2:
        raise node.refuse(f"{key} = {values}: symcnn supports 2-D windows")
    return values


def _padding(node: Node) -> list:
    node.attribute("auto_pad", b"NOTSET", (b"NOTSET", "NOTSET"))
    pads = list(node.attributes.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4 or pads[:2] != pads[2:]:
        raise node.refuse(f"pads = {pads}: symcnn pads both sides alike (begin and end pads equal)")
    return pads[:2]


def _float(value) -> float:
    """An ONNX float attribute (kept in float32) as the shortest decimal of that float32: 0.2, not 0.2000000029."""
    return float(str(np.float32(value)))


def _window_settings(node: Node) -> dict[str, Any]:
    """A convolution's kernel, stride, padding and dilation (and bias) from its attributes and weight."""
    weight = node.constants[0]
    if weight.ndim != 4:
        raise node.refuse(f"weight of shape {weight.shape}: symcnn supports 2-D convolutions")
    return {"kernel": list(weight.shape[2:]), "stride": _pair(node, "strides", node.attributes.get("strides"), 1),
            "padding": _padding(node), "dilation": _pair(node, "dilations", node.attributes.get("dilations"), 1),
            "bias": len(node.constants) > 1}


def _weight_and_bias(node: Node) -> dict[str, np.ndarray]:
    return {"weight": node.constants[0], **({"bias": node.constants[1]} if len(node.constants) > 1 else {})}


def _conv(node: Node) -> list[Layer]:
    groups = node.attribute("group", 1)
    settings = {"out_channels": int(node.constants[0].shape[0]), **_window_settings(node),
                **({"groups": int(groups)} if groups != 1 else {})}  # a depthwise convolution: C_in groups
    return [Layer({"type": "conv2d", **settings}, _weight_and_bias(node), "conv")]


def _conv_transpose(node: Node) -> list[Layer]:
    node.attribute("group", 1, (1,))
    if "output_shape" in node.attributes:
        raise node.refuse(f"output_shape = {node.attributes['output_shape']}: symcnn's transposed convolution takes "
                          "pads and output_padding (export with those)")
    settings = {"out_channels": int(node.constants[0].shape[1]), **_window_settings(node),
                "output_padding": _pair(node, "output_padding", node.attributes.get("output_padding"), 0)}
    return [Layer({"type": "conv_transpose2d", **settings}, _weight_and_bias(node), "deconv")]


def _batch_norm(node: Node) -> list[Layer]:
    if len(node.constants) != 4:
        raise node.refuse(f"expected a scale, a shift, a mean and a variance, got {len(node.constants)} constants")
    scale, shift, mean, variance = node.constants
    # ONNX: running = momentum * running + (1 - momentum) * batch; PyTorch: (1 - m) * running + m * batch
    momentum = float(f"{1 - _float(node.attributes.get('momentum', 0.9)):.12g}")
    settings = {"eps": _float(node.attributes.get("epsilon", 1e-5)), "momentum": momentum}
    buffers = {"running_mean": mean, "running_var": variance, "num_batches_tracked": np.array(0, dtype=np.int64)}
    return [Layer({"type": "batchnorm2d", **settings}, {"weight": scale, "bias": shift}, "bn", buffers)]


def _layer_norm(node: Node) -> list[Layer]:
    scale = node.constants[0]
    axis = node.attributes.get("axis", -1)
    if scale.ndim not in (1, 3) or axis not in (1, -scale.ndim):
        raise node.refuse(f"axis = {axis} with a scale of shape {scale.shape}: symcnn's layer norm normalizes each "
                          "sample's (C, H, W) or (F,) values")
    shift = node.constants[1] if len(node.constants) > 1 else np.zeros_like(scale)
    return [Layer({"type": "layernorm", "eps": _float(node.attributes.get("epsilon", 1e-5))},
                  {"weight": scale, "bias": shift}, "ln")]


def _dropout(node: Node) -> list[Layer]:
    """ONNX 12 on: the ratio a constant input (default 0.5; the training_mode input, after it, is the
    spec's mode); before: an attribute."""
    given = [value for value in node.constants if value.dtype.kind == "f"]  # (the training_mode is a bool)
    ratio = given[0] if given else node.attributes.get("ratio", 0.5)
    return [Layer({"type": "dropout", "p": _float(np.asarray(ratio).item())})]


def _pool(kind: str) -> Callable[[Node], list[Layer]]:
    def convert_pool(node: Node) -> list[Layer]:
        node.attribute("ceil_mode", 0, (0,))
        if _padding(node) != [0, 0]:
            raise node.refuse(f"pads = {node.attributes['pads']}: symcnn's pooling has no padding")
        if node.op == "MaxPool" and _pair(node, "dilations", node.attributes.get("dilations"), 1) != [1, 1]:
            raise node.refuse(f"dilations = {node.attributes['dilations']}: symcnn's max pooling has none")
        kernel = _pair(node, "kernel_shape", node.attributes.get("kernel_shape"), 1)
        return [Layer({"type": kind, "kernel": kernel, "stride": _pair(node, "strides",
                                                                         node.attributes.get("strides"), 1)})]
    return convert_pool


def _gemm(node: Node) -> list[Layer]:
    node.attribute("alpha", 1.0, (1.0,))
    node.attribute("beta", 1.0, (1.0,))
    node.attribute("transA", 0, (0,))
    weight = node.constants[0] if node.attribute("transB", 0) else node.constants[0].T
    return _dense(node, weight, node.constants[1] if len(node.constants) > 1 else None)


def _matmul(node: Node) -> list[Layer]:  # MatMul(x, W) [+ b]: W is (in, out)
    return _dense(node, node.constants[0].T, node.constants[1] if len(node.constants) > 1 else None)


def _dense(node: Node, weight: np.ndarray, bias: Optional[np.ndarray]) -> list[Layer]:
    if weight.ndim != 2 or (bias is not None and bias.shape != (weight.shape[0],)):
        raise node.refuse(f"expected a 2-D weight and a bias of its rows, got {weight.shape} and "
                          f"{None if bias is None else bias.shape}")
    params = {"weight": np.ascontiguousarray(weight), **({"bias": bias} if bias is not None else {})}
    return [Layer({"type": "dense", "out_features": int(weight.shape[0]), "bias": bias is not None}, params, "fc")]


def _flatten(node: Node) -> list[Layer]:
    node.attribute("axis", 1, (1,))
    return [Layer({"type": "flatten"})]


def _activation(kind: str, alpha: Optional[float] = None) -> Callable[[Node], list[Layer]]:
    def convert_activation(node: Node) -> list[Layer]:
        settings = {} if alpha is None else {"alpha": _float(node.attributes.get("alpha", alpha))}
        return [Layer({"type": kind, **settings})]
    return convert_activation


#: ONNX op type -> its layers. An op symcnn gains is one entry here (with its attributes checked).
CONVERTERS: dict[str, Callable[[Node], list[Layer]]] = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    "Dropout": _dropout,
    "MaxPool": _pool("maxpool2d"),
    "AveragePool": _pool("avgpool2d"),
    "GlobalAveragePool": lambda node: [Layer({"type": "global_avgpool"})],
    "Flatten": _flatten,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Relu": _activation("relu"),
    "LeakyRelu": _activation("leaky_relu", 0.01),
    "Elu": _activation("elu", 1.0),
    "Sigmoid": _activation("sigmoid"),
    "Tanh": _activation("tanh"),
    "Identity": lambda node: [],
}


@dataclass
class Imported:
    """A converted model: the spec's layer tables in order, its input shape, parameters and buffers by name
    (``buffers``: a batch norm's running statistics), and the node each parameterized layer came from."""

    name: str
    input_shape: tuple[int, int, int]
    layers: list[dict] = field(default_factory=list)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    buffers: dict[str, np.ndarray] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)  # layer name -> "node 'x' (Op)"

    @property
    def state(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by name, layer by layer as a PyTorch ``state_dict`` holds them (what
        ``--params`` writes)."""
        arrays = {**self.params, **self.buffers}
        layers = {name.rsplit(".", 1)[0]: number for number, name in enumerate(arrays)}  # (first seen: params')
        return dict(sorted(arrays.items(), key=lambda item: layers[item[0].rsplit(".", 1)[0]]))

    def spec_text(self) -> str:
        """The spec as TOML (validated when parsed: :meth:`spec`)."""
        description = f"imported from ONNX{'; ' if self.notes else ''}{'; '.join(self.notes)}"
        return spec_toml({"name": self.name, "description": description, "input": list(self.input_shape),
                          "layers": self.layers})

    def spec(self) -> NetworkSpec:
        """The spec, validated, with every parameter's shape checked against it."""
        spec = parse_spec(self.spec_text())
        for name, shape in {**spec.parameter_shapes(), **spec.buffer_shapes()}.items():
            if self.state[name].shape != shape:
                origin = self.origins.get(name.rsplit(".", 1)[0])
                raise ValueError(f"{origin + ': ' if origin else ''}{name}: the model's array has shape "
                                 f"{self.state[name].shape}, the spec's layer needs {shape}")
        return spec


_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")


def _constants(graph) -> dict[str, np.ndarray]:
    arrays = {tensor.name: numpy_helper.to_array(tensor) for tensor in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            arrays[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type == "Identity" and node.input[0] in arrays:  # a weight shared under a second name
            arrays[node.output[0]] = arrays[node.input[0]]
    return arrays


def _input_shape(graph, constants: dict) -> tuple[str, tuple[int, int, int]]:
    inputs = [value for value in graph.input if value.name not in constants]
    if len(inputs) != 1:
        raise ValueError(f"model: symcnn imports a graph of one input, got {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [dim.dim_value if dim.HasField("dim_value") else None for dim in dims]
    if len(shape) != 4 or None in shape[1:]:
        raise ValueError(f"model: input {inputs[0].name!r}: expected a fixed (N, C, H, W) shape, got "
                         f"{[dim.dim_param or dim.dim_value for dim in dims]}")
    return inputs[0].name, tuple(shape[1:])


#: ONNX op type -> the spec op of a node that joins several tensors (each named in the layer's ``inputs``).
JOINS = {"Add": "add", "Sum": "add", "Concat": "concat"}


def _join(node, label: str, sources: list[str], constants: dict) -> Layer:
    """An ``Add``, ``Sum`` or ``Concat`` node of two or more tensors as an add or concat layer reading them."""
    if any(value in constants for value in node.input):
        raise ValueError(f"node {label!r} ({node.op_type}): adds or joins a constant; symcnn's {JOINS[node.op_type]} "
                         "joins layers' outputs (a bias belongs to the Conv, Gemm or MatMul before it)")
    if len(sources) < 2:
        raise ValueError(f"node {label!r} ({node.op_type}): joins {len(sources)} tensor; symcnn's "
                         f"{JOINS[node.op_type]} takes two or more")
    if node.op_type == "Concat":
        view = Node(label, node.op_type, {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}, [])
        view.attribute("axis", None, (1,))  # channels of a map, features of a vector
    return Layer({"type": JOINS[node.op_type], "inputs": sources})


class _Tensors:
    """Which layer makes each ONNX value (by spec label; ``"input"``: the model's input), and the label of
    the layer just above, the one a layer reads when it names no ``inputs``."""

    def __init__(self, input_name: str):
        self.labels = {input_name: "input"}
        self.previous = "input"

    def source(self, value: str, node_label: str, op: str) -> str:
        if value not in self.labels:
            raise ValueError(f"node {node_label!r} ({op}): reads {value!r}, which no node before it makes")
        return self.labels[value]

    def append(self, imported: "Imported", table: dict, reads: list[str]) -> str:
        """Add ``table`` reading ``reads`` (named in ``inputs`` unless it is just the layer above); its label."""
        if reads != [self.previous] or "inputs" in table:
            table["inputs"] = list(table.pop("inputs", reads))
        label = table.get("name") or f"{table['type']}{len(imported.layers)}"
        imported.layers.append(table)
        self.previous = label
        return label


def convert(model, name: str) -> Imported:
    """The layers and parameters of an ONNX ``model`` (a ``ModelProto``) as a spec named ``name``."""
    graph = model.graph
    constants = _constants(graph)
    input_name, input_shape = _input_shape(graph, constants)
    imported = Imported(name, input_shape)
    tensors = _Tensors(input_name)
    nodes = [node for node in graph.node if node.op_type != "Constant" and node.output[0] not in constants]
    outputs = [value.name for value in graph.output]
    counts: dict[str, int] = {}
    used_names: set[str] = set(RESERVED_LABELS)  # a weight named loss.weight names its layer fc1, not loss
    position = 0
    while position < len(nodes):
        node = nodes[position]
        position += 1
        label = node.name or f"#{position}"
        data = [value for value in node.input if value and value not in constants]
        sources = [tensors.source(value, label, node.op_type) for value in data]
        if node.op_type in JOINS:  # (an Add of a bias after a MatMul was taken with the MatMul)
            joined = _join(node, label, sources, constants)
            tensors.labels[node.output[0]] = tensors.append(imported, dict(joined.table), sources)
            continue
        if len(data) != 1 or node.input[0] != data[0]:
            raise ValueError(f"node {label!r} ({node.op_type}): reads {list(node.input)}; symcnn imports a node "
                             "of one data input, first (or an Add, Sum or Concat of several)")
        inputs = list(node.input[1:])
        if node.op_type == "MatMul" and position < len(nodes) and nodes[position].op_type == "Add":
            after = nodes[position]  # MatMul + Add of a constant: one dense layer with a bias
            others = [value for value in after.input if value != node.output[0]]
            if len(after.input) == 2 and len(others) == 1 and others[0] in constants:
                inputs, position = inputs + others, position + 1
                node_output = after.output[0]
            else:
                node_output = node.output[0]
        else:
            node_output = node.output[0]
        if node.op_type == "Softmax" and node_output in outputs:
            imported.notes.append(f"its final Softmax ({label}) is the loss's")
            tensors.labels[node_output] = sources[0]
            continue
        converter = CONVERTERS.get(node.op_type)
        if converter is None:
            raise ValueError(f"node {label!r} ({node.op_type}): op not supported by symcnn import "
                             f"(supported: {', '.join(sorted(CONVERTERS))}, Add, Sum and Concat of layers, and a "
                             "final Softmax)")
        view = Node(label, node.op_type, {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute},
                    [constants[value] for value in inputs if value])  # (an optional input left out: "")
        made = sources[0]  # an Identity makes no layer: its output is its input
        for layer in converter(view):
            table = dict(layer.table)
            if layer.params:
                layer_name = _layer_name(inputs, layer.kind_prefix, counts, used_names)
                table = {"type": table.pop("type"), "name": layer_name, **table}
                imported.params.update({f"{layer_name}.{role}": np.ascontiguousarray(value, dtype=np.float32)
                                        for role, value in layer.params.items()})
                imported.buffers.update({f"{layer_name}.{role}": np.array(  # (a count stays 0-d)
                    value, dtype=np.int64 if value.dtype.kind in "iu" else np.float32, order="C")
                    for role, value in layer.buffers.items()})
                imported.origins[layer_name] = f"node {label!r} ({node.op_type})"
            made = tensors.append(imported, table, [made])
        tensors.labels[node_output] = made
    if outputs and tensors.labels.get(outputs[0]) != tensors.previous:
        raise ValueError(f"model: its output {outputs[0]!r} is not the last layer's (symcnn's spec ends in the "
                         "layer that gives the class scores)")
    return imported


def _layer_name(inputs: list[str], prefix: str, counts: dict, used: set) -> str:
    """The model's own name of the layer's weight (``conv1.weight`` -> ``conv1``) when it is an identifier,
    else the next of ``conv1``, ``conv2``, ... not taken."""
    own = inputs[0].rsplit(".", 1)[0] if inputs and inputs[0].endswith(".weight") else ""
    if _IDENTIFIER.match(own) and not keyword.iskeyword(own) and own.casefold() not in used:
        used.add(own.casefold())
        return own
    while True:
        counts[prefix] = counts.get(prefix, 0) + 1
        candidate = f"{prefix}{counts[prefix]}"
        if candidate.casefold() not in used:
            used.add(candidate.casefold())
            return candidate


def import_onnx(model_path: str, spec_path: str, params_path: Optional[str] = None,
                name: Optional[str] = None) -> NetworkSpec:
    """Read ``model_path``, write its spec to ``spec_path`` (named ``name``, else after the file) and,
    given ``params_path``, its parameters as an ``.npz`` (float32, by ``Network.params`` name), with its
    buffers (a batch norm's running statistics, by ``Network.buffers`` name) where it has any."""
    try:
        model = onnx.load(str(model_path))
    except FileNotFoundError:
        raise ValueError(f"model: no such file: {model_path}") from None
    except Exception as error:  # protobuf's DecodeError and friends: not an ONNX model
        raise ValueError(f"model: {model_path} is not an ONNX model ({type(error).__name__})") from None
    if not str(spec_path).endswith(".toml"):
        raise ValueError(f"out: the spec file must end in .toml, got {spec_path}")
    stem = name or re.sub(r"[^A-Za-z0-9_-]", "-", str(spec_path).rsplit("/", 1)[-1][:-5]).lstrip("-_0123456789")
    imported = convert(model, stem or "imported")
    spec = imported.spec()
    write_text(spec_path, imported.spec_text())
    if params_path is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **imported.state)
        write_bytes(params_path, buffer.getvalue())
    return spec
