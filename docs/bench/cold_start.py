"""Cold start, repeated: ``symcnn generate SPEC`` into an empty directory, then a new process's first
train step with every kernel compiled (in worker processes, as ``symcnn.runtime.compiling`` chooses,
or ``--workers N``), the same in one process (``SYMCNN_COMPILE_WORKERS=0``: what numba alone does,
the figure before parallel compiling), and a warm first step (numba's cache present).

A record for docs/performance.md ("Cold start"), not part of the package. Each repeat is one
``symcnn.bench.startup.measure_startup``: whole processes, wall time, the interpreter's start-up
included, with the machine's 1-minute load average at the start of each. Every repeat is printed,
then the medians. Nothing is asserted: on a shared machine the figures move with the load.

Usage, from the repository root:
    PYTHONPATH=. python docs/bench/cold_start.py seed004 --repeat 3
    PYTHONPATH=. python docs/bench/cold_start.py seed004 --repeat 3 --workers 2   # whatever the load
"""

from __future__ import annotations

import argparse
import os
import statistics

from symcnn.bench.startup import measure_startup

COLUMNS = (("generate_s", "generate", "generate"), ("first_step_cold_s", "first_step_cold", "cold, workers"),
           ("generate_and_compile_s", "first_step_cold", "generate + cold"),
           ("first_step_cold_one_process_s", "first_step_cold_one_process", "cold, one process"),
           ("first_step_warm_s", "first_step_warm", "warm"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default="seed004")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None,
                        help="SYMCNN_COMPILE_WORKERS for the parallel cold step (default: unset, the free CPUs)")
    args = parser.parse_args()
    if args.workers is not None:
        os.environ["SYMCNN_COMPILE_WORKERS"] = str(args.workers)
    runs = []
    print(f"{args.spec}, batch {args.batch}: seconds (load average at the start of each)")
    print("  " + "".join(f"{title:>24}" for _, _, title in COLUMNS) + "   kernels by workers")
    for _ in range(args.repeat):
        run = measure_startup(args.spec, args.batch)
        runs.append(run)
        cells = [f"{run[key]:8.1f} ({run['load_average'][load] or 0:5.2f})" for key, load, _ in COLUMNS]
        print("  " + "".join(f"{cell:>24}" for cell in cells)
              + f"   {run['cold_kernels_from_workers']} of {run['cold_kernels']}", flush=True)
    medians = [statistics.median(run[key] for run in runs) for key, _, _ in COLUMNS]
    loads = [statistics.median(run["load_average"][load] or 0 for run in runs) for _, load, _ in COLUMNS]
    print("  " + "".join(f"{f'{median:8.1f} ({load:5.2f})':>24}" for median, load in zip(medians, loads)) + "   median")


if __name__ == "__main__":
    main()
