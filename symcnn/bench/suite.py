"""``symcnn bench --suite``: every spec of the benchmark suite against PyTorch, one row each.

Each spec of :data:`symcnn.spec.SUITE_SPECS` is measured as ``symcnn bench SPEC`` measures one
(:func:`symcnn.bench.bench.run_benchmark`: generated kernels, the NumPy baseline and PyTorch,
interleaved, medians of the repeats), one spec after the other. The table gives, per spec, the
generated kernels' forward and train-step throughput and batch-1 train-step latency, PyTorch's, and
their ratios (above 1: faster than PyTorch); its last row is the geometric mean of each column of
ratios, the one figure that weighs a 2x win and a 2x loss alike. Below it, each ratio's range (the lowest
and highest of the ratios repeat by repeat); each side's rate as a share of the machine's sgemm rate, and the
ratio symcnn would reach at that rate (where it is already near it, a higher ratio needs fewer
multiply-adds, not faster loops); and the measurements under the target, each with how many repeats
reached it (on a shared machine, one run does not settle a ratio near the target).

Example:
    $ symcnn bench --suite --batch 64 --threads 2 --repeat 5
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Callable, NamedTuple, Optional, Sequence

from symcnn.bench.bench import BenchResult, check_limits, format_profile, format_range, memory_per_image, run_benchmark
from symcnn.spec import SUITE_SPECS, load_spec

__all__ = ["METRICS", "TARGET_RATIO", "SuiteRow", "SuiteResult", "SgemmShare", "geometric_mean", "sgemm_share",
           "run_suite", "format_suite"]

#: The three measurements of each spec, as :class:`BenchResult` names them.
METRICS = ("forward", "train_step", "train_step_batch1")
_TITLES = {"forward": "forward", "train_step": "train step", "train_step_batch1": "batch-1 train step"}

#: The suite's target: forward and train step at least this times PyTorch's throughput on every spec
#: (docs/performance.md); the report names the measurements below it.
TARGET_RATIO = 1.5


def geometric_mean(values: Sequence[float]) -> float:
    """The geometric mean of positive numbers: a 2x ratio and a 0.5x one average to 1x.

    >>> geometric_mean([2.0, 0.5])
    1.0
    >>> round(geometric_mean([1.0, 2.0, 4.0]), 12)
    2.0
    """
    if not values or any(not value > 0 for value in values):
        raise ValueError(f"geometric mean: needs positive values, got {list(values)!r}")
    return math.exp(sum(math.log(value) for value in values) / len(values))


class SuiteRow(NamedTuple):
    """One spec's line of the table: the generated kernels' figures, PyTorch's, and their ratios.
    Throughputs in images/s (forward, train step); the batch-1 train step in milliseconds."""

    spec: str
    generated: dict  # metric -> images/s, or ms for train_step_batch1
    pytorch: dict
    ratios: dict  # metric -> PyTorch's time / the generated kernels' time (above 1: faster)
    repeats: dict  # metric -> the ratios repeat by repeat (BenchResult.repeat_ratios), whose range the ratio lies in


class SgemmShare(NamedTuple):
    """How near one measurement of a spec runs to the machine's sgemm rate (NumPy's float32 matrix product,
    measured before the spec): each side's rate, in the products of its convolutions and dense layers per
    second, over sgemm's; and ``at_sgemm``, the ratio to PyTorch symcnn would reach at sgemm's rate."""

    symcnn: float
    pytorch: float
    at_sgemm: float


def sgemm_share(result: BenchResult, metric: str) -> SgemmShare:
    """``metric``'s (forward or train step) :class:`SgemmShare`.

    >>> result = BenchResult("net", 64, 2, 3, "cpu", 200.0, 10**9, 3 * 10**9)
    >>> result.seconds = {"generated": {"forward": [0.4]}, "pytorch": {"forward": [0.5]}}
    >>> sgemm_share(result, "forward")  # 160 and 128 GFLOP/s; sgemm's 200 is 1.56x PyTorch's
    SgemmShare(symcnn=0.8, pytorch=0.64, at_sgemm=1.5625)
    """
    symcnn, pytorch = (result.gflops(name, metric) / result.sgemm_gflops for name in ("generated", "pytorch"))
    return SgemmShare(symcnn, pytorch, 1 / pytorch if pytorch else math.inf)  # inf: a spec without products


def suite_row(result: BenchResult) -> SuiteRow:
    """A spec's row, from its benchmark (which must include PyTorch)."""
    data = result.as_dict()
    if "pytorch" not in data["results"]:
        raise ValueError(f"suite: {result.spec} was measured without PyTorch; the suite compares against it")

    def figures(row: dict) -> dict:
        return {"forward": row["forward_images_per_second"], "train_step": row["train_step_images_per_second"],
                "train_step_batch1": row["train_step_batch1_ms"]}

    return SuiteRow(result.spec, figures(data["results"]["generated"]), figures(data["results"]["pytorch"]),
                    dict(data["ratios_to_pytorch"]["generated"]),
                    {metric: result.repeat_ratios("generated", metric) for metric in METRICS})


