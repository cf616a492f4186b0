"""Network specs: frozen layer descriptions, parsed from TOML or built in Python, validated at once.

A spec is the only user input that reaches generated code, so it is validated before anything is
rendered: every key known, every field of the right type and range, every parameterized layer's
name a plain Python identifier (a spec can never put code into a generated module), and every
shape consistent. Errors are ``ValueError`` with one line naming the layer and field.

Example:
    >>> spec = load_spec("digits")
    >>> [(layer.kind, layer.output_shape) for layer in spec.layers][:3]
    [('conv2d', (16, 8, 8)), ('relu', (16, 8, 8)), ('maxpool2d', (16, 4, 4))]
"""

from __future__ import annotations

import hashlib
import json
import keyword
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Optional

from symcnn import registry
from symcnn.registry import REQUIRED
from symcnn.train_config import SPEC_TRAINING_KEYS, TrainConfig
from symcnn.validation import integer

__all__ = ["LayerSpec", "NetworkSpec", "SHIPPED_SPECS", "ARCHITECTURE_SPECS", "SUITE_SPECS", "load_spec", "parse_spec",
           "spec_from_dict", "SPEC_DIR", "shipped_kernels_dir", "spec_toml"]

PACKAGE_ROOT = Path(__file__).resolve().parent
SPEC_DIR = PACKAGE_ROOT / "specs"


def shipped_kernels_dir() -> Path:
    """Where the shipped specs' kernels live: inside an installed wheel (``symcnn/_generated``,
    written by the build hook), else ``generated/`` of the source checkout."""
    installed = PACKAGE_ROOT / "_generated"
    return installed if installed.is_dir() else PACKAGE_ROOT.parent / "generated"
#: The shipped specs whose kernels ship too (generated/, and every wheel): `symcnn generate` renders these.
SHIPPED_SPECS = ("seed004", "seed004-text", "digits", "resnet-mini", "mobilenet-mini")
#: Document 003's architectures, shipped as specs for summaries, reports and the errata: loaded by name
#: like the others, but their kernels are not shipped (generating and compiling VGG-16's takes minutes).
ARCHITECTURE_SPECS = ("lenet5", "alexnet", "vgg16")
#: The benchmark suite (`symcnn bench --suite`, docs/performance.md): small networks that together
#: cover few and many channels, 1x1 to 7x7 kernels, strides, dilations, both poolings, dense heads,
#: batch norm, depthwise-separable and residual blocks. Loaded by name; their kernels are not shipped
#: (they compile into the user's cache on first use, as any spec file's).
SUITE_SPECS = ("suite-lenet", "suite-vgg", "suite-wide", "suite-large-kernels", "suite-dilated", "suite-pointwise",
               "suite-mlp-head", "suite-batchnorm", "suite-separable", "suite-residual")

LOSSES = ("softmax_cross_entropy",)

#: Names no layer may take (compared ignoring case, as a case-insensitive file system would): the
#: loss's module, the network's input, the module of the gradient sums at fan-outs, and the generated
#: package's own names.
RESERVED_LABELS = ("loss", "input", "fanout", "spec_name", "spec_digest", "spec_toml", "modules", "aliases",
                   "arguments", "folds", "reshapes", "fused", "fanout_fused", "forward_fused", "training_forward_fused",
                   "statistics")

#: Limits, checked before any work starts: a spec within them generates, compiles and runs in a
#: few GiB; one beyond them is refused in one line naming the limit. (Sizes: registry.MAX_SIZE.)
MAX_SPEC_BYTES = 1_000_000
MAX_LAYERS = 512
MAX_TENSOR_ELEMENTS = 2**27  # one image's activation at any layer (512 MiB in float32)
MAX_PARAMETERS = 2**28  # all learned parameters together (1 GiB in float32)

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
_SPEC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}\Z")


