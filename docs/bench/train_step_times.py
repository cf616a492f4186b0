"""``Network.train_step`` times at batch 1 and batch 64, for a before/after of runtime changes across checkouts.

A record for docs/performance.md ("a pass's Python at batch 1"), not part of the package. It times the code
on ``PYTHONPATH``, so a comparison runs it once per checkout, the runs interleaved (each a process of its own):

    for i in 1 2 3; do for checkout in ../before .; do
        SYMCNN_ADAPTIVE_THREADS=0 PYTHONPATH=$checkout python docs/bench/train_step_times.py suite-lenet seed004
    done; done

Each figure is the median, over ``--repeat`` repeats, of the mean time of a step (ms): 200 steps a repeat at
batch 1, 30 at batch 64, after 20 steps of warm-up (compiling included there).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from symcnn.runtime.network import Network

STEPS = {1: 200, 64: 30}


def step_times(name: str, repeat: int) -> dict[int, float]:
    """Median milliseconds of one ``train_step`` of spec ``name`` at each batch of :data:`STEPS`."""
    net = Network.from_spec(name, seed=0)
    rng = np.random.default_rng(0)
    times = {}
    for batch, steps in STEPS.items():
        x = rng.standard_normal((batch, *net.spec.input_shape)).astype(np.float32)
        labels = rng.integers(0, net.spec.classes, batch)
        for _ in range(20):
            net.train_step(x, labels, 1e-4)
        means = []
        for _ in range(repeat):
            start = time.perf_counter()
            for _ in range(steps):
                net.train_step(x, labels, 1e-4)
            means.append((time.perf_counter() - start) / steps * 1e3)
        times[batch] = statistics.median(means)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="+", help="shipped spec names or .toml paths")
    parser.add_argument("--repeat", type=int, default=7, help="timed repeats per batch (default: 7)")
    arguments = parser.parse_args()
    for name in arguments.specs:
        times = step_times(name, arguments.repeat)
        print(name, *(f"b{batch} {ms:.3f}" for batch, ms in times.items()), flush=True)


if __name__ == "__main__":
    main()
