"""Kernels compiled before the first pass: in worker processes, into numba's cache, then loaded here.

- A pass's kernels and argument types come from a dry run that leaves the network as it was.
- Workers compile into numba's on-disk cache and this process only loads (numba's own counts: cache
  hits, no misses), with results bit for bit those of kernels compiled in this process.
- ``SYMCNN_COMPILE_WORKERS=0`` compiles here; a worker that dies, cannot start or fails a kernel
  hands its kernels back to this process, with one line on stderr.
- A kernel another process holds the claim of is waited for, then loaded from the cache it wrote; two
  processes started at once compile each kernel once between them; a claim never let go is waited for
  at most ``WAIT_SECONDS``.

Each test compiles a tiny spec (a dense layer) from a fresh copy of its package: a copy has no numba
cache yet, and is imported under a name of its own.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numba
import numpy as np
import pytest

from symcnn.codegen.package import generate
from symcnn.runtime import compiling
from symcnn.runtime.claims import Claims, claim_directory, claim_name
from symcnn.runtime.compiling import ENVIRONMENT, plan, prepare, record_pass, worker_count
from symcnn.runtime.loader import import_package
from symcnn.runtime.network import Network
from symcnn.spec import load_spec

TINY = textwrap.dedent("""
    name = "compile_tiny"
    input = [1, 3, 3]

    [[layers]]
    type = "flatten"

    [[layers]]
    type = "dense"
    name = "fc"
    out_features = 4
""")

#: The kernels a pass of the tiny spec calls (the flatten's are views, never called).
TINY_KERNELS = {"fc_forward", "fc_grad_input", "fc_grad_weight", "fc_grad_bias", "loss_forward", "loss_grad_input"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tiny spec and its generated package (never imported itself: each test copies it)."""
    directory = tmp_path_factory.mktemp("tiny")
    path = directory / "compile_tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    generate([str(path)], directory / "out")
    return load_spec(path), directory / "out" / "compile_tiny"


def _fresh(tiny, directory: Path, dtype: str = "float32") -> Network:
    """A Network of the tiny spec on a copy of its package that nothing has compiled."""
    spec, package = tiny
    shutil.copytree(package, directory / "compile_tiny", ignore=shutil.ignore_patterns("__pycache__"))
    name = f"symcnn_test_compiling_{directory.name}_{abs(hash(str(directory)))}"
    return Network(spec, import_package(directory / "compile_tiny", name), dtype=dtype, seed=3)


def _kernels(net: Network) -> dict:
    return {name: net._functions[name] for name in TINY_KERNELS}


def _batch(dtype=np.float32):
    rng = np.random.default_rng(0)
    return rng.standard_normal((5, 1, 3, 3)).astype(dtype), np.array([0, 1, 2, 3, 1])


def test_workers_compile_into_numbas_cache_this_process_only_loads_and_the_results_are_the_same_bits(
        tiny, tmp_path, monkeypatch):
    monkeypatch.setenv(ENVIRONMENT, "2")
    by_workers = _fresh(tiny, tmp_path / "workers")
    summary = by_workers.compile()
    assert summary.workers == 2 and set(summary.compiled_by_workers) == TINY_KERNELS
    assert summary.compiled_here == () and summary.loaded == ()
    for name, kernel in _kernels(by_workers).items():
        assert kernel.signatures, name
        assert kernel.stats.cache_hits and not kernel.stats.cache_misses, name  # loaded, never compiled here
    x, labels = _batch()
    loss, grads = by_workers.loss_and_grads(x, labels)
    assert not any(kernel.stats.cache_misses for kernel in _kernels(by_workers).values())
    again = by_workers.compile()  # everything is loaded in this process already
    assert again.compiled_by_workers == again.compiled_here == again.loaded == ()

    monkeypatch.setenv(ENVIRONMENT, "0")  # no workers: the first pass compiles in this process
    here = _fresh(tiny, tmp_path / "here")
    same_loss, same_grads = here.loss_and_grads(x, labels)
    assert ("loss", True, True) in here._prepared
    assert all(kernel.stats.cache_misses for kernel in _kernels(here).values())  # compiled here
    assert same_loss == loss
    assert grads.keys() == same_grads.keys()
    assert all(np.array_equal(grads[name], same_grads[name]) for name in grads)


