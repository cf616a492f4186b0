"""Helpers for the generated-kernel tests: small specs as TOML, PyTorch twins of networks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from symcnn.generate import generate
from symcnn.runtime import Network, cache_dir
from symcnn.spec import NetworkSpec, load_spec


def toml_of(spec: dict) -> str:
    """A spec dict as TOML text (the few value kinds specs use)."""
    def value(item):
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, (list, tuple)):
            return "[" + ", ".join(value(v) for v in item) + "]"
        if isinstance(item, str):
            return json.dumps(item)  # a JSON string is a TOML basic string
        return repr(item)

    lines = [f"{key} = {value(item)}" for key, item in spec.items() if key != "layers"]
    for layer in spec["layers"]:
        lines += ["", "[[layers]]"] + [f"{key} = {value(item)}" for key, item in layer.items()]
    return "\n".join(lines) + "\n"


def network_for(spec: dict, directory: Path, dtype: str = "float64", seed: int = 0) -> Network:
    """Write ``spec`` as TOML, generate its kernels in this process (into the runtime's cache),
    and load the network from the file as a user would."""
    path = Path(directory) / f"{spec['name']}.toml"
    path.write_text(toml_of(spec), encoding="utf-8")
    loaded = load_spec(path)
    generate([str(path)], cache_dir() / f"{loaded.module_name}_{loaded.digest()}")
    return Network.from_spec(path, dtype=dtype, seed=seed)


def random_params(net: Network, rng) -> dict:
    return {name: rng.standard_normal(value.shape) * 0.5 for name, value in net.params.items()}


def torch_loss_and_grads(spec: NetworkSpec, params: dict, x: np.ndarray, labels: np.ndarray, torch_dtype):
    """The same network in PyTorch (weights copied by name): loss, logits, every gradient."""
    import torch
    import torch.nn.functional as F

    tx = torch.tensor(x, dtype=torch_dtype, requires_grad=True)
    tp = {name: torch.tensor(value, dtype=torch_dtype, requires_grad=True) for name, value in params.items()}
    h = tx
    for layer in spec.layers:
        s = layer.settings
        if layer.kind == "conv2d":
            h = F.conv2d(h, tp[f"{layer.name}.weight"], tp.get(f"{layer.name}.bias"), stride=s["stride"],
                         padding=s["padding"], dilation=s["dilation"])
        elif layer.kind == "relu":
            h = F.relu(h)
        elif layer.kind == "leaky_relu":
            h = F.leaky_relu(h, s["alpha"])
        elif layer.kind == "elu":
            h = F.elu(h, s["alpha"])
        elif layer.kind == "maxpool2d":
            h = F.max_pool2d(h, s["kernel"], s["stride"])
        elif layer.kind == "avgpool2d":
            h = F.avg_pool2d(h, s["kernel"], s["stride"])
        elif layer.kind == "global_avgpool":
            h = F.adaptive_avg_pool2d(h, 1)
        elif layer.kind == "flatten":
            h = torch.flatten(h, 1)
        elif layer.kind == "dense":
            h = F.linear(h, tp[f"{layer.name}.weight"], tp.get(f"{layer.name}.bias"))
    loss = F.cross_entropy(h, torch.tensor(labels))
    loss.backward()
    grads = {name: value.grad.numpy() for name, value in tp.items()}
    grads["input"] = tx.grad.numpy()
    return loss.item(), h.detach().numpy(), grads


