"""The table of docs/summary.md: symcnn's parameters and multiply-accumulates beside torchinfo's, fvcore's and
ptflops', for each spec named on the command line (default: every shipped one).

Each spec runs as its PyTorch twin (``symcnn.bench.torch_twin.torch_model``, PyTorch's own initial weights:
nothing is generated or compiled) on one zero image. Not part of the package; the relations between the
columns are tested in tests/interop/test_summary_references.py.

Usage, from the repository root (needs torch, torchinfo, fvcore, ptflops; about 15 s):
    PYTHONPATH=. python docs/summary_references.py
    PYTHONPATH=. python docs/summary_references.py symcnn/specs/resnet-mini.toml
"""

from __future__ import annotations

import sys

import torch
import torchinfo
from fvcore.nn import FlopCountAnalysis
from ptflops import get_model_complexity_info

from symcnn.bench.torch_twin import torch_model
from symcnn.network_summary import summary
from symcnn.spec import ARCHITECTURE_SPECS, SHIPPED_SPECS, load_spec


def _ptflops(model, shape, like_with_like: bool) -> int:
    """ptflops' count; ``like_with_like``: without ReLU and max pooling (no multiply-adds) and without its
    patch of torch.nn.functional, which counts a ReLU or pool a second time (the module calls F.relu)."""
    options = dict(ignore_modules=[torch.nn.ReLU, torch.nn.MaxPool2d],
                   backend_specific_config={"count_functional": False}) if like_with_like else {}
    macs, _ = get_model_complexity_info(model, shape, as_strings=False, print_per_layer_stat=False,
                                        backend="pytorch", **options)
    return macs


def row(name: str) -> str:
    spec, ours = load_spec(name), summary(name)
    model, image = torch_model(spec, {}).eval(), torch.zeros((1, *spec.input_shape))
    with torch.no_grad():
        info = torchinfo.summary(model, input_data=image, verbose=0)
        flops = FlopCountAnalysis(model, (image,))
        flops.unsupported_ops_warnings(False)
        flops.uncalled_modules_warnings(False)
        fvcore = flops.total()
        shape = tuple(spec.input_shape)
        like, default = _ptflops(model, shape, True), _ptflops(model, shape, False)
    cells = [spec.name, ours.totals.parameters, info.total_params, ours.totals.macs, info.total_mult_adds, fvcore,
             like, default]
    return "| " + " | ".join(f"{cell:,}" if isinstance(cell, int) else f"`{cell}`" for cell in cells) + " |"


if __name__ == "__main__":
    torch.set_num_threads(2)
    print("| spec | parameters | torchinfo | MACs | torchinfo Mult-Adds | fvcore | ptflops, like with like "
          "| ptflops, default |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|")
    for name in sys.argv[1:] or SHIPPED_SPECS + ARCHITECTURE_SPECS:
        print(row(name), flush=True)
