"""Evaluation-mode forward pass with and without the forward fusions (an element-wise layer in the kernel before it).

A record for docs/performance.md ("Forward fusion in evaluation passes"), not part of the package: one
Network, its evaluation pass timed fused (``Network.forward``'s pass: the package's ``FORWARD_FUSED`` and
``FOLDS``) and unfused (the same pass with the folds but without the forward fusions: the layer's kernel,
then the element-wise layer's) in alternation, each timing after a 0.3 s rest and the mean of 5
back-to-back calls (as ``symcnn bench`` times), the median of the repeats. The two passes give the same
logits, bit for bit where every fused layer is a ReLU (tests/codegen/test_forward_fusion.py). With
``--pairs``, then each pair's kernels (``Network.profile``, the same passes interleaved, 5 calls per
repeat): the layer's kernel and the element-wise layer's, unfused, against the fused kernel.

Usage, from the repository root:
    PYTHONPATH=. python docs/bench/forward_fusion_ab.py seed004 suite-vgg suite-lenet suite-batchnorm \
        --batch 64 --threads 2
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
    parser.add_argument("--pairs", action="store_true", help="then time each pair's kernels (Network.profile)")
    options = parser.parse_args()
    numba.set_num_threads(options.threads)
    for spec in options.specs:
        net = Network.from_spec(spec, seed=0).eval()
        x = np.random.default_rng(0).standard_normal((options.batch, *net.spec.input_shape)).astype(np.float32)
        fusions = net._forward_fused

        def fused(net=net, x=x):  # Network.forward's pass, without its checks of the input and parameters
            with kernel_threads():
                net._forward(x, False, fold=True)

        def unfused(net=net, x=x, fusions=fusions):
            net._forward_fused = {}
            try:
                with kernel_threads():
                    net._forward(x, False, fold=True)
            finally:
                net._forward_fused = fusions

        net.forward(x)  # compiles (or loads) both passes' kernels
        unfused()
        times = {"fused": [], "unfused": []}
        loads = [os.getloadavg()[0]]
        for _ in range(options.repeat):
            times["fused"].append(timed(fused))
            times["unfused"].append(timed(unfused))
            loads.append(os.getloadavg()[0])
        after, before = (1e3 * statistics.median(times[name]) for name in ("fused", "unfused"))
        print(f"{spec}: evaluation forward, batch {options.batch}, {options.threads} threads, median of "
              f"{options.repeat}: unfused {before:.2f} ms, fused {after:.2f} ms ({before / after:.2f}x); "
              f"{len(fusions)} fused pairs; load average {min(loads):.1f}-{max(loads):.1f}")
        if options.pairs:
            _pairs(net, fused, unfused, options.repeat)


def _pairs(net: Network, fused, unfused, repeat: int) -> None:
    """Each fused pair's kernels in ms per pass: P's and E's own (unfused pass), and the fused one."""
    profiles: dict[str, dict] = {"fused": {}, "unfused": {}}
    for _ in range(repeat):
        for name, run in (("fused", fused), ("unfused", unfused)):
            net.profile = profiles[name]
            for _ in range(5):
                run()
    net.profile = None
    folded = {fold[0].label: fold[3] for fold in net._folds.values()}  # a folded normalization: its producer's
    layers = {layer.label: layer for layer in net.spec.layers}
    for label, (elementwise, kernel) in net._forward_fused.items():
        own = folded.get(label) or net._kernel(layers[label], "forward", False)
        p, e = (1e3 * profiles["unfused"][name] / (5 * repeat) for name in (own, f"{elementwise.label}_forward"))
        fused_ms = 1e3 * profiles["fused"][kernel] / (5 * repeat)
        print(f"    {label} -> {elementwise.label}: {own} {p:.3f} + {elementwise.label}_forward {e:.3f} = "
              f"{p + e:.3f} ms; {kernel} {fused_ms:.3f} ms ({(p + e) / fused_ms:.2f}x)")


if __name__ == "__main__":
    main()
