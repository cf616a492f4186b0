"""Per kernel, a train step's time with two builds of a spec's kernels, interleaved in one process.

A record for docs/performance.md (session 35's before/afters), not part of the package. The builds are kernel
caches as for ``ab_train_step.py`` (whose loader this uses); each repeat profiles one step of each build
(``Network.profile``), and the medians over the repeats are printed, slowest first, with each build's total.

Usage, from the repository root:
    PYTHONPATH=. python docs/bench/kernel_times_ab.py suite-separable --before /tmp/cache-before \\
        --after /tmp/cache-after
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab_train_step import network  # noqa: E402  (a sibling script, not a package)

from symcnn.spec import load_spec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--before", required=True, type=Path)
    parser.add_argument("--after", required=True, type=Path)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--top", type=int, default=40, help="kernels shown per build, slowest first")
    options = parser.parse_args()
    numba.set_num_threads(options.threads)
    spec = load_spec(options.spec)
    nets = [network(spec, root, seed=1) for root in (options.before, options.after)]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((options.batch, *spec.input_shape)).astype(np.float32)
    labels = rng.integers(0, spec.classes, options.batch)
    times: list[dict[str, list[float]]] = [{}, {}]
    for _ in range(options.repeat):
        for position, net in enumerate(nets):
            net.profile = {}
            net.train_step(x, labels, 0.001)
            for kernel, seconds in net.profile.items():
                times[position].setdefault(kernel, []).append(seconds)
            net.profile = None
    for label, build in zip(("before", "after"), times):
        medians = {kernel: statistics.median(values) * 1e3 for kernel, values in build.items()}
        print(f"{label}: total {sum(medians.values()):.2f} ms")
        for kernel, ms in sorted(medians.items(), key=lambda item: -item[1])[:options.top]:
            print(f"  {kernel:44s} {ms:.3f}")


if __name__ == "__main__":
    main()