# Stand-ins for a worker: each reads the first message and one request, then ends as the test says.
_DIES = ("import os, sys; sys.stdin.readline(); sys.stdin.readline(); "
         "print('Killed (out of memory)', file=sys.stderr); sys.stderr.flush(); os._exit(137)")
_FAILS_EACH = textwrap.dedent("""
    import sys
    from symcnn.runtime.compile_worker import decode, encode
    sys.stdin.buffer.readline()
    for line in sys.stdin.buffer:
        request = decode(line)
        sys.stdout.buffer.write(encode({"kernel": request["kernel"], "seconds": 0.0, "error": "TypingError: no"}))
        sys.stdout.buffer.flush()
""")


@pytest.mark.parametrize("command, first", [
    ([sys.executable, "-c", _DIES], "exit status 137: Killed (out of memory)"),
    ([sys.executable, "-c", _FAILS_EACH], "TypingError: no"),
    (["/nonexistent/python3"], "could not start: "),
], ids=["killed", "fails-each-kernel", "cannot-start"])
def test_kernels_no_worker_compiled_are_compiled_here_after_one_line(tiny, tmp_path, monkeypatch, capsys,
                                                                     command, first):
    monkeypatch.setattr(compiling, "worker_command", lambda: command)
    net = _fresh(tiny, tmp_path / "fails")
    x, labels = _batch()
    jobs = [job for job in plan(net, record_pass(net, lambda shadow: shadow._loss_and_grads(
        x, net._targets(labels, 5), True, True))) if job.kernel in ("fc_grad_bias", "loss_forward")]  # two, cheap
    with net._progress.session(len(jobs)) as session:
        summary = compiling.compile_jobs(net.kernels, jobs, {job.kernel: net._functions[job.kernel] for job in jobs},
                                         session, workers=2)
    assert summary.compiled_by_workers == () and set(summary.compiled_here) == {"fc_grad_bias", "loss_forward"}
    assert net._functions["fc_grad_bias"].signatures and net._functions["loss_forward"].signatures
    failures = [line for line in capsys.readouterr().err.splitlines() if "compile workers failed" in line]
    assert len(failures) == 1
    assert f"(the first: {first}" in failures[0] and failures[0].endswith("compiling 2 kernel(s) in this process")


def test_the_dry_run_finds_each_mode_s_kernels_and_types_and_leaves_the_network_as_it_was():
    net = Network.from_spec("resnet-mini", seed=1)
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)
    targets = net._targets(np.array([1, 2, 3]), 3)
    before = {name: array.copy() for name, array in net.buffers.items()}
    training = record_pass(net, lambda shadow: shadow._loss_and_grads(x, targets, False, True))
    evaluation = record_pass(net, lambda shadow: shadow._forward(x, False))
    # the batch norms' training kernels storing the ReLU after them (TRAINING_FORWARD_FUSED), keeping their
    # statistics for the backward kernels that read them (codegen.saved_statistics)
    assert {"stem_bn_with_stem_relu_forward_saving", "b1_bn1_with_relu5_forward_saving", "stem_bn_backward_saved",
            "stem_forward", "loss_grad_input"} <= set(training)
    assert not {"stem_bn_forward", "stem_relu_forward", "stem_bn_with_stem_relu_forward"} & set(training)
    assert "stem_grad_input" not in training  # no input gradient asked for
    assert "stem_bn_eval_forward" in evaluation and "stem_bn_forward" not in evaluation
    (types,) = training["stem_forward"]  # (x, weight, out): no bias before a batch norm
    assert types == (numba.types.Array(numba.float32, 4, "C"),) * 3
    assert all(np.array_equal(before[name], net.buffers[name]) for name in before)  # running statistics untouched
    assert net.mask_state == {"seed": 1, "step": 0} and net._workspace == {} and net._called == {}
    jobs = plan(net, training)
    assert "b1_bn1_with_relu5_forward_saving" not in {job.kernel for job in jobs}  # an identical pair's: one job
    assert len({job.kernel for job in jobs}) == len(jobs)
    assert [job.cost for job in jobs] == sorted((job.cost for job in jobs), reverse=True)  # the costliest first