@dataclass
class SuiteResult:
    """The benchmarks of the suite's specs, in the order they ran."""

    results: list = field(default_factory=list)  # of BenchResult

    def rows(self) -> list:
        return [suite_row(result) for result in self.results]

    def geometric_means(self) -> dict:
        """metric -> the geometric mean of the specs' ratios to PyTorch."""
        rows = self.rows()
        return {metric: geometric_mean([row.ratios[metric] for row in rows]) for metric in METRICS}

    def below_target(self, target: float = TARGET_RATIO) -> list:
        """``(spec, metric, ratio)`` of every forward pass and batch-64 train step under ``target``."""
        return [(row.spec, metric, row.ratios[metric]) for row in self.rows()
                for metric in ("forward", "train_step") if row.ratios[metric] < target]

    def sgemm_shares(self) -> dict:
        """spec -> metric (forward, train step) -> its :class:`SgemmShare`."""
        return {result.spec: {metric: sgemm_share(result, metric) for metric in ("forward", "train_step")}
                for result in self.results}

    def slowest(self) -> str:
        """The spec whose train step is slowest against PyTorch's (the lowest ratio)."""
        return min(self.rows(), key=lambda row: row.ratios["train_step"]).spec

    def as_dict(self) -> dict:
        first = self.results[0]
        return {"suite": [result.spec for result in self.results], "batch": first.batch, "threads": first.threads,
                "repeat": first.repeat, "machine": first.machine,
                "sgemm_gflops": [result.sgemm_gflops for result in self.results],
                "rows": [row._asdict() for row in self.rows()],
                "geometric_mean": self.geometric_means(),
                "sgemm_shares": {spec: {metric: share._asdict() for metric, share in shares.items()}
                                 for spec, shares in self.sgemm_shares().items()},
                "target_ratio": TARGET_RATIO,
                "below_target": [{"spec": spec, "metric": metric, "ratio": ratio}
                                 for spec, metric, ratio in self.below_target()],
                "slowest": self.slowest(),
                "specs": {result.spec: result.as_dict() for result in self.results}}


def run_suite(specs: Sequence[str] = SUITE_SPECS, batch: int = 64, threads: int = 2, repeat: int = 7,
              profile: bool = False, progress: Optional[Callable[[str], None]] = None) -> SuiteResult:
    """Benchmark every spec, one after the other, each as ``symcnn bench SPEC`` does. ``progress``
    (default: lines on stderr) is told which spec and which phase is running."""
    say = progress or _to_stderr
    # Every limit before any work (a refused batch should not wait for compiling), the spec that needs
    # the most memory first: the message names the smallest batch limit of the suite.
    for spec in sorted((load_spec(name) for name in specs), key=memory_per_image, reverse=True):
        check_limits(spec, batch, threads)
    try:
        import torch  # noqa: F401  (only whether it imports)
    except ImportError:
        raise ValueError("suite: compares every spec against PyTorch, which is not installed "
                         "(pip install torch==2.13.0)") from None
    suite = SuiteResult()
    for index, name in enumerate(specs, start=1):
        prefix = f"[{index}/{len(specs)}] {name}"
        result = run_benchmark(name, batch=batch, threads=threads, repeat=repeat, profile=profile,
                               include_torch=True, in_pytorch=False,
                               progress=lambda phase, prefix=prefix: say(f"{prefix}: {phase}"))
        suite.results.append(result)
        ratios = suite_row(result).ratios
        say(f"{prefix}: " + ", ".join(f"{_TITLES[metric]} {ratios[metric]:.2f}x" for metric in METRICS)
            + " PyTorch's speed")
    return suite


