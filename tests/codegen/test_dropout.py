"""Dropout: the formula with its mask, generated kernels against the symbolic expansion, PyTorch (with
symcnn's mask) and finite differences; the counter-based mask generator (statistics, reproducibility
across runs, thread counts and resumes); training and evaluation modes; bad ``p``."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symcnn.bench.numpy_network import NumpyNetwork
from symcnn.runtime.masks import GAMMA, _mix, draw_mask, pass_key, reference_mask
from symcnn.spec import parse_spec
from symcnn.symbolic import ops
from symcnn.symbolic.adjoint import gradients_of
from symcnn.symbolic.derive import LayerConfig, derive
from symcnn.symbolic.tensors import symbol_array
from symcnn.symbolic.verify import mismatches, symbolic_network_gradients
from symcnn.views.formula import general_formula
from tests.kernels_helpers import COMPILES_KERNELS, network_for, random_params, toml_of, torch_loss_and_grads


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


#: Dropout on a (C, H, W) map and on a flat vector, between the other layers.
SPEC = {
    "name": "small-dropout",
    "input": [1, 4, 4],
    "layers": [
        {"type": "conv2d", "name": "conv", "out_channels": 2, "kernel": 2, "padding": 1},
        {"type": "relu"},
        {"type": "dropout", "p": 0.25},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "flatten"},
        {"type": "dropout"},
        {"type": "dense", "name": "fc", "out_features": 4},
    ],
}


def _network(tmp_path, dtype="float64", seed=0, spec=SPEC):
    net = network_for(spec, tmp_path, dtype=dtype, seed=seed)
    net.load_params({name: value.astype(dtype) for name, value in random_params(net, np.random.default_rng(1)).items()})
    return net


# --- the formula -------------------------------------------------------------------------------------


def test_the_formula_keeps_the_mask_as_an_operand_and_differentiates_the_input_only():
    formula = ops.dropout()
    assert str(formula.equation()) == "Eq(Y[n, c, i, j], M[n, c, i, j]*X[n, c, i, j]/(1 - p))"
    assert [tensor.role for tensor in formula.operands] == ["input", "mask"]
    assert list(gradients_of(formula)) == ["input"]
    assert general_formula("dropout", "input").text().splitlines()[1] == \
        "dL/dX[n, c, i, j] = M[n, c, i, j]*dL/dY[n, c, i, j]/(1 - p)"
    assert general_formula("dropout", "forward").text().splitlines()[1] == \
        "Y[n, c, i, j] = M[n, c, i, j]*X[n, c, i, j]/(1 - p)"
    for rank, shape in ((2, (2, 3)), (4, (2, 1, 2, 3))):
        arrays = {"input": symbol_array("x", shape), "mask": symbol_array("m", shape)}
        assert mismatches(ops.dropout(rank), arrays) == {"input": []}


def test_derive_shows_the_mask_in_the_output_and_the_gradient():
    result = derive(LayerConfig("dropout", input_size=(1, 2)))
    assert [str(result.output[0, 0, 0, j]) for j in range(2)] == ["m00*x00/(1 - p)", "m01*x01/(1 - p)"]
    assert str(result.gradients["grad_input"][0, 0, 0, 1]) == "g01*m01/(1 - p)"
    assert set(result.gradients) == {"grad_input"}  # the mask is drawn, not learned
    quarter = derive(LayerConfig("dropout", input_size=(1, 4), settings={"p": 0.25}))
    assert str(quarter.gradients["grad_input"][0, 0, 0, 3]) == "4*g03*m03/3"


def test_the_cli_derives_and_prints_the_formula(cli):
    status, out, _ = cli("derive", "dropout", "--input", "1x2")
    assert status == 0 and "y00 = m00*x00/(1 - p)" in out and "dL/dx01 = g01*m01/(1 - p)" in out
    status, out, _ = cli("formula", "dropout", "--wrt", "forward")
    assert status == 0 and "Y[n, c, i, j] = M[n, c, i, j]*X[n, c, i, j]/(1 - p)" in out


# --- kernels against the symbolic expansion, PyTorch and finite differences ---------------------------


@COMPILES_KERNELS
def test_kernels_equal_the_symbolic_expansion_with_the_networks_mask(tmp_path):
    net = _network(tmp_path)
    rng = np.random.default_rng(7)
    x, labels = rng.standard_normal((2, *net.spec.input_shape)), np.array([0, 3])
    loss, grads = net.loss_and_grads(x, labels)
    masks = net.masks(2)
    assert {label: mask.shape for label, mask in masks.items()} == {"dropout2": (2, 2, 5, 5), "dropout5": (2, 8)}
    assert all(0 < mask.mean() < 1 for mask in masks.values())  # some dropped, some kept
    expected = symbolic_network_gradients(net.spec, net.params, x, labels, masks)
    assert loss == pytest.approx(expected["loss"], rel=1e-12)
    for name in list(net.params) + ["input"]:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-10, atol=1e-12, err_msg=name)


@COMPILES_KERNELS
@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-10), ("float32", 2e-5)])
def test_kernels_equal_pytorch_with_symcnns_mask_and_nn_dropout_in_evaluation(torch, tmp_path, dtype, tolerance):
    net = _network(tmp_path, dtype)
    rng = np.random.default_rng(8)
    x, labels = rng.standard_normal((3, *net.spec.input_shape)).astype(dtype), np.array([1, 0, 3])
    loss, grads = net.loss_and_grads(x, labels)
    torch_dtype = torch.float64 if dtype == "float64" else torch.float32
    expected_loss, _, expected = torch_loss_and_grads(net.spec, net.params, x, labels, torch_dtype, net.masks(3))
    assert loss == pytest.approx(expected_loss, rel=tolerance)
    assert set(grads) == set(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=tolerance, atol=tolerance * np.abs(value).max(), err_msg=key)
    # the training pass's logits, with the same masks drawn again (the step set back)
    net.mask_state = {"seed": 0, "step": net.mask_state["step"] - 1}
    logits = net.forward(x)
    from symcnn.bench.bench import torch_model

    fixed = torch_model(net.spec, net.params, masks=net.masks(3)).to(torch_dtype)
    np.testing.assert_allclose(logits, fixed(torch.tensor(x)).detach().numpy(), rtol=tolerance, atol=tolerance)
    # evaluation: torch's own nn.Dropout after model.eval()
    model = torch_model(net.spec, net.params).to(torch_dtype).eval()
    assert isinstance(model[2], torch.nn.Dropout) and model[2].p == 0.25
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(x, training=False), model(torch.tensor(x)).numpy(),
                                   rtol=tolerance, atol=tolerance)


@COMPILES_KERNELS
def test_gradients_equal_central_finite_differences_at_a_fixed_mask(tmp_path):
    net = _network(tmp_path)
    rng = np.random.default_rng(13)
    x, labels = rng.standard_normal((2, *net.spec.input_shape)), np.array([2, 1])
    state = net.mask_state

    def loss_at_the_same_mask():
        net.mask_state = state  # every pass draws the masks of the same step
        return net.loss_and_grads(x, labels)

    _, grads = loss_at_the_same_mask()
    step = 1e-6
    arrays = dict(net.params, input=x)
    for key, array in arrays.items():
        for _ in range(4):
            index = tuple(rng.integers(0, size) for size in array.shape)
            original = array[index]
            array[index] = original + step
            upper = loss_at_the_same_mask()[0]
            array[index] = original - step
            lower = loss_at_the_same_mask()[0]
            array[index] = original
            assert grads[key][index] == pytest.approx((upper - lower) / (2 * step), rel=1e-6, abs=1e-9), (key, index)


@COMPILES_KERNELS
def test_the_numpy_reference_equals_the_kernels_with_the_same_masks(tmp_path):
    net = _network(tmp_path)
    rng = np.random.default_rng(9)
    x, labels = rng.standard_normal((2, *net.spec.input_shape)), np.array([0, 1])
    loss, grads = net.loss_and_grads(x, labels)
    reference = NumpyNetwork(net.spec, {name: value.copy() for name, value in net.params.items()})
    expected_loss, expected = reference.loss_and_grads(x, labels, net.masks(2))
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=1e-10, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(net.forward(x, training=False), reference.forward(x), rtol=1e-12)
    drawn = reference.draw_masks(500)  # its own masks, from NumPy's generator
    assert abs(1 - drawn["dropout2"].mean() - 0.25) < 0.01 and abs(1 - drawn["dropout5"].mean() - 0.5) < 0.02


@st.composite
def specs_with_dropout(draw):
    """Small specs mixing dropout (on maps and vectors, p from 0 to 0.9) with the other layers."""
    height, width = draw(st.integers(3, 6)), draw(st.integers(3, 6))
    layers = [{"type": "conv2d", "name": "conv", "out_channels": draw(st.integers(1, 3)),
               "kernel": [draw(st.integers(1, 3)), draw(st.integers(1, 3))], "padding": 1},
              {"type": draw(st.sampled_from(["relu", "leaky_relu", "elu"]))}]
    if draw(st.booleans()):
        layers.append({"type": "dropout", "p": draw(st.sampled_from([0.0, 0.1, 0.5, 0.9]))})
    layers += [{"type": draw(st.sampled_from(["avgpool2d", "maxpool2d"])), "kernel": 2, "stride": 1},
               {"type": "flatten"}, {"type": "dropout", "p": draw(st.sampled_from([0.0, 0.3, 0.75]))},
               {"type": "dense", "name": "fc", "out_features": 3}]
    channels = draw(st.integers(1, 2))
    digest = hashlib.sha256(repr((layers, channels, height, width)).encode()).hexdigest()[:10]
    return {"name": f"drop-{digest}", "input": [channels, height, width], "layers": layers}


@COMPILES_KERNELS
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=specs_with_dropout(), training=st.booleans())
def test_random_specs_with_dropout_equal_pytorch_in_both_modes(torch, tmp_path_factory, spec, training):
    net = network_for(spec, tmp_path_factory.mktemp("spec"))
    rng = np.random.default_rng(0)
    net.load_params(random_params(net, rng))
    x, labels = rng.standard_normal((2, *net.spec.input_shape)), np.array([1, 2])
    if training:
        loss, grads = net.loss_and_grads(x, labels)
        expected_loss, _, expected = torch_loss_and_grads(net.spec, net.params, x, labels, torch.float64, net.masks(2))
        assert loss == pytest.approx(expected_loss, rel=1e-10)
        for key, value in expected.items():
            np.testing.assert_allclose(grads[key], value, rtol=1e-9, atol=1e-12, err_msg=key)
    else:
        from symcnn.bench.bench import torch_model

        with torch.no_grad():
            expected_logits = torch_model(net.spec, net.params).eval()(torch.tensor(x)).numpy()
        np.testing.assert_allclose(net.eval().forward(x), expected_logits, rtol=1e-10, atol=1e-12)


# --- the mask generator -------------------------------------------------------------------------------


def test_the_jitted_generator_is_its_definition():
    for shape, seed, layer, step, drop in [((2, 3, 4, 5), 0, 2, 0, 0.5), ((3, 7), 2**64 - 1, 511, 10**12, 0.1),
                                           ((1, 1), 12345, 0, 7, 0.0)]:
        for dtype in (np.float32, np.float64):
            mask = np.empty(shape, dtype=dtype)
            draw_mask(mask, seed, layer, step, drop)
            np.testing.assert_array_equal(mask, reference_mask(shape, seed, layer, step, drop))
    # SplitMix64's published first outputs from seed 0 (Vigna's splitmix64.c), then the keys and a mask
    # pinned: a change of the generator would change every run's masks
    assert [_mix(GAMMA), _mix(2 * GAMMA % 2**64)] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4]
    assert pass_key(7, 3, 11) == 0x6FC9F6DC4FDD3C43 and pass_key(7 + 2**64, 3, 11) == pass_key(7, 3, 11)
    assert reference_mask((2, 8), 7, 3, 11, 0.5).astype(int).tolist() == [[0, 1, 1, 1, 0, 0, 1, 1],
                                                                           [1, 0, 0, 1, 0, 1, 1, 0]]


@pytest.mark.parametrize("drop", [0.1, 0.5, 0.9])
def test_the_fraction_dropped_is_p_within_a_binomial_bound(drop):
    mask = np.empty((64, 16, 16, 16), dtype=np.float32)  # 262,144 elements
    for layer, step in ((0, 0), (3, 1), (3, 2)):
        draw_mask(mask, 0, layer, step, drop)
        dropped = 1 - mask.mean(dtype=np.float64)
        bound = 5 * np.sqrt(drop * (1 - drop) / mask.size)  # five standard deviations
        assert abs(dropped - drop) < bound, (layer, step, dropped)
        per_image = 1 - mask.reshape(64, -1).mean(axis=1)  # no image starved or flooded
        assert np.abs(per_image - drop).max() < 6 * np.sqrt(drop * (1 - drop) / per_image.size)


def test_masks_differ_across_layers_steps_and_seeds_and_p_zero_keeps_everything():
    def mask(seed, layer, step, drop=0.5):
        out = np.empty((4, 1000), dtype=np.float32)
        draw_mask(out, seed, layer, step, drop)
        return out

    first = mask(0, 1, 0)
    for other in (mask(0, 2, 0), mask(0, 1, 1), mask(1, 1, 0)):
        agreement = (first == other).mean()
        assert 0.45 < agreement < 0.55  # independent halves agree about half the time
    assert (mask(0, 1, 0, drop=0.0) == 1).all()
    # element e is the same element whatever the batch size
    smaller = np.empty((2, 1000), dtype=np.float32)
    draw_mask(smaller, 0, 1, 0, 0.5)
    np.testing.assert_array_equal(smaller, first[:2])


def test_a_share_of_the_batch_draws_its_rows_of_the_whole_batch_mask():
    whole = np.empty((5, 3, 4, 2), dtype=np.float64)
    draw_mask(whole, 9, 2, 6, 0.4)
    for first, rows in ((0, 2), (2, 3), (4, 1)):  # as processes of a data-parallel run hold them
        share = np.empty((rows, 3, 4, 2), dtype=np.float64)
        draw_mask(share, 9, 2, 6, 0.4, first_image=first)
        np.testing.assert_array_equal(share, whole[first:first + rows])
        np.testing.assert_array_equal(share, reference_mask(share.shape, 9, 2, 6, 0.4, first_image=first))


_THREADS_SCRIPT = """
import hashlib, sys
import numpy as np
from symcnn.runtime.masks import draw_mask
mask = np.empty((8, 3, 17, 19), dtype=np.float32)
draw_mask(mask, 5, 4, 1234, 0.3)
print(hashlib.sha256(mask.tobytes()).hexdigest())
"""


def test_masks_are_the_same_bit_for_bit_with_one_thread_or_two():
    digests = []
    for threads in ("1", "2"):
        environment = dict(os.environ, NUMBA_NUM_THREADS=threads)
        result = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], capture_output=True, text=True,
                                env=environment, timeout=300)
        assert result.returncode == 0, result.stderr
        digests.append(result.stdout.strip())
    mask = np.empty((8, 3, 17, 19), dtype=np.float32)
    draw_mask(mask, 5, 4, 1234, 0.3)
    assert digests == [hashlib.sha256(mask.tobytes()).hexdigest()] * 2


@COMPILES_KERNELS
def test_two_runs_with_the_same_seed_are_the_same_bit_for_bit(tmp_path):
    runs = []
    for _ in range(2):
        net = _network(tmp_path, "float32", seed=4)
        x = np.random.default_rng(3).standard_normal((5, *net.spec.input_shape)).astype(np.float32)
        losses = [net.train_step(x, np.array([0, 1, 2, 3, 0]), lr=0.1) for _ in range(3)]
        runs.append((losses, {name: value.copy() for name, value in net.params.items()}, net.mask_state))
    assert runs[0][0] == runs[1][0] and runs[0][2] == runs[1][2] == {"seed": 4, "step": 3}
    for name, value in runs[0][1].items():
        np.testing.assert_array_equal(runs[1][1][name], value, err_msg=name)
    other = _network(tmp_path, "float32", seed=5)
    other.train_step(x, np.array([0, 1, 2, 3, 0]))
    assert any((other.masks(5)[label] != mask).any() for label, mask in net.masks(5, step=0).items())


# --- modes --------------------------------------------------------------------------------------------


@COMPILES_KERNELS
def test_modes_as_pytorch_evaluation_is_the_identity_and_draws_nothing(tmp_path):
    net = _network(tmp_path)
    assert net.training is True
    x = np.random.default_rng(4).standard_normal((2, *net.spec.input_shape))
    assert net.eval() is net and net.training is False
    evaluated = net.forward(x)
    assert net.mask_state["step"] == 0  # evaluation draws no masks
    without = parse_spec(toml_of({**SPEC, "name": "no-dropout",
                                  "layers": [layer for layer in SPEC["layers"] if layer["type"] != "dropout"]}))
    reference = NumpyNetwork(without, net.params)
    np.testing.assert_allclose(evaluated, reference.forward(x), rtol=1e-12)
    assert net.train() is net and net.training is True
    trained = net.forward(x)
    assert net.mask_state["step"] == 1 and not np.allclose(trained, evaluated)
    np.testing.assert_array_equal(net.forward(x, training=False), evaluated)
    net.eval()  # gradients in evaluation mode, as a PyTorch module's after eval(): dropout is the identity
    loss, grads = net.loss_and_grads(x, np.array([0, 1]))
    assert net.mask_state["step"] == 1 and net.training is False
    expected_loss, expected = reference.loss_and_grads(x, np.array([0, 1]))
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    for name, value in expected.items():
        np.testing.assert_allclose(grads[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
    net.loss_and_grads(x, np.array([0, 1]), training=True)  # or a training pass, when asked
    assert net.mask_state["step"] == 2


@COMPILES_KERNELS
def test_the_trainer_evaluates_held_out_data_in_evaluation_mode(tmp_path):
    from symcnn.train_config import TrainConfig
    from symcnn.training.trainer import Trainer

    net = _network(tmp_path)
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((7, *net.spec.input_shape)), rng.integers(0, 4, 7)
    loss, accuracy = Trainer(net, TrainConfig()).evaluate(x, y, batch=3)
    logits = net.forward(x, training=False)
    shifted = logits - logits.max(axis=1, keepdims=True)
    expected = -(shifted[np.arange(7), y] - np.log(np.exp(shifted).sum(axis=1))).mean()
    assert loss == pytest.approx(expected, rel=1e-12)
    assert accuracy == (logits.argmax(axis=1) == y).mean()
    assert net.mask_state["step"] == 0 and net.training is True


# --- training: exact resume ----------------------------------------------------------------------------

DIGITS_SPEC = {
    "name": "digits-dropout",
    "input": [1, 8, 8],
    "layers": [
        {"type": "conv2d", "name": "conv1", "out_channels": 8, "kernel": 3, "padding": 1},
        {"type": "relu"},
        {"type": "dropout", "p": 0.2},
        {"type": "maxpool2d", "kernel": 2},
        {"type": "flatten"},
        {"type": "dropout", "p": 0.5},
        {"type": "dense", "name": "fc1", "out_features": 10},
    ],
}


@COMPILES_KERNELS
def test_a_run_with_dropout_resumes_exactly_from_a_mid_epoch_checkpoint(tmp_path):
    from symcnn.train_config import TrainConfig
    from symcnn.training.checkpoint import load_checkpoint
    from symcnn.training.data import load_digits
    from symcnn.training.trainer import Trainer

    full = load_digits((1, 8, 8)).standardized()
    data = replace(full, x_train=full.x_train[:320], y_train=full.y_train[:320])  # 5 batches an epoch

    def trainer():
        return Trainer(network_for(DIGITS_SPEC, tmp_path, dtype="float32", seed=2),
                       TrainConfig(epochs=2, batch=64, lr=0.05, seed=2))

    uninterrupted = trainer()
    uninterrupted.fit(data, progress=False)
    checkpoint = tmp_path / "ctrl-c.npz"
    interrupted = trainer()

    def ctrl_c(epoch, step):
        if epoch == 1 and step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(data, progress=False, checkpoint=checkpoint, on_step=ctrl_c)
    saved = load_checkpoint(checkpoint).metadata["masks"]
    batches = -(-len(data.x_train) // 64)
    assert saved == {"seed": 2, "step": batches + 2}
    resumed = trainer()
    resumed.resume(checkpoint)
    assert resumed.net.mask_state == saved
    resumed.fit(data, progress=False)
    for name, value in uninterrupted.net.params.items():
        np.testing.assert_array_equal(resumed.net.params[name], value, err_msg=name)
    assert resumed.net.mask_state == uninterrupted.net.mask_state


# --- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p, shown", [(1, "1"), (1.5, "1.5"), (-0.1, "-0.1"), ("half", "'half'"), (True, "True"),
                                      (float("nan"), "nan")])
def test_p_outside_0_1_is_refused_naming_the_layer_and_p(p, shown):
    layers = [{"type": "flatten"}, {"type": "dropout", "p": p}, {"type": "dense", "name": "fc", "out_features": 2}]
    text = toml_of({"name": "bad", "input": [1, 2, 2], "layers": layers})
    with pytest.raises(ValueError) as error:
        parse_spec(text)
    message = str(error.value)
    assert "\n" not in message and "p: must be a number in [0, 1), got " + shown in message and "dropout" in message


def test_bad_modes_and_generator_states_are_refused(tmp_path):
    net = _network(tmp_path)
    x = np.zeros((1, *net.spec.input_shape))
    with pytest.raises(ValueError, match=r"^mode: must be True or False, got 'yes'$"):
        net.train("yes")
    with pytest.raises(ValueError, match=r"^training: must be True, False or None"):
        net.forward(x, training=1)
    for state in ({"seed": -1, "step": 0}, {"seed": 0}, {"seed": 0, "step": 2**64}, [0, 0], {"seed": 0, "step": 1.0}):
        with pytest.raises(ValueError, match=r"^mask_state: must be"):
            net.mask_state = state
    with pytest.raises(ValueError, match=r"^step: must be an integer >= 0"):
        net.masks(1)  # no training pass yet


def test_the_cli_refuses_a_bad_p_in_one_line(tmp_path, cli):
    spec = tmp_path / "bad.toml"
    spec.write_text(toml_of({"name": "bad", "input": [1, 2, 2], "layers": [
        {"type": "flatten"}, {"type": "dropout", "p": 1.0}, {"type": "dense", "name": "fc", "out_features": 2}]}))
    status, _, err = cli("generate", str(spec), "--out", str(tmp_path / "out"))
    assert status == 2 and err.count("\n") == 1 and "p: must be a number in [0, 1), got 1.0" in err