def test_a_dry_run_that_refuses_its_arguments_prepares_nothing():
    net = Network.from_spec("digits")

    def refuses(shadow):
        raise ValueError("x: refused")

    assert prepare(net, [refuses], net._progress.session) is None


def test_the_worker_count_follows_the_environment_and_refuses_what_is_not_a_count(monkeypatch):
    assert worker_count(4, environment="", free=lambda: 2) == 2
    assert worker_count(1, environment="", free=lambda: 2) == 0  # one kernel: no worker
    assert worker_count(4, environment="0") == worker_count(4, environment="1") == 0
    monkeypatch.setenv(ENVIRONMENT, "two")
    with pytest.raises(ValueError, match=f"^{ENVIRONMENT}: must be an integer >= 0"):
        worker_count(4)


# --- processes that compile one network at once (symcnn/runtime/claims.py) ------------------------


class _WatchedSession:
    """A progress session that records what it is told and says when a kernel waits for another process."""

    def __init__(self):
        self.waiting = threading.Event()
        self.told: list[tuple[str, str]] = []

    def started(self, kernel):
        self.told.append(("started", kernel))
        if kernel.endswith("(in another process)"):
            self.waiting.set()

    def finished(self, kernel):
        self.told.append(("finished", kernel))

    def stopped(self, kernel):
        self.told.append(("stopped", kernel))

    def note(self, message):
        self.told.append(("note", message))


def _compile_elsewhere(net: Network, job) -> None:
    """Compile ``job`` into numba's cache in another process (a compile worker, spoken to directly)."""
    from symcnn.runtime.compile_worker import decode, encode

    package = net.kernels
    first = encode({"directory": str(Path(package.__file__).parent), "package": package.__name__,
                    "modules": list(package.MODULES)})
    request = encode({"kernel": job.kernel, "module": job.module, "signatures": job.signatures})
    answer = subprocess.run(compiling.worker_command(), input=first + request, capture_output=True, check=True,
                            env=compiling._environment(), timeout=300).stdout
    assert decode(answer.splitlines()[0])["error"] is None


@pytest.mark.parametrize("workers", [0, 2], ids=["here", "workers"])
def test_a_kernel_another_process_is_compiling_is_left_for_last_then_loaded_from_its_cache(tiny, tmp_path, workers):
    net = _fresh(tiny, tmp_path / "claimed")
    x, labels = _batch()
    jobs = plan(net, record_pass(net, lambda shadow: shadow._loss_and_grads(x, net._targets(labels, 5), True, True)))
    dispatchers = {job.kernel: net._functions[job.kernel] for job in jobs}
    claimed = next(job for job in jobs if job.kernel == "fc_grad_weight")
    other = Claims()  # another process's claim, as far as the flock is concerned: a descriptor of its own
    key = claim_name(net._functions["fc_grad_weight"].py_func.__module__, claimed.kernel, claimed.signatures)
    assert other.take(key, claim_directory(dispatchers["fc_grad_weight"]))
    session, summaries = _WatchedSession(), []
    thread = threading.Thread(target=lambda: summaries.append(compiling.compile_jobs(net.kernels, jobs, dispatchers,
                                                                                     session, workers=workers)))
    thread.start()
    try:
        assert session.waiting.wait(timeout=120)  # the others are compiled; this one is waited for
        assert not dispatchers["fc_grad_weight"].signatures
        _compile_elsewhere(net, claimed)
    finally:
        other.release(key)
        thread.join(timeout=300)
    summary, = summaries
    assert summary.compiled_elsewhere == ("fc_grad_weight",) and summary.workers == workers
    compiled = summary.compiled_by_workers if workers else summary.compiled_here
    assert set(compiled) == TINY_KERNELS - {"fc_grad_weight"}
    stats = dispatchers["fc_grad_weight"].stats
    assert stats.cache_hits and not stats.cache_misses  # loaded, not compiled a second time
    assert session.told.index(("stopped", "fc_grad_weight (in another process)")) < session.told.index(
        ("finished", "fc_grad_weight"))
    loss, grads = net.loss_and_grads(x, labels)
    assert np.isfinite(loss) and set(grads) == {"fc.weight", "fc.bias", "input"}


