"""`symcnn bench --suite`: the suite's specs cover what they must, the table's arithmetic on made-up
timings, and the command's argument errors. Nothing here compiles a suite spec or times anything."""

from __future__ import annotations

import json
import sys

import pytest

from symcnn.bench import suite as suite_module
from symcnn.bench.bench import BenchResult, _kernel_flops, forward_flops, layer_flops, train_step_flops
from symcnn.bench.suite import SuiteResult, format_suite, geometric_mean, run_suite
from symcnn.network_summary import summary
from symcnn.spec import ARCHITECTURE_SPECS, SHIPPED_SPECS, SPEC_DIR, SUITE_SPECS, load_spec, shipped_kernels_dir


def _convolutions(spec):
    return [layer for layer in spec.layers if layer.kind == "conv2d"]


def test_the_suite_covers_every_required_feature():
    specs = [load_spec(name) for name in SUITE_SPECS]
    convolutions = [layer for spec in specs for layer in _convolutions(spec)]
    kinds = {layer.kind for spec in specs for layer in spec.layers}
    assert len(specs) >= 8
    assert {1, 3} <= {spec.input_shape[0] for spec in specs}  # few input channels: grey and colour
    out_channels = {layer.settings["out_channels"] for layer in convolutions}
    assert min(out_channels) <= 6 and max(out_channels) >= 128  # few and many output channels
    assert {(1, 1), (3, 3), (5, 5), (7, 7)} <= {tuple(layer.settings["kernel"]) for layer in convolutions}
    assert any(max(layer.settings["stride"]) > 1 for layer in convolutions)
    assert any(max(layer.settings["dilation"]) > 1 for layer in convolutions)
    assert {"maxpool2d", "avgpool2d", "batchnorm2d", "add"} <= kinds
    depthwise = [layer for layer in convolutions
                 if layer.settings.get("groups", 1) == layer.input_shape[0] == layer.output_shape[0] > 1]
    assert depthwise, "no depthwise convolution (groups = channels)"
    # a dense-heavy head: three dense layers holding most of the network's parameters
    dense_heavy = [spec for spec in specs if sum(layer.kind == "dense" for layer in spec.layers) >= 3
                   and 2 * sum(layer.parameters for layer in summary(spec).layers if layer.kind == "dense")
                   > summary(spec).totals.parameters]
    assert dense_heavy


@pytest.mark.parametrize("name", SUITE_SPECS)
def test_each_suite_spec_validates_is_small_and_ships_no_kernels(name):
    spec = load_spec(name)
    assert spec.name == name and load_spec(SPEC_DIR / f"{name}.toml") == spec
    assert 28 <= spec.input_shape[1] <= 32 and 28 <= spec.input_shape[2] <= 32  # compiles and runs on 2 cores
    result = summary(name)
    assert [layer.label for layer in result.layers] == [layer.label for layer in spec.layers]
    assert result.totals.parameters > 0 and forward_flops(spec) > 0
    assert not (shipped_kernels_dir() / spec.module_name).exists()


def test_the_suite_is_its_spec_files_and_apart_from_the_shipped_ones():
    assert {path.stem for path in SPEC_DIR.glob("suite-*.toml")} == set(SUITE_SPECS)
    assert set(SUITE_SPECS).isdisjoint(SHIPPED_SPECS + ARCHITECTURE_SPECS)


def test_a_grouped_convolutions_kernels_count_the_flops_of_their_groups():
    """The profile's GFLOP/s: each kernel's count, summed over the forward kernels, is the forward pass's."""
    for name in ("suite-separable", "suite-residual", "suite-lenet"):
        spec = load_spec(name)
        flops = _kernel_flops(spec, batch=3)
        assert sum(count for kernel, count in flops.items() if kernel.endswith("_forward")) == 3 * forward_flops(spec)
    assert _kernel_flops(load_spec("suite-separable"), batch=1)["dw1_forward"] == 2 * 32 * 32 * 32 * 9


