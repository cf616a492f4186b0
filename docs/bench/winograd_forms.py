"""Each Winograd kernel of a spec against its direct form, in the same module: ``<kernel>_winograd`` and
``<kernel>_direct`` (symcnn.codegen.winograd_kernels), interleaved, median of repeats, on random arrays.

A record for docs/performance.md (issue #19), not part of the package. The spec must ask for Winograd
(``[kernels] winograd = true``); its package is generated and compiled on first use as a Network's.

Usage, from the repository root:
    PYTHONPATH=. python docs/bench/winograd_forms.py SPEC.toml [--batch 64] [--threads 2] [--repeat 31]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import statistics
import sys
import time

import numba
import numpy as np

from symcnn.runtime.network import Network
from symcnn.spec import load_spec


def _arrays(layer, names: list[str], batch: int, rng) -> list[np.ndarray]:
    """Random float32 arrays for a forward or input-gradient kernel of ``layer``, by argument name."""
    weight_shape = layer.parameter_shapes()[f"{layer.name}.weight"]
    shapes = {"x": (batch, *layer.input_shape), "weight": weight_shape, "bias": (weight_shape[0],),
              "out": (batch, *layer.output_shape), "grad_output": (batch, *layer.output_shape),
              "grad_input": (batch, *layer.input_shape)}
    fused = shapes["out"] if "out" in names else shapes["grad_input"]  # an element-wise layer's, at the store
    return [(rng.standard_normal(shapes.get(name, fused)) * (0.05 if name == "weight" else 1)).astype(np.float32)
            for name in names]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=31)
    options = parser.parse_args()
    numba.set_num_threads(options.threads)
    spec = load_spec(options.spec)
    net = Network.from_spec(options.spec)
    net.compile()
    package = next(name for name in sys.modules
                   if name.startswith(f"symcnn_kernels_{spec.module_name}_") and "." not in name)
    rng = np.random.default_rng(0)
    print(f"{spec.name}: batch {options.batch}, {options.threads} threads, median of {options.repeat}, interleaved")
    for layer in spec.layers:
        for module_name in sorted(name for name in sys.modules if name.startswith(f"{package}.{layer.label}")):
            module = importlib.import_module(module_name)
            for name in sorted(name for name in vars(module) if name.endswith("_winograd")):
                kernel = name[:-len("_winograd")]
                winograd, direct = getattr(module, name), getattr(module, f"{kernel}_direct")
                arguments = list(inspect.signature(winograd.py_func).parameters)
                arrays = _arrays(layer, arguments, options.batch, rng)
                times: dict = {"winograd": [], "direct": []}
                for function in (winograd, direct):
                    function(*arrays)
                for _ in range(options.repeat):
                    for form, function in (("winograd", winograd), ("direct", direct)):
                        start = time.perf_counter()
                        function(*arrays)
                        times[form].append(time.perf_counter() - start)
                medians = {form: statistics.median(values) * 1e3 for form, values in times.items()}
                print(f"  {kernel:40s} winograd {medians['winograd']:7.3f} ms  direct {medians['direct']:7.3f} ms  "
                      f"ratio {medians['winograd'] / medians['direct']:.2f}")


if __name__ == "__main__":
    main()
