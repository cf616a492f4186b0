"""A spec as a ``torch.nn.Module``, and a single generated layer for any PyTorch model.

:func:`from_spec` gives a module whose children are the spec's layers by label (``conv1``,
``relu1``, ...), so its parameters carry the names and shapes of :attr:`Network.params`
(``conv1.weight``, ...): its ``state_dict()`` loads into the plain PyTorch twin
(:func:`symcnn.bench.bench.torch_model`) and back. A graph spec's module runs each layer on the
outputs its ``inputs`` name; where several layers read one tensor, autograd sums their gradients.
:func:`layer` gives one layer, specialized to an input shape (``weight`` and ``bias`` as ``nn.Conv2d``
and ``nn.Linear`` name them), checked at call time.

Example:
    >>> import torch
    >>> model = from_spec("digits", seed=0)
    >>> [name for name, _ in model.named_parameters()]
    ['conv1.weight', 'conv1.bias', 'fc1.weight', 'fc1.bias']
    >>> model(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 10])
    >>> conv = layer("conv2d", (3, 16, 16), out_channels=8, kernel=3, padding=1)
    >>> conv(torch.zeros(4, 3, 16, 16)).shape
    torch.Size([4, 8, 16, 16])
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Union

import numpy as np
import torch

from symcnn import registry
from symcnn.runtime.loader import load_kernels
from symcnn.runtime.network import Network
from symcnn.spec import LayerSpec, NetworkSpec, load_spec, parse_spec, spec_toml
from symcnn.torch.operators import LayerOperators, layer_operators

__all__ = ["SymcnnLayer", "SymcnnNetwork", "SymcnnGraph", "from_spec", "layer"]


class SymcnnLayer(torch.nn.Module):
    """One generated layer: its kernels as operators, its parameters (``weight``, ``bias``) as
    ``nn.Parameter`` of PyTorch's shapes. The input's shape, dtype and device are checked at every call."""

    def __init__(self, operators: LayerOperators, params: dict[str, np.ndarray]):
        super().__init__()
        self.operators = operators
        for role in operators.parameters:
            self.register_parameter(role, torch.nn.Parameter(torch.from_numpy(np.array(params[role]))))

    @property
    def spec(self) -> LayerSpec:
        return self.operators.layer

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The layer's output from its input (an add's or concat's: one tensor per entry of its ``inputs``)."""
        if len(inputs) != len(self.spec.input_shapes):
            raise ValueError(f"{self.spec.label}: expected {len(self.spec.input_shapes)} input tensor(s), "
                             f"got {len(inputs)}")
        for name, x in zip(("x", *(f"x{number}" for number in range(2, len(inputs) + 1))), inputs):
            if not isinstance(x, torch.Tensor):
                raise ValueError(f"{self.spec.label}: {name}: expected a tensor, got {type(x).__name__}")
        return self.operators(*inputs, *(getattr(self, role) for role in self.operators.parameters))

    def extra_repr(self) -> str:
        settings = registry.get(self.spec.kind).settings_text(self.spec.settings)
        shown = " + ".join(str(tuple(shape)) for shape in self.spec.input_shapes)
        shapes = f"{shown} -> {tuple(self.spec.output_shape)}"
        return f"{self.spec.kind}, {settings + ', ' if settings else ''}{shapes}"


class SymcnnNetwork(torch.nn.Sequential):
    """A spec's layers in order, each a :class:`SymcnnLayer` named by its label. The logits are its
    output (the loss is PyTorch's: ``torch.nn.functional.cross_entropy``)."""

    def __init__(self, spec: NetworkSpec, layers: dict[str, SymcnnLayer]):
        super().__init__(OrderedDict(layers))
        self.spec = spec


class SymcnnGraph(torch.nn.Module):
    """A graph spec's layers, each a :class:`SymcnnLayer` named by its label, run in the spec's order on the
    outputs its ``inputs`` name. A tensor that several layers read gets the sum of their gradients from
    autograd (the Network sums them with its generated ``fanout_`` kernels). The logits are its output."""

    def __init__(self, spec: NetworkSpec, layers: dict[str, SymcnnLayer]):
        super().__init__()
        for label, module in layers.items():
            self.add_module(label, module)
        self.spec = spec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {"input": x}
        for layer in self.spec.layers:
            values[layer.label] = getattr(self, layer.label)(*(values[source] for source in layer.inputs))
        return values[self.spec.layers[-1].label]


