"""Per kernel, a train step's time with two builds of a spec's kernels, interleaved in one process.

A record for docs/performance.md (session 35's before/afters), not part of the package. The builds are kernel
caches as for ``ab_train_step.py`` (whose loader this uses); each repeat profiles one step of each build
(``Network.profile``), each build first in every other repeat, and the medians over the repeats are printed side
by side, the before build's slowest first, with each build's total and the ratio (above 1: the after build faster).

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
    for repeat in range(options.repeat):
        for position in (0, 1) if repeat % 2 == 0 else (1, 0):  # each build first in every other repeat
            net = nets[position]
            net.profile = {}
            net.train_step(x, labels, 0.001)
            for kernel, seconds in net.profile.items():
                times[position].setdefault(kernel, []).append(seconds)
            net.profile = None
    before, after = ({kernel: statistics.median(values) * 1e3 for kernel, values in build.items()} for build in times)
    print(f"{options.spec}: total {sum(before.values()):.2f} ms before, {sum(after.values()):.2f} ms after "
          f"({sum(before.values()) / sum(after.values()):.2f}x)")
    print(f"  {'kernel (slowest before first)':44s} {'before':>8s} {'after':>8s}  ratio")
    for kernel in sorted(before, key=lambda name: -before[name])[:options.top]:
        ms = after.get(kernel)  # none where the after build has no such kernel
        change = f"{ms:8.3f}  {before[kernel] / ms:.2f}x" if ms else f"{'-':>8s}"
        print(f"  {kernel:44s} {before[kernel]:8.3f} {change}")


if __name__ == "__main__":
    main()
