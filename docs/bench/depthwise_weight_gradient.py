"""A 3x3 depthwise convolution's weight-gradient kernel alone: its time and its error against a float64 sum.

A record for docs/performance.md ("Depthwise weight gradients over their columns past L1"), not part of the
package. It writes a one-layer spec (depthwise 3x3, padding 1, ``--channels`` channels on ``--size`` maps),
loads its kernels through the checkout on ``PYTHONPATH`` (compiled into ``SYMCNN_CACHE_DIR``), and times
``dw_grad_weight`` on random float32 arrays: the median of ``--repeat`` calls. A before/after runs it once per
checkout, each with its own cache:

    SYMCNN_CACHE_DIR=/tmp/cache-before PYTHONPATH=../before python docs/bench/depthwise_weight_gradient.py
    SYMCNN_CACHE_DIR=/tmp/cache-after PYTHONPATH=. python docs/bench/depthwise_weight_gradient.py --channels 48
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

from symcnn.runtime.network import Network

SPEC = """name = "depthwise-probe-{channels}-{size}"
input = [{channels}, {size}, {size}]
loss = "softmax_cross_entropy"

[[layers]]
type = "conv2d"
name = "dw"
out_channels = {channels}
kernel = 3
padding = 1
groups = {channels}
bias = false

[[layers]]
type = "global_avgpool"

[[layers]]
type = "flatten"

[[layers]]
type = "dense"
name = "fc"
out_features = 10
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=32)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=50)
    options = parser.parse_args()
    numba.set_num_threads(options.threads)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "probe.toml"
        path.write_text(SPEC.format(channels=options.channels, size=options.size), encoding="utf-8")
        net = Network.from_spec(path, seed=0)
        kernel = net.kernel("dw_grad_weight")
    shape = (options.batch, options.channels, options.size, options.size)
    rng = np.random.default_rng(0)
    grad_output, x = (rng.standard_normal(shape).astype(np.float32) for _ in range(2))
    weight = np.empty((options.channels, 1, 3, 3), np.float32)
    kernel(grad_output, x, weight)
    times = []
    for _ in range(options.repeat):
        start = time.perf_counter()
        kernel(grad_output, x, weight)
        times.append(time.perf_counter() - start)
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    size = options.size
    reference = np.stack([np.stack([np.einsum("ncij,ncij->c", padded[:, :, u:u + size, v:v + size],
                                              grad_output.astype(np.float64)) for v in range(3)], axis=1)
                          for u in range(3)], axis=1)
    error = np.abs(weight[:, 0] - reference).max() / np.abs(reference).max()
    print(f"{options.channels} channels, {size}x{size}, batch {options.batch}: dw_grad_weight "
          f"{statistics.median(times) * 1e3:.3f} ms (median of {options.repeat}), max relative error {error:.1e}")


if __name__ == "__main__":
    main()
