"""Train steps with the optimizers' updates on NumPy (whole-array operations) and compiled (one parallel pass).

A record for docs/performance.md ("The optimizers' updates in one parallel pass"), not part of the package.
For each spec, in one process, interleaved: a step is ``loss_and_grads`` at the batch, then the update of every
parameter, by

- ``plain``: plain SGD as ``Network.train_step`` did before (``g *= -lr; θ += g``, NumPy, in place), against
  ``Network.train_step`` now (:func:`symcnn.training.optimizers.sgd_step`);
- ``momentum`` and ``adam``: ``SGD(momentum=0.9)`` and ``Adam`` with every array on the NumPy path
  (``optimizers.PARALLEL_MIN`` set above any size), against the same optimizer as shipped.

Medians of the repeats, in milliseconds, and their ratio (NumPy's time over the compiled one's).

Usage, from the repository root:
    PYTHONPATH=. python docs/bench/update_steps.py suite-mlp-head seed004 --threads 2 --repeat 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np

from symcnn.runtime.network import Network
from symcnn.training import optimizers


def _old_plain_sgd(net: Network, grads: dict, lr: float) -> None:
    step = net.dtype.type(-lr)
    for name, parameter in net.params.items():
        gradient = grads[name]
        gradient *= step
        parameter += gradient


def _timed(step, calls: int) -> float:
    """The median seconds of ``calls`` calls of ``step`` after two untimed ones."""
    step(), step()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _pairs(net: Network, x: np.ndarray, labels: np.ndarray, shipped: int) -> dict:
    """Each update's (NumPy, compiled) step functions."""
    sgd, adam = optimizers.SGD(net.params, momentum=0.9), optimizers.Adam(net.params)

    def stepped(update):
        return lambda: update(net.loss_and_grads(x, labels, input_gradient=False)[1])

    def on_numpy(optimizer):
        def update(grads):
            optimizers.PARALLEL_MIN = 1 << 62
            try:
                net.optimizer_step(optimizer, grads, 1e-4)
            finally:
                optimizers.PARALLEL_MIN = shipped
        return update

    def shipped_step(optimizer):
        return lambda grads: net.optimizer_step(optimizer, grads, 1e-4)

    return {"plain": (stepped(lambda grads: _old_plain_sgd(net, grads, 1e-4)),
                      lambda: net.train_step(x, labels, lr=1e-4)),
            "momentum": (stepped(on_numpy(sgd)), stepped(shipped_step(sgd))),
            "adam": (stepped(on_numpy(adam)), stepped(shipped_step(adam)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="+")
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 1])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    for spec in args.specs:
        net = Network.from_spec(spec)
        print(f"{spec}: {sum(value.size for value in net.params.values()):,} parameters, {args.threads} threads, "
              f"median of {args.repeat} repeats of {args.calls} steps")
        for batch in args.batch:
            x = rng.standard_normal((batch, *net.spec.input_shape)).astype(np.float32)
            labels = rng.integers(0, net.spec.classes, batch)
            pairs = _pairs(net, x, labels, optimizers.PARALLEL_MIN)
            seconds = {name: ([], []) for name in pairs}
            for _ in range(args.repeat):
                for name, (before, after) in pairs.items():
                    seconds[name][0].append(_timed(before, args.calls))
                    seconds[name][1].append(_timed(after, args.calls))
            cells = []
            for name, (old, new) in seconds.items():
                old, new = statistics.median(old), statistics.median(new)
                cells.append(f"{name} {1e3 * old:.3f} -> {1e3 * new:.3f} ms ({old / new:.2f}x)")
            print(f"  batch {batch}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
