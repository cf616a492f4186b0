"""A dense layer's forward pass at small batches: the generated kernel against a row form, BLAS and PyTorch.

A probe for docs/performance.md (session 41), not part of the package. The generated forward kernel of a
dense layer with many inputs takes the lanes schedule over its output features, the images in groups of 4
(one parallel item a group) and its weight transposed on every call. At a batch of 1 to 3 that is one
thread, a group's missing images computed on the last one, and the transpose. The row form written here is
what a small-batch variant would compute: each output feature one dot product of a weight row with an image
(the weight as it is stored, no copy), in parallel over the output features, the sum vectorized by LLVM
(``reassoc``: another order than the generated kernel's, so the numbers differ in the last bits).

Since session 41 the generated module has both forms (``<layer>_forward_groups`` and ``<layer>_forward_rows``,
:mod:`symcnn.codegen.small_batches`): they are timed, each alone; the row form below is timed where the module has
only one form. Batch sizes in turn, 2 threads, the median of ``--repeat`` calls of each (interleaved, or with
``--blocks`` each kind's calls in a block of their own), after a warm-up.

Usage, from the repository root:
    PYTHONPATH=. python docs/bench/dense_rows_probe.py --spec suite-mlp-head --layer fc1
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np
from numba import njit, prange

from symcnn.runtime.network import Network


@njit(cache=False, parallel=True, fastmath={"contract", "reassoc", "nsz"}, error_model="numpy")
def rows_forward(x, weight, bias, out):
    """out[n, i] = bias[i] + sum_k weight[i, k] x[n, k]: parallel over i, each sum a dot product of rows."""
    for i in prange(weight.shape[0]):
        for n in range(x.shape[0]):
            acc = bias[i]
            for k in range(weight.shape[1]):
                acc += weight[i, k] * x[n, k]
            out[n, i] = acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="suite-mlp-head")
    parser.add_argument("--layer", default="fc1")
    parser.add_argument("--batches", default="1,2,3,4,8,64")
    parser.add_argument("--repeat", type=int, default=301)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--blocks", action="store_true",
                        help="each kind's calls one after another, not interleaved (numba's threads, still spinning "
                             "after a parallel call, can slow the BLAS call after it)")
    options = parser.parse_args()
    import torch

    numba.set_num_threads(options.threads)
    torch.set_num_threads(options.threads)
    net = Network.from_spec(options.spec, dtype="float32", seed=1)
    weight, bias = net.params[f"{options.layer}.weight"], net.params[f"{options.layer}.bias"]
    kernel = net.kernel(f"{options.layer}_forward")
    # since the small batches' variant (symcnn.codegen.small_batches) the module's forms, each timed alone
    forms = kernel.py_func.__globals__
    generated = forms.get(f"{options.layer}_forward_groups", kernel)
    rows = forms.get(f"{options.layer}_forward_rows", rows_forward)
    features_out, features_in = weight.shape
    print(f"{options.spec} {options.layer}: {features_in} -> {features_out}, float32, {options.threads} threads, "
          f"median of {options.repeat} calls, microseconds")
    print(f"{'batch':>5} {'generated':>10} {'rows':>8} {'numpy':>8} {'torch':>8}  rows max |diff|")
    for batch in (int(b) for b in options.batches.split(",")):
        medians, difference = _timed(batch, generated, rows, weight, bias, options.repeat, options.blocks)
        print(f"{batch:>5} {medians['generated']:>10.1f} {medians['rows']:>8.1f} {medians['numpy']:>8.1f} "
              f"{medians['torch']:>8.1f}  {difference:.1e}")


def _timed(batch: int, generated, rows, weight, bias, repeat: int, blocks: bool) -> tuple[dict, float]:
    """Each kind's median time of a call (µs) at ``batch``, and the largest difference of the two kernels' outputs."""
    import torch

    features_out, features_in = weight.shape
    x = np.random.default_rng(batch).standard_normal((batch, features_in)).astype(np.float32)
    out_generated, out_rows = (np.empty((batch, features_out), np.float32) for _ in range(2))
    tx, tw, tb = torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias)
    calls = {
        "generated": lambda: generated(x, weight, bias, out_generated),
        "rows": lambda: rows(x, weight, bias, out_rows),
        "numpy": lambda: np.dot(x, weight.T) + bias,
        "torch": lambda: torch.nn.functional.linear(tx, tw, tb),
    }
    times: dict[str, list] = {name: [] for name in calls}
    for call in calls.values():
        call()
    order = ([(name, call) for name, call in calls.items() for _ in range(repeat)] if blocks
             else [(name, call) for _ in range(repeat) for name, call in calls.items()])
    for name, call in order:
        start = time.perf_counter()
        call()
        times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(values) * 1e6 for name, values in times.items()}
    return medians, float(np.abs(out_rows - out_generated).max())

if __name__ == "__main__":
    main()
