"""Before and after: batch norm's running-statistics update with NumPy's ``mean``/``var`` (before) and with
:func:`symcnn.runtime.buffers.channel_statistics` (after), in the same network's train step, interleaved in one
process, so that a busy machine slows both alike.

A record for docs/performance.md ("Batch norm's running statistics"), not part of the package. The kernels are
the same in both; only the update after each batch-norm layer's forward pass differs. Each repeat times
``CALLS`` train steps with the before update, then ``CALLS`` with the after one; the medians of the repeats (ms a
step) and their ratio are printed, and the time of one update of each kind on the first batch-norm layer's input.

Usage, from the repository root:
    PYTHONPATH=. python docs/bench/running_statistics_ab.py suite-residual suite-batchnorm --repeat 15
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np

import symcnn.runtime.network as network_module
from symcnn.runtime.buffers import update_running_statistics
from symcnn.runtime.network import Network

CALLS = 5


def numpy_update(layer, x: np.ndarray, buffers: dict) -> None:
    """The update as it was before (session 14): NumPy's mean and variance over the axes (0, 2, 3)."""
    mean_name, var_name = f"{layer.name}.running_mean", f"{layer.name}.running_var"
    if mean_name not in buffers or var_name not in buffers:
        return
    momentum = x.dtype.type(layer.settings["momentum"])
    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, dtype=x.dtype)
    unbiased = x.var(axis=axes, dtype=x.dtype, ddof=1)
    for name, batch_value in ((mean_name, mean), (var_name, unbiased)):
        buffers[name] *= 1 - momentum
        buffers[name] += momentum * batch_value
    buffers[f"{layer.name}.num_batches_tracked"] += 1


def _steps(net: Network, x, labels, update) -> float:
    network_module.update_running_statistics = update
    start = time.perf_counter()
    for _ in range(CALLS):
        net.train_step(x, labels)
    return (time.perf_counter() - start) / CALLS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="+")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=15)
    arguments = parser.parse_args()
    numba.set_num_threads(arguments.threads)
    for spec in arguments.specs:
        net = Network.from_spec(spec)
        rng = np.random.default_rng(0)
        x = rng.standard_normal((arguments.batch, *net.spec.input_shape)).astype(net.dtype)
        labels = rng.integers(0, net.spec.classes, arguments.batch)
        before, after = [], []
        for update in (numpy_update, update_running_statistics):  # compile, warm
            _steps(net, x, labels, update)
        for _ in range(arguments.repeat):
            time.sleep(0.3)
            before.append(_steps(net, x, labels, numpy_update))
            time.sleep(0.3)
            after.append(_steps(net, x, labels, update_running_statistics))
        network_module.update_running_statistics = update_running_statistics
        b, a = statistics.median(before) * 1e3, statistics.median(after) * 1e3
        print(f"{spec}: train step {b:.2f} ms before, {a:.2f} ms after: {b / a:.2f}x")


if __name__ == "__main__":
    main()
