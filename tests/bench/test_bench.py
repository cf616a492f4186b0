"""`symcnn bench` and its NumPy baseline: correct numbers, well-formed reports (no timing thresholds)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from symcnn import Network
from symcnn.bench.bench import _winograd_network, forward_flops
from symcnn.bench.numpy_network import NumpyNetwork
from symcnn.spec import load_spec
from tests.kernels_helpers import conv_layer, toml_of


# digits by default; the larger shipped specs (seed004 compiles for about 30 s each) are long runs.
@pytest.mark.parametrize("name", ["digits", pytest.param("seed004", marks=pytest.mark.slow),
                                  pytest.param("seed004-text", marks=pytest.mark.slow)])
def test_numpy_baseline_equals_the_generated_kernels(name):
    """The im2col baseline computes the same loss and gradients (float64), so the benchmark compares
    equal work."""
    net = Network.from_spec(name, dtype="float64", seed=2)
    baseline = NumpyNetwork(net.spec, {key: value.copy() for key, value in net.params.items()})
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, *net.spec.input_shape))
    labels = np.array([1, 5, 9])
    loss, grads = net.loss_and_grads(x, labels)
    expected_loss, expected = baseline.loss_and_grads(x, labels)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    for key, value in expected.items():
        np.testing.assert_allclose(grads[key], value, rtol=1e-10, atol=1e-12, err_msg=key)


def test_forward_flops_count_the_multiply_adds():
    # seed004: conv1 16x32x32 outputs of 3x3x3, conv2 32x16x16 of 16x3x3, fc1 10 of 8192; 2 FLOPs each
    expected = 2 * (16 * 32 * 32 * 27 + 32 * 16 * 16 * 144 + 10 * 8192)
    assert forward_flops(load_spec("seed004")) == expected


def test_bench_reports_every_implementation_side_by_side(cli, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setattr("symcnn.bench.bench.SETTLE_SECONDS", 0.0)  # the rest between timings: not what is tested
    status, out, err = cli("bench", "digits", "--batch", "8", "--repeat", "2", "--profile", "--json")
    assert status == 0, err
    data = json.loads(out)
    assert set(data["results"]) == {"generated", "numpy", "pytorch", "in-pytorch"}
    for row in data["results"].values():
        assert row["forward_images_per_second"] > 0 and row["train_step_batch1_ms"] > 0
    assert set(data["ratios_to_pytorch"]["generated"]) == {"forward", "train_step", "train_step_batch1"}
    for metric, (lowest, highest) in data["ratio_ranges_to_pytorch"]["generated"].items():  # repeat by repeat
        ratio = data["ratios_to_pytorch"]["generated"][metric]  # the ratio of the medians: within, up to rounding
        assert 0 < lowest * (1 - 1e-9) <= ratio <= highest * (1 + 1e-9), metric
    # conv1's forward kernel stores the ReLU after it in training passes too: its FLOPs are conv1's
    assert "conv1_forward" not in data["profile"] and data["sgemm_gflops"] > 0
    assert data["profile"]["conv1_with_relu1_forward"]["gflops"] > 0 and "relu1_forward" not in data["profile"]
    assert set(data["in_pytorch_overhead"]) == {"forward", "train_step", "train_step_batch1"}
    status, out, _ = cli("bench", "digits", "--batch", "4", "--repeat", "1")
    assert status == 0 and "ratio to PyTorch" in out and "generated" in out and "in-pytorch: " in out
    (ratios,) = [line for line in out.splitlines() if line.startswith("generated  forward ")]
    # one repeat: each ratio's range is the ratio itself
    assert re.fullmatch(r"generated  forward (\d+\.\d\d)x \[\1-\1\]  train step (\d+\.\d\d)x \[\2-\2\]  "
                        r"batch-1 train step (\d+\.\d\d)x \[\3-\3\]", ratios), ratios


@pytest.mark.parametrize("option", ["--batch", "--threads", "--repeat"])
def test_bench_refuses_non_positive_counts(cli, option):
    status, out, err = cli("bench", "digits", option, "0")
    assert status == 2 and out == "" and option in err and err.count("\n") == 1


@pytest.mark.heavy
def test_startup_is_measured_from_an_empty_directory():
    """From an empty directory: generation, a cold first train step (every kernel compiled), then a
    warm one that loads numba's cache, each a whole new process that must succeed. (Timed, never
    asserted on: these machines are shared.)"""
    from symcnn.bench.startup import format_startup, measure_startup

    startup = measure_startup("digits", batch=4, one_process=False)
    seconds = {"generate_s", "first_step_cold_s", "first_step_warm_s", "generate_and_compile_s"}
    assert set(startup) == seconds | {"cold_kernels", "cold_kernels_from_workers", "load_average"}
    assert all(startup[key] > 0 for key in seconds)
    # digits' kernels of a train step: relu1's input gradient is maxpool2d2's fused kernel's, and its forward pass
    # conv1's fused kernel's (one for two, each)
    assert startup["cold_kernels"] == 11 and 0 <= startup["cold_kernels_from_workers"] <= 11
    assert set(startup["load_average"]) == {"generate", "first_step_cold", "first_step_warm"}
    text = format_startup(startup)
    assert "first train step, warm" in text and "compiled in one process" not in text


def test_the_startup_report_says_who_compiled_and_the_load_of_each_figure():
    from symcnn.bench.startup import format_startup

    startup = {"generate_s": 3.3, "first_step_cold_s": 27.0, "first_step_warm_s": 0.8, "generate_and_compile_s": 30.3,
               "first_step_cold_one_process_s": 45.4, "cold_kernels": 17, "cold_kernels_from_workers": 17,
               "load_average": {"generate": 2.0, "first_step_cold": 2.5, "first_step_warm": None,
                                "first_step_cold_one_process": 3.0}}
    lines = format_startup(startup).splitlines()
    assert "first train step, cold (17 of 17 kernels compiled by worker processes)" in lines[2]
    assert lines[2].endswith("27.0 s   (load average 2.50)")
    assert "compiled in one process (before)" in lines[4] and lines[4].endswith("(load average 3.00)")
    assert lines[5].endswith("0.8 s")  # no load average where none was read
    startup["cold_kernels_from_workers"] = 0
    assert "(every kernel compiled in the process)" in format_startup(startup)


def test_a_timing_rests_then_wakes_the_threads_with_one_untimed_call(monkeypatch):
    """mean_seconds: the rest, one call outside the clock (the first parallel regions after a rest wait
    for their threads), then the mean of CALLS_PER_TIMING calls. A fake clock: each call takes its number
    of seconds (the first, untimed, 1 s; the timed ones 2, 3, ...)."""
    from types import SimpleNamespace

    from symcnn.bench import bench as bench_module

    clock = SimpleNamespace(now=0.0, rests=[], calls=0)

    def call(value):
        assert value == "x"
        clock.calls += 1
        clock.now += clock.calls

    fake_time = SimpleNamespace(sleep=clock.rests.append, perf_counter=lambda: clock.now)
    monkeypatch.setattr(bench_module, "time", fake_time)
    timed = bench_module.mean_seconds(call, "x")
    calls = bench_module.CALLS_PER_TIMING
    assert clock.rests == [bench_module.SETTLE_SECONDS] and clock.calls == calls + 1
    assert timed == sum(range(2, calls + 2)) / calls


@pytest.mark.heavy
def test_bench_adds_a_winograd_row_only_where_a_layer_takes_it(cli, monkeypatch, tmp_path):
    """``--winograd``: the spec's kernels with ``[kernels] winograd = true`` beside the others, the same
    parameters; digits' convolutions (16 and 32 output channels) take none, so the row is left out, said why."""
    monkeypatch.setattr("symcnn.bench.bench.SETTLE_SECONDS", 0.0)
    status, out, err = cli("bench", "digits", "--batch", "4", "--repeat", "1", "--winograd", "--json")
    assert status == 0, err
    data = json.loads(out)
    assert "winograd" not in data["results"] and "no layer takes Winograd" in data["left_out"]["winograd"]
    status, out, err = cli("bench", "--suite", "--winograd")
    assert (status, out) == (2, "") and err.count("\n") == 1 and "--winograd" in err
    path = tmp_path / "wide.toml"  # a 64 -> 64 convolution: its forward pass and input gradient take it
    path.write_text(toml_of({"name": "wide", "input": [64, 4, 4], "training": {"epochs": 2}, "layers": [
        conv_layer("conv1", 64), {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]}))
    net = Network.from_spec(path)
    variant = _winograd_network(net)  # generated, not compiled: no pass runs
    assert variant.spec.kernels == {"winograd": True} and variant.spec.training == {"epochs": 2}
    assert variant.spec.layers[0].winograd and not net.spec.layers[0].winograd
    assert all(np.array_equal(variant.params[name], value) for name, value in net.params.items())
