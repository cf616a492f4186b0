"""Calibrate the schedule cost model (symcnn/codegen/cost_model.py): time each candidate schedule of a range
of convolution shapes, and fit the model's constants to the times.

A record for docs/performance.md ("Schedules from shapes"), not part of the package, and never run at
generation time: the constants it prints are copied into ``symcnn/codegen/cost_model.py`` by hand, so that
generating kernels stays deterministic on any machine. It fits the constants of the CPU class it runs on:
``WIDE`` on AMD's CPUs with 512-bit vectors (Zen 4: LLVM vectorizes lane loops 512 bits at a time),
``WIDE_256_LOOPS`` on others with 512-bit vectors (Intel's: 256 bits at a time), ``NARROW`` on those with
256-bit ones (AVX2), whose vector and register counts it uses.

For each layer shape below and each of its sum kernels (forward, input gradient, weight gradient), the
candidates the generator chooses among (:func:`symcnn.codegen.cost_model.recorded`: the lanes schedule,
the columns schedule at several register blocks, unrolls and widths, the scalar accumulate or gather form)
are generated one at a time (:func:`symcnn.codegen.cost_model.restricted`), compiled alone, and timed on a
batch of 64 on one thread (``--threads``): each repeat calls every candidate of the kernel in turn
(interleaved), two calls back to back. The least repeat is fitted (on a machine other jobs share, they
only ever add time: the least is the kernel's own), the median printed beside it. One thread: the
model compares work per core; a parallel region on a busy machine waits for a descheduled thread, a
delay that says nothing of the schedule. The fit: for each remainder weight of a grid, non-negative
least squares on the relative error; the remainder weight of least error is kept.

Usage, from the repository root (``--save``/``--load``: the timings as JSON, to fit them again):
    PYTHONPATH=. python docs/bench/schedule_costs.py --save timings.json > docs/bench/schedule_costs.txt
(on AVX2: ``schedule_costs_avx2.json`` and ``.txt``; on an AVX-512 CPU not AMD's, whose constants are
``WIDE_256_LOOPS``: ``schedule_costs_rocketlake.json`` and ``.txt``; ``schedule_costs_znver4_llvm22.json`` and
``.txt``: a Zen 4 again with numba 0.68's LLVM 22, session 51, not yet fitted into ``WIDE``;
``schedule_costs_znver4_llvm22_forward_all.json`` and ``.txt``: the same machine, session 52, every candidate of
the forward passes, ``--roles forward --every-candidate --repeat 9``; ``..._gradients_all``: the same for the
input and weight gradients, ``--roles grad_input grad_weight``).
``--roles`` times only some of each shape's kernels; ``--every-candidate`` times every candidate the generator
chooses among instead of a selection of the columns ones (about twice as many: 25 minutes for the forward passes).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import llvmlite.binding
import numba
import numpy as np

from symcnn.codegen import cost_model
from symcnn.codegen.lower import forward_kernel, gradient_kernel, layer_formula
from symcnn.codegen.package import _environment
from symcnn.printing.numba import import_lines
from symcnn.runtime.vector_width import has_wide_vectors
from symcnn.spec import LayerSpec, parse_spec, spec_toml
from symcnn.symbolic.adjoint import derive_gradient

#: (in_channels, out_channels, height = width, kernel, padding, groups): few and many channels, small and
#: large images, LeNet-5's and seed004's among them; and dense layers.
SHAPES = [
    (32, 64, 32, 1, 0, 1), (64, 128, 16, 1, 0, 1), (3, 32, 32, 3, 1, 1),  # a separable network's 1 x 1 and stem
    (1, 6, 32, 5, 0, 1), (6, 16, 14, 5, 0, 1), (3, 16, 32, 3, 1, 1), (16, 32, 16, 3, 1, 1),
    (1, 8, 28, 3, 0, 1), (3, 4, 16, 3, 1, 1), (8, 4, 24, 3, 1, 1), (16, 16, 32, 3, 1, 1),
    (32, 64, 8, 1, 0, 1), (2, 3, 11, 3, 1, 1), (16, 16, 16, 3, 1, 16), (16, 32, 16, 1, 0, 1),
    (3, 8, 112, 3, 1, 1), (16, 16, 56, 3, 1, 1),  # long rows, as a 224 x 224 network's first layers have
    (8192, 10), (400, 120),  # dense layers: (in_features, out_features)
]
BATCH = 64
CALLS = 2


def layer_of(shape) -> LayerSpec:
    if len(shape) == 2:
        # a spec's input is an image: the features as channels of a 1 x 1 one, flattened
        text = spec_toml({"name": "calibration", "input": [shape[0], 1, 1], "loss": "softmax_cross_entropy",
                          "layers": [{"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": shape[1]}]})
        return parse_spec(text).layers[1]
    c_in, c_out, size, kernel, padding, groups = shape
    conv = {"type": "conv2d", "name": "conv", "out_channels": c_out, "kernel": kernel, "padding": padding,
            "groups": groups, "bias": groups == 1}
    text = spec_toml({"name": "calibration", "input": [c_in, size, size], "loss": "softmax_cross_entropy",
                      "layers": [conv, {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]})
    return parse_spec(text).layers[0]


def describe(shape) -> str:
    if len(shape) == 2:
        return f"dense {shape[0]}->{shape[1]}"
    c_in, c_out, size, kernel, padding, groups = shape
    return f"conv {c_in}->{c_out} {size}x{size} k{kernel} p{padding} g{groups}"


def kernel_makers(layer: LayerSpec):
    """(role, a function lowering that kernel) for each sum kernel of the layer but the bias gradient."""
    formula, values = layer_formula(layer)
    yield "forward", lambda: forward_kernel(layer, formula, values)
    for role in ("input", "weight"):
        gradient = derive_gradient(formula, role)
        yield f"grad_{role}", lambda gradient=gradient: gradient_kernel(layer, gradient, values)


def chosen_candidates(nests: list) -> list:
    """The candidates worth timing: the lanes and scalar ones; of the columns ones at the widest lane
    loop the largest block at the largest and least unroll and the least block at the largest unroll,
    and at the other width the largest block and unroll."""
    keep = [nest for nest in nests if nest.schedule != "columns"]
    widths = sorted({nest.trips for nest in nests if nest.schedule == "columns"}, reverse=True)
    for position, width in enumerate(widths):
        columns = [nest for nest in nests if nest.schedule == "columns" and nest.trips == width]
        blocks, unrolls = sorted({n.updates for n in columns}), sorted({n.products for n in columns})
        wanted = {(blocks[-1], unrolls[-1])}
        if position == 0:
            wanted |= {(blocks[-1], unrolls[0]), (blocks[0], unrolls[-1]), (blocks[len(blocks) // 2], unrolls[-2:][0])}
        keep += [nest for nest in columns if (nest.updates, nest.products) in wanted]
    return keep


def compiled(kernel, directory: Path, name: str):
    """The kernel rendered alone into a module of its own, imported (numba compiles it on first call, or
    loads it from its cache when the file is unchanged)."""
    template = _environment().get_template("layer.py.jinja")
    path = directory / f"candidate_{name}.py"
    text = template.render(preamble="", kernels=[kernel], imports=import_lines(kernel.imports))
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"candidate_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # numba's cache finds a compiled kernel's module by name
    spec.loader.exec_module(module)
    return getattr(module, kernel.name)


def arrays(layer: LayerSpec, rng) -> dict:
    """Random arguments of the layer's kernels, by name."""
    def random(*shape):
        return rng.standard_normal(shape).astype(np.float32)
    inputs, outputs = layer.input_shapes[0], layer.output_shape
    if layer.kind == "dense":
        weight = (outputs[0], inputs[0])
    else:
        weight = (outputs[0], inputs[0] // layer.settings["groups"], *layer.settings["kernel"])
    return {"x": random(BATCH, *inputs), "grad_input": random(BATCH, *inputs), "weight": random(*weight),
            "grad_weight": random(*weight), "bias": random(outputs[0]), "out": random(BATCH, *outputs),
            "grad_output": random(BATCH, *outputs)}


def time_candidates(functions: list, inputs: list, repeat: int) -> list[list[float]]:
    """Seconds per call of each function in each repeat, interleaved: each repeat calls every one in turn."""
    for function, arguments in zip(functions, inputs):
        function(*arguments)  # compile
    samples: list[list[float]] = [[] for _ in functions]
    for _ in range(repeat):
        for position, (function, arguments) in enumerate(zip(functions, inputs)):
            start = time.perf_counter()
            for _ in range(CALLS):
                function(*arguments)
            samples[position].append((time.perf_counter() - start) / CALLS)
    return samples


def features(nest, remainder: float, constants: cost_model.Constants) -> np.ndarray:
    """The nest's terms in the model of symcnn/codegen/cost_model.py, one column per fitted constant
    (``constants``: the vector and register counts of the CPU class)."""
    row = np.zeros(len(CONSTANTS))
    iterations = cost_model.iterations(nest.trips, constants._replace(remainder=remainder))
    loops = nest.lane_loops
    if nest.schedule == "gather":
        row[9], row[10] = nest.multiply_adds, nest.stored
    elif nest.schedule == "accumulate":
        row[7], row[8], row[6] = loops, loops * iterations, nest.stored
    else:
        row[:7] = (loops, loops * nest.hoisted, loops * iterations * nest.updates * nest.products,
                   loops * iterations * nest.streamed, loops * iterations * nest.updates, nest.staged, nest.stored)
        row[11] = loops * iterations * cost_model.spilled(nest, constants)
    return row


#: The fitted fields of :class:`symcnn.codegen.cost_model.Constants`, in the order of :func:`features`.
CONSTANTS = ["lane_loop", "hoisted", "product", "streamed", "tile", "staged", "stored", "row_loop", "row_iteration",
             "gather_product", "gather_output", "spilled"]


def nonnegative_least_squares(matrix: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient >= 0: drop the most negative column and solve again."""
    active = [column for column in range(matrix.shape[1]) if matrix[:, column].any()]
    while True:
        solution = np.zeros(matrix.shape[1])
        solution[active] = np.linalg.lstsq(matrix[:, active], target, rcond=None)[0]
        if (solution[active] >= 0).all():
            return solution
        active.remove(min(active, key=lambda column: solution[column]))


def fit(records: list, constants: cost_model.Constants) -> tuple[float, np.ndarray, float]:
    """(remainder weight, constants, root-mean-square relative error) of least error."""
    best = None
    for remainder in np.arange(0.1, 2.01, 0.1):
        matrix = np.array([features(nest, remainder, constants) / least for _, _, nest, least, _ in records])
        solution = nonnegative_least_squares(matrix, np.ones(len(records)))
        error = math.sqrt(np.mean((matrix @ solution - 1) ** 2))
        if best is None or error < best[2]:
            best = (float(remainder), solution, error)
    return best


def load(path) -> list:
    """The timings saved in ``path`` (``--save``)."""
    return [(tuple(shape), role, cost_model.LoopNest(**nest), least, median)
            for shape, role, nest, least, median in json.loads(Path(path).read_text())]


def save(records: list, path) -> None:
    Path(path).write_text(json.dumps([(shape, role, nest._asdict(), least, median)
                                      for shape, role, nest, least, median in records], indent=1))


def measure(options) -> list:
    """Time the candidates of every shape: (shape, role, nest, least and median nanoseconds per image),
    saved after each kernel (``--save``); with ``--resume``, the kernels saved already are kept."""
    numba.set_num_threads(options.threads)
    rng = np.random.default_rng(0)
    records = load(options.save) if options.resume and Path(options.save).is_file() else []
    done = {(shape, role) for shape, role, *_ in records}
    print(f"schedule candidates, batch {BATCH}, {options.threads} thread(s), {options.repeat} interleaved repeats of "
          f"{CALLS} calls; microseconds per image: the least repeat (fitted: on a shared machine other jobs only add "
          f"time), the median, and the model's estimate with the constants of the code")
    directory = Path(options.work or tempfile.mkdtemp(prefix="symcnn-calibration-"))
    constants = this_cpu()[0]
    directory.mkdir(parents=True, exist_ok=True)
    for shape in [SHAPES[index] for index in options.shapes] if options.shapes else SHAPES:
        layer = layer_of(shape)
        data = arrays(layer, rng)
        for role, make in kernel_makers(layer):
            if (tuple(shape), role) in done or (options.roles and role not in options.roles):
                continue
            with cost_model.recorded() as choices:
                make()
            if not choices:
                continue
            nests = choices[0] if options.every_candidate else chosen_candidates(choices[0])
            functions, inputs = [], []
            for nest in nests:
                with cost_model.restricted(lambda candidate, nest=nest: candidate == nest):
                    kernel = make()
                functions.append(compiled(kernel, directory, f"{'_'.join(map(str, shape))}_{role}_{len(functions)}"))
                inputs.append([data[name] for name in kernel.arguments])
            samples = time_candidates(functions, inputs, options.repeat)
            print(f"\n{describe(shape)}, {role}:")
            for nest, times in sorted(zip(nests, samples), key=lambda item: min(item[1])):
                least, median = (value / BATCH * 1e9 for value in (min(times), statistics.median(times)))
                records.append((shape, role, nest, least, median))
                print(f"  {nest.schedule:10s} {nest.detail:34s} least {least / 1000:8.2f} us, median "
                      f"{median / 1000:8.2f} (model {cost_model.estimate(nest, constants) / 1000:8.2f})", flush=True)
            if options.save:
                save(records, options.save)
    return records


@functools.cache
def candidates(shape: tuple) -> dict[str, tuple]:
    """Every candidate the generator chooses among for each sum kernel of the layer ``shape``, by role (none
    for a kernel without a choice)."""
    found = {}
    for role, make in kernel_makers(layer_of(shape)):
        with cost_model.recorded() as choices:
            make()
        found[role] = tuple(choices[0]) if choices else ()
    return found


def offered(records: list) -> list:
    """The timings of candidates the generator still offers (a timing saved by an older generator may not)."""
    return [record for record in records if record[2] in candidates(tuple(record[0])).get(record[1], ())]


SCALAR = ("accumulate", "gather")


def decided(records: list, constants: cost_model.Constants) -> list:
    """The records the model decides among: of each kernel's, those in the schedules chosen among first
    (``constants.first``) where it has any; a kernel left with one candidate needs no estimate."""
    kept = []
    for key in dict.fromkeys(record[:2] for record in records):
        group = [record for record in records if record[:2] == key]
        group = [record for record in group if record[2].schedule in constants.first] or group
        kept += group if len(group) > 1 else []
    return kept


def report_fit(records: list, constants: cost_model.Constants, width: str) -> None:
    """Fit ``constants``' CPU class (``width``) to ``records`` and print the fit and each kernel's choices."""
    every = offered(records)
    with_lanes = {record[:2] for record in every if record[2].schedule == "lanes"}
    fastest = sum(min(group)[1] == "lanes" for group in _by_kernel(every, with_lanes))
    print(f"{width} vectors; lanes fastest where it fits: {fastest} of {len(with_lanes)} kernels")
    records = decided(every, constants)
    remainder, fitted_constants, error = fit(records, constants)
    print(f"\nfit over {len(records)} timings: remainder = {remainder:.1f}, relative error (rms) {error:.2f}")
    for name, value in zip(CONSTANTS, fitted_constants):
        print(f"  {name} = {value:.3g}")
    print("\nper kernel: the fastest candidate measured; the one the fitted model picks, the one the constants "
          "of the code pick (among the schedules chosen first, where the kernel has one), and the scalar form "
          "(their measured times over the fastest):")
    fitted = {id(record): features(record[2], remainder, constants) @ fitted_constants for record in records}
    agree, coded_agree, losses = 0, 0, []
    kernels = list(dict.fromkeys((record[0], record[1]) for record in records))
    for key in kernels:
        group = [record for record in records if (record[0], record[1]) == key]
        scalar = [record for record in every if record[:2] == key and record[2].schedule in SCALAR]
        fastest = min(group + scalar, key=lambda record: record[3])
        picked = min(group, key=lambda record: fitted[id(record)])
        coded = min(group, key=lambda record: cost_model.estimate(record[2], constants))
        agree, coded_agree = agree + (picked is fastest), coded_agree + (coded is fastest)
        losses.append(coded[3] / fastest[3])
        print(f"  {describe(key[0]):26s} {key[1]:12s} fastest {fastest[2].schedule} {fastest[2].detail} "
              f"{fastest[3] / 1000:.2f} us; fitted: {picked[2].schedule} {picked[2].detail} "
              f"({picked[3] / fastest[3]:.2f}x); code: {coded[2].schedule} {coded[2].detail} "
              f"({coded[3] / fastest[3]:.2f}x)" + "".join(f"; {record[2].schedule} {record[3] / fastest[3]:.2f}x"
                                                          for record in scalar))
    print(f"the fitted model picks the fastest in {agree} of {len(kernels)} kernels; the code's constants in "
          f"{coded_agree}, their picks {statistics.geometric_mean(losses):.3f}x the fastest (geometric mean), "
          f"{max(losses):.2f}x at worst")


def _by_kernel(records: list, kernels) -> list[list[tuple[float, str]]]:
    """(least time, schedule) of each candidate, per kernel of ``kernels``."""
    return [[(record[3], record[2].schedule) for record in records if record[:2] == key] for key in kernels]


def this_cpu() -> tuple[cost_model.Constants, str]:
    """The constants of this CPU's class, and its name: by its vectors (the variant its generated kernels
    run) and, with 512-bit ones, by the width LLVM's tuning for it gives lane loops (256 bits but on AMD's)."""
    if not has_wide_vectors():
        return cost_model.NARROW, "256-bit"
    if llvmlite.binding.get_host_cpu_name().startswith("znver"):
        return cost_model.WIDE, "512-bit"
    return cost_model.WIDE_256_LOOPS, "512-bit (256-bit lane loops)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shapes", type=int, nargs="*", help="indices into SHAPES (default: all)")
    parser.add_argument("--work", help="where the candidates are compiled (kept: a second run reuses numba's cache)")
    parser.add_argument("--save", help="write the timings to this JSON file")
    parser.add_argument("--resume", action="store_true", help="keep the kernels timed in --save already")
    parser.add_argument("--load", help="fit the timings of this JSON file instead of timing")
    parser.add_argument("--roles", nargs="*", choices=("forward", "grad_input", "grad_weight"),
                        help="time only these kernels of each shape (default: all three)")
    parser.add_argument("--every-candidate", action="store_true",
                        help="time every candidate the generator chooses among, not a selection of the columns ones")
    options = parser.parse_args()
    report_fit(load(options.load) if options.load else measure(options), *this_cpu())


if __name__ == "__main__":
    sys.exit(main())