def test_a_train_step_counts_no_input_gradient_for_the_layers_that_read_the_input():
    """A train step's products: every layer's forward pass and weight gradient, and the input gradient of each
    layer but those reading the network's input (a graph's and a sequential spec's alike)."""
    for name in ("suite-residual", "suite-lenet", "seed004"):
        spec = load_spec(name)
        readers = [layer for layer in spec.layers if "input" in layer.inputs]
        assert [layer.label for layer in readers] == [spec.layers[0].label]
        assert train_step_flops(spec) == 3 * forward_flops(spec) - layer_flops(readers[0]) > 0
    lenet = load_spec("suite-lenet")  # its first layer: 6 channels of 28 x 28, 5 x 5 taps of one input channel
    assert layer_flops(lenet.layers[0]) == 2 * 6 * 28 * 28 * 25 and layer_flops(lenet.layers[1]) == 0


def _fake_result(spec: str, generated: dict, pytorch: dict, profile: dict = None, pytorch_repeats: dict = None
                 ) -> BenchResult:
    """A benchmark with made-up medians: seconds per call of each metric, three equal repeats, but for PyTorch's
    metrics in ``pytorch_repeats`` (metric -> its three repeats)."""
    result = BenchResult(spec, batch=64, threads=2, repeat=3, machine="test machine", sgemm_gflops=100.0,
                         forward_flops_per_image=10**6, train_step_flops_per_image=3 * 10**6, profile=profile or {})
    for implementation, seconds in (("generated", generated), ("numpy", pytorch), ("pytorch", pytorch)):
        result.seconds[implementation] = {metric: [value] * 3 for metric, value in seconds.items()}
    result.seconds["pytorch"] |= pytorch_repeats or {}
    return result


PYTORCH = {"forward": 0.004, "train_step": 0.010, "train_step_batch1": 0.002}


def _fake_suite() -> SuiteResult:
    return SuiteResult([
        # 2x, 4x and 1x PyTorch's speed
        _fake_result("fast", {"forward": 0.002, "train_step": 0.0025, "train_step_batch1": 0.002}, PYTORCH),
        # 0.5x, 1.25x and 4x; its train step the slowest against PyTorch's, and 1.15x, 1.25x and 1.7x
        # repeat by repeat (PyTorch's median as above)
        _fake_result("slow", {"forward": 0.008, "train_step": 0.008, "train_step_batch1": 0.0005}, PYTORCH,
                     profile={"conv1_forward": {"ms": 1.5, "gflops": 12.0}, "relu1_forward": {"ms": 0.25,
                                                                                             "gflops": None}},
                     pytorch_repeats={"train_step": [0.0092, 0.010, 0.0136]}),
    ])


def test_rows_and_geometric_means_of_made_up_timings():
    suite = _fake_suite()
    fast, slow = suite.rows()
    assert fast.ratios == pytest.approx({"forward": 2.0, "train_step": 4.0, "train_step_batch1": 1.0})
    assert slow.ratios == pytest.approx({"forward": 0.5, "train_step": 1.25, "train_step_batch1": 4.0})
    # the ratios repeat by repeat: equal repeats, the ratio each time
    assert fast.repeats == {"forward": pytest.approx([2.0] * 3), "train_step": pytest.approx([4.0] * 3),
                            "train_step_batch1": pytest.approx([1.0] * 3)}
    assert slow.repeats["train_step"] == pytest.approx([1.15, 1.25, 1.7])
    assert fast.generated["forward"] == pytest.approx(64 / 0.002) and slow.pytorch["train_step_batch1"] == 2.0
    assert suite.geometric_means() == pytest.approx({"forward": 1.0, "train_step": 5 ** 0.5, "train_step_batch1": 2.0})
    assert suite.below_target() == [("slow", "forward", pytest.approx(0.5)),
                                    ("slow", "train_step", pytest.approx(1.25))]
    assert suite.slowest() == "slow"


