"""symcnn inside PyTorch (the ``torch`` extra): generated kernels as operators, a spec as an ``nn.Module``.

>>> import symcnn.torch
>>> model = symcnn.torch.from_spec("digits")          # conv1.weight, ... as Network.params
>>> conv = symcnn.torch.layer("conv2d", (1, 8, 8), out_channels=4, kernel=3)
>>> bn = symcnn.torch.layer("batchnorm2d", (4, 6, 6))   # running_mean, ... buffers; train() and eval()

The core never imports this package (an import-linter contract says so); it imports torch.
"""

from symcnn.torch.modules import SymcnnGraph, SymcnnLayer, SymcnnNetwork, from_spec, layer
from symcnn.torch.operators import LayerOperators, draw_mask, layer_operators

__all__ = ["from_spec", "layer", "layer_operators", "draw_mask", "LayerOperators", "SymcnnLayer", "SymcnnNetwork",
           "SymcnnGraph"]
