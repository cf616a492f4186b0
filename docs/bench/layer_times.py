"""Per layer, the generated kernels' time in a train step beside PyTorch's for the same layer, in one process.

A record for docs/performance.md ("Document 003's layers"), not part of the package: ``symcnn bench
--profile`` times each generated kernel, but PyTorch only as a whole. Here both run the same spec's
train step (loss and gradients, no update; the first layer's input gradient skipped by both), in
training mode, interleaved: each repeat rests 0.3 s, times one generated step kernel by kernel
(``Network.profile``), rests again, then one PyTorch step with a timer around each module's forward
(forward hooks) and backward (full backward hooks; for a layer reading the network's input, which
needs no gradient, from its gradient's arrival to the end of the backward pass, since its hook fires
on arrival). A hook costs a few microseconds a call.

Per layer, the least of the repeats is printed (``--median``: the median): on a shared machine other
jobs only add time, and a parallel region that waits for a descheduled thread adds a whole time
slice, several milliseconds, to a kernel of microseconds. Forward and backward, then PyTorch's time
over the generated one (above 1: the generated kernels are faster).

Usage, from the repository root (needs torch):
    PYTHONPATH=. python docs/bench/layer_times.py docs/bench/document003.toml --batch 64 --threads 2 --repeat 15
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections import defaultdict

import numba
import numpy as np
import torch

from symcnn.bench.bench import SETTLE_SECONDS, torch_model
from symcnn.runtime.network import Network


def generated_step(net: Network, x, labels) -> dict:
    """Seconds per layer label and phase (``forward`` or ``backward``) of one generated train step."""
    net.profile = {}
    net.loss_and_grads(x, labels, input_gradient=False)
    profile, net.profile = net.profile, None
    labels_by_length = sorted((layer.label for layer in net.spec.layers), key=len, reverse=True)
    times: dict = defaultdict(float)
    for kernel, seconds in profile.items():
        label = next((label for label in labels_by_length if kernel.startswith(f"{label}_")), None)
        if label is None:  # the loss
            continue
        phase = "forward" if kernel[len(label) + 1:].startswith("forward") else "backward"
        times[label, phase] += seconds
    return times


def timed_torch_model(spec, params):
    """PyTorch's twin of the spec with a timer on each child's forward and backward; returns the model,
    the dict the timers add to and the dict of when each timer last started."""
    model = torch_model(spec, params)
    times: dict = defaultdict(float)
    started: dict = {}

    def clock(label, phase, start):
        def hook(*_):
            if start:
                started[label, phase] = time.perf_counter()
            else:
                times[label, phase] += time.perf_counter() - started[label, phase]
        return hook

    for label, module in model.named_children():
        module.register_forward_pre_hook(clock(label, "forward", True))
        module.register_forward_hook(clock(label, "forward", False))
        module.register_full_backward_pre_hook(clock(label, "backward", True))
        module.register_full_backward_hook(clock(label, "backward", False))
    return model, times, started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--median", action="store_true", help="the median of the repeats, not the least")
    args = parser.parse_args()
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    torch.set_num_threads(args.threads)
    net = Network.from_spec(args.spec, seed=0)
    params = {name: value.copy() for name, value in net.params.items()}
    model, torch_times, started = timed_torch_model(net.spec, params)
    first = [layer.label for layer in net.spec.layers if "input" in layer.inputs]  # no input gradient
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, *net.spec.input_shape)).astype(np.float32)
    labels = rng.integers(0, net.spec.classes, args.batch).astype(np.int64)
    tx, tlabels = torch.from_numpy(x), torch.from_numpy(labels)

    def torch_step():
        model.zero_grad(set_to_none=True)
        torch_times.clear()
        torch.nn.functional.cross_entropy(model(tx), tlabels).backward()
        end = time.perf_counter()
        for label in first:
            torch_times[label, "backward"] = end - started[label, "backward"]
        return dict(torch_times)

    warnings.filterwarnings("ignore", message="Full backward hook is firing")  # the first layers: handled above

    for _ in range(3):  # warm-up: numba's compilation, caches, PyTorch's allocator
        generated_step(net, x, labels), torch_step()
    runs = {"generated": [], "pytorch": []}
    for _ in range(args.repeat):
        time.sleep(SETTLE_SECONDS)
        runs["generated"].append(generated_step(net, x, labels))
        time.sleep(SETTLE_SECONDS)
        runs["pytorch"].append(torch_step())

    statistic = statistics.median if args.median else min

    def milliseconds(name, label, phase):
        return 1000 * statistic(run.get((label, phase), 0.0) for run in runs[name])

    print(f"{net.spec.name}: batch {args.batch}, {args.threads} threads, train step (loss and gradients), "
          f"{'median' if args.median else 'least'} of {args.repeat} interleaved repeats, ms")
    print(f"{'layer':<14} {'kind':<20} {'forward':>9} {'PyTorch':>9} {'backward':>9} {'PyTorch':>9} "
          f"{'PyTorch / generated':>20}")
    totals = defaultdict(float)
    for layer in net.spec.layers:
        row = {(name, phase): milliseconds(name, layer.label, phase)
               for name in runs for phase in ("forward", "backward")}
        for key, value in row.items():
            totals[key] += value
        generated = row["generated", "forward"] + row["generated", "backward"]
        pytorch = row["pytorch", "forward"] + row["pytorch", "backward"]
        ratio = f"{pytorch / generated:.2f}x" if generated > 0 else "(a view)"
        print(f"{layer.label:<14} {layer.kind:<20} {row['generated', 'forward']:>9.3f} "
              f"{row['pytorch', 'forward']:>9.3f} {row['generated', 'backward']:>9.3f} "
              f"{row['pytorch', 'backward']:>9.3f} {ratio:>20}")
    generated = totals["generated", "forward"] + totals["generated", "backward"]
    pytorch = totals["pytorch", "forward"] + totals["pytorch", "backward"]
    print(f"{'layers, total':<35} {totals['generated', 'forward']:>9.3f} {totals['pytorch', 'forward']:>9.3f} "
          f"{totals['generated', 'backward']:>9.3f} {totals['pytorch', 'backward']:>9.3f} "
          f"{pytorch / generated:>19.2f}x")


if __name__ == "__main__":
    main()