_COMPILE_ONE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from symcnn.runtime.loader import import_package
    from symcnn.runtime.network import Network
    from symcnn.spec import load_spec
    spec, directory = load_spec(sys.argv[1]), Path(sys.argv[2])
    net = Network(spec, import_package(directory, "symcnn_test_compiling_at_once"), dtype="float64")
    summary = net.compile()._asdict()
    summary["numba_compiled"] = [name for name, kernel in net._functions.items()
                                 if name not in net.reshapes and kernel.stats.cache_misses]
    print(json.dumps(summary))
""")


def test_two_processes_started_at_once_compile_each_kernel_once(tiny, tmp_path):
    spec, package = tiny
    shutil.copytree(package, tmp_path / "compile_tiny", ignore=shutil.ignore_patterns("__pycache__"))
    environment = {**compiling._environment(), ENVIRONMENT: "0"}
    command = [sys.executable, "-c", _COMPILE_ONE, str(package.parent.parent / "compile_tiny.toml"),
               str(tmp_path / "compile_tiny")]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, env=environment) for _ in range(2)]
    summaries = [json.loads(process.communicate(timeout=300)[0]) for process in processes]
    assert all(process.returncode == 0 for process in processes)
    compiled = [set(summary["numba_compiled"]) for summary in summaries]  # numba's own count: cache misses
    assert not compiled[0] & compiled[1] and compiled[0] | compiled[1] == TINY_KERNELS  # each kernel once
    for summary, mine in zip(summaries, compiled):
        assert set(summary["compiled_here"]) == mine
        assert set(summary["compiled_elsewhere"]) | set(summary["loaded"]) == TINY_KERNELS - mine


def test_a_claim_never_let_go_is_waited_for_at_most_its_time_then_compiled_here(tiny, tmp_path, monkeypatch):
    """Another process stopped (not dead) while it held a kernel: this one compiles it after the wait."""
    monkeypatch.setenv(ENVIRONMENT, "0")
    monkeypatch.setattr("symcnn.runtime.claims.WAIT_SECONDS", 0.5)
    net = _fresh(tiny, tmp_path / "stopped")
    x, labels = _batch()
    jobs = [job for job in plan(net, record_pass(net, lambda shadow: shadow._loss_and_grads(
        x, net._targets(labels, 5), True, True))) if job.kernel in ("fc_grad_bias", "loss_forward")]
    dispatchers = {job.kernel: net._functions[job.kernel] for job in jobs}
    held = next(job for job in jobs if job.kernel == "loss_forward")
    other = Claims()
    key = claim_name(dispatchers["loss_forward"].py_func.__module__, held.kernel, held.signatures)
    assert other.take(key, claim_directory(dispatchers["loss_forward"]))
    try:
        summary = compiling.compile_jobs(net.kernels, jobs, dispatchers, _WatchedSession(), workers=0)
    finally:
        other.release(key)
    assert set(summary.compiled_here) == {"fc_grad_bias", "loss_forward"} and summary.compiled_elsewhere == ()
    assert dispatchers["loss_forward"].stats.cache_misses  # compiled here, after the wait
