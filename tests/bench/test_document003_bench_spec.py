"""The benchmark spec of document 003's layers (docs/bench/document003.toml, docs/performance.md): it
validates, holds every layer it is meant to time, and its NumPy reference equals PyTorch (the same work)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from symcnn.bench.numpy_network import NumpyNetwork
from symcnn.spec import load_spec
from tests.kernels_helpers import torch_loss_and_grads

SPEC = Path(__file__).resolve().parents[2] / "docs" / "bench" / "document003.toml"


def test_the_spec_holds_document_003s_layers_at_the_shipped_size():
    spec = load_spec(SPEC)
    kinds = {layer.kind for layer in spec.layers}
    assert {"batchnorm2d", "layernorm", "dropout", "conv_transpose2d", "adaptive_avgpool2d", "adaptive_maxpool2d",
            "sigmoid", "tanh"} <= kinds
    convolutions = {layer.label: layer for layer in spec.layers if layer.kind == "conv2d"}
    depthwise, pointwise = convolutions["dw"], convolutions["pw"]  # a depthwise-separable block
    assert depthwise.settings["groups"] == depthwise.input_shape[0] and pointwise.settings["kernel"] == (1, 1)
    (average,) = [layer for layer in spec.layers if layer.kind == "adaptive_avgpool2d"]
    assert average.input_shape[1] % average.output_shape[1] != 0  # overlapping windows
    assert spec.input_shape == (3, 32, 32)


def test_its_numpy_reference_equals_pytorch(torch):
    spec = load_spec(SPEC)
    rng = np.random.default_rng(1)
    params = {name: rng.standard_normal(shape) * 0.3 for name, shape in spec.parameter_shapes().items()}
    x, labels = rng.standard_normal((2, *spec.input_shape)), np.array([3, 7])
    reference = NumpyNetwork(spec, {name: value.copy() for name, value in params.items()})
    masks = reference.draw_masks(2, x.dtype)
    loss, grads = reference.loss_and_grads(x, labels, masks)
    expected_loss, _, expected = torch_loss_and_grads(spec, params, x, labels, torch.float64, masks=masks)
    assert loss == pytest.approx(expected_loss, rel=1e-10)
    for name, value in expected.items():
        np.testing.assert_allclose(grads[name], value, rtol=1e-8, atol=1e-10 * np.abs(value).max(), err_msg=name)

