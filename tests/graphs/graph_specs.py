"""Graph specs for the graph tests: the example (a residual add, a concat of three, two fan-outs), one
whose network input fans out with a dropout in one branch, and random small graphs (hypothesis)."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from hypothesis import strategies as st

#: A residual add and a concat of three: the stem fans out to ``a`` and the concat, ``a`` to three layers.
GRAPH = {
    "name": "graph-example",
    "input": [1, 8, 8],
    "layers": [
        {"type": "conv2d", "name": "stem", "out_channels": 4, "kernel": 3, "padding": 1},
        {"type": "relu", "name": "a"},
        {"type": "conv2d", "name": "c2", "out_channels": 4, "kernel": 3, "padding": 1},
        {"type": "add", "name": "sum", "inputs": ["c2", "a"]},
        {"type": "concat", "inputs": ["sum", "stem", "a"]},
        {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 3},
    ],
}

#: Two layers read the network's input; one branch drops out.
INPUT_FANOUT = {
    "name": "graph-input-fanout",
    "input": [2, 5, 5],
    "layers": [
        {"type": "conv2d", "name": "left", "out_channels": 3, "kernel": 3, "padding": 1},
        {"type": "relu"},
        {"type": "dropout", "name": "drop", "p": 0.3},
        {"type": "conv2d", "name": "right", "out_channels": 3, "kernel": 1, "inputs": ["input"]},
        {"type": "add", "name": "join", "inputs": ["drop", "right"]},
        {"type": "maxpool2d", "kernel": 2, "stride": 1},
        {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 4},
    ],
}

class RandomGraph(NamedTuple):
    """A random graph spec (the TOML's structure) and every layer's output shape by label, worked out
    independently of symcnn."""

    spec: dict
    shapes: dict


_KINDS = ("conv2d", "relu", "add", "concat", "maxpool2d", "avgpool2d")


def _groups(tensors: dict, key) -> list[list[str]]:
    """The labels of ``tensors`` grouped by ``key(shape)``, the groups of two or more."""
    groups: dict = {}
    for label, shape in tensors.items():
        groups.setdefault(key(shape), []).append(label)
    return [labels for _, labels in sorted(groups.items()) if len(labels) >= 2]


def _layer(draw, tensors: dict) -> tuple[dict, tuple]:
    """One random layer reading some of ``tensors`` (label -> shape), and its output shape."""
    kind = draw(st.sampled_from(_KINDS))
    joinable = _groups(tensors, tuple) if kind == "add" else _groups(tensors, lambda shape: shape[1:])
    if kind in ("add", "concat") and joinable:
        sources = draw(st.lists(st.sampled_from(draw(st.sampled_from(joinable))), min_size=2, max_size=3))
        shapes = [tensors[source] for source in sources]
        shape = shapes[0] if kind == "add" else (sum(s[0] for s in shapes), *shapes[0][1:])
        return {"type": kind, "inputs": sources}, shape
    source = draw(st.sampled_from(sorted(tensors)))
    channels, height, width = tensors[source]
    if kind in ("maxpool2d", "avgpool2d") and min(height, width) >= 2:
        return {"type": kind, "kernel": 2, "stride": 1, "inputs": [source]}, (channels, height - 1, width - 1)
    if kind == "conv2d":
        kernel = draw(st.integers(1, min(3, height, width)))
        padding = draw(st.sampled_from([0, kernel // 2]))
        out_channels = draw(st.integers(1, 3))
        table = {"type": "conv2d", "out_channels": out_channels, "kernel": kernel, "padding": padding,
                 "inputs": [source]}
        return table, (out_channels, height + 2 * padding - kernel + 1, width + 2 * padding - kernel + 1)
    return {"type": "relu", "inputs": [source]}, (channels, height, width)  # also where nothing joins


@st.composite
def graph_specs(draw, max_layers: int = 6) -> RandomGraph:
    """A random DAG of convolutions, ReLUs, pools, adds and concats on a small input (each layer named
    ``l<k>`` and reading earlier tensors, the network's input included), whose unread outputs are each
    flattened, concatenated (when several) and fed to a dense layer: a valid spec."""
    tensors = {"input": (draw(st.integers(1, 2)), draw(st.integers(3, 5)), draw(st.integers(3, 5)))}
    layers, read = [], set()
    for index in range(draw(st.integers(1, max_layers))):
        table, shape = _layer(draw, tensors)
        layers.append({"name": f"l{index}", **table})
        read.update(table["inputs"])
        tensors[f"l{index}"] = shape
    unread = [label for label in tensors if label not in read and label != "input"]
    flat = []
    for label in unread:
        layers.append({"type": "flatten", "name": f"flat_{label}", "inputs": [label]})
        shape = tensors[label]
        tensors[f"flat_{label}"] = (shape[0] * shape[1] * shape[2],)
        flat.append(f"flat_{label}")
    if len(flat) > 1:
        layers.append({"type": "concat", "name": "joined", "inputs": flat})
        tensors["joined"] = (sum(tensors[label][0] for label in flat),)
    classes = draw(st.integers(2, 3))
    layers.append({"type": "dense", "name": "fc", "out_features": classes})
    tensors["fc"] = (classes,)
    digest = hashlib.sha256(repr((layers, tensors["input"])).encode()).hexdigest()[:10]
    return RandomGraph({"name": f"graph-{digest}", "input": list(tensors["input"]), "layers": layers},
                       {label: shape for label, shape in tensors.items() if label != "input"})
