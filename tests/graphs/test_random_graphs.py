"""Random small graph specs (hypothesis): validated with the shapes worked out independently, the NumPy
reference equal to the PyTorch twin (cheap: nothing compiles), and on a few of them the generated kernels
equal to PyTorch too."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from symcnn.bench.numpy_network import NumpyNetwork
from symcnn.spec import parse_spec, spec_toml
from tests.graphs.graph_specs import graph_specs
from tests.kernels_helpers import network_for, random_params, torch_loss_and_grads


def _case(spec, seed: int, batch: int = 3):
    rng = np.random.default_rng(seed)
    params = {name: rng.standard_normal(shape) * 0.5 for name, shape in spec.parameter_shapes().items()}
    x = rng.standard_normal((batch, *spec.input_shape))
    return params, x, rng.integers(0, spec.classes, batch)


def _assert_close(loss, grads, expected_loss, expected, tolerance=1e-9):
    assert loss == pytest.approx(expected_loss, rel=tolerance)
    assert set(grads) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=tolerance, atol=tolerance * np.abs(value).max(),
                                   err_msg=key)


@settings(max_examples=25, deadline=None)
@given(graph=graph_specs())
def test_random_graphs_validate_and_the_numpy_reference_equals_pytorch(torch, graph):
    spec = parse_spec(spec_toml(graph.spec))
    assert {layer.label: layer.output_shape for layer in spec.layers} == graph.shapes
    readers = spec.consumers()
    assert all(readers[layer.label] for layer in spec.layers[:-1]) and readers["input"]
    assert spec.sequential == all(layer.inputs == (previous.label,)
                                  for previous, layer in zip(spec.layers, spec.layers[1:]))
    params, x, labels = _case(spec, 3)
    loss, grads = NumpyNetwork(spec, {name: value.copy() for name, value in params.items()}).loss_and_grads(x, labels)
    expected_loss, expected_logits, expected = torch_loss_and_grads(spec, params, x, labels, torch.float64)
    np.testing.assert_allclose(NumpyNetwork(spec, params).forward(x), expected_logits, rtol=1e-10, atol=1e-12)
    _assert_close(loss, grads, expected_loss, expected)


@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(graph=graph_specs(max_layers=5))
def test_random_graphs_kernels_equal_pytorch(torch, tmp_path_factory, graph):
    net = network_for(graph.spec, tmp_path_factory.mktemp("spec"))
    net.load_params(random_params(net, np.random.default_rng(5)))
    x = np.random.default_rng(6).standard_normal((2, *net.spec.input_shape))
    labels = np.array([1, 0])
    loss, grads = net.loss_and_grads(x, labels)
    expected_loss, expected_logits, expected = torch_loss_and_grads(net.spec, net.params, x, labels, torch.float64)
    np.testing.assert_allclose(net.forward(x), expected_logits, rtol=1e-10, atol=1e-12)
    _assert_close(loss, grads, expected_loss, expected)
