"""Random small specs mixing document 003's layers with the older ones (hypothesis, tests/graphs/mixed_specs.py),
in both modes, against PyTorch in float64: the loss, every gradient (the input's included) and batch
norm's running statistics after the pass. By default the NumPy reference network runs them (nothing
compiles); on two fixed specs that hold every document-003 layer the generated kernels do, and on a few
random ones, marked slow."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings

from symcnn.bench.numpy_network import NumpyNetwork
from symcnn.bench.torch_twin import torch_model
from symcnn.spec import parse_spec, spec_toml
from tests.graphs.mixed_specs import GRAPH_IN_EVALUATION, MEDIUM, SEPARABLE_IN_TRAINING, mixed_specs
from tests.kernels_helpers import network_for

TOLERANCE = 1e-9


def _values(spec, batch: int, seed: int):
    """Random parameters, buffers (running statistics away from PyTorch's initial ones), input and labels."""
    rng = np.random.default_rng(seed)
    params = {name: rng.standard_normal(shape) * 0.5 for name, shape in spec.parameter_shapes().items()}
    buffers = {}
    for name, shape in spec.buffer_shapes().items():
        if name.endswith("num_batches_tracked"):
            buffers[name] = np.array(3, dtype=np.int64)
        elif name.endswith("running_var"):
            buffers[name] = rng.uniform(0.5, 2.0, shape)
        else:
            buffers[name] = rng.standard_normal(shape) * 0.5
    x = rng.standard_normal((batch, *spec.input_shape))
    return params, buffers, x, rng.integers(0, spec.classes, batch)


def _copies(arrays: dict) -> dict:
    return {name: np.array(value) for name, value in arrays.items()}


def torch_pass(torch, spec, params, buffers, x, labels, training: bool, masks=None):
    """PyTorch's loss, gradients by symcnn's names (the input's as ``input``) and buffers after one pass in
    the mode given; dropout with ``masks`` (by layer label) where given."""
    model = torch_model(spec, params, buffers, masks=masks).to(torch.float64)
    model.train(training)
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(model(tx), torch.tensor(labels))
    loss.backward()
    parameters = dict(model.named_parameters())  # children named by layer label, here also the layer's name
    grads = {name: parameters[name].grad.numpy() for name in params}
    grads["input"] = tx.grad.numpy()
    state = model.state_dict()
    return loss.item(), grads, {name: state[name].numpy() for name in buffers}


def assert_equal_passes(found, expected) -> None:
    (loss, grads, buffers), (expected_loss, expected_grads, expected_buffers) = found, expected
    assert loss == pytest.approx(expected_loss, rel=TOLERANCE)
    assert set(grads) == set(expected_grads)
    for name, value in expected_grads.items():
        np.testing.assert_allclose(grads[name], value, rtol=TOLERANCE, atol=1e-12 + TOLERANCE * np.abs(value).max(),
                                   err_msg=name)
    for name, value in expected_buffers.items():
        np.testing.assert_allclose(buffers[name], value, rtol=TOLERANCE, atol=1e-12, err_msg=name)


def _note_what_it_holds(case) -> None:
    """Hypothesis statistics (``--hypothesis-show-statistics``): what the drawn specs exercise."""
    for layer in case.spec["layers"]:
        event(f"layer {layer['type']}")
        if layer.get("groups", 1) > 1:
            event("grouped convolution")
        if layer.get("output_padding", 0) > 0:
            event("transposed convolution with output padding")
    event("training mode" if case.training else "evaluation mode")
    event("graph" if any(layer["type"] in ("add", "concat") for layer in case.spec["layers"]) else "sequential")


def _identity_masks(spec, batch: int) -> dict:
    """Masks that make the NumPy reference's dropout (``x * mask / (1 - p)``) the identity: its
    ``loss_and_grads`` is a training pass for dropout, an evaluation pass needs none."""
    return {layer.label: np.full((batch, *layer.input_shape), 1 - layer.settings["p"])
            for layer in spec.layers if layer.kind == "dropout"}


@settings(max_examples=60, deadline=None)
@given(case=mixed_specs())
@example(case=SEPARABLE_IN_TRAINING)
@example(case=GRAPH_IN_EVALUATION)
def test_random_specs_the_numpy_reference_equals_pytorch(torch, case):
    _note_what_it_holds(case)
    spec = parse_spec(spec_toml(case.spec))
    assert {layer.label: layer.output_shape for layer in spec.layers} == case.shapes
    params, buffers, x, labels = _values(spec, case.batch, seed=7)
    reference = NumpyNetwork(spec, _copies(params), _copies(buffers), training=case.training)
    masks = reference.draw_masks(case.batch, x.dtype) if case.training else _identity_masks(spec, case.batch)
    loss, grads = reference.loss_and_grads(x, labels, masks)
    expected = torch_pass(torch, spec, params, buffers, x, labels, case.training,
                          masks if case.training else None)
    assert_equal_passes((loss, grads, reference.buffers), expected)


def _generated_kernels_equal_pytorch(torch, tmp_path_factory, case) -> None:
    net = network_for(case.spec, tmp_path_factory.mktemp("spec"))
    params, buffers, x, labels = _values(net.spec, case.batch, seed=11)
    net.load_params(_copies(params))
    net.load_buffers(_copies(buffers))
    loss, grads = net.train(case.training).loss_and_grads(x, labels)
    masks = net.masks(case.batch) if case.training else None  # the masks that pass drew
    expected = torch_pass(torch, net.spec, params, buffers, x, labels, case.training, masks)
    assert_equal_passes((loss, grads, net.buffers), expected)


@pytest.mark.parametrize("case", [SEPARABLE_IN_TRAINING, pytest.param(GRAPH_IN_EVALUATION, marks=pytest.mark.heavy)],
                         ids=lambda case: case.spec["name"])
def test_document_003s_layers_generated_kernels_equal_pytorch(torch, tmp_path_factory, case):
    """The generated kernels of every document-003 layer, in both modes: the two fixed specs hold them all
    (grouped, depthwise and transposed convolutions, both adaptive pools, batch and layer norm, dropout), with a
    residual add and a concat. The default run checks the one in training mode; CI both (the other heavy)."""
    _generated_kernels_equal_pytorch(torch, tmp_path_factory, case)


@pytest.mark.slow
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mixed_specs(max_layers=4))
def test_random_specs_the_generated_kernels_equal_pytorch(torch, tmp_path_factory, case):
    _note_what_it_holds(case)
    _generated_kernels_equal_pytorch(torch, tmp_path_factory, case)


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=mixed_specs(max_layers=5, bounds=MEDIUM))
def test_random_medium_specs_the_generated_kernels_equal_pytorch(torch, tmp_path_factory, case):
    """Up to 64 channels on maps up to 40 x 40, kernels to 7 x 7: the shapes where the generator's schedules
    (lanes, columns, register blocks, phases, statistics inside the channel loop, a dense layer's two forms) are
    chosen, unlike the small specs above."""
    _note_what_it_holds(case)
    assert {layer.label: layer.output_shape for layer in parse_spec(spec_toml(case.spec)).layers} == case.shapes
    _generated_kernels_equal_pytorch(torch, tmp_path_factory, case)
