"""A weight's lane-last copy filled in the copy's own order against the order the generator picks
(``stagings.copy_loop_order``: runs of each lane, a matrix in chunks), serial numba, interleaved.

A record for docs/performance.md ("The suite after session 19; weight copies read in runs"), not part of
the package. Each copy is ``weight_t[...axes but the lane..., lane] = weight[lane, ...]``, a forward
convolution's (lane: the output channel) or a dense layer's (lane: the output feature); the loops of the
generator's order come from ``copy_loop_order`` itself, printed the way ``lane_last`` prints them.

Usage, from the repository root:
    PYTHONPATH=. python docs/bench/copy_orders.py --repeat 200
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np
import sympy

from symcnn.codegen.backends.numba_cpu.stagings import _chunk_loop, copy_loop_order
from symcnn.codegen.kernel_ir import Loop

#: (weight shape): a convolution's (C_out, C_in, K, K) or a dense layer's (F_out, F_in).
SHAPES = ((128, 128, 3, 3), (256, 256, 3, 3), (512, 256, 3, 3), (64, 32, 5, 5), (128, 32, 3, 3),
          (256, 1352), (128, 256), (4096, 2048))
NAMES = ("lane", "a", "b", "c")


def copy_function(shape: tuple, generator_order: bool):
    """A numba function copying a weight of ``shape`` with its first axis (the lane) last."""
    axes = [sympy.Symbol(name, integer=True) for name in NAMES[:len(shape)]]
    lane, rest = axes[0], axes[1:]
    order = [*rest, lane]
    sizes = dict(zip(axes, shape))
    if generator_order:
        trailing = [(axis, sympy.Integer(sizes[axis])) for axis in rest]
        picked = copy_loop_order(order, trailing, sympy.Integer(int(np.prod(shape[1:]))))
    else:
        picked = order
    lines = ["def copy(weight):", f"    weight_t = np.empty({tuple(shape[1:]) + (shape[0],)}, dtype=weight.dtype)"]
    for depth, entry in enumerate(picked, start=1):
        if isinstance(entry, tuple):
            loop = _chunk_loop(str(entry[1]), sizes[entry[1]], entry[0])
        else:
            loop = Loop(str(entry), str(sizes[entry]))
        span = f"{loop.start}, {loop.stop}, {loop.step}"
        lines.append("    " * depth + f"for {loop.variable} in range({span}):")
    target = ", ".join(map(str, order))
    source = ", ".join(map(str, axes))
    lines += ["    " * (len(picked) + 1) + f"weight_t[{target}] = weight[{source}]", "    return weight_t"]
    namespace = {"np": np}
    exec("\n".join(lines), namespace)
    return numba.njit(namespace["copy"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    arguments = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'weight':<22} {'elements':>10} {'copy order ms':>14} {'generator ms':>13}")
    for shape in SHAPES:
        weight = rng.standard_normal(shape).astype(np.float32)
        functions = [copy_function(shape, generator_order) for generator_order in (False, True)]
        expected = np.moveaxis(weight, 0, -1)
        for function in functions:
            assert np.array_equal(function(weight), expected)
        seconds: list[list[float]] = [[], []]
        for _ in range(arguments.repeat):
            for timings, function in zip(seconds, functions):
                start = time.perf_counter()
                function(weight)
                timings.append(time.perf_counter() - start)
        before, after = (statistics.median(timings) * 1e3 for timings in seconds)
        print(f"{' x '.join(map(str, shape)):<22} {weight.size:>10,} {before:>14.3f} {after:>13.3f}")


if __name__ == "__main__":
    main()
