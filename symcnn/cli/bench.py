"""``symcnn bench``: one spec's kernels against NumPy and PyTorch, or the whole benchmark suite.

Example:
    $ symcnn bench seed004 --profile
    $ symcnn bench --suite --batch 64 --threads 2 --repeat 5
"""

from __future__ import annotations

import json

__all__ = ["add_bench", "run_bench"]


def add_bench(commands, number) -> None:
    from symcnn.spec import SUITE_SPECS

    bench = commands.add_parser(
        "bench",
        help="time the generated kernels against NumPy (im2col + BLAS) and PyTorch, side by side",
        description="Forward and train-step throughput (images/s, GFLOP/s) and batch-1 train-step latency of "
                    "the generated kernels, a NumPy im2col baseline and PyTorch (when installed), interleaved, "
                    "median of repeats, with the ratios to PyTorch and their range over the repeats. --suite "
                    "measures every spec of the "
                    f"benchmark suite ({', '.join(SUITE_SPECS)}) one after the other: one row each, and the "
                    "geometric mean of the ratios.",
    )
    which = bench.add_mutually_exclusive_group(required=True)
    which.add_argument("spec", metavar="SPEC", nargs="?", help="a shipped spec name or a .toml path")
    which.add_argument("--suite", action="store_true",
                       help="every spec of the benchmark suite, one table row each (needs PyTorch; compiling the "
                            "suite's kernels the first time takes several minutes)")
    bench.add_argument("--batch", type=number(int), default=64, help="images per forward pass and train step")
    bench.add_argument("--threads", type=number(int), default=2,
                       help="threads for numba and PyTorch; NumPy's BLAS keeps its own setting")
    bench.add_argument("--repeat", type=number(int), default=7,
                       help="timings per measurement, interleaved across the implementations; the median is shown")
    bench.add_argument("--profile", action="store_true",
                       help="time each generated kernel of the train step (with --suite: of every spec, the slowest "
                            "against PyTorch shown)")
    bench.add_argument("--winograd", action="store_true",
                       help="also the spec's kernels with [kernels] winograd = true (Winograd's F(4x4, 3x3) where a "
                            "layer takes it), a row of their own, in the same run")
    bench.add_argument("--json", action="store_true", help="machine-readable results")
    bench.add_argument("--startup", action="store_true",
                       help="also time start-up: generate into an empty directory, then a new process's first "
                            "train step, cold (compiling in worker processes; again compiling in the process itself, "
                            "as before parallel compiling) and warm (numba's cache)")


def run_bench(args) -> int:
    for option, value in (("--batch", args.batch), ("--threads", args.threads), ("--repeat", args.repeat)):
        if value < 1:
            raise ValueError(f"{option}: must be an integer >= 1, got {value}")
    if args.suite:
        return _run_suite(args)
    from symcnn.bench import bench

    result = bench.run_benchmark(args.spec, batch=args.batch, threads=args.threads, repeat=args.repeat,
                                 profile=args.profile, winograd=args.winograd)
    from symcnn.bench.startup import format_startup, measure_startup

    startup = measure_startup(args.spec, args.batch) if args.startup else None
    if args.json:
        data = json.loads(bench.as_json(result))
        if startup:
            data["startup"] = startup
        print(json.dumps(data, indent=2))
    else:
        print(bench.format_report(result) + ("\n\n" + format_startup(startup) if startup else ""))
    return 0


def _run_suite(args) -> int:
    if args.startup:
        raise ValueError("--startup: times one spec's start-up (symcnn bench SPEC --startup), not the suite's")
    if args.winograd:
        raise ValueError("--winograd: adds a row to one spec's table (symcnn bench SPEC --winograd), not the suite's")
    from symcnn.bench.suite import format_suite, run_suite

    suite = run_suite(batch=args.batch, threads=args.threads, repeat=args.repeat, profile=args.profile)
    print(json.dumps(suite.as_dict(), indent=2) if args.json else format_suite(suite))
    return 0