def test_the_table_has_a_row_per_spec_the_means_and_the_slowest_specs_profile():
    text = format_suite(_fake_suite())
    lines = text.splitlines()
    assert lines[0].startswith("symcnn bench --suite: 2 specs, batch 64, 2 threads, median of 3")
    # the table's row, then the range's, then the share of sgemm's rate
    (fast, fast_range, fast_share) = [line for line in lines if line.startswith("fast ")]
    assert fast.split() == ["fast", "32,000", "16,000", "2.00x", "25,600", "6,400", "4.00x", "2.00", "2.00", "1.00x",
                            "100"]
    (means,) = [line for line in lines if line.startswith("geometric mean")]
    assert means.split()[2:] == ["1.00x", "2.24x", "2.00x"]
    assert lines.index(fast_range) > lines.index(means)
    assert fast_range.split() == ["fast", "2.00-2.00x", "4.00-4.00x", "1.00-1.00x"]
    assert "\neach ratio's range: the lowest and highest of the ratios repeat by repeat" in text
    (slow_range, _) = [line for line in lines if line.startswith("slow ")][1:]
    assert slow_range.split() == ["slow", "0.50-0.50x", "1.15-1.70x", "4.00-4.00x"]
    assert "under 1.5x PyTorch's speed (forward or train step): 1 of 2 specs:\n" in text
    (slow,) = [line for line in lines if line.startswith("  slow ")]
    # below the target in every repeat; reaching it in one
    # with the ratio at sgemm's rate: 100 GFLOP/s over PyTorch's 16 (forward) and 19.2 (train step)
    assert slow.split() == ["slow", "forward", "0.50x", "[0.50-0.50;", "1.5x", "in", "0", "of", "3", "repeats;",
                            "6.25x", "at", "sgemm's", "rate],", "train", "step", "1.25x", "[1.15-1.70;", "1.5x", "in",
                            "1", "of", "3", "repeats;", "5.21x", "at", "sgemm's", "rate]"]
    # each side's share of sgemm's 100 GFLOP/s: fast's forward 32 GFLOP/s, PyTorch's 16; its train step 76.8
    # (3 MFLOP an image), PyTorch's 19.2
    assert "\neach side's rate as a share of the sgemm measured before its spec" in text
    assert fast_share.split() == ["fast", "32%", "16%", "6.25x", "77%", "19%", "5.21x"]
    assert lines.index(fast_share) > lines.index(fast_range)
    assert "slowest train step against PyTorch's: slow" in text
    assert "conv1_forward" in text and "12.0 GFLOP/s" in text


def test_the_json_holds_the_rows_the_means_and_every_specs_benchmark():
    data = json.loads(json.dumps(_fake_suite().as_dict()))
    assert data["suite"] == ["fast", "slow"] and data["slowest"] == "slow"
    assert data["geometric_mean"]["forward"] == pytest.approx(1.0)
    assert [row["spec"] for row in data["rows"]] == ["fast", "slow"]
    assert data["specs"]["fast"]["ratios_to_pytorch"]["generated"]["train_step"] == pytest.approx(4.0)
    assert data["specs"]["slow"]["ratio_ranges_to_pytorch"]["generated"]["train_step"] == pytest.approx([1.15, 1.7])
    assert data["rows"][1]["repeats"]["train_step"] == pytest.approx([1.15, 1.25, 1.7])
    assert [entry["metric"] for entry in data["below_target"]] == ["forward", "train_step"]
    assert data["sgemm_shares"]["slow"]["train_step"] == pytest.approx({"symcnn": 0.24, "pytorch": 0.192,
                                                                        "at_sgemm": 1 / 0.192})


@pytest.mark.parametrize("values", [[], [1.0, 0.0], [2.0, -1.0]])
def test_a_geometric_mean_needs_positive_values(values):
    with pytest.raises(ValueError, match="geometric mean"):
        geometric_mean(values)