@dataclass(frozen=True)
class LayerSpec:
    """One layer, validated, with its input and output shapes (without the batch axis).

    ``inputs`` are the labels of the layers it reads (``"input"``: the network's input), in order;
    ``input_shapes`` their shapes. ``input_shape`` is the first one's (the only one, but for a layer
    that joins several: add, concat).
    """

    kind: str
    index: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    name: Optional[str] = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    input_shapes: tuple[tuple[int, ...], ...] = ()
    # a convolution of a spec whose [kernels] table asks for Winograd (symcnn.codegen.winograd_kernels)
    winograd: bool = False

    def __post_init__(self):
        if not self.input_shapes:
            object.__setattr__(self, "input_shapes", (tuple(self.input_shape),))

    @cached_property  # a pass reads it for every layer, many times (batch 1: it shows); the fields are frozen
    def label(self) -> str:
        """How errors and generated code refer to the layer: its name, or ``kind<index>``."""
        return self.name or f"{self.kind}{self.index}"

    @property
    def formula_shape(self):
        """The input shape as the op's registry entry and formula take it: of a layer that joins
        inputs (add, concat), the tuple of their shapes; else the one input's."""
        return self.input_shapes if self.kind != "loss" and registry.get(self.kind).merges else self.input_shape

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{"conv1.weight": (16, 3, 3, 3), "conv1.bias": (16,)}``: PyTorch's names and shapes."""
        if self.kind == "loss":
            return {}
        shapes = registry.get(self.kind).parameter_shapes(self.input_shape, self.settings)
        return {f"{self.name}.{role}": tuple(shape) for role, shape in shapes.items()}

    def buffer_shapes(self) -> dict[str, tuple[int, ...]]:
        """``{"bn1.running_mean": (16,), ...}``: the layer's buffers by PyTorch's ``state_dict`` names."""
        if self.kind == "loss":
            return {}
        shapes = registry.get(self.kind).buffer_shapes(self.input_shape, self.settings)
        return {f"{self.name}.{role}": tuple(shape) for role, shape in shapes.items()}


@dataclass(frozen=True)
class NetworkSpec:
    """A network: its name, input shape ``(C, H, W)``, loss and layers, validated."""

    name: str
    input_shape: tuple[int, int, int]
    loss: str
    layers: tuple[LayerSpec, ...]
    source: str = ""  # the canonical TOML text the spec was read from, for hashing
    training: Mapping[str, Any] = field(default_factory=dict)  # recommended settings, [training]
    kernels: Mapping[str, Any] = field(default_factory=dict)  # how the kernels compute, [kernels]

    @property
    def module_name(self) -> str:
        """The generated package's name: the spec name with ``-`` as ``_``."""
        return self.name.replace("-", "_")

    @property
    def classes(self) -> int:
        return self.layers[-1].output_shape[0]

    @property
    def sequential(self) -> bool:
        """Whether each layer reads only the one before it (no branch, skip or join)."""
        previous = "input"
        for layer in self.layers:
            if layer.inputs not in ((), (previous,)):
                return False
            previous = layer.label
        return True

    def consumers(self) -> dict[str, tuple[str, ...]]:
        """Each tensor's readers, by label (``"input"``, then each layer's): the layers that name it in
        their ``inputs``, in order. A tensor read by several layers (a fan-out: a residual block's input)
        gets the sum of their gradients."""
        readers: dict[str, list[str]] = {"input": []}
        for layer in self.layers:
            readers[layer.label] = []
        for layer in self.layers:
            for source in layer.inputs:
                readers[source].append(layer.label)
        return {label: tuple(names) for label, names in readers.items()}

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in self.layers:
            shapes.update(layer.parameter_shapes())
        return shapes

    def buffer_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every layer's buffers (batch norm's running statistics) by name."""
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in self.layers:
            shapes.update(layer.buffer_shapes())
        return shapes

    def digest(self) -> str:
        """A short hash of the spec's content, for caching generated code."""
        return hashlib.sha256(self.source.encode()).hexdigest()[:16]


def _error(where: str, field_name: str, message: str) -> ValueError:
    return ValueError(f"{where}: {field_name}: {message}")


def _check_keys(table: Mapping, allowed, where: str) -> None:
    for key in table:
        if key not in allowed:
            raise _error(where, key, f"unknown key (allowed: {', '.join(sorted(allowed)) or 'none'})")


def _field(check, where: str, field_name: str, *args):
    try:
        return check(*args)
    except ValueError as error:  # re-prefix with the layer
        message = str(error)
        message = message.split(": ", 1)[1] if ": " in message else message
        raise _error(where, field_name, message) from None


def _named(check, where: str, *args):
    """``check(*args)``, its ``field: message`` errors prefixed with the layer."""
    try:
        return check(*args)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def _where(index: int, kind: Optional[str] = None, name: Optional[str] = None) -> str:
    """How a message names a layer: as the file counts its ``[[layers]]`` tables, from 1.

    >>> _where(3, "dense", "fc1")
    "[[layers]] table 4 (dense 'fc1')"
    """
    what = f" ({kind} {name!r})" if kind and name else f" ({kind})" if kind else ""
    return f"[[layers]] table {index + 1}{what}"


