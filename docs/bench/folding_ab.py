"""Evaluation-mode forward pass with and without batch norm folded into the convolution before it.

A record for docs/performance.md ("Fusion across layers"), not part of the package: one Network, its
evaluation pass timed folded (``Network.forward``) and unfolded (``Network._forward(x, False)``, every
layer's own kernel) in alternation, each timing after a 0.3 s rest and the mean of 5 back-to-back calls
(as ``symcnn bench`` times), the median of the repeats. The two passes give the same logits to rounding
(tests/codegen/test_folding.py).

Usage, from the repository root:
    PYTHONPATH=. python docs/bench/folding_ab.py suite-batchnorm suite-separable suite-residual --batch 64 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics

import numba
import numpy as np

from symcnn.bench.bench import mean_seconds as timed  # symcnn bench's timing: a rest, then 5 calls' mean
from symcnn.runtime.network import Network
from symcnn.runtime.threads import kernel_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="+")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=9)
    options = parser.parse_args()
    numba.set_num_threads(options.threads)
    for spec in options.specs:
        net = Network.from_spec(spec, seed=0).eval()
        x = np.random.default_rng(0).standard_normal((options.batch, *net.spec.input_shape)).astype(np.float32)
        net.forward(x)  # compiles (or loads) both passes' kernels
        with kernel_threads():
            net._forward(x, False)

        def unfolded(net=net, x=x):
            with kernel_threads():
                net._forward(x, False)

        times = {"folded": [], "unfolded": []}
        loads = [os.getloadavg()[0]]
        for _ in range(options.repeat):
            times["folded"].append(timed(lambda net=net, x=x: net.forward(x)))
            times["unfolded"].append(timed(unfolded))
            loads.append(os.getloadavg()[0])
        folded, plain = (1e3 * statistics.median(times[name]) for name in ("folded", "unfolded"))
        print(f"{spec}: evaluation forward, batch {options.batch}, {options.threads} threads, median of "
              f"{options.repeat}: unfolded {plain:.2f} ms, folded {folded:.2f} ms ({plain / folded:.2f}x); "
              f"{len(net._folds)} folds; load average {min(loads):.1f}-{max(loads):.1f}")


if __name__ == "__main__":
    main()