def test_the_suite_runs_each_spec_in_turn_and_reports_progress(monkeypatch):
    """run_suite's bookkeeping, with the benchmark of each spec made up (nothing compiled or timed)."""
    pytest.importorskip("torch")
    calls = []

    def fake_benchmark(name, batch, threads, repeat, profile, include_torch, in_pytorch, progress):
        calls.append((name, batch, threads, repeat, profile, include_torch, in_pytorch))
        progress("warming up")
        return _fake_result(name, PYTORCH, PYTORCH)

    monkeypatch.setattr(suite_module, "run_benchmark", fake_benchmark)
    lines = []
    suite = run_suite(("suite-lenet", "suite-vgg"), batch=8, threads=1, repeat=2, progress=lines.append)
    assert calls == [("suite-lenet", 8, 1, 2, False, True, False), ("suite-vgg", 8, 1, 2, False, True, False)]
    assert [result.spec for result in suite.results] == ["suite-lenet", "suite-vgg"]
    assert lines[0] == "[1/2] suite-lenet: warming up"
    assert lines[1].startswith("[1/2] suite-lenet: forward 1.00x, train step 1.00x, batch-1 train step 1.00x")


def test_the_suite_command_prints_its_table_or_json(cli, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.setattr(suite_module, "run_benchmark",
                        lambda name, progress, **options: _fake_result(name, PYTORCH, PYTORCH))
    status, out, err = cli("bench", "--suite", "--repeat", "1")
    assert status == 0, err
    assert all(f"\n{name} " in out for name in SUITE_SPECS) and "geometric mean" in out
    assert err.count("\n") == len(SUITE_SPECS) and err.startswith("symcnn bench: [1/")  # a progress line each
    status, out, _ = cli("bench", "--suite", "--json")
    assert status == 0 and json.loads(out)["suite"] == list(SUITE_SPECS)


@pytest.mark.parametrize("argv, message", [
    ((), "one of the arguments SPEC --suite is required"),
    (("digits", "--suite"), "not allowed with argument SPEC"),
    (("--suite", "--startup"), "--startup: times one spec's start-up"),
    (("--suite", "--batch", "0"), "--batch: must be an integer >= 1, got 0"),
    (("--suite", "--repeat", "-1"), "--repeat: must be an integer >= 1, got -1"),
    (("--suite", "--threads", "many"), "--threads: expected an integer, got 'many'"),
    (("--suite", "--batch", "100000000"), "--batch: 100000000 images of suite-"),
])
def test_suite_argument_errors_are_one_line(cli, argv, message):
    status, out, err = cli("bench", *argv)
    assert status == 2 and out == "" and message in err and err.count("\n") == 1


def test_the_suite_needs_pytorch(cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    status, out, err = cli("bench", "--suite")
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "--suite: compares every spec against PyTorch, which is not installed" in err


def test_a_spec_symcnn_torch_cannot_run_is_benchmarked_without_the_in_pytorch_row(monkeypatch):
    """A spec with a layer symcnn.torch does not offer: `symcnn bench` leaves that row out and says why,
    and measures the rest (it used to stop with symcnn.torch's error). The suite leaves the row out
    always. Nothing is called or timed."""
    pytest.importorskip("torch")
    from symcnn.bench import bench
    from symcnn.bench.bench import _implementations, format_report

    _, implementations, left_out = _implementations("mobilenet-mini", include_torch=True)
    assert set(implementations) == {"generated", "numpy", "pytorch", "in-pytorch"} and left_out == {}
    _, implementations, left_out = _implementations("mobilenet-mini", include_torch=True, in_pytorch=False)
    assert set(implementations) == {"generated", "numpy", "pytorch"} and left_out == {}

    def refuse(net):
        raise ValueError("layer 'stem_bn' (batchnorm2d): not available as PyTorch operators")

    monkeypatch.setattr(bench, "_inside_pytorch", refuse)
    _, implementations, left_out = _implementations("mobilenet-mini", include_torch=True)
    assert set(implementations) == {"generated", "numpy", "pytorch"}
    assert left_out == {"in-pytorch": "layer 'stem_bn' (batchnorm2d): not available as PyTorch operators"}
    result = _fake_result("mobilenet-mini", PYTORCH, PYTORCH)
    result.left_out = {"in-pytorch": "layer 'stem_bn' (batchnorm2d): not available"}
    assert "\n\nin-pytorch: not measured: layer 'stem_bn' (batchnorm2d): not available" in format_report(result)
    assert result.as_dict()["left_out"] == result.left_out
