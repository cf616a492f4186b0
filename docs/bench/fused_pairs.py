"""Each fused pair's kernel against the unfused chain it replaces, interleaved in one process.

A record for docs/performance.md ("Fusion across layers"), not part of the package. For every pair of the
after build's ``FUSED`` table (an element-wise layer E and the one layer Q that reads it), times the before
build's Q input-gradient kernel followed by E's (the chain), Q's kernel alone, and the after build's fused
kernel, on the same random arrays (the results compared first); each repeat rests 0.05 s before each of the
three, which run 10 calls each; the medians are printed. Each build is a directory holding the spec's
package (``symcnn generate SPEC --out DIR``), compiled on first use into its own ``__pycache__``.

Usage, from the repository root:
    PYTHONPATH=. python docs/bench/fused_pairs.py --before /tmp/ab-before --after /tmp/ab-after seed004 \\
        --batch 64 --threads 2 --repeat 15
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numba
import numpy as np

from symcnn.runtime.loader import _forget, import_package
from symcnn.runtime.network import Network
from symcnn.spec import load_spec

CALLS = 10
REST = 0.05


def network(spec, root: Path) -> Network:
    """The spec's network on the package in ``root``, every kernel of a train step loaded, its module name
    then forgotten so that the other build can take it."""
    name = f"symcnn_kernels_{spec.module_name}"
    net = Network(spec, import_package(root / spec.module_name, name))
    net.train_step(np.zeros((2, *spec.input_shape), np.float32), np.zeros(2, np.int64), 0.01)
    _forget(name)
    return net


def median_ms(call, times: list) -> None:
    """Rest, then append the mean of ``CALLS`` calls of ``call`` to ``times`` (ms)."""
    time.sleep(REST)
    start = time.perf_counter()
    for _ in range(CALLS):
        call()
    times.append((time.perf_counter() - start) / CALLS * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="+")
    parser.add_argument("--before", required=True, type=Path)
    parser.add_argument("--after", required=True, type=Path)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=15)
    options = parser.parse_args()
    numba.set_num_threads(options.threads)
    rng = np.random.default_rng(0)
    for name in options.specs:
        spec = load_spec(name)
        before, after = network(spec, options.before), network(spec, options.after)
        layers = {layer.label: layer for layer in spec.layers}
        for label, (reader, fused) in after.kernels.FUSED.items():
            times = time_pair(before, after, layers[label], layers[reader], fused, options, rng)
            print(f"{name} {label} -> {reader}: " + ", ".join(
                f"{key} {statistics.median(values):.3f} ms" for key, values in times.items()), flush=True)


def time_pair(before: Network, after: Network, e, q, fused: str, options, rng) -> dict[str, list]:
    """The chain (before: Q's input gradient, then E's), Q's alone, and the fused kernel (after), each
    repeat timing the three in turn, on the same random arrays; their results compared first."""
    arrays = {"grad_output": rng.standard_normal((options.batch, *q.output_shape)).astype(np.float32),
              "x": rng.standard_normal((options.batch, *q.input_shape)).astype(np.float32),
              "fused_x": rng.standard_normal((options.batch, *e.input_shape)).astype(np.float32),
              "switch": rng.integers(0, 4, (options.batch, *q.output_shape)).astype(np.int8)}
    # E's output, where its gradient reads that (ReLU's mask, tanh's 1 - Y^2): its forward kernel's
    arrays["fused_out"] = np.empty_like(arrays["fused_x"])
    before.kernel(f"{e.label}_forward")(arrays["fused_x"], arrays["fused_out"])
    arrays.update({key.split(".")[-1]: value for key, value in after.params.items() if key.startswith(f"{q.name}.")})
    unfused = f"{q.label}_grad_input"
    q_arguments = [arrays[a] for a in before.kernels.ARGUMENTS[unfused][:-1]]
    # E's gradient reads its input or its output: the fused kernel's argument of the same role
    e_read = {"x": "fused_x", "out": "fused_out"}[before.kernels.ARGUMENTS[f"{e.label}_grad_input"][1]]
    fused_arguments = [arrays[a] for a in after.kernels.ARGUMENTS[fused][:-1]]
    middle, chained, out = (np.empty((options.batch, *q.input_shape), np.float32) for _ in range(3))
    q_kernel, e_kernel = before.kernel(unfused), before.kernel(f"{e.label}_grad_input")
    fused_kernel = after.kernel(fused)

    def chain():
        q_kernel(*q_arguments, middle)
        e_kernel(middle, arrays[e_read], chained)

    runs = {"chain": chain, "Q alone": lambda: q_kernel(*q_arguments, middle),
            "fused": lambda: fused_kernel(*fused_arguments, out)}
    chain()
    runs["fused"]()
    np.testing.assert_allclose(out, chained, rtol=1e-4, atol=1e-5)
    times: dict[str, list] = {key: [] for key in runs}
    for _ in range(options.repeat):
        for key, run in runs.items():
            median_ms(run, times[key])
    return times

if __name__ == "__main__":
    main()
