"""The generated kernels and PyTorch with a core taken by another process, and two training runs at once.

Reproduces the figures of docs/performance.md, "Under load". Two experiments:

``passes``: forward pass (batch 64), train step (batch 64) and batch-1 train step of a spec, on the
machine as it is ("quiet") and with a busy loop running beside them ("busy": ``yes > /dev/null``,
or a Python loop with ``--load python``; ``--pin`` pins it to the last CPU). Three implementations,
each in a process of its own (so that no OpenMP runtime is shared): symcnn as it is
(``adaptive``: the thread count chosen from the free CPUs, symcnn.runtime.threads), symcnn on a
fixed thread count (``fixed``: ``SYMCNN_ADAPTIVE_THREADS=0``, the behaviour before), and PyTorch.
Every repeat runs every condition and implementation in turn (interleaved), and the report gives
medians, the slow-down busy/quiet and the other runnable tasks each process saw (the machine's
load besides its own threads: on a shared machine "quiet" is not idle, so this says how quiet).

``train``: ``symcnn train SPEC`` twice one after the other and twice at once, wall time, with the
thread count adaptive and fixed, interleaved.

``kernels``: each kernel of a train step, the fastest of ``--calls`` calls on 1 and on 2 threads
(alternating). The fastest call is one that no other task interrupted, so on a busy machine this
estimates what an idle one would show: what a second thread gains (the slow-down to expect when a
core is taken and a pass runs on one thread), and whether small kernels would be faster on one.

Usage (from the repository root)::

    python docs/under_load.py passes --spec seed004 --threads 2 --repeat 5
    python docs/under_load.py train --spec digits --repeat 3
    python docs/under_load.py kernels --spec seed004 --batch 64 --calls 80
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPLEMENTATIONS = ("adaptive", "fixed", "pytorch")
MEASURES = ("forward", "train_step", "train_step_batch1")


def _environment(implementation: str) -> dict:
    environment = dict(os.environ, PYTHONPATH=str(ROOT))
    environment["SYMCNN_ADAPTIVE_THREADS"] = "0" if implementation == "fixed" else "1"
    return environment


@contextmanager
def busy_loop(kind: str, pin: bool):
    """A process that keeps one CPU busy for the duration of the block (or nothing, ``kind`` "none")."""
    if kind == "none":
        yield
        return
    if kind == "yes" and shutil.which("yes"):
        command = ["yes"]
    else:
        command = [sys.executable, "-c", "while True: pass"]
    last_cpu = max(os.sched_getaffinity(0))
    loop = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                            preexec_fn=(lambda: os.sched_setaffinity(0, {last_cpu})) if pin else None)
    try:
        time.sleep(0.5)  # running before the measurement starts
        yield
    finally:
        loop.kill()
        loop.wait()


def worker(implementation: str, spec_name: str, threads: int, timings: int) -> dict:
    """Seconds per call (median of ``timings``, each after a rest and a mean of back-to-back calls, as
    ``symcnn bench`` times) of one implementation in this process, and the load it saw."""
    import numba
    import numpy as np

    from symcnn.bench.bench import median_seconds, torch_model, torch_passes
    from symcnn.runtime.network import Network
    from symcnn.runtime.threads import read_sample

    if implementation == "pytorch":
        # torch imported before numba's threads start: the other way round, numba's OpenMP layer had turned nested
        # regions on in the runtime torch then shares, and PyTorch's passes ran 4-7x slower (suite-lenet's forward
        # 12-14 ms against 1.8-3.2, a Zen 4, session 51). No symcnn pass runs in this worker to turn it off again
        # (symcnn.runtime.threads.start_threads).
        import torch

        torch.set_num_threads(threads)
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    net = Network.from_spec(spec_name, seed=0)
    if implementation == "pytorch":
        forward, step = torch_passes(torch_model(net.spec, {name: value.copy() for name, value in net.params.items()}))
    else:
        def forward(x):
            return net.forward(x, training=False)

        def step(x, y):
            return net.train_step(x, y, lr=1e-4)

    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, *net.spec.input_shape)).astype(np.float32)
    labels = rng.integers(0, net.spec.classes, 64).astype(np.int64)
    x1, labels1 = np.ascontiguousarray(x[:1]), np.ascontiguousarray(labels[:1])
    for _ in range(2):  # compile or load numba's cache, warm the allocator
        forward(x), step(x, labels), step(x1, labels1)
    others, seconds = [], {}
    for measure, call, arguments in (("forward", forward, (x,)), ("train_step", step, (x, labels)),
                                     ("train_step_batch1", step, (x1, labels1))):
        sample = read_sample()
        seconds[measure] = median_seconds(call, *arguments, repeat=timings)
        if sample.runnable is not None:
            others.append(sample.runnable - sample.own_running)
    return {"seconds": seconds, "other_runnable": statistics.median(others) if others else None}


def _run_worker(implementation: str, arguments) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "worker", implementation, "--spec", arguments.spec,
               "--threads", str(arguments.threads), "--timings", str(arguments.timings)]
    result = subprocess.run(command, cwd=ROOT, env=_environment(implementation), capture_output=True, text=True,
                            timeout=3600)
    if result.returncode != 0:
        raise SystemExit(f"worker {implementation} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def passes(arguments) -> dict:
    conditions = ("quiet", "busy")
    runs = {condition: {name: [] for name in IMPLEMENTATIONS} for condition in conditions}
    for repeat in range(arguments.repeat):
        order = conditions if repeat % 2 == 0 else conditions[::-1]  # neither always first
        for condition in order:
            with busy_loop(arguments.load if condition == "busy" else "none", arguments.pin):
                for name in IMPLEMENTATIONS:
                    runs[condition][name].append(_run_worker(name, arguments))
        print(f"repeat {repeat + 1} of {arguments.repeat} done", file=sys.stderr, flush=True)
    return runs


def _median(runs: list, measure: str) -> float:
    return statistics.median(run["seconds"][measure] for run in runs)


def report_passes(runs: dict, arguments) -> str:
    lines = [f"{arguments.spec}, {arguments.threads} threads, median of {arguments.repeat} interleaved repeats; "
             f"busy: a `{arguments.load}` loop{' pinned to the last CPU' if arguments.pin else ''}",
             f"{'':10} {'':5}  {'forward ms':>11} {'train ms':>9} {'batch-1 ms':>11}  other runnable tasks"]
    for name in IMPLEMENTATIONS:
        for condition in ("quiet", "busy"):
            others = [run["other_runnable"] for run in runs[condition][name] if run["other_runnable"] is not None]
            cells = " ".join(f"{1000 * _median(runs[condition][name], measure):>{width}.2f}"
                             for measure, width in zip(MEASURES, (11, 9, 11)))
            seen = f"{statistics.median(others):.1f}" if others else "?"
            lines.append(f"{name:10} {condition:5}  {cells}  {seen}")
        ratios = " ".join(f"{_median(runs['busy'][name], m) / _median(runs['quiet'][name], m):>{w}.1f}x"
                          for m, w in zip(MEASURES, (10, 8, 10)))
        lines.append(f"{name:10} {'slow':5}  {ratios}  (busy / quiet)")
    for condition in ("quiet", "busy"):
        ratios = " ".join(f"{_median(runs[condition]['pytorch'], m) / _median(runs[condition]['adaptive'], m):>{w}.1f}x"
                          for m, w in zip(MEASURES, (10, 8, 10)))
        lines.append(f"{'vs pytorch':10} {condition:5}  {ratios}  (PyTorch's time / adaptive symcnn's)")
    return "\n".join(lines)


def _train_command(spec: str) -> list[str]:
    return [sys.executable, "-m", "symcnn", "train", spec, "--no-progress", "--json"]


def _wall(processes: int, at_once: bool, environment: dict, spec: str) -> float:
    """Seconds from the first start to the last end of ``processes`` training runs."""
    start = time.perf_counter()
    if at_once:
        running = [subprocess.Popen(_train_command(spec), cwd=ROOT, env=environment, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True) for _ in range(processes)]
        for process in running:
            _, error = process.communicate(timeout=3600)
            if process.returncode != 0:
                raise SystemExit(f"symcnn train failed:\n{error[-3000:]}")
    else:
        for _ in range(processes):
            subprocess.run(_train_command(spec), cwd=ROOT, env=environment, check=True, capture_output=True,
                           timeout=3600)
    return time.perf_counter() - start


def train(arguments) -> dict:
    results = {name: {"one": [], "two one after the other": [], "two at once": []} for name in ("adaptive", "fixed")}
    _wall(1, False, _environment("adaptive"), arguments.spec)  # numba's cache, the data: ready before timing
    for repeat in range(arguments.repeat):
        for name in ("adaptive", "fixed") if repeat % 2 == 0 else ("fixed", "adaptive"):
            environment = _environment(name)
            results[name]["one"].append(_wall(1, False, environment, arguments.spec))
            results[name]["two one after the other"].append(_wall(2, False, environment, arguments.spec))
            results[name]["two at once"].append(_wall(2, True, environment, arguments.spec))
        print(f"repeat {repeat + 1} of {arguments.repeat} done", file=sys.stderr, flush=True)
    return results


def report_train(results: dict, arguments) -> str:
    lines = [f"symcnn train {arguments.spec}: wall seconds (whole processes, start-up included), "
             f"median of {arguments.repeat} interleaved repeats"]
    for name, runs in results.items():
        cells = ", ".join(f"{what} {statistics.median(seconds):.1f} s" for what, seconds in runs.items())
        lines.append(f"  {name:8} {cells}")
    return "\n".join(lines)


def kernels(arguments) -> str:
    """The fastest of ``arguments.calls`` calls of each kernel of a train step on 1 and on 2 threads."""
    os.environ["SYMCNN_ADAPTIVE_THREADS"] = "0"  # this process sets the count itself
    import numba
    import numpy as np

    from symcnn.runtime.network import Network

    net = Network.from_spec(arguments.spec, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((arguments.batch, *net.spec.input_shape)).astype(np.float32)
    labels = rng.integers(0, net.spec.classes, arguments.batch)
    calls, original = [], net._call

    def record(kernel_name, arrays):  # each kernel's arguments in one train step, copied
        result = original(kernel_name, arrays)
        if kernel_name not in net.reshapes:
            calls.append((kernel_name, [np.copy(arrays[name]) for name in net.kernels.ARGUMENTS[kernel_name]]))
        return result

    net._call = record
    net.train_step(x, labels, lr=1e-4)
    net._call = original
    fastest = {}
    for _ in range(arguments.calls):
        for threads in (1, 2):
            numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
            for kernel_name, array_arguments in calls:
                start = time.perf_counter()
                net.kernel(kernel_name)(*array_arguments)
                seconds = time.perf_counter() - start
                fastest[kernel_name, threads] = min(fastest.get((kernel_name, threads), seconds), seconds)
    lines = [f"{arguments.spec}, batch {arguments.batch}: each kernel's fastest of {arguments.calls} calls, µs"]
    for kernel_name, _ in calls:
        one, two = fastest[kernel_name, 1] * 1e6, fastest[kernel_name, 2] * 1e6
        lines.append(f"  {kernel_name:28} 1 thread {one:9.1f}  2 threads {two:9.1f}  ratio {one / two:5.2f}")
    forward = [name for name, _ in calls if name.endswith("_forward") and not name.startswith("loss")]
    for what, names in (("train step", [name for name, _ in calls]), ("forward pass", forward)):
        one, two = (sum(fastest[name, threads] for name in names) * 1e6 for threads in (1, 2))
        best = sum(min(fastest[name, 1], fastest[name, 2]) for name in names) * 1e6
        lines.append(f"{what:12}: 1 thread {one:.0f}, 2 threads {two:.0f} ({one / two:.2f}x), "
                     f"each kernel on its faster count {best:.0f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("passes", "worker"):
        command = commands.add_parser(name)
        if name == "worker":
            command.add_argument("implementation", choices=IMPLEMENTATIONS)
        command.add_argument("--spec", default="seed004")
        command.add_argument("--threads", type=int, default=2)
        command.add_argument("--repeat", type=int, default=5)
        command.add_argument("--timings", type=int, default=3, help="timings per measure in each worker")
        command.add_argument("--load", choices=("yes", "python"), default="yes")
        command.add_argument("--pin", action="store_true", help="pin the busy loop to the last CPU")
        command.add_argument("--json", type=Path, help="also write the raw results here")
    command = commands.add_parser("kernels")
    command.add_argument("--spec", default="seed004")
    command.add_argument("--batch", type=int, default=64)
    command.add_argument("--calls", type=int, default=80)
    command = commands.add_parser("train")
    command.add_argument("--spec", default="digits")
    command.add_argument("--repeat", type=int, default=3)
    command.add_argument("--json", type=Path, help="also write the raw results here")
    arguments = parser.parse_args()
    if arguments.command == "worker":
        print(json.dumps(worker(arguments.implementation, arguments.spec, arguments.threads, arguments.timings)))
        return
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start", file=sys.stderr)
    if arguments.command == "kernels":
        print(kernels(arguments))
        return
    if arguments.command == "passes":
        results = passes(arguments)
        print(report_passes(results, arguments))
    else:
        results = train(arguments)
        print(report_train(results, arguments))
    print(f"load average {os.getloadavg()[0]:.2f} at the end", file=sys.stderr)
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
