"""Statistics a training forward pass keeps for the backward pass (symcnn.codegen.saved_statistics): which
kernels keep and read them, and that a network's training passes through them equal the kernels that compute
their own (float64 to 1e-12, the running statistics included)."""

from __future__ import annotations

import numpy as np
import pytest

from symcnn.codegen.backward import statistic_count
from symcnn.codegen.network import layer_kernels
from symcnn.spec import load_spec, parse_spec
from tests.kernels_helpers import COMPILES_KERNELS, network_for, random_params, toml_of


# batch norm (per channel) followed by a ReLU (a fused training forward kernel), then layer norm (per sample)
SPEC = {"name": "kept-norm", "input": [2, 5, 4], "layers": [
    {"type": "conv2d", "name": "conv1", "out_channels": 3, "kernel": 3, "padding": 1, "bias": False},
    {"type": "batchnorm2d", "name": "bn1", "momentum": 0.3},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel": 2},
    {"type": "flatten"},
    {"type": "dense", "name": "fc1", "out_features": 6},
    {"type": "layernorm", "name": "ln1"},
    {"type": "dense", "name": "fc2", "out_features": 4},
]}


def _kernels(spec: dict) -> dict:
    return {kernel.name: kernel for layer in parse_spec(toml_of(spec)).layers for kernel in layer_kernels(layer)}


def test_a_normalization_keeps_its_statistics_and_its_backward_reads_them():
    kernels = _kernels(SPEC)
    saving, saved = kernels["bn1_forward_saving"], kernels["bn1_backward_saved"]
    assert saving.arguments == ("x", "weight", "bias", "out", "statistics")
    # the mean's and the variance's sums, then the batch values the running statistics follow
    assert saving.statistics.rows == ("stat0", "stat1", "coef2", "coef3") and saving.statistics.shape == (3,)
    assert dict(saving.statistics.tracked) == {"running_mean": 2, "running_var": 3}
    assert "statistics" in saved.arguments and saved.arguments[-3:] == ("grad_input", "grad_weight", "grad_bias")
    # the backward kernel sums dL/dY and X dL/dY; the mean and the variance it reads
    assert statistic_count(saved) == statistic_count(kernels["bn1_backward"]) - 2 == 2
    layer_norm = kernels["ln1_forward_saving"].statistics
    assert layer_norm.shape == ("N",) and layer_norm.tracked == ()  # per sample; no buffer follows them
    assert statistic_count(kernels["ln1_backward_saved"]) < statistic_count(kernels["ln1_backward"])
    # no statistics: no such kernels
    assert not any(name.startswith(("conv1_", "maxpool", "fc1_", "fc2_")) and name.endswith(("_saving", "_saved"))
                   for name in kernels)


def test_the_kept_rows_are_printed_as_views_of_the_argument():
    from symcnn.codegen.package import render_package

    files = render_package(load_spec("suite-batchnorm"))
    text = files["bn1.py"]
    kernel = text[text.index("def bn1_forward_saving("):text.index("\n\n\n", text.index("def bn1_forward_saving("))]
    assert "stat0 = statistics[0]" in kernel and "coef3 = statistics[3]" in kernel
    backward = text[text.index("def bn1_backward_saved("):]
    assert "statistics[1, c]" in backward and "stat2" not in backward.split("\n\n\n")[0]
    table = "'bn1_with_relu2_forward_saving': ((4, 16, ), {'running_mean': 2, 'running_var': 3}),"
    assert table in files["__init__.py"]


@COMPILES_KERNELS
@pytest.mark.parametrize("dtype, tolerance", [("float64", 1e-12), ("float32", 2e-5)])
def test_training_passes_with_kept_statistics_equal_recomputed_ones(tmp_path, monkeypatch, dtype, tolerance):
    kept, recomputed = (network_for(SPEC, tmp_path, dtype=dtype, seed=1) for _ in range(2))
    monkeypatch.setattr(recomputed, "_saving_kernel", lambda kernel: None)
    rng = np.random.default_rng(5)
    kept.load_params(random_params(kept, rng))
    recomputed.load_params(kept.params)
    kept.profile = {}
    for _ in range(3):  # the running statistics move three times
        x, labels = rng.standard_normal((5, 2, 5, 4)).astype(dtype) + 0.5, rng.integers(0, 4, 5)
        ours, theirs = kept.loss_and_grads(x, labels), recomputed.loss_and_grads(x, labels)
        assert ours[0] == pytest.approx(theirs[0], rel=tolerance)
        for name, value in theirs[1].items():
            np.testing.assert_allclose(ours[1][name], value, rtol=tolerance, atol=tolerance, err_msg=name)
    for name, value in recomputed.buffers.items():
        np.testing.assert_allclose(kept.buffers[name], value, rtol=tolerance, err_msg=name)
    ran = set(kept.profile)
    kept_kernels = {"bn1_with_relu2_forward_saving", "bn1_backward_saved", "ln1_forward_saving", "ln1_backward_saved"}
    assert kept_kernels <= ran, ran
    assert not {"bn1_with_relu2_forward", "bn1_backward", "ln1_forward", "ln1_backward"} & ran, ran
