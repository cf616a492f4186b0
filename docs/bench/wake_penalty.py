"""The first parallel regions after a rest: per-call times of a bare numba ``prange`` loop, back to back and
after rests of 10 ms to 0.3 s, on numba's threads (a record for docs/performance.md, "The first calls after a
rest"; not part of the package).

Run it twice, as is and with ``OMP_PROC_BIND=true`` (OpenMP binds each thread to a core), to see the
cause: unbound, a worker woken after a long rest first waits on its master's core.

Usage, from the repository root:
    PYTHONPATH=. python docs/bench/wake_penalty.py
    OMP_PROC_BIND=true PYTHONPATH=. python docs/bench/wake_penalty.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np
from numba import prange


@numba.njit(parallel=True)
def row_sums(values):
    for row in prange(values.shape[0]):
        total = 0.0
        for column in range(values.shape[1]):
            total += values[row, column]
        values[row, 0] = total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--columns", type=int, default=2000, help="the work of a region: 64 rows of this many")
    parser.add_argument("--repeat", type=int, default=15)
    options = parser.parse_args()
    values = np.random.default_rng(0).random((64, options.columns))
    row_sums(values)
    print(f"{numba.get_num_threads()} threads ({numba.threading_layer()}), 64 x {options.columns} values: "
          f"ms per call, the calls after each rest (median of {options.repeat})")
    for rest in (0.0, 0.01, 0.05, 0.3):
        rows = []
        for _ in range(options.repeat):
            time.sleep(rest)
            calls = []
            for _ in range(6):
                start = time.perf_counter()
                row_sums(values)
                calls.append(time.perf_counter() - start)
            rows.append(calls)
        print(f"rest {rest:4.2f} s: " + " ".join(f"{1e3 * statistics.median(call):7.3f}" for call in zip(*rows)))


if __name__ == "__main__":
    main()
