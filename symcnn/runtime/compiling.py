"""Compile a network's kernels before a pass calls them: in worker processes, into numba's cache.

numba compiles a kernel at its first call, in the calling process, one kernel at a time under a
global lock. From nothing, seed004's 17 kernels took 40-50 s (2 CPUs, 2026-12); the two
convolutions' weight gradients 60% of it (LLVM generating the machine code of their unrolled
loops, several times over as numba links the parallel loop's body into each wrapper). Loading a
kernel from numba's on-disk cache takes milliseconds.

So before a pass, :func:`prepare` finds the kernels the pass calls and the numba types of their
arguments: a dry run of the pass, the network's own code with a stand-in for each kernel that
records its arguments' types. Kernels whose signatures numba's cache holds are loaded. The others
are compiled in worker processes, the costliest first (the longest source), each into numba's
cache, on as many workers as there are free CPUs (:func:`symcnn.runtime.threads.free_cpus`); each
kernel is loaded here as soon as its worker is done. The kernels are the same either way (the
same source, compile options and LLVM options): a worker imports every kernel module of the
package, as the network does, before compiling.

The workers are ``python -m symcnn.runtime.compile_worker`` processes in a session of their own
(Ctrl-C on a terminal reaches this process, which decides), not multiprocessing's: its ``spawn``
and ``forkserver`` start methods import the program's ``__main__`` again in each worker (a script
without a main guard, or ``python -m symcnn``, would run again), and ``fork`` is unsafe with
numba's and OpenMP's threads. A worker that fails (killed, out of memory, an error) hands its
kernel back; the kernels no worker compiled are compiled here, after one line on stderr.

Processes that start one network at once (the ranks of a data-parallel run, a test session's workers)
share the work: each kernel is claimed before it is compiled, and one that another process holds is
loaded from the cache once that process is done (:mod:`symcnn.runtime.claims`).

``SYMCNN_COMPILE_WORKERS``: unset or empty, one worker per free CPU; ``0`` or ``1``, no workers
(every kernel compiled in this process, as numba alone would, with the same progress display);
``N``, up to N workers whatever the load.
"""

from __future__ import annotations

import copy
import inspect
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np

from symcnn.runtime.claims import Claims, claim_directory, claim_name
from symcnn.runtime.progress import Session
from symcnn.runtime.threads import free_cpus, read_sample

__all__ = ["ENVIRONMENT", "KernelJob", "CompileSummary", "worker_count", "record_pass", "plan", "is_cached",
           "prepare", "first_call", "compile_jobs", "worker_command"]

#: Unset or empty: a worker per free CPU; 0 or 1: compile in this process; N: up to N workers.
ENVIRONMENT = "SYMCNN_COMPILE_WORKERS"


def worker_command() -> list[str]:
    """How a worker is started (a test may start something else)."""
    return [sys.executable, "-m", "symcnn.runtime.compile_worker"]


class KernelJob(NamedTuple):
    """A kernel to compile or load: its function's name, its module in the package, the argument
    types of each signature (tuples of numba types), and its cost estimate (source characters)."""

    kernel: str
    module: str
    signatures: tuple
    cost: int


class CompileSummary(NamedTuple):
    """What :func:`prepare` (or :func:`compile_jobs`) did: kernels loaded from numba's cache, compiled by
    workers (then loaded), compiled here; the workers started; the seconds it took; kernels another
    process was compiling, loaded from the cache once it was done (:mod:`symcnn.runtime.claims`)."""

    loaded: tuple[str, ...] = ()
    compiled_by_workers: tuple[str, ...] = ()
    compiled_here: tuple[str, ...] = ()
    workers: int = 0
    seconds: float = 0.0
    compiled_elsewhere: tuple[str, ...] = ()