def _layer(table: Mapping, index: int, tensors: Mapping[str, tuple[int, ...]], previous: str,
           names: set, later: frozenset = frozenset()) -> LayerSpec:
    """Layer ``index`` of a spec, checked: ``tensors`` are the shapes of what it may read, by label
    (the network's ``input`` and every layer above it), ``previous`` the label of the one just above,
    ``later`` the labels of the layers below (a read of one would be a cycle)."""
    if not isinstance(table, Mapping):
        raise _error(_where(index), "type", "each layer must be a table")
    kind = table.get("type")
    layer_ops = registry.names(layer=True)
    if not isinstance(kind, str) or kind not in layer_ops:
        shown = _shown(kind) if isinstance(kind, (str, int, float, bool)) else f"a {type(kind).__name__}"
        where = _where(index, kind) if isinstance(kind, str) and len(kind) <= 40 else _where(index)
        raise _error(where, "type", f"must be one of {', '.join(layer_ops)}, got {shown}")
    where = _where(index, kind)
    op = registry.get(kind)
    given = {key: value for key, value in table.items() if key not in ("type", "inputs")}
    name = given.pop("name", None)
    if name is None and op.parameterized:
        raise _error(where, "name", "missing (required)")
    if name is not None:
        if not isinstance(name, str) or not _IDENTIFIER.match(name) or keyword.iskeyword(name):
            raise _error(where, "name", "must be a plain Python identifier: a letter, then letters, digits and _ "
                                        f"(at most 64), got {_shown(name)}")
        if name.casefold() in names:
            raise _error(where, "name", f"{name!r} is used by another layer (names are compared ignoring case)")
        names.add(name.casefold())
    _check_keys(given, op.keys(), where)
    for setting in op.settings:  # required keys first, each named, as a user lists them
        if setting.default is REQUIRED and setting.default_from is None and setting.key not in given:
            raise _error(where, setting.key, "missing (required)")
    if name is not None:
        where = _where(index, kind, name)
    inputs = _inputs(table.get("inputs"), op, where, tensors, previous, later, name or f"{kind}{index}")
    settings = _named(op.settings_of, where, given)
    shapes = tuple(tensors[source] for source in inputs)
    for source, shape in zip(inputs, shapes):
        if len(shape) in op.inputs:
            continue
        reading = "" if "inputs" not in table else f" (from {source!r})"
        if len(shape) == 1:
            raise _error(where, "type", f"needs a (C, H, W) input, got shape {shape}{reading}; it cannot follow "
                                        "a flatten")
        raise _error(where, "type", f"needs a flat input, got shape {shape}{reading}: put a flatten before it")
    try:
        output = op.output_shape(shapes if op.merges else shapes[0], settings)
    except ValueError as error:
        message = str(error)
        if op.merges:  # name the layers whose shapes disagree
            message += " (from " + ", ".join(repr(source) for source in inputs) + ")"
        raise ValueError(f"{where}: {message}") from None
    return LayerSpec(kind, index, shapes[0], tuple(output), name, settings, inputs, shapes)


def _inputs(given, op, where: str, tensors: Mapping[str, tuple[int, ...]], previous: str,
            later: frozenset, own: str = "") -> tuple[str, ...]:
    """A layer's ``inputs``, checked: labels of layers above it (or ``input``), as many as its op takes;
    by default the layer just above. ``own`` is the layer's own label."""
    if given is None:
        if op.merges:
            raise _error(where, "inputs", f"missing (required: {op.name} joins two or more layers; name them, "
                                          'e.g. inputs = ["block1", "shortcut1"])')
        return (previous,)
    if not isinstance(given, list) or not all(isinstance(source, str) for source in given):
        raise _error(where, "inputs", f"must be a list of layer names, got {_shown(given)}")
    if op.merges and not 2 <= len(given) <= registry.MAX_MERGED:
        raise _error(where, "inputs", f"{op.name} takes 2 to {registry.MAX_MERGED} inputs, got {len(given)}")
    if not op.merges and len(given) != 1:
        raise _error(where, "inputs", f"{op.name} takes one input, got {len(given)}")
    for source in given:
        if source not in tensors:
            if source == own:
                raise _error(where, "inputs", f"{source!r} is this layer: a layer reads only the network's input "
                                              "and layers above it (a graph without cycles)")
            if source in later:
                raise _error(where, "inputs", f"{source!r} comes later: a layer reads only the network's input "
                                              "and layers above it (a graph without cycles)")
            raise _error(where, "inputs", f"no layer above is named {_shown(source)} (a layer reads 'input' or "
                                          "the name, or kind and index as in relu3, of a layer above it)")
    return tuple(given)


def _planned_label(table, index: int) -> Optional[str]:
    """The label a layer table will have (its name, or kind and index), before it is checked."""
    if not isinstance(table, Mapping):
        return None
    name, kind = table.get("name"), table.get("type")
    return name if isinstance(name, str) else f"{kind}{index}" if isinstance(kind, str) else None


