"""Before and after: the same specs' train step (and forward pass) with two builds of their kernels, interleaved
in one process, so that a busy machine slows both alike.

A record for docs/performance.md ("Schedules from shapes"), not part of the package. ``symcnn bench`` compares
the generated kernels with PyTorch; this compares two generations of the kernels with each other. Each build
is a kernel cache (``SYMCNN_CACHE_DIR`` of a ``symcnn bench`` run that compiled it:
``<dir>/<module>_<spec digest>_<generator digest>/``), or for a shipped spec a checkout's ``generated/``
directory, so nothing is compiled here. Each repeat times the before build's step as ``symcnn bench`` does
(``mean_seconds``: a 0.3 s rest, one untimed call, the mean of 5 calls), then the after build's; the medians
of the repeats and their ratio are printed.

With ``--before-unfused``, the before network is the after build's with its training passes' forward
fusions off (``Network.fuse_with_gradients = False``): a change of the runtime alone, measured on one build.
With ``--before-separate-bias``, the before network computes each weight's and bias's gradients by their own
kernels where the build has ``<label>_grad_weight_and_bias`` (symcnn.codegen.parameter_fusion): one build too.
With ``--before-recomputed-statistics``, the before network keeps no statistics from its forward passes (its
backward kernels and running-statistics update compute their own; symcnn.codegen.saved_statistics): one build.

Usage, from the repository root:
    PYTHONPATH=. python docs/bench/ab_train_step.py --before /tmp/cache-before --after /tmp/cache-after \\
        suite-lenet seed004 --batch 64 --threads 2 --repeat 15
    PYTHONPATH=. python docs/bench/ab_train_step.py --before /tmp/cache --after /tmp/cache --before-unfused suite-vgg
    PYTHONPATH=. python docs/bench/ab_train_step.py --before /tmp/cache --after /tmp/cache --before-separate-bias \
        suite-vgg
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numba
import numpy as np

from symcnn.bench.bench import CALLS_PER_TIMING as CALLS, mean_seconds as seconds  # symcnn bench's timing
from symcnn.runtime.loader import _forget, import_package
from symcnn.runtime.network import Network
from symcnn.spec import load_spec


def network(spec, root: Path, seed: int, unfused: bool = False, separate_bias: bool = False,
            recomputed: bool = False) -> Network:
    """The spec's network on the kernels compiled under ``root``, loaded under the loader's module name (numba's
    cache finds a kernel's module by it), then forgotten so that the other build can take the name."""
    if (root / spec.module_name / "__init__.py").is_file():  # a checkout's generated/ (a shipped spec)
        entry = root
        name = f"symcnn_kernels_{spec.module_name}"  # the loader's name for a shipped package
    else:
        (entry,) = root.glob(f"{spec.module_name}_{spec.digest()}_*")  # one generator's build per cache
        name = f"symcnn_kernels_{entry.name}"
    package = import_package(entry / spec.module_name, name)
    net = Network(spec, package, seed=seed)
    if unfused:  # before the first step, which loads the kernels it calls
        net.fuse_with_gradients = False
    if separate_bias:  # as the PyTorch module's whole pass does (symcnn.torch.whole_pass)
        net._weight_and_bias_kernel = lambda *arguments: None
    if recomputed:  # no statistics kept from the forward pass (symcnn.codegen.saved_statistics)
        net._saving_kernel = lambda *arguments: None
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *spec.input_shape)).astype(np.float32)
    net.train_step(x, rng.integers(0, spec.classes, 2), 0.01)  # every kernel of a step loaded now
    net.forward(x)
    _forget(name)
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="+")
    parser.add_argument("--before", required=True, type=Path)
    parser.add_argument("--after", required=True, type=Path)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--before-unfused", action="store_true",
                        help="the before network's training passes without forward fusions")
    parser.add_argument("--before-separate-bias", action="store_true",
                        help="the before network's weight and bias gradients each by its own kernel")
    parser.add_argument("--before-recomputed-statistics", action="store_true",
                        help="the before network's backward passes and running statistics computing their statistics")
    options = parser.parse_args()
    numba.set_num_threads(options.threads)
    print(f"before {options.before}, after {options.after}: batch {options.batch}, {options.threads} threads, "
          f"median of {options.repeat} interleaved repeats of {CALLS} calls (ms)")
    print(f"{'spec':22s} {'train before':>12s} {'after':>8s} {'speed-up':>8s}   {'forward before':>14s} {'after':>8s} "
          f"{'speed-up':>8s}")
    for name in options.specs:
        spec = load_spec(name)
        before = (options.before, options.before_unfused, options.before_separate_bias,
                  options.before_recomputed_statistics)
        nets = [network(spec, root, seed=1, unfused=unfused, separate_bias=separate, recomputed=recomputed)
                for root, unfused, separate, recomputed in (before, (options.after, False, False, False))]
        nets[1].params = {key: value.copy() for key, value in nets[0].params.items()}
        rng = np.random.default_rng(1)
        x = rng.standard_normal((options.batch, *spec.input_shape)).astype(np.float32)
        labels = rng.integers(0, spec.classes, options.batch)
        train: list[list[float]] = [[], []]
        forward: list[list[float]] = [[], []]
        for _ in range(options.repeat):
            for position, net in enumerate(nets):
                train[position].append(seconds(net.train_step, x, labels, 0.001))
                forward[position].append(seconds(net.forward, x))
        (train_before, train_after), (forward_before, forward_after) = (
            [statistics.median(times) * 1e3 for times in pair] for pair in (train, forward))
        print(f"{name:22s} {train_before:12.2f} {train_after:8.2f} {train_before / train_after:7.2f}x   "
              f"{forward_before:14.2f} {forward_after:8.2f} {forward_before / forward_after:7.2f}x", flush=True)


if __name__ == "__main__":
    main()