def worker_count(jobs: int, environment: Optional[str] = None, free: Optional[Callable[[], int]] = None) -> int:
    """Workers for ``jobs`` kernels to compile: 0 (compile here) unless two or more would run at once.

    >>> worker_count(5, environment="3"), worker_count(5, environment="1"), worker_count(1, environment="4")
    (3, 0, 0)
    >>> worker_count(9, environment="", free=lambda: 2), worker_count(9, environment="", free=lambda: 1)
    (2, 0)
    """
    value = (os.environ.get(ENVIRONMENT, "") if environment is None else environment).strip()
    if value:
        if not value.isdigit():
            raise ValueError(f"{ENVIRONMENT}: must be an integer >= 0 (0 or 1: no worker processes), got {value!r}")
        count = int(value)
    else:
        count = (free or _free_cpus)()
    count = min(count, jobs)
    return count if count >= 2 else 0


def _free_cpus() -> int:
    """Free CPUs, the larger of two looks 50 ms apart (a task seen once is not a load: threads.LoadWatch)."""
    first = free_cpus(read_sample())
    threading.Event().wait(0.05)
    return max(first, free_cpus(read_sample()))


# --- which kernels a pass calls, with which types --------------------------------------------------


class _Recorder:
    """Stands for a kernel in a dry run: records the numba types of each call's arguments."""

    signatures = ("dry run",)  # looks compiled: the dry run's first calls go straight to __call__

    def __init__(self, kernel: str, calls: dict):
        self.kernel, self.calls = kernel, calls

    def __call__(self, *arguments):
        import numba

        self.calls.setdefault(self.kernel, set()).add(tuple(numba.typeof(argument) for argument in arguments))
        return 0.0  # the loss kernel's value; nothing reads the outputs of a dry run


def record_pass(network, run: Callable) -> dict[str, set[tuple]]:
    """The kernels ``run(shadow)`` calls, by name, with their argument types: ``run`` is a pass of
    ``network``'s (``lambda net: net._forward(x, True)``), run on a shadow of it whose kernels only
    record, with its own buffers, masks and internal arrays (``network`` is left as it was)."""
    calls: dict[str, set[tuple]] = {}
    shadow = copy.copy(network)
    shadow._functions = {name: _Recorder(name, calls) for name in network._functions}
    shadow._buffers = {name: array.copy() for name, array in network._buffers.items()}  # running statistics
    shadow._mask_state = dict(network._mask_state)
    shadow._workspace, shadow._called, shadow.profile = {}, {}, None  # _called: never the real kernels
    shadow._buffer = lambda purpose, shape, dtype: np.zeros(shape, dtype=dtype)  # zeros: statistics of them are finite
    shadow._draw = lambda layer, mask, step: None  # the mask generator (its own numba kernel) is not a generated kernel
    run(shadow)
    return calls


# --- what numba has already ---------------------------------------------------------------------