def _training(table, where: str) -> dict[str, Any]:
    """A ``[training]`` table: known keys, each value as :class:`TrainConfig` accepts it, each read by the
    table's optimizer and schedule (no ``beta1`` for SGD)."""
    if not isinstance(table, Mapping):
        raise _error(where, "training", f"must be a table of training settings, got {table!r}")
    _check_keys(table, SPEC_TRAINING_KEYS, f"{where}: training")
    try:
        TrainConfig.resolve({}, **table)
    except ValueError as error:
        raise ValueError(f"{where}: training.{error}") from None
    return dict(table)


def _check_elements(shape: tuple[int, ...], where: str, field_name: str) -> None:
    elements = math.prod(shape)
    if elements > MAX_TENSOR_ELEMENTS:
        raise _error(where, field_name, f"shape {shape} has {elements:,} elements per image; symcnn's limit is "
                                        f"{MAX_TENSOR_ELEMENTS:,}")


def _shown(value) -> str:
    """A user's value for an error message: its repr, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def spec_from_dict(data: Mapping, source: str = "") -> NetworkSpec:
    """Validate a spec given as a dict (the TOML's structure)."""
    _check_keys(data, ("name", "input", "loss", "layers", "description", "training", "kernels"), "spec")
    name = data.get("name")
    if not isinstance(name, str) or not _SPEC_NAME.match(name):
        raise _error("spec", "name", f"must start with a letter and hold only letters, digits, _ and - "
                                     f"(at most 64), got {name!r}")
    where = f"spec {name!r}"
    raw_input = data.get("input")
    if not isinstance(raw_input, list) or len(raw_input) != 3:
        raise _error(where, "input", f"must be [channels, height, width], got {raw_input!r}")
    input_shape = tuple(_field(integer, where, "input", value, "input", 1, registry.MAX_SIZE) for value in raw_input)
    loss = data.get("loss", "softmax_cross_entropy")
    if loss not in LOSSES:
        raise _error(where, "loss", f"must be one of {', '.join(LOSSES)}, got {loss!r}")
    layers_data = data.get("layers")
    if not isinstance(layers_data, list) or not layers_data:
        raise _error(where, "layers", "at least one [[layers]] table is required")
    if len(layers_data) > MAX_LAYERS:
        raise _error(where, "layers", f"at most {MAX_LAYERS} layers (symcnn's limit), got {len(layers_data)}")
    _check_elements(input_shape, where, "input")
    layers, names, parameters = [], set(), 0
    tensors, previous = {"input": input_shape}, "input"
    planned = [_planned_label(table, index) for index, table in enumerate(layers_data)]
    for index, table in enumerate(layers_data):
        layer = _layer(table, index, tensors, previous, names, frozenset(planned[index:]) - set(tensors))
        _check_elements(layer.output_shape, _where(index, layer.kind, layer.name), "output")
        parameters += sum(math.prod(size) for size in layer.parameter_shapes().values())
        if parameters > MAX_PARAMETERS:
            raise _error(_where(index, layer.kind, layer.name), "parameters",
                         f"the network would have {parameters:,} parameters; symcnn's limit is {MAX_PARAMETERS:,}")
        layers.append(layer)
        if layer.label in tensors:  # a name used twice or "input": refused below, with the labels
            break
        tensors[layer.label] = layer.output_shape
        previous = layer.label
    labels = {}
    for layer in layers:  # kernel modules are named after labels: unique, even on a case-insensitive disk
        label = layer.label.casefold()
        if label in RESERVED_LABELS:
            raise _error(_where(layer.index, layer.kind), "name",
                         f"{layer.label!r} is reserved (symcnn's generated package uses it); choose another")
        if label in labels:
            raise _error(_where(layer.index, layer.kind), "name",
                         f"{layer.label!r} is taken (by {_where(labels[label])}); choose another")
        labels[label] = layer.index
    readers = NetworkSpec(name, input_shape, "", tuple(layers)).consumers()
    for layer in layers[:-1]:
        if not readers[layer.label]:
            raise _error(_where(layer.index, layer.kind, layer.name), "output",
                         f"the output of {layer.label!r} is read by no layer (every layer but the last feeds "
                         "another: name it in a later layer's inputs, or remove it)")
    shape = layers[-1].output_shape
    if len(shape) != 1:
        raise _error(where, "layers", f"the last layer must give class scores (a flat vector), got shape {shape}")
    if layers[-1].kind != "dense":
        raise _error(where, "layers", "the last layer must be a dense layer (the class scores)")
    training = _training(data.get("training", {}), where)
    kernels = _kernels(data.get("kernels", {}), where)
    if kernels.get("winograd"):
        layers = [replace(layer, winograd=True) if layer.kind in WINOGRAD_OPS else layer for layer in layers]
    return NetworkSpec(name, input_shape, loss, tuple(layers), source or repr(sorted(data.items(), key=str)),
                       training, kernels)


#: The ops whose forward kernels ``[kernels] winograd = true`` may compute by Winograd's minimal filtering.
WINOGRAD_OPS = ("conv2d",)


def _kernels(table, where: str) -> dict[str, Any]:
    """A ``[kernels]`` table: ``winograd`` (true or false, default false): a 3 x 3, stride-1 convolution's forward
    pass and input gradient by Winograd's F(4x4, 3x3) where its channels make it pay (not bit for bit the direct
    sums: symcnn.codegen.winograd_kernels)."""
    if not isinstance(table, Mapping):
        raise _error(where, "kernels", f"must be a table of kernel settings, got {_shown(table)}")
    _check_keys(table, ("winograd",), f"{where}: kernels")
    if "winograd" in table and not isinstance(table["winograd"], bool):
        raise _error(where, "kernels.winograd", f"must be true or false, got {_shown(table['winograd'])}")
    return dict(table)


def parse_spec(text: str) -> NetworkSpec:
    """A spec from TOML text."""
    if not isinstance(text, str):
        raise ValueError(f"spec: expected TOML text, got {type(text).__name__}")
    if len(text) > MAX_SPEC_BYTES:
        raise ValueError(f"spec: at most {MAX_SPEC_BYTES:,} characters (symcnn's limit), got {len(text):,}")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"spec: not valid TOML ({error})") from None
    except RecursionError:
        raise ValueError("spec: not valid TOML (nested too deeply)") from None
    return spec_from_dict(data, source=text)


