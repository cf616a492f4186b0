"""The spec of the PyTorch module tests (batch norm and dropout state, the whole pass): one spec for both files,
so that the test session compiles it once (tests/conftest.py shares the kernel cache between its workers)."""

#: A convolution, a batch norm of momentum and eps other than PyTorch's defaults (so that a mix-up shows), a
#: dropout and a dense layer: every kind of state a pass reads or changes.
STATEFUL = {"name": "torch-stateful", "input": [2, 5, 4], "layers": [
    {"type": "conv2d", "name": "conv", "out_channels": 3, "kernel": 3, "padding": 1},
    {"type": "batchnorm2d", "name": "bn", "momentum": 0.3, "eps": 1e-3},
    {"type": "relu"},
    {"type": "dropout", "p": 0.4},
    {"type": "flatten"},
    {"type": "dense", "name": "fc", "out_features": 3},
]}