def is_cached(dispatcher, signature: tuple) -> bool:
    """Whether numba's on-disk cache holds ``dispatcher``'s compiled ``signature`` (its index, read
    without loading the code; numba has no public call for it). False when unsure."""
    try:
        cache = dispatcher._cache
        key = cache._index_key(signature, dispatcher.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except Exception:  # noqa: BLE001 - another numba version, an unreadable index: compile it
        return False


def _has_disk_cache(dispatcher) -> bool:
    return hasattr(getattr(dispatcher, "_cache", None), "_cache_file")


def _source_size(function) -> int:
    """A kernel's compile-cost estimate: its source's length without the docstring. Rough: on seed004
    it ranks the two slowest first (the convolutions' weight gradients, 20 and 13 s of 50), not the
    rest in order (conv2's input gradient, third by length, takes 2 s)."""
    try:
        return len(inspect.getsource(function.py_func)) - len(function.py_func.__doc__ or "")
    except (OSError, TypeError, AttributeError):
        return 0


def plan(network, calls: dict[str, set[tuple]]) -> list[KernelJob]:
    """The kernels of ``calls`` with a signature this process has not compiled or loaded yet, costliest
    first (a layer identical to an earlier one shares its kernel: one job)."""
    jobs, seen = [], {}
    modules = tuple(network.kernels.MODULES)
    for name, signatures in calls.items():
        dispatcher = network._functions[name]
        missing = [signature for signature in signatures if signature not in dispatcher.overloads]
        if not missing:
            continue
        key = id(dispatcher)
        if key in seen:  # an alias: its signatures join the original's
            index = seen[key]
            merged = tuple(dict.fromkeys(jobs[index].signatures + tuple(missing)))
            jobs[index] = jobs[index]._replace(signatures=merged)
            continue
        function = dispatcher.py_func
        module = next((module for module in modules if function.__module__ == f"{network.kernels.__name__}.{module}"),
                      None)
        seen[key] = len(jobs)
        jobs.append(KernelJob(function.__name__, module, tuple(sorted(missing, key=str)), _source_size(dispatcher)))
    return sorted(jobs, key=lambda job: (-job.cost, job.kernel))


# --- compiling ----------------------------------------------------------------------------------


def prepare(network, runs: list[Callable], session_of) -> Optional[CompileSummary]:
    """Compile or load every kernel that the passes ``runs`` call (each as :func:`record_pass` takes
    it), before they run: ``session_of(total)`` opens a progress session (``CompileProgress.session``).
    None when a dry run refused its arguments (a ValueError: the pass itself will say so)."""
    calls: dict[str, set[tuple]] = {}
    for run in runs:
        try:
            recorded = record_pass(network, run)
        except ValueError:
            return None
        for name, signatures in recorded.items():
            calls.setdefault(name, set()).update(signatures)
    jobs = plan(network, calls)
    if not jobs:
        return CompileSummary()
    # a job names its function as its module defines it: ``conv1_forward_narrow`` where the module binds
    # ``conv1_forward`` to the variant its CPU suits (symcnn.codegen.widths)
    functions = {network._functions[name].py_func.__name__: network._functions[name] for name in calls}
    dispatchers = {job.kernel: functions[job.kernel] for job in jobs}
    with session_of(len(jobs)) as session:
        return compile_jobs(network.kernels, jobs, dispatchers, session)


def first_call(network, kernel: str, function, arguments: list):
    """The first call of a kernel that no :func:`prepare` compiled (a pass run directly, arguments of
    other types): numba compiles it here, with the network's progress display."""
    kernels = {id(function): function for name, function in network._functions.items()
               if name not in network.reshapes}.values()  # a shared kernel once; a reshape is never called
    with network._progress.session(len(kernels), ready=sum(1 for each in kernels if each.signatures)) as session:
        session.started(kernel)
        result = function(*arguments)
        session.finished(kernel)
    return result


def compile_jobs(package, jobs: list[KernelJob], dispatchers: dict, session: Session,
                 workers: Optional[int] = None) -> CompileSummary:
    """Load the ``jobs`` numba's cache holds; compile the others in ``workers`` processes (default:
    :func:`worker_count`), loading each here when its worker is done; compile here what no worker did.
    A kernel another process is compiling (it holds the kernel's claim) is left for last, then loaded
    from the cache that process wrote (or compiled here if it has not)."""
    started = time.perf_counter()
    cached = [job for job in jobs if _all_cached(job, dispatchers[job.kernel])]
    to_compile = [job for job in jobs if job not in cached]
    count = worker_count(len(to_compile)) if workers is None else workers
    location = getattr(package, "__file__", None)
    if count < 2 or location is None or not all(_has_disk_cache(dispatchers[job.kernel]) for job in to_compile):
        count = 0
    claims = _JobClaims(dispatchers)
    by_workers: list[str] = []
    left, elsewhere = to_compile, []
    try:
        if count:  # the cached ones are loaded while the workers compile
            by_workers, left, elsewhere = _compile_in_workers(package, to_compile, cached, dispatchers, session, count,
                                                              claims)
        else:
            for job in cached:
                _load_or_compile(job, dispatchers[job.kernel], session)
        here: list[KernelJob] = []
        for job in left:  # no worker compiled these: numba compiles them here
            if not claims.take_to_compile(job):
                elsewhere.append(job)
                continue
            _load_or_compile(job, dispatchers[job.kernel], session)
            claims.release(job)
            here.append(job)
        loaded_after_waiting = []
        for job in elsewhere:
            label = f"{job.kernel} (in another process)"
            session.started(label)
            claims.wait(job)  # once that process is done (or after WAIT_SECONDS: compiled here regardless)
            session.stopped(label)
            done = _all_cached(job, dispatchers[job.kernel])
            _load_or_compile(job, dispatchers[job.kernel], session)
            claims.release(job)
            (loaded_after_waiting if done else here).append(job)
    finally:
        claims.release_all()  # an error or Ctrl-C: no claim outlives this call
    return CompileSummary(tuple(job.kernel for job in cached), tuple(by_workers), tuple(job.kernel for job in here),
                          count, time.perf_counter() - started, tuple(job.kernel for job in loaded_after_waiting))


def _all_cached(job: KernelJob, dispatcher) -> bool:
    """Whether numba's on-disk cache holds every signature of ``job``."""
    return all(is_cached(dispatcher, signature) for signature in job.signatures)


class _JobClaims:
    """:class:`~symcnn.runtime.claims.Claims` of kernel jobs: each keyed by its module, kernel and
    signatures, its file beside the kernel's numba cache."""

    def __init__(self, dispatchers: dict):
        self._claims, self._dispatchers = Claims(), dispatchers

    def _key(self, job: KernelJob) -> tuple[str, Optional[str]]:
        dispatcher = self._dispatchers[job.kernel]
        key = claim_name(getattr(dispatcher.py_func, "__module__", "?"), job.kernel, job.signatures)
        return key, claim_directory(dispatcher)

    def take_to_compile(self, job: KernelJob) -> bool:
        """Claim ``job`` if no other process holds it and it is still to compile (another process may
        have compiled it since this one looked); False leaves it to be waited for, then loaded."""
        if not self._claims.take(*self._key(job)):
            return False
        if _all_cached(job, self._dispatchers[job.kernel]):
            self.release(job)
            return False
        return True

    def wait(self, job: KernelJob) -> bool:
        return self._claims.wait(*self._key(job))

    def release(self, job: KernelJob) -> None:
        self._claims.release(self._key(job)[0])

    def release_all(self) -> None:
        self._claims.release_all()


def _load_or_compile(job: KernelJob, dispatcher, session: Session) -> None:
    session.started(job.kernel)
    for signature in job.signatures:
        dispatcher.compile(signature)  # numba loads it from its cache when there, else compiles (and caches) it
    session.finished(job.kernel)


class _Worker:
    """One worker process and the thread that feeds it jobs from the shared queue."""

    def __init__(self, command: list[str], first_message: bytes, environment: dict):
        self.errors = tempfile.TemporaryFile()  # a file, not a pipe: a worker that writes much never blocks
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errors,
                                        env=environment, start_new_session=True)
        self.process.stdin.write(first_message)
        self.process.stdin.flush()

    def serve(self, pending: deque, lock: threading.Lock, results: queue.Queue, session: Session,
              claims: "_JobClaims") -> None:
        from symcnn.runtime.compile_worker import decode, encode

        while True:
            with lock:
                if not pending:
                    break
                job = pending.popleft()
            if not claims.take_to_compile(job):  # another process compiles it: loaded (or compiled) at the end
                results.put((job, _ELSEWHERE))
                continue
            session.started(job.kernel)
            try:
                self.process.stdin.write(encode({"kernel": job.kernel, "module": job.module,
                                                 "signatures": job.signatures}))
                self.process.stdin.flush()
                line = self.process.stdout.readline()
                answer = decode(line) if line.strip() else None
            except Exception:  # noqa: BLE001 - a broken pipe or a garbled answer: the worker is unusable
                answer = None
            if answer is None:  # the worker died (killed, out of memory) or said nothing sensible
                results.put((job, self.failure()))
                return
            results.put((job, answer["error"]))  # an error: compiled here; the worker may still compile others

    def failure(self) -> str:
        """Why the worker stopped: its exit status and the last line it wrote on stderr."""
        try:
            status = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # alive but unusable (a garbled answer): end it
            self.process.kill()
            status = self.process.wait()
        try:
            self.errors.seek(0)
            lines = self.errors.read().decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):
            lines = []
        return f"exit status {status}" + (f": {lines[-1].strip()}" if lines else "")

    def end(self, now: bool = False) -> None:
        """Kill the worker ``now`` and wait for it, or let it exit at the end of its input: a thread
        waits for that (an interpreter that loaded numba takes a while to exit, seconds on a busy
        machine, and nothing here needs to wait for it)."""
        try:
            self.process.stdin.close()
        except (OSError, ValueError):
            pass
        if now:
            self.process.kill()
            self.process.wait()
        else:
            threading.Thread(target=self._reap, name="symcnn-compile-worker-exit", daemon=True).start()

    def _reap(self) -> None:
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.close()

    def close(self) -> None:
        """Close the pipes and the stderr file (once its thread has stopped reading)."""
        for stream in (self.process.stdout, self.errors):
            try:
                stream.close()
            except (OSError, ValueError):
                pass


