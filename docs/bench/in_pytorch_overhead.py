"""What running the generated kernels inside PyTorch costs over the Network, split from PyTorch's own threads.

A record for docs/torch.md ("Speed"), not part of the package. ``symcnn bench`` reports the
``in-pytorch`` row's time over the ``generated`` one; on a machine that other jobs load, that ratio
mostly measures PyTorch's own operators in the train step (the loss and ``torch.optim.SGD``), whose
parallel regions wait for a descheduled thread, where the generated kernels run on the CPUs free now
(``symcnn.runtime.threads``). Here, interleaved in one process (each timing after a 0.3 s rest, the mean
of 5 back-to-back calls, as ``symcnn bench`` times):

- ``network``: ``Network.forward`` (evaluation mode) and ``Network.train_step``;
- ``module``: ``symcnn.torch.from_spec``'s forward (evaluation mode, no grad) and its train step with
  ``torch.optim.SGD`` (``zero_grad(set_to_none=True)``, cross-entropy, ``backward``, ``step``), PyTorch on
  ``--threads`` threads, as ``symcnn bench`` runs it;
- ``module, torch 1 thread``: the same with ``torch.set_num_threads(1)`` around each call (the generated
  kernels keep ``--threads``): what is left is the wrapping itself.

Each is shown as wall time (the median of the repeats) and as this process's CPU time (the least of the
repeats; with ``--threads 1`` it counts no spinning thread, so other jobs on the machine barely change
it), then over the Network's. Then the module's train step split into its parts (wall time, the median of
300 steps, each followed by the Network's own train step): the whole pass (the module's forward and
backward, symcnn's part) over the Network's step, apart from PyTorch's loss, ``zero_grad`` and SGD step.

Usage, from the repository root (needs torch):
    PYTHONPATH=. python docs/bench/in_pytorch_overhead.py seed004 --batch 64 --threads 2 --repeat 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numba
import numpy as np
import torch

from symcnn.bench.bench import CALLS_PER_TIMING, SETTLE_SECONDS, _inside_pytorch
from symcnn.runtime.network import Network


def timed(function, *arguments) -> tuple[float, float]:
    """Wall and CPU seconds per call, after a rest, over a few back-to-back calls."""
    time.sleep(SETTLE_SECONDS)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(CALLS_PER_TIMING):
        function(*arguments)
    return ((time.perf_counter() - wall) / CALLS_PER_TIMING, (time.process_time() - cpu) / CALLS_PER_TIMING)


def one_torch_thread(function):
    def call(*arguments):
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return function(*arguments)
        finally:
            torch.set_num_threads(before)
    return call


PARTS = ("zero_grad", "forward", "loss", "backward", "SGD step")


def step_split(spec: str, batch: int, steps: int = 300) -> dict:
    """The module's train step split into its parts, each step followed by the Network's own train step on
    the same batch: wall microseconds, the median over ``steps`` of each part, of the module's whole step
    and of the Network's step (on the threads set now)."""
    from symcnn.torch import from_spec

    model = from_spec(spec, seed=0)
    net = Network.from_spec(spec, seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    x_array = rng.standard_normal((batch, *model.spec.input_shape)).astype(np.float32)
    label_array = rng.integers(0, model.spec.classes, batch).astype(np.int64)
    x, labels = torch.from_numpy(x_array), torch.from_numpy(label_array)
    times: dict = {}
    for index in range(steps + 20):
        clock = [time.perf_counter()]
        optimizer.zero_grad(set_to_none=True)
        clock.append(time.perf_counter())
        logits = model(x)
        clock.append(time.perf_counter())
        loss = torch.nn.functional.cross_entropy(logits, labels)
        clock.append(time.perf_counter())
        loss.backward()
        clock.append(time.perf_counter())
        optimizer.step()
        clock.append(time.perf_counter())
        net.train_step(x_array, label_array, lr=1e-4)
        clock.append(time.perf_counter())
        if index >= 20:  # after a warm-up
            for name, start, end in zip((*PARTS, "Network step"), clock, clock[1:]):
                times.setdefault(name, []).append(end - start)
            times.setdefault("module step", []).append(clock[-2] - clock[0])
    return {name: 1e6 * statistics.median(seconds) for name, seconds in times.items()}


def print_split(spec: str, batch: int, threads: int) -> None:
    parts = step_split(spec, batch)
    network, module = parts["Network step"], parts["module step"]
    whole_pass = parts["forward"] + parts["backward"]
    pytorch_own = parts["zero_grad"] + parts["loss"] + parts["SGD step"]
    print(f"module train step at batch {batch}, {threads} threads, wall us (median of 300 steps, each followed by "
          "the Network's): " + ", ".join(f"{name} {parts[name]:,.0f}" for name in PARTS)
          + f"; the step {module:,.0f}, the Network's {network:,.0f} ({module / network - 1:+.0%}): "
          f"the whole pass (forward + backward) {whole_pass / network - 1:+.1%} over the Network's step, "
          f"PyTorch's loss, zero_grad and SGD step {pytorch_own / network:+.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=9)
    options = parser.parse_args()
    numba.set_num_threads(options.threads)
    torch.set_num_threads(options.threads)
    net = Network.from_spec(options.spec, seed=0)
    module_forward, module_step = _inside_pytorch(net)
    rows = {"network": (lambda x: net.forward(x, training=False), lambda x, y: net.train_step(x, y, lr=1e-4)),
            "module": (module_forward, module_step),
            "module, torch 1 thread": (one_torch_thread(module_forward), one_torch_thread(module_step))}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((options.batch, *net.spec.input_shape)).astype(np.float32)
    labels = rng.integers(0, net.spec.classes, options.batch).astype(np.int64)
    x1, labels1 = np.ascontiguousarray(x[:1]), np.ascontiguousarray(labels[:1])
    for forward, step in rows.values():  # warm-up: compiling, the module's output pool
        forward(x), step(x, labels), step(x1, labels1)
    times: dict = {(name, metric): [] for name in rows for metric in ("forward", "step", "batch-1 step")}
    loads = [os.getloadavg()[0]]
    for _ in range(options.repeat):
        for name, (forward, step) in rows.items():
            times[name, "forward"].append(timed(forward, x))
            times[name, "step"].append(timed(step, x, labels))
            times[name, "batch-1 step"].append(timed(step, x1, labels1))
        loads.append(os.getloadavg()[0])
    print(f"{options.spec}: batch {options.batch}, {options.threads} threads, {options.repeat} interleaved repeats, "
          f"load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores")
    print(f"{'':<24}{'forward':>20}{'train step':>20}{'batch-1 step':>20}   (wall median / CPU least, ms)")
    for name in rows:
        cells = []
        for metric in ("forward", "step", "batch-1 step"):
            wall = statistics.median(value[0] for value in times[name, metric])
            cpu = min(value[1] for value in times[name, metric])
            base_wall = statistics.median(value[0] for value in times["network", metric])
            base_cpu = min(value[1] for value in times["network", metric])
            cells.append(f"{1e3 * wall:.2f} / {1e3 * cpu:.2f}" if name == "network" else
                         f"{wall / base_wall - 1:+.0%} / {cpu / base_cpu - 1:+.0%}")
        print(f"{name:<24}" + "".join(f"{cell:>20}" for cell in cells))
    for batch in (options.batch, 1):
        print_split(options.spec, batch, options.threads)


if __name__ == "__main__":
    main()
