"""Constants that pick well: refine a cost model fit (``schedule_costs.py``) by how good its choices are.

The least-squares fit of ``schedule_costs.py`` minimizes the estimates' relative error over every timed
candidate, slow ones included; what matters is which candidate each kernel gets. On AVX2 its constants
picked the fastest candidate in 25 of the 39 kernels with a choice, their picks 1.086x the fastest
(geometric mean) and 2.29x at worst (a 1 x 1 weight gradient given the columns schedule). This script
starts from that fit and from the constants in the code, and searches (a seeded random walk over the
constants, each step scaling a few of them) for the constants of least loss, the mean of log(picked
time / fastest time) over the kernels, then the worst ratio. Then, to tell a fit from a memory of the
timings, it does the same once per layer shape with that shape's timings held out (from the
least-squares fit alone) and scores the held-out picks. The constants of the CPU class it runs on are
printed to be copied into ``symcnn/codegen/cost_model.py`` (generation never times anything).

Usage, from the repository root (timings saved by ``schedule_costs.py --save``):
    PYTHONPATH=. python docs/bench/schedule_picks.py --load docs/bench/schedule_costs_avx2.json
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import schedule_costs  # noqa: E402  (a script beside this one, not a package)

STEPS = 3000


def kernels_of(records: list, fastest: dict) -> list[tuple[list, float]]:
    """The records grouped by kernel (layer shape and role), in their order, each with the kernel's
    fastest time in ``fastest`` (of every candidate timed: the scalar form's included, which a CPU class
    that chooses among its vector schedules first does not pick where one fits)."""
    keys = list(dict.fromkeys(record[:2] for record in records))
    return [([record for record in records if record[:2] == key], fastest[key]) for key in keys]


@functools.cache
def _features(nest, remainder: float, cpu) -> np.ndarray:
    return schedule_costs.features(nest, remainder, cpu)


def pick_ratios(kernels: list[tuple[list, float]], constants: np.ndarray, remainder: float, cpu) -> list[float]:
    """For each kernel, the measured time of the candidate ``constants`` pick over the fastest candidate's."""
    ratios = []
    for candidates, fastest in kernels:
        estimates = np.array([_features(record[2], remainder, cpu) for record in candidates]) @ constants
        ratios.append(candidates[int(np.argmin(estimates))][3] / fastest)
    return ratios


def loss(kernels: list[tuple[list, float]], constants: np.ndarray, remainder: float, cpu) -> tuple[float, float]:
    ratios = pick_ratios(kernels, constants, remainder, cpu)
    return float(np.mean(np.log(ratios))), max(ratios)


def search(kernels: list[tuple[list, float]], constants: np.ndarray, remainder: float, cpu, seed: int = 0):
    """(constants, remainder) of least :func:`loss`, by a random walk from ``constants``: each step scales
    about a third of them by a factor around 1 (a zero one may become small), or moves the remainder weight."""
    rng = np.random.default_rng(seed)
    best = loss(kernels, constants, remainder, cpu)
    for _ in range(STEPS):
        scaled = constants * np.exp(rng.normal(0, 0.3, len(constants)) * (rng.random(len(constants)) < 0.3))
        zero = constants == 0
        scaled[zero] = np.where(rng.random(zero.sum()) < 0.1, rng.random(zero.sum()) * 0.3, 0)
        moved = remainder if rng.random() < 0.8 else round(float(np.clip(remainder + rng.normal(0, 0.2), 0.1, 2)), 1)
        candidate = loss(kernels, scaled, moved, cpu)
        if candidate < best:
            best, constants, remainder = candidate, scaled, moved
    return constants, remainder


def best_search(records: list, fastest: dict, cpu, from_code: bool = True) -> tuple[np.ndarray, float]:
    """:func:`search` from the least-squares fit of ``records`` and (``from_code``) from ``cpu``'s constants
    in the code, an earlier fit: the better of the two. A shape held out starts from the fit alone: the
    code's constants may have been searched with its timings."""
    kernels = kernels_of(records, fastest)
    fit_remainder, fitted, _ = schedule_costs.fit(records, cpu)
    coded = np.array([getattr(cpu, name) for name in schedule_costs.CONSTANTS])
    starts = [(fitted, fit_remainder)] + [(coded, cpu.remainder)] * from_code
    found = [search(kernels, start, remainder, cpu) for start, remainder in starts]
    return min(found, key=lambda pair: loss(kernels, *pair, cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", required=True, help="timings saved by schedule_costs.py --save")
    options = parser.parse_args()
    cpu, width = schedule_costs.this_cpu()
    every = schedule_costs.offered(schedule_costs.load(options.load))
    fastest = {key: min(record[3] for record in every if record[:2] == key)
               for key in dict.fromkeys(record[:2] for record in every)}
    records = schedule_costs.decided(every, cpu)
    kernels = kernels_of(records, fastest)
    fit_remainder, fitted, _ = schedule_costs.fit(records, cpu)
    coded = np.array([getattr(cpu, name) for name in schedule_costs.CONSTANTS])
    constants, remainder = best_search(records, fastest, cpu)
    print(f"{width} vectors, {len(kernels)} kernels, {len(records)} timings")
    for name, values, rest in (("least squares", fitted, fit_remainder), ("the code's", coded, cpu.remainder),
                               ("searched", constants, remainder)):
        ratios = pick_ratios(kernels, values, rest, cpu)
        print(f"  {name}: the fastest in {sum(ratio == 1 for ratio in ratios)} of {len(ratios)} kernels, picks "
              f"{statistics.geometric_mean(ratios):.3f}x the fastest (geometric mean), {max(ratios):.2f}x at worst")
    print(f"\nsearched constants: remainder = {remainder:.2f}")
    for name, value in zip(schedule_costs.CONSTANTS, constants):
        print(f"  {name} = {value:.3g}")
    held_out = []
    for shape in dict.fromkeys(record[0] for record in records):
        values, rest_remainder = best_search([record for record in records if record[0] != shape], fastest, cpu,
                                             False)
        ratios = pick_ratios(kernels_of([record for record in records if record[0] == shape], fastest), values,
                             rest_remainder, cpu)
        held_out += ratios
        print(f"  held out {schedule_costs.describe(shape):28s} " + ", ".join(f"{ratio:.2f}x" for ratio in ratios))
    print(f"held out, each shape searched without its timings: the fastest in {sum(r == 1 for r in held_out)} of "
          f"{len(held_out)} kernels, picks {statistics.geometric_mean(held_out):.3f}x the fastest (geometric "
          f"mean), {max(held_out):.2f}x at worst")


if __name__ == "__main__":
    sys.exit(main())