def _environment() -> dict:
    """The workers' environment: this one, with this process's symcnn first on the path (the same code)."""
    environment = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    environment["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [environment.get("PYTHONPATH")])])
    return environment


#: A worker thread's answer for a job another process holds the claim of.
_ELSEWHERE = "claimed by another process"


def _compile_in_workers(package, jobs: list[KernelJob], cached: list[KernelJob], dispatchers: dict, session: Session,
                        count: int, claims: _JobClaims) -> tuple[list[str], list[KernelJob], list[KernelJob]]:
    """Compile ``jobs`` in ``count`` workers, meanwhile loading the ``cached`` ones here; returns the
    kernels the workers compiled (loaded here since), the jobs left to compile here (a worker failed,
    or could not start) and those another process is compiling."""
    from symcnn.runtime.compile_worker import encode

    first = encode({"directory": str(Path(package.__file__).parent), "package": package.__name__,
                    "modules": list(package.MODULES)})
    pending, lock, results = deque(jobs), threading.Lock(), queue.Queue()
    workers, threads, failures = [], [], []
    compiled: list[str] = []
    left: list[KernelJob] = []
    elsewhere: list[KernelJob] = []
    interrupted = False
    try:
        for _ in range(count):
            try:
                workers.append(_Worker(worker_command(), first, _environment()))
            except OSError as error:
                failures.append(f"could not start: {error}")
        for worker in workers:
            thread = threading.Thread(target=worker.serve, args=(pending, lock, results, session, claims), daemon=True,
                                      name="symcnn-compile-worker")
            thread.start()
            threads.append(thread)
        for job in cached:
            _load_or_compile(job, dispatchers[job.kernel], session)
        answered = 0
        while answered < len(jobs):
            try:
                job, error = results.get(timeout=0.2)
            except queue.Empty:
                if not any(thread.is_alive() for thread in threads) and results.empty():
                    break  # every worker stopped: what is still pending is compiled here
                continue
            answered += 1
            if error is _ELSEWHERE:
                elsewhere.append(job)
            elif error is None:
                _load_or_compile(job, dispatchers[job.kernel], session)  # from the cache the worker wrote
                claims.release(job)
                compiled.append(job.kernel)
            else:
                claims.release(job)
                session.stopped(job.kernel)
                failures.append(error)
                left.append(job)
    except BaseException:  # Ctrl-C, or an error loading a kernel: stop the workers at once
        interrupted = True
        raise
    finally:
        for worker in workers:
            worker.end(now=interrupted)
        for thread in threads:
            thread.join()
        if interrupted:
            for worker in workers:
                worker.close()
    left += list(pending)
    if failures:
        session.note(f"symcnn: compile workers failed on {len(failures)} kernel(s) (the first: {failures[0]}); "
                     f"compiling {len(left)} kernel(s) in this process")
    return compiled, left, elsewhere