def _layer_params(net: Network, layer: LayerSpec) -> dict[str, np.ndarray]:
    prefix = f"{layer.name}."
    return {name.removeprefix(prefix): value for name, value in net.params.items() if name.startswith(prefix)}


def _refuse_stateful(spec: NetworkSpec) -> None:
    """Layers with modes, buffers or drawn masks (batch norm, dropout) are not PyTorch operators yet: their
    running statistics and masks live in the Network. One line naming the layer, before any work."""
    for entry_layer in spec.layers:
        entry = registry.get(entry_layer.kind)
        if entry.evaluation is not None or entry.mask_drop is not None or entry.buffer_shapes((1, 1, 1), {}):
            raise ValueError(f"layer {entry_layer.label!r} ({entry_layer.kind}): not available as PyTorch "
                             "operators yet (its modes, buffers or masks live in symcnn's Network); use "
                             "symcnn.runtime.Network, or PyTorch's own layer in its place")


def from_spec(spec: Union[str, os.PathLike, NetworkSpec], dtype: str = "float32",
              seed: int = 0) -> Union[SymcnnNetwork, SymcnnGraph]:
    """The spec (a shipped name, a ``.toml`` path or a :class:`NetworkSpec`) as an ``nn.Module`` whose
    initial parameters are ``Network.from_spec(spec, dtype, seed).params``; ``.double()`` and ``.float()``
    switch its dtype as for any module. A :class:`SymcnnNetwork` (an ``nn.Sequential``) for a sequential
    spec, a :class:`SymcnnGraph` for a graph spec."""
    loaded = spec if isinstance(spec, NetworkSpec) else load_spec(spec)
    _refuse_stateful(loaded)
    net = Network(loaded, load_kernels(loaded), dtype=dtype, seed=seed)
    layers = {layer.label: SymcnnLayer(layer_operators(net, layer), _layer_params(net, layer))
              for layer in loaded.layers}
    return SymcnnNetwork(loaded, layers) if loaded.sequential else SymcnnGraph(loaded, layers)


def _flat_output(kind: str, input_shape: tuple, settings: dict) -> bool:
    """Whether the layer's output is a vector (else a flatten follows it in the one-layer spec). Settings
    it cannot read are reported by the spec's validation, with the spec's message."""
    op = registry.get(kind)
    try:
        return len(op.output_shape(tuple(input_shape), op.settings_of(settings))) == 1
    except (ValueError, TypeError, KeyError):
        return len(input_shape) == 1


def layer(kind: str, input_shape: tuple[int, ...], dtype: str = "float32", seed: int = 0,
          **settings: Any) -> SymcnnLayer:
    """One layer of ``kind`` with the spec ``settings`` (``out_channels=16, kernel=3, ...``), specialized
    to inputs of shape ``(N, *input_shape)``: ``(C, H, W)``, or ``(features,)`` for a flat input.

    Its kernels come from a one-layer spec (the layer, then the flatten and dense layer that a spec must
    end in, whose kernels go unused), generated once and cached like any spec's."""
    if not isinstance(kind, str) or kind not in registry.names(layer=True):
        raise ValueError(f"kind: must be one of {', '.join(registry.names(layer=True))}, got {kind!r}")
    if registry.get(kind).merges:
        raise ValueError(f"kind: {kind} joins several layers' outputs; it is no single layer (write a graph spec "
                         "and use from_spec)")
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) not in (1, 3):
        raise ValueError(f"input_shape: must be (C, H, W) or (features,), got {input_shape!r}")
    table = {"type": kind, **({"name": "layer"} if registry.get(kind).parameterized else {}), **settings}
    flat = len(input_shape) == 1
    layers = ([{"type": "flatten"}] if flat else []) + [table]
    if not _flat_output(kind, input_shape, settings):
        layers.append({"type": "flatten"})
    layers.append({"type": "dense", "name": "tail", "out_features": 1})
    spec = parse_spec(spec_toml({"name": f"torch-{kind.replace('_', '-')}",
                                 "input": [input_shape[0], 1, 1] if flat else list(input_shape), "layers": layers}))
    position = 1 if flat else 0
    _refuse_stateful(spec)
    net = Network(spec, load_kernels(spec), dtype=dtype, seed=seed)
    target = spec.layers[position]
    return SymcnnLayer(layer_operators(net, target), _layer_params(net, target))
