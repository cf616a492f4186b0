"""A network spec as a PyTorch module with the same parameters: the independent reference that the
generated kernels, the NumPy network and the benchmarks are checked against.

It keeps its own dispatch from spec ops to ``torch.nn`` modules on purpose (an oracle that shared
symcnn's formulas could not catch their mistakes). PyTorch is imported inside the functions: it is
the ``oracle`` extra.

Example:
    >>> from symcnn.spec import load_spec
    >>> from symcnn.runtime.network import Network
    >>> model = torch_model(load_spec("digits"), Network.from_spec("digits").params)  # doctest: +SKIP
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np

from symcnn.spec import NetworkSpec

__all__ = ["torch_model"]


@lru_cache(maxsize=None)
def _graph_modules():
    """The module classes a graph needs (defined once torch is imported): a join of several inputs,
    and the graph itself."""
    import torch

    class Join(torch.nn.Module):
        """An ``add`` or ``concat`` layer: ``combine`` of its inputs' tensors."""

        def __init__(self, combine):
            super().__init__()
            self.combine = combine

        def forward(self, *tensors):
            return self.combine(list(tensors))

    class Graph(torch.nn.Module):
        """A spec's graph: each child (named by layer label) applied to the outputs its ``inputs`` name."""

        def __init__(self, spec: NetworkSpec, modules):
            super().__init__()
            for label, module in modules:
                self.add_module(label, module)
            self.wiring = [(layer.label, layer.inputs) for layer in spec.layers]

        def forward(self, x):
            values = {"input": x}
            for label, sources in self.wiring:
                values[label] = getattr(self, label)(*(values[source] for source in sources))
            return values[self.wiring[-1][0]]

    return Join, Graph


def torch_model(spec: NetworkSpec, params: dict, buffers: Optional[dict] = None, masks: Optional[dict] = None):
    """The spec as a PyTorch module, with the same parameters, and buffers (batch norm's running
    statistics) where given, else PyTorch's initial ones: a ``torch.nn.Sequential`` for a sequential
    spec, else a module that runs the spec's graph (each layer on the outputs its ``inputs`` name; an
    ``add`` sums them, a ``concat`` joins them with ``torch.cat`` along axis 1). Its children are
    named by layer label, so that its ``state_dict`` keys are ``Network.params``' names
    (``conv1.weight``, ...).

    A dropout layer is ``torch.nn.Dropout(p)`` (PyTorch's own masks; the identity after
    ``model.eval()``), or, where ``masks`` gives its mask by layer label (symcnn's, from
    :meth:`symcnn.runtime.network.Network.masks`), ``x * mask / (1 - p)`` with that mask, so that a
    training pass can be compared with symcnn's.
    """
    from collections import OrderedDict

    import torch

    _Join, _Graph = _graph_modules()

    class FixedMaskDropout(torch.nn.Module):
        def __init__(self, mask: np.ndarray, p: float):
            super().__init__()
            self.mask, self.p = torch.tensor(mask), p  # not a buffer: no entry in the state dict

        def forward(self, x):
            return x * self.mask.to(x.dtype) / (1 - self.p)

    modules, state = [], {}
    for layer in spec.layers:
        s = layer.settings
        if layer.kind == "conv2d":
            module = torch.nn.Conv2d(layer.input_shape[0], s["out_channels"], s["kernel"], s["stride"],
                                     s["padding"], s["dilation"], groups=s.get("groups", 1), bias=s["bias"])
        elif layer.kind == "conv_transpose2d":
            module = torch.nn.ConvTranspose2d(layer.input_shape[0], s["out_channels"], s["kernel"], s["stride"],
                                              s["padding"], s["output_padding"], bias=s["bias"], dilation=s["dilation"])
        elif layer.kind == "dense":
            module = torch.nn.Linear(layer.input_shape[0], s["out_features"], bias=s["bias"])
        elif layer.kind == "relu":
            module = torch.nn.ReLU()
        elif layer.kind == "leaky_relu":
            module = torch.nn.LeakyReLU(s["alpha"])
        elif layer.kind == "elu":
            module = torch.nn.ELU(s["alpha"])
        elif layer.kind == "sigmoid":
            module = torch.nn.Sigmoid()
        elif layer.kind == "tanh":
            module = torch.nn.Tanh()
        elif layer.kind == "maxpool2d":
            module = torch.nn.MaxPool2d(s["kernel"], s["stride"])
        elif layer.kind == "avgpool2d":
            module = torch.nn.AvgPool2d(s["kernel"], s["stride"])
        elif layer.kind == "global_avgpool":
            module = torch.nn.AdaptiveAvgPool2d(1)
        elif layer.kind == "batchnorm2d":
            module = torch.nn.BatchNorm2d(layer.input_shape[0], eps=s["eps"], momentum=s["momentum"])
        elif layer.kind == "layernorm":
            module = torch.nn.LayerNorm(layer.input_shape, eps=s["eps"])
        elif layer.kind == "dropout":
            given = (masks or {}).get(layer.label)
            module = torch.nn.Dropout(s["p"]) if given is None else FixedMaskDropout(given, s["p"])
        elif layer.kind == "adaptive_avgpool2d":
            module = torch.nn.AdaptiveAvgPool2d(s["output"])
        elif layer.kind == "adaptive_maxpool2d":
            module = torch.nn.AdaptiveMaxPool2d(s["output"])
        elif layer.kind == "flatten":
            module = torch.nn.Flatten()
        elif layer.kind == "add":
            module = _Join(lambda tensors: torch.stack(tensors).sum(0) if len(tensors) > 2 else tensors[0] + tensors[1])
        elif layer.kind == "concat":
            module = _Join(lambda tensors: torch.cat(tensors, dim=1))
        else:  # an op registered from a user's own code has no PyTorch twin here
            raise ValueError(f"{layer.kind}: no PyTorch reference for this op")
        modules.append((layer.label, module))
        for role in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            for given in (params, buffers or {}):
                if f"{layer.name}.{role}" in given:
                    state[f"{layer.label}.{role}"] = torch.tensor(given[f"{layer.name}.{role}"])
    model = torch.nn.Sequential(OrderedDict(modules)) if spec.sequential else _Graph(spec, modules)
    for key, value in model.state_dict().items():  # buffers not given: PyTorch's initial ones
        state.setdefault(key, value)
    if state:  # in the parameters' dtype, so that float64 weights are not rounded to float32 on loading
        model = model.to(next(iter(state.values())).dtype)
    model.load_state_dict(state, strict=True)
    return model