def _to_stderr(line: str) -> None:
    print(f"symcnn bench: {line}", file=sys.stderr, flush=True)


def format_suite(suite: SuiteResult) -> str:
    """The table: one row per spec, then the geometric means; the specs under :data:`TARGET_RATIO`;
    and, when the specs were profiled, the per-kernel profile of the slowest."""
    first, rows = suite.results[0], suite.rows()
    width = max(len("geometric mean"), *(len(row.spec) for row in rows))
    lines = [f"symcnn bench --suite: {len(rows)} specs, batch {first.batch}, {first.threads} threads, median of "
             f"{first.repeat} interleaved repeats",
             f"machine: {first.machine}",
             "ratio: symcnn's speed over PyTorch's (above 1: faster than PyTorch); sgemm: NumPy's float32 1024^3 "
             "matrix product in GFLOP/s, measured before each spec's timings (a low figure: the machine was busy)",
             "",
             f"{'':<{width}}  {'forward img/s':^26}  {'train step img/s':^26}  {'batch-1 train step ms':^26}",
             f"{'spec':<{width}}" + "  {:>9} {:>9} {:>6}".format("symcnn", "PyTorch", "ratio") * 3 + "  sgemm"]
    for row, result in zip(rows, suite.results):
        cells = "".join(f"  {row.generated[metric]:>9,.{_DIGITS[metric]}f} {row.pytorch[metric]:>9,.{_DIGITS[metric]}f}"
                        f" {row.ratios[metric]:>5.2f}x" for metric in METRICS)
        lines.append(f"{row.spec:<{width}}{cells}  {result.sgemm_gflops:>5.0f}")
    means = suite.geometric_means()
    lines.append(f"{'geometric mean':<{width}}" + "".join(f"  {'':>9} {'':>9} {means[metric]:>5.2f}x"
                                                          for metric in METRICS))
    lines += ["", "each ratio's range: the lowest and highest of the ratios repeat by repeat (each repeat times symcnn "
                  "and PyTorch back to back)",
              f"{'spec':<{width}}" + "".join(f"  {_TITLES[metric]:>18}" for metric in METRICS)]
    lines += [f"{row.spec:<{width}}" + "".join(f"  {_range(row.repeats[metric]) + 'x':>18}" for metric in METRICS)
              for row in rows]
    shares = suite.sgemm_shares()
    lines += ["", "each side's rate as a share of the sgemm measured before its spec (the products of convolutions and "
                  "dense layers per second), and the ratio symcnn would reach at sgemm's rate",
              f"{'spec':<{width}}" + "".join(f"  {_TITLES[metric] + ': symcnn':>18} {'PyTorch':>8} {'at sgemm':>9}"
                                             for metric in ("forward", "train_step"))]
    lines += [f"{spec:<{width}}" + "".join(f"  {share.symcnn:>18.0%} {share.pytorch:>8.0%} {share.at_sgemm:>8.2f}x"
                                           for share in by_metric.values()) for spec, by_metric in shares.items()]
    repeats = {row.spec: row.repeats for row in rows}
    below = {}
    for spec, metric, ratio in suite.below_target():
        each = repeats[spec][metric]
        # how often a single repeat reached the target: on a shared machine, one run does not settle a ratio near it
        reached = sum(value >= TARGET_RATIO for value in each)
        below.setdefault(spec, []).append(f"{_TITLES[metric]} {ratio:.2f}x [{_range(each)}; {TARGET_RATIO}x in "
                                          f"{reached} of {len(each)} repeats; {shares[spec][metric].at_sgemm:.2f}x at "
                                          "sgemm's rate]")
    lines += ["", f"under {TARGET_RATIO}x PyTorch's speed (forward or train step): {len(below)} of {len(rows)} specs"
              + (":" if below else "")]
    lines += [f"  {spec:<{width}}  {', '.join(measurements)}" for spec, measurements in below.items()]
    slowest = next(result for result in suite.results if result.spec == suite.slowest())
    if slowest.profile:
        lines += ["", f"slowest train step against PyTorch's: {slowest.spec}; its kernels (median):",
                  format_profile(slowest.profile)]
    return "\n".join(lines)


def _range(ratios: Sequence[float]) -> str:
    return format_range(min(ratios), max(ratios))


#: Decimals of each metric's figures: images/s whole, milliseconds to two places.
_DIGITS = {"forward": 0, "train_step": 0, "train_step_batch1": 2}
