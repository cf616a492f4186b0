"""How well the wide variant's choices suit each CPU class it runs on: over each calibration's timings,
the candidate each kernel gets when chosen by one class's constants alone and by both wide classes
(:data:`symcnn.codegen.cost_model.WIDE_CLASSES`, as generation chooses), against the fastest timed.

Each choice is made as generation makes it, among every candidate the generator offers the kernel (not only
the timed ones, a selection unless ``schedule_costs.py --every-candidate`` timed them all). A pick that was
not timed has no ratio: it is counted apart ("untimed"), and the means are over the timed picks.

A record for docs/performance.md, not part of the package. Usage, from the repository root:
    PYTHONPATH=. python docs/bench/wide_variant_picks.py
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import schedule_costs  # noqa: E402  (a script beside this one, not a package)

from symcnn.codegen import cost_model  # noqa: E402

TIMINGS = {"schedule_costs.json": "AMD EPYC Zen 4 (WIDE's)",
           "schedule_costs_rocketlake.json": "Intel Xeon (WIDE_256_LOOPS')",
           "schedule_costs_znver4_llvm22.json": "AMD EPYC Zen 4, numba 0.68 (LLVM 22)",
           "schedule_costs_znver4_llvm22_forward_all.json": "the same, every candidate of the forward passes",
           "schedule_costs_znver4_llvm22_gradients_all.json": "the same, every candidate of the gradients"}
CHOOSERS = {"WIDE alone": (cost_model.WIDE,), "WIDE_256_LOOPS alone": (cost_model.WIDE_256_LOOPS,),
            "both (the wide variant)": cost_model.WIDE_CLASSES}


def main() -> None:
    for name, cpu in TIMINGS.items():
        every = schedule_costs.offered(schedule_costs.load(Path(__file__).resolve().parent / name))
        kernels = [[record for record in every if record[:2] == key] for key in dict.fromkeys(r[:2] for r in every)]
        print(f"{name}, timed on {cpu}: {len(kernels)} kernels")
        for label, classes in CHOOSERS.items():
            ratios, untimed = [], 0
            for group in kernels:
                times = {record[2]: record[3] for record in group}
                candidates = schedule_costs.candidates(tuple(group[0][0]))[group[0][1]] or tuple(times)
                picked = times.get(cost_model.choose(candidates, lambda nest: nest, classes))
                if picked is None:
                    untimed += 1
                else:
                    ratios.append(picked / min(times.values()))
            print(f"  chosen by {label:24s} the fastest in {sum(ratio == 1 for ratio in ratios):2d}, picks "
                  f"{statistics.geometric_mean(ratios):.3f}x the fastest (geometric mean), {max(ratios):.2f}x at "
                  f"worst; {untimed} untimed")


if __name__ == "__main__":
    main()
