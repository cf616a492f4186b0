"""Random specs mixing document 003's layers with the older ones (hypothesis), small or medium-size: grouped and
depthwise convolutions, transposed convolutions (stride, dilation, output padding), batch and layer
normalization, dropout, adaptive pools to sizes that need not divide the input, sigmoid and tanh,
beside ReLUs, pools and dense layers; sometimes a residual ``add`` or a ``concat`` (a graph); in
training or evaluation mode. Every layer's output shape is worked out here, independently of symcnn."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from hypothesis import strategies as st


class Bounds(NamedTuple):
    """How large a drawn spec may be: its input's channels and sizes (inclusive ranges), the largest height or
    width and channel count a layer makes, and the largest convolution kernel."""

    channels: tuple[int, int]
    sizes: tuple[int, int]
    max_size: int
    max_channels: int
    max_kernel: int


#: Small networks, quick to run through the NumPy reference.
SMALL = Bounds(channels=(2, 4), sizes=(2, 6), max_size=12, max_channels=6, max_kernel=3)
#: Where the shape-driven schedules engage: 16 channels and more (the lanes schedule, its register blocks, a
#: dense layer's groups of images), maps past 16 x 16 (the columns schedule, normalizations' statistics inside
#: their channel loop), kernels to 7 x 7.
MEDIUM = Bounds(channels=(1, 32), sizes=(6, 34), max_size=40, max_channels=64, max_kernel=7)

#: Layers on maps: a spec takes the first few of a shuffle of these (document 003's twice, as often as
#: the older ones), so that kinds vary from spec to spec rather than repeat within one.
_NEW_MAP_KINDS = ("conv2d", "conv_transpose2d", "batchnorm2d", "layernorm", "dropout", "adaptive_avgpool2d",
                  "adaptive_maxpool2d", "sigmoid", "tanh")
_OLD_MAP_KINDS = ("relu", "leaky_relu", "elu", "maxpool2d", "avgpool2d", "global_avgpool", "conv2d", "batchnorm2d")
_MAP_KINDS = _NEW_MAP_KINDS * 2 + _OLD_MAP_KINDS
#: Layers on the feature vector, between two dense layers.
_FEATURE_KINDS = ("layernorm", "dropout", "sigmoid", "tanh", "relu")


class MixedSpec(NamedTuple):
    """A random spec (the TOML's structure), every layer's output shape by label, the mode to run it
    in and the batch size."""

    spec: dict
    shapes: dict
    training: bool
    batch: int


def _conv(draw, shape, bounds: Bounds) -> tuple[dict, tuple]:
    channels, height, width = shape
    divisors = [g for g in range(2, channels + 1) if channels % g == 0]
    grouped = bool(divisors) and draw(st.booleans())
    groups = draw(st.sampled_from(divisors)) if grouped else 1  # groups = C: a depthwise convolution
    out_channels = groups * draw(st.integers(1, max(1, bounds.max_channels // groups)))
    stride, padding, dilation = draw(st.integers(1, 2)), draw(st.integers(0, 1)), draw(st.integers(1, 2))
    largest = min(bounds.max_kernel, (min(height, width) + 2 * padding - 1) // dilation + 1)  # the dilated kernel fits
    kernel = draw(st.integers(1, largest))
    sizes = tuple((size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1 for size in (height, width))
    table = {"type": "conv2d", "out_channels": out_channels, "kernel": kernel, "stride": stride,
             "padding": padding, "dilation": dilation, "groups": groups, "bias": draw(st.booleans())}
    return table, (out_channels, *sizes)


def _conv_transpose(draw, shape, bounds: Bounds) -> tuple[dict, tuple]:
    _, height, width = shape
    stride, dilation, kernel = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 3))
    padding = draw(st.integers(0, 1))
    output_padding = draw(st.integers(0, max(stride, dilation) - 1))  # smaller than the stride or the dilation
    sizes = tuple((size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
                  for size in (height, width))
    if min(sizes) < 1 or max(sizes) > bounds.max_size:  # empty or too large: a 1x1 transposed convolution instead
        stride, dilation, kernel, padding, output_padding, sizes = 1, 1, 1, 0, 0, (height, width)
    out_channels = draw(st.integers(1, 3))
    table = {"type": "conv_transpose2d", "out_channels": out_channels, "kernel": kernel, "stride": stride,
             "padding": padding, "output_padding": output_padding, "dilation": dilation, "bias": draw(st.booleans())}
    return table, (out_channels, *sizes)


def _map_layer(draw, kind: str, shape, bounds: Bounds) -> tuple[dict, tuple]:
    """A random layer of ``kind`` on a map of ``shape`` (C, H, W), and its output shape."""
    channels, height, width = shape
    if kind == "conv2d":
        return _conv(draw, shape, bounds)
    if kind == "conv_transpose2d":
        return _conv_transpose(draw, shape, bounds)
    if kind == "batchnorm2d":
        return {"type": kind, "eps": draw(st.sampled_from([1e-5, 1e-3])),
                "momentum": draw(st.sampled_from([0.1, 0.5]))}, shape
    if kind == "layernorm":
        return {"type": kind, "eps": draw(st.sampled_from([1e-5, 1e-3]))}, shape
    if kind == "dropout":
        return {"type": kind, "p": draw(st.sampled_from([0.0, 0.25, 0.5, 0.8]))}, shape
    if kind.startswith("adaptive"):  # any size up to the input's: windows overlap where it does not divide
        output = (draw(st.integers(1, height)), draw(st.integers(1, width)))
        return {"type": kind, "output": list(output)}, (channels, *output)
    if kind in ("maxpool2d", "avgpool2d") and min(height, width) >= 2:
        stride = draw(st.integers(1, 2))
        return {"type": kind, "kernel": 2, "stride": stride}, \
            (channels, (height - 2) // stride + 1, (width - 2) // stride + 1)
    if kind == "global_avgpool":
        return {"type": kind}, (channels, 1, 1)
    if kind == "leaky_relu":
        return {"type": kind, "alpha": 0.1}, shape
    if kind in ("sigmoid", "tanh", "relu", "elu"):
        return {"type": kind}, shape
    return {"type": "relu"}, shape  # a pool on a map too small for it


def _join(draw, tensors: dict, current: str, bounds: Bounds):
    """An ``add`` of the current tensor and an earlier one of its shape, or a ``concat`` with one of its
    height and width (channels within bounds); ``None`` when none fits or none is drawn."""
    shape = tensors[current]
    same = sorted(label for label, other in tensors.items() if label != current and other == shape)
    beside = sorted(label for label, other in tensors.items() if label != current and other[1:] == shape[1:]
                    and other[0] + shape[0] <= bounds.max_channels)
    choices = ([("add", label) for label in same] + [("concat", label) for label in beside])
    if not choices or draw(st.integers(0, 2)) != 2:  # a join after about one layer in three, where one fits
        return None
    kind, other = draw(st.sampled_from(choices))
    joined = shape if kind == "add" else (shape[0] + tensors[other][0], *shape[1:])
    return {"type": kind, "inputs": [current, other]}, joined


@st.composite
def mixed_specs(draw, max_layers: int = 6, graphs: bool = True, bounds: Bounds = SMALL) -> MixedSpec:
    """A random spec within ``bounds``: a convolution and up to ``max_layers - 1`` more layers on maps (named
    ``l<k>``; with ``graphs``, some followed by a join with an earlier tensor), a flatten, sometimes a hidden
    dense layer with a layer on its features, and a dense layer to 2 to 4 classes."""
    tensors = {"input": (draw(st.integers(*bounds.channels)), draw(st.integers(*bounds.sizes)),
                         draw(st.integers(*bounds.sizes)))}
    layers, current = [], "input"
    # A convolution first, as networks begin (on 2 to 4 input channels: often grouped), then a shuffle.
    kinds = ["conv2d"] + draw(st.permutations(_MAP_KINDS))[:draw(st.integers(0, max_layers - 1))]
    for index, kind in enumerate(kinds):
        table, shape = _map_layer(draw, kind, tensors[current], bounds)
        label = f"l{index}"
        layers.append({"name": label, **table})  # reads the layer before it (the input, a join)
        tensors[label], current = shape, label
        joined = _join(draw, tensors, current, bounds) if graphs else None
        if joined is not None:
            table, shape = joined
            label = f"j{index}"
            layers.append({"name": label, **table})
            tensors[label], current = shape, label
    channels, height, width = tensors[current]
    layers.append({"name": "flat", "type": "flatten"})
    tensors["flat"] = (channels * height * width,)
    if draw(st.booleans()):
        features = draw(st.integers(2, 5))
        kind = draw(st.sampled_from(_FEATURE_KINDS))
        settings = {"p": draw(st.sampled_from([0.0, 0.5]))} if kind == "dropout" else {}
        layers += [{"name": "hidden", "type": "dense", "out_features": features},
                   {"name": "features", "type": kind, **settings}]
        tensors["hidden"] = tensors["features"] = (features,)
    classes = draw(st.integers(2, 4))
    layers.append({"name": "fc", "type": "dense", "out_features": classes})
    tensors["fc"] = (classes,)
    digest = hashlib.sha256(repr((layers, tensors["input"])).encode()).hexdigest()[:10]
    spec = {"name": f"mixed-{digest}", "input": list(tensors["input"]), "layers": layers}
    shapes = {label: shape for label, shape in tensors.items() if label != "input"}
    return MixedSpec(spec, shapes, draw(st.booleans()), draw(st.integers(2, 3)))


#: Two specs every run draws besides the random ones (``hypothesis.example``), so that each holds the
#: combinations that matter whatever is drawn: a depthwise-separable block (a depthwise convolution and a
#: 1x1 one), batch norm, a transposed convolution with output padding, an adaptive pool to a size that does
#: not divide the input, dropout in training mode; a grouped convolution, a residual add and a concat, a
#: dilated transposed convolution with output padding and dropout in evaluation mode.
SEPARABLE_IN_TRAINING = MixedSpec(
    {"name": "mixed-separable", "input": [4, 5, 6], "layers": [
        {"name": "l0", "type": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1, "groups": 4, "bias": False},
        {"name": "l1", "type": "conv2d", "out_channels": 3, "kernel": 1},
        {"name": "l2", "type": "batchnorm2d", "momentum": 0.3},
        {"name": "l3", "type": "relu"},
        {"name": "l4", "type": "conv_transpose2d", "out_channels": 2, "kernel": 3, "stride": 2, "padding": 1,
         "output_padding": 1},
        {"name": "l5", "type": "adaptive_maxpool2d", "output": [3, 5]},
        {"name": "l6", "type": "dropout", "p": 0.25},
        {"name": "l7", "type": "tanh"},
        {"name": "flat", "type": "flatten"},
        {"name": "hidden", "type": "dense", "out_features": 4},
        {"name": "features", "type": "layernorm"},
        {"name": "fc", "type": "dense", "out_features": 3}]},
    {"l0": (4, 5, 6), "l1": (3, 5, 6), "l2": (3, 5, 6), "l3": (3, 5, 6), "l4": (2, 10, 12), "l5": (2, 3, 5),
     "l6": (2, 3, 5), "l7": (2, 3, 5), "flat": (30,), "hidden": (4,), "features": (4,), "fc": (3,)},
    training=True, batch=3)
GRAPH_IN_EVALUATION = MixedSpec(
    {"name": "mixed-graph", "input": [2, 6, 5], "layers": [
        {"name": "l0", "type": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1, "stride": 2, "groups": 2},
        {"name": "l1", "type": "batchnorm2d"},
        {"name": "j1", "type": "add", "inputs": ["l1", "l0"]},
        {"name": "l2", "type": "sigmoid"},
        {"name": "j2", "type": "concat", "inputs": ["l2", "l0"]},
        {"name": "l3", "type": "adaptive_avgpool2d", "output": [2, 2]},
        {"name": "l4", "type": "conv_transpose2d", "out_channels": 3, "kernel": 2, "dilation": 2,
         "output_padding": 1},
        {"name": "l5", "type": "layernorm"},
        {"name": "l6", "type": "dropout", "p": 0.5},
        {"name": "flat", "type": "flatten"},
        {"name": "fc", "type": "dense", "out_features": 2}]},
    {"l0": (4, 3, 3), "l1": (4, 3, 3), "j1": (4, 3, 3), "l2": (4, 3, 3), "j2": (8, 3, 3), "l3": (8, 2, 2),
     "l4": (3, 5, 5), "l5": (3, 5, 5), "l6": (3, 5, 5), "flat": (75,), "fc": (2,)},
    training=False, batch=2)