def load_spec(name_or_path) -> NetworkSpec:
    """A shipped spec by name (``seed004``, ``vgg16``) or a ``.toml`` file by path."""
    text_name = str(name_or_path)
    if text_name in SHIPPED_SPECS + ARCHITECTURE_SPECS + SUITE_SPECS:
        path = SPEC_DIR / f"{text_name}.toml"
    else:
        path = Path(text_name)
        if path.suffix != ".toml":
            raise ValueError(f"spec: {text_name!r} is neither a shipped spec "
                             f"({', '.join(SHIPPED_SPECS + ARCHITECTURE_SPECS)}), a benchmark suite spec (suite-...) "
                             "nor a path to a .toml file")
        if not path.is_file():
            raise ValueError(f"spec: no such file: {text_name}")
    try:
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise ValueError(f"spec: {text_name} is larger than {MAX_SPEC_BYTES:,} bytes (symcnn's limit)")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"spec: cannot read {text_name}: {error}") from None
    return parse_spec(text)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    return repr(value)


def spec_toml(data: Mapping) -> str:
    """A spec given as a dict (the TOML's structure; values are numbers, strings, flags and lists) as TOML
    text, for :func:`parse_spec`.

    >>> print(spec_toml({"name": "tiny", "input": [1, 4, 4], "layers": [{"type": "flatten"}]}))
    name = "tiny"
    input = [1, 4, 4]
    <BLANKLINE>
    [[layers]]
    type = "flatten"
    <BLANKLINE>
    """
    tables = {key: value for key, value in data.items() if isinstance(value, Mapping)}  # [training], [kernels]
    lines = [f"{key} = {_toml_value(value)}" for key, value in data.items() if key != "layers" and key not in tables]
    for key, table in tables.items():
        lines += ["", f"[{key}]"] + [f"{name} = {_toml_value(value)}" for name, value in table.items()]
    for layer in data.get("layers", ()):
        lines += ["", "[[layers]]"] + [f"{key} = {_toml_value(value)}" for key, value in layer.items()]
    return "\n".join(lines) + "\n"


def with_kernels(spec: NetworkSpec, **settings) -> NetworkSpec:
    """``spec`` (read from TOML) with ``settings`` in its ``[kernels]`` table, validated as any spec.

    >>> with_kernels(load_spec("suite-wide"), winograd=True).kernels
    {'winograd': True}
    """
    try:
        data = tomllib.loads(spec.source)
    except tomllib.TOMLDecodeError:
        raise ValueError(f"spec {spec.name!r}: kernels: only a spec read from TOML text takes other kernel settings "
                         "(load_spec, parse_spec)") from None
    data["kernels"] = {**data.get("kernels", {}), **settings}
    return parse_spec(spec_toml(data))
