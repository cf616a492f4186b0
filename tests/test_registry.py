"""The op registry: an op registered in a test alone gets every stage for free.

Two toy ops are registered here and nowhere else: ``square`` (an element-wise activation,
``Y = X**2``) and ``channel_scale`` (a learned scale per channel, ``Y[n, c, i, j] = W[c] X[n, c, i, j]``).
Each is one formula and one :func:`symcnn.registry.register` call; with no other edit, symcnn
derives them (``derive``, ``formula``), accepts them in a spec, generates their kernels, and the
kernels equal the symbolic expansion.
"""

from __future__ import annotations

import numpy as np
import pytest

from symcnn import registry
from symcnn.registry import Op, Setting
from symcnn.spec import spec_from_dict
from symcnn.symbolic import ops
from symcnn.symbolic.derive import LayerConfig, derivable_ops, derive
from symcnn.symbolic.verify import symbolic_network_gradients
from symcnn.views.formula import FORMULA_OPS, general_formula
from tests.kernels_helpers import network_for, random_params


def square_formula(rank: int = 4) -> ops.IndexFormula:
    """``Y = X**2`` element-wise."""
    return ops.elementwise("square", lambda x: x**2, rank)


def channel_scale_formula() -> ops.IndexFormula:
    """``Y[n, c, i, j] = W[c] * X[n, c, i, j]``: one learned scale per channel."""
    shape = (ops.N, ops.C_in, ops.H_in, ops.W_in)
    return ops.IndexFormula(
        op="channel_scale",
        output=ops.Tensor("output", ops.Y, shape),
        indices=(ops.n, ops.c, ops.i, ops.j),
        rhs=ops.Wt[ops.c] * ops.X[ops.n, ops.c, ops.i, ops.j],
        operands=(ops.Tensor("input", ops.X, shape), ops.Tensor("weight", ops.Wt, (ops.C_in,))),
        parameters={"batch": ops.N, "in_channels": ops.C_in, "in_height": ops.H_in, "in_width": ops.W_in},
    )


@pytest.fixture
def toy_ops():
    """Register the two toy ops for one test, and remove them afterwards."""
    registry.register(Op("square", square_formula, "square", inputs=(3, 1), summary="the square, element-wise"))
    registry.register(Op("channel_scale", channel_scale_formula, "channel scale",
                         parameter_shapes=lambda shape, settings: {"weight": (shape[0],)}))
    yield
    registry.unregister("square")
    registry.unregister("channel_scale")


def test_a_registered_op_is_derived_element_wise(toy_ops):
    assert {"square", "channel_scale"} <= set(derivable_ops())
    result = derive(LayerConfig("square", input_size=(2, 2)))
    assert str(result.output[0, 0, 0, 1]) == "x01**2"
    assert str(result.gradients["grad_input"][0, 0, 0, 1]) == "2*b*x01"
    scaled = derive(LayerConfig("channel_scale", input_size=(1, 2), channels_in=2))
    assert set(scaled.gradients) == {"grad_input", "grad_weight"}
    assert str(scaled.gradients["grad_weight"][1]) == "g100*x100 + g101*x101"
    assert str(scaled.gradients["grad_input"][0, 1, 0, 0]) == "g100*w1"


def test_a_registered_op_has_a_general_formula(toy_ops):
    assert "square" in FORMULA_OPS
    view = general_formula("square", "input")
    assert "2*X[n, c, i, j]*dL/dY[n, c, i, j]" in view.text().replace(" ", "").replace(",", ", ")
    weight = general_formula("channel_scale", "weight").text()
    assert "sum_{" in weight and "X[n, c" in weight


def test_a_registered_op_is_a_spec_layer_and_the_cli_lists_it(toy_ops, cli):
    spec = spec_from_dict({"name": "toy", "input": [2, 4, 4], "layers": [
        {"type": "channel_scale", "name": "scale"}, {"type": "square"}, {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 3}]})
    assert [layer.kind for layer in spec.layers][:2] == ["channel_scale", "square"]
    assert spec.parameter_shapes()["scale.weight"] == (2,)
    status, out, _ = cli("derive", "square", "--input", "2x2")
    assert status == 0 and "y00 = x00**2" in out
    status, out, _ = cli("formula", "channel_scale", "--wrt", "weight")
    assert status == 0 and "dL/dW[c]" in out


def test_a_registered_op_is_refused_after_unregistering(toy_ops):
    registry.unregister("square")
    with pytest.raises(ValueError, match="type: must be one of"):
        spec_from_dict({"name": "toy", "input": [1, 2, 2], "layers": [{"type": "square"}]})


@pytest.mark.heavy
def test_a_registered_ops_kernels_equal_its_symbolic_expansion(toy_ops, tmp_path):
    spec = {"name": "toy-kernels", "input": [2, 3, 4], "layers": [
        {"type": "conv2d", "name": "conv", "out_channels": 2, "kernel": 2, "padding": 1},
        {"type": "channel_scale", "name": "scale"},
        {"type": "square"},
        {"type": "flatten"},
        {"type": "square"},
        {"type": "dense", "name": "fc", "out_features": 3}]}
    net = network_for(spec, tmp_path)
    rng = np.random.default_rng(5)
    params = random_params(net, rng)
    net.load_params(params)
    x = rng.standard_normal((2, *net.spec.input_shape)) * 0.5
    labels = np.array([1, 2])
    loss, grads = net.loss_and_grads(x, labels)
    expected = symbolic_network_gradients(net.spec, params, x, labels)
    assert loss == pytest.approx(expected["loss"], rel=1e-12, abs=1e-12)
    for name in [*params, "input"]:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("op, message", [
    (Op("Bad", square_formula, "bad"), "lower-case identifier"),
    (Op("conv2d", square_formula, "again"), "registered already"),
    (Op("flat2", square_formula, "f", inputs=(2,)), "input rank"),
    (Op("keys", square_formula, "k", settings=(Setting("name", "count"),)), "not 'type' or 'name'"),
])
def test_register_refuses_a_malformed_op(op, message):
    with pytest.raises(ValueError, match=message):
        registry.register(op)


def test_setting_values_are_checked_and_named():
    conv = registry.get("conv2d")
    with pytest.raises(ValueError, match="^stride: must be an integer >= 1, got 0$"):
        conv.settings_of({"out_channels": 2, "kernel": 3, "stride": 0})
    with pytest.raises(ValueError, match="^out_channels: missing"):
        conv.settings_of({"kernel": 3})
    with pytest.raises(ValueError, match="^padd: unknown key for conv2d"):
        conv.settings_of({"out_channels": 1, "kernel": 3, "padd": 1})
    assert registry.get("maxpool2d").settings_of({"kernel": 3})["stride"] == (3, 3)  # a pool's default stride


def test_every_built_in_op_resolves_to_its_formula():
    for name in registry.names():
        entry = registry.get(name)
        formula = entry.load_formula()()
        assert formula.op == name
        for setting in entry.settings:  # every role a setting names is a parameter of the formula
            for role in setting.roles:
                assert role in formula.parameters or any(s.name == role for s in formula.rhs.free_symbols), (name, role)
