"""tanh's loop as the kernels print it, ``1 - 2/(exp(2x) + 1)``, with libm's exp or the kernels' own, under
Python's and NumPy's error models: ns per element, one thread, 64 x 4,704 float64 values (a record for
docs/performance.md, "exp in vector arithmetic"; not part of the package).

Usage, from the repository root:
    PYTHONPATH=. python docs/bench/exp_loop.py
"""

from __future__ import annotations

import math
import statistics
import time

import numpy as np
from numba import njit

from symcnn.runtime.vector_math import exp as vector_exp


def loop(exp, error_model: str):
    @njit(error_model=error_model)
    def tanh_rows(x, y):
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                y[i, j] = 1 - 2 / (exp(2 * x[i, j]) + 1)
    return tanh_rows


def main() -> None:
    x = np.random.default_rng(0).standard_normal((64, 4704))
    y = np.empty_like(x)
    print(f"{'':<22}{'libm exp':>10}{'vector exp':>12}   (ns per element, median of 30)")
    for error_model in ("python", "numpy"):
        cells = []
        for exp in (math.exp, vector_exp):
            function = loop(exp, error_model)
            function(x, y)
            times = []
            for _ in range(30):
                start = time.perf_counter()
                function(x, y)
                times.append(time.perf_counter() - start)
            cells.append(1e9 * statistics.median(times) / x.size)
        print(f"{error_model + ' error model':<22}{cells[0]:>10.2f}{cells[1]:>12.2f}")


if __name__ == "__main__":
    main()
