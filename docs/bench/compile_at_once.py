"""Cold compiles at once: ``symcnn compile SPEC`` from an empty numba cache, by one process, by two one after
the other, and by two started at once (sharing the cache, as two ranks of a data-parallel run or two
terminals do), for each checkout given (its ``symcnn`` first on the path), the checkouts interleaved.

A record for docs/performance.md ("Processes that compile one network at once"), not part of the package:
whole processes, wall time, interpreter start-up included; every repeat printed, then the medians.
Nothing is asserted: on a shared machine the figures move with the load.

Usage, from the repository root (a worktree of another commit as the second checkout):
    python docs/bench/compile_at_once.py seed004 . /tmp/before --repeat 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPES = ("one", "two one after the other", "two at once")


def _compile(checkout: Path, spec: str, cache: str) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(checkout), "NUMBA_CACHE_DIR": cache,
                   "SYMCNN_CACHE_DIR": os.path.join(cache, "symcnn")}
    return subprocess.Popen([sys.executable, "-m", "symcnn", "compile", spec], cwd=checkout, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def wall(checkout: Path, spec: str, shape: str) -> tuple[float, list[str]]:
    """Seconds from the first start to the last end, and what each process said, for one ``shape``."""
    with tempfile.TemporaryDirectory(prefix="compile-at-once-") as cache:
        started = time.perf_counter()
        if shape == "two at once":
            running = [_compile(checkout, spec, cache) for _ in range(2)]
        else:
            running = []
            for _ in range(1 if shape == "one" else 2):
                running.append(_compile(checkout, spec, cache))
                running[-1].wait()
        said = [process.communicate()[0].strip() for process in running]
        seconds = time.perf_counter() - started
    if any(process.returncode for process in running):
        raise SystemExit(f"symcnn compile {spec} failed in {checkout}")
    return seconds, said


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("checkouts", nargs="+", type=Path)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start")
    runs = {(checkout, shape): [] for checkout in args.checkouts for shape in SHAPES}
    for repeat in range(args.repeat):
        for checkout in args.checkouts if repeat % 2 == 0 else args.checkouts[::-1]:
            for shape in SHAPES:
                seconds, said = wall(checkout.resolve(), args.spec, shape)
                runs[checkout, shape].append(seconds)
                print(f"repeat {repeat + 1}, {checkout}, {shape}: {seconds:.1f} s", flush=True)
                for line in said:
                    print(f"    {line}")
    print(f"medians of {args.repeat}, load average {os.getloadavg()[0]:.2f} at the end:")
    for checkout in args.checkouts:
        cells = ", ".join(f"{shape} {statistics.median(runs[checkout, shape]):.1f} s" for shape in SHAPES)
        print(f"  {checkout}: {cells}")


if __name__ == "__main__":
    main()
