"""How many threads the generated kernels run on: the CPUs that nothing else is running on, chosen
again as the load changes.

Why: numba runs a ``prange`` loop as a fork-join region that hands each thread one fixed share of
the work and waits at the region's end for every share. When another process takes a core, the
thread that shares that core runs only in the scheduler's time slices (milliseconds), while one
region lasts 10-1,200 microseconds: each region waits for a slice. GNU OpenMP's threads that are
done spin meanwhile, taking time from the late thread. Measured with a busy loop on one of two
cores: ``seed004``'s forward pass 13x slower, its batch-1 train step 32x slower; two training runs
at once took longer than one after the other. On the free cores alone the regions never wait.

Each pass (:func:`kernel_threads` around it) runs on::

    min(numba's thread count, free CPUs)
    free CPUs = max(1, min(usable CPUs, online CPUs - other runnable tasks))

The usable CPUs are this process's affinity mask, capped by a cgroup v2 CPU quota (a container's
``--cpus``); the other runnable tasks are the kernel's count of tasks running or waiting for a
CPU (``/proc/loadavg``) less this process's own running threads (its OpenMP workers may still be
spinning). Sampled at most every :data:`SAMPLE_SECONDS`; a load must be seen in two samples in a
row before it takes threads away, so that a task that ran for an instant does not. Without
``/proc/loadavg`` (not Linux) the count is only capped by the usable CPUs.

What a user sets is kept: numba's thread count in the calling thread (``NUMBA_NUM_THREADS``,
``numba.set_num_threads``) is the most a pass uses and is restored after it, and
``SYMCNN_ADAPTIVE_THREADS=0`` turns the choice off (every pass on numba's count, as before).
The results do not depend on the count: every kernel sums in the same order whatever the split.

Example:
    >>> sample = LoadSample(usable=2, online=2, runnable=2, own_running=1)  # a busy loop beside us
    >>> free_cpus(sample)
    1
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable, NamedTuple, Optional

__all__ = ["LoadSample", "free_cpus", "usable_cpus", "cgroup_cpu_quota", "runnable_tasks", "own_running_threads",
           "read_sample", "LoadWatch", "adaptive", "kernel_threads", "nesting_levels", "start_threads", "ENVIRONMENT",
           "SAMPLE_SECONDS"]

#: Set to 0 to run every pass on numba's thread count as it is (1, the default: adapt to the load).
ENVIRONMENT = "SYMCNN_ADAPTIVE_THREADS"

#: Seconds between two looks at the load: a look costs about 30 microseconds of CPU (a batch-1
#: train step of seed004 takes 400), and a load that appears costs at most two intervals of slow regions.
SAMPLE_SECONDS = 0.05


class LoadSample(NamedTuple):
    """What the machine looked like at one instant."""

    usable: int  # CPUs this process may run on (affinity mask, cgroup quota)
    online: int  # CPUs the runnable count covers (the whole machine's)
    runnable: Optional[int]  # tasks running or waiting for a CPU, machine-wide; None where unknown
    own_running: int  # of them, this process's threads


def free_cpus(sample: LoadSample) -> int:
    """The CPUs this process can use that no other task is running on (at least 1).

    >>> free_cpus(LoadSample(usable=2, online=2, runnable=1, own_running=1))  # quiet: only us
    2
    >>> free_cpus(LoadSample(usable=2, online=2, runnable=3, own_running=2))  # our spinning worker is ours
    1
    >>> free_cpus(LoadSample(usable=2, online=64, runnable=30, own_running=1))  # a container on a big host
    2
    >>> free_cpus(LoadSample(usable=4, online=4, runnable=None, own_running=1))  # load unknown
    4
    """
    free = sample.usable
    if sample.runnable is not None:
        others = max(0, sample.runnable - sample.own_running)
        free = min(free, sample.online - others)
    return max(1, free)


def _read(path) -> Optional[str]:
    """A small file's text, or None (plain os calls: 5 microseconds where pathlib takes 15-40)."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(descriptor, 4096).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(descriptor)


def cgroup_cpu_quota(cgroup_root: Path = Path("/sys/fs/cgroup"),
                     membership: Path = Path("/proc/self/cgroup")) -> Optional[float]:
    """The CPUs' worth of time this process's cgroup v2 allows (``cpu.max``: quota over period, the
    tightest of its group and the groups above), or None when unlimited or unknown."""
    text = _read(membership)
    if text is None:
        return None
    relative = next((line[3:].strip() for line in text.splitlines() if line.startswith("0::")), None)
    if relative is None:  # cgroup v1 only: not read
        return None
    group, tightest = cgroup_root / relative.lstrip("/"), None
    while True:
        fields = (_read(group / "cpu.max") or "").split()
        if len(fields) == 2 and fields[0] != "max":
            try:
                cpus = int(fields[0]) / int(fields[1])
            except (ValueError, ZeroDivisionError):
                cpus = None
            if cpus is not None and cpus > 0:
                tightest = cpus if tightest is None else min(tightest, cpus)
        if group == cgroup_root or group.parent == group:
            return tightest
        group = group.parent


@lru_cache(maxsize=1)
def _quota() -> Optional[float]:
    return cgroup_cpu_quota()  # read once: a container's quota does not change under a running process


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, capped by its cgroup's CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = _quota()
    return max(1, min(count, math.ceil(quota))) if quota is not None else max(1, count)


def runnable_tasks(loadavg: Path = Path("/proc/loadavg")) -> Optional[int]:
    """Tasks running or waiting for a CPU, machine-wide, now (the numerator of ``/proc/loadavg``'s
    fourth field, ``running/total``); None where there is no such file."""
    fields = (_read(loadavg) or "").split()
    try:
        return int(fields[3].split("/")[0])
    except (IndexError, ValueError):
        return None


def own_running_threads(tasks: Path = Path("/proc/self/task")) -> int:
    """This process's threads that are running or waiting for a CPU now (at least 1: the caller)."""
    try:
        names = os.listdir(tasks)
    except OSError:
        return 1
    running = 0
    for name in names:
        status = _read(f"{tasks}/{name}/stat") or ""
        # "pid (comm) S ...": the state follows the last parenthesis (a thread's name may hold one)
        if status[status.rfind(")") + 2:status.rfind(")") + 3] == "R":
            running += 1
    return max(1, running)


@lru_cache(maxsize=1)
def _online_cpus() -> int:
    return os.cpu_count() or 1  # read once: it reads a file each time (6 microseconds)


def read_sample() -> LoadSample:
    """The load now (about 30 microseconds). This process's threads are counted first: between
    passes its OpenMP workers only go from spinning to sleeping, so none is missed that the
    machine-wide count then holds."""
    own = own_running_threads()
    return LoadSample(usable_cpus(), _online_cpus(), runnable_tasks(), own)


class LoadWatch:
    """Free CPUs, from a sample taken at most every ``every`` seconds: the larger count of the last
    two samples, so that a load takes threads away once two samples in a row have seen it.

    >>> samples = iter([LoadSample(2, 2, 1, 1), LoadSample(2, 2, 2, 1), LoadSample(2, 2, 2, 1)])
    >>> clock = iter([0.0, 1.0, 2.0])
    >>> watch = LoadWatch(read=lambda: next(samples), clock=lambda: next(clock), every=0.5)
    >>> [watch.free_cpus() for _ in range(3)]  # quiet, a load seen once, seen twice
    [2, 2, 1]
    """

    def __init__(self, read: Callable[[], LoadSample] = read_sample, clock: Callable[[], float] = time.monotonic,
                 every: float = SAMPLE_SECONDS):
        self._read, self._clock, self._every = read, clock, every
        self._lock = threading.Lock()
        self._sampled_at = -math.inf
        self._last: tuple[int, ...] = ()

    def free_cpus(self) -> int:
        now = self._clock()
        if now - self._sampled_at >= self._every and self._lock.acquire(blocking=False):
            try:  # one thread samples; the others go on with the last answer
                self._last = (*self._last[-1:], free_cpus(self._read()))
                self._sampled_at = now
            finally:
                self._lock.release()
        return max(self._last) if self._last else usable_cpus()  # not max(..., default=...): evaluated each call


_WATCH = LoadWatch()


def adaptive() -> bool:
    """Whether passes choose their thread count (``SYMCNN_ADAPTIVE_THREADS``: unset, empty or 1 yes; 0 no)."""
    value = os.environ.get(ENVIRONMENT, "").strip() or "1"
    if value not in ("0", "1"):
        raise ValueError(f"{ENVIRONMENT}: must be 0 or 1, got {value!r}")
    return value == "1"


def nesting_levels(environ=os.environ) -> Optional[int]:
    """The active levels of nested parallel regions that OpenMP's environment variables ask for (GNU
    OpenMP's reading: ``OMP_MAX_ACTIVE_LEVELS`` first, then ``OMP_NESTED``), 1 when they ask nothing;
    None where they ask for nesting without a number, or hold a value OpenMP would ignore (left as it is).

    >>> nesting_levels({}), nesting_levels({"OMP_NESTED": "false"}), nesting_levels({"OMP_MAX_ACTIVE_LEVELS": "3"})
    (1, 1, 3)
    >>> nesting_levels({"OMP_NESTED": "TRUE"}) is None
    True
    """
    levels = environ.get("OMP_MAX_ACTIVE_LEVELS", "").strip()
    if levels:
        return int(levels) if levels.isdigit() else None
    nested = environ.get("OMP_NESTED", "").strip().lower()
    return 1 if nested in ("", "false") else None


_STARTED = False  # start_threads has run in this process


def start_threads() -> None:
    """Start numba's threads (once per process) and put back the one OpenMP setting that starting them changes.

    Why: numba's ``omp`` threading layer turns nested parallel regions on (``omp_set_nested(1)``) in the
    process's GNU OpenMP runtime when its threads start, whatever the environment says. PyTorch, imported
    afterwards, shares that runtime, and some of its element-wise ops open a region inside their own
    (``torch.tanh`` through MKL's vector math): with nesting on, each such call starts new threads. Measured
    (a Zen 4, 2 threads): ``torch.tanh`` of 5,376 float32 values 3.3 ms instead of 0.01 ms, a LeNet-5 forward
    pass 11.0 ms instead of 1.8. symcnn's kernels never open a region inside another, so nesting gains them
    nothing: the levels the environment asks for (:func:`nesting_levels`; one, unless it asks for more) are
    set again. Every pass calls this (:class:`kernel_threads`).

    >>> start_threads()
    >>> import numba
    >>> numba.get_num_threads() >= 1
    True
    """
    global _STARTED
    if _STARTED:
        return
    import numba

    numba.get_num_threads()  # starts the threading layer (it is started once, whatever calls it)
    levels = nesting_levels()
    if numba.threading_layer() == "omp" and levels is not None:
        from numba.np.ufunc import omppool

        # the symbol as numba's pool resolves it: the OpenMP runtime it was linked to, even where PyTorch
        # has loaded its own copy of libgomp beside it
        set_levels = getattr(ctypes.CDLL(omppool.__file__), "omp_set_max_active_levels", None)
        if set_levels is not None:
            set_levels(levels)
    _STARTED = True


_BLOCKS = threading.local()  # per thread: how many kernel_threads blocks are open


class kernel_threads:
    """Within the block, numba's thread count in this thread is at most the free CPUs (never more than
    it was); the count before is restored at the end. A block inside another one in the same thread
    keeps the outer block's count: one choice per pass, however many kernels the pass calls (symcnn's
    PyTorch operators each open a block; a module's forward pass opens one around them).

    >>> import numba
    >>> before = numba.get_num_threads()
    >>> with kernel_threads():
    ...     with kernel_threads():  # inside: the outer block's choice
    ...         1 <= numba.get_num_threads() <= before
    True
    >>> numba.get_num_threads() == before
    True
    """

    __slots__ = ("_watch", "_before")

    def __init__(self, watch: Optional[LoadWatch] = None):
        self._watch = watch or _WATCH
        self._before: Optional[int] = None

    def __enter__(self) -> "kernel_threads":
        depth = getattr(_BLOCKS, "depth", 0)
        if depth == 0:
            start_threads()
        if depth == 0 and adaptive():  # (a bad setting raises here: no block opened)
            import numba  # here: importing this module stays cheap

            current = numba.get_num_threads()  # the user's (or numba's default): the most we use
            wanted = min(current, self._watch.free_cpus())
            if wanted != current:
                numba.set_num_threads(wanted)
                self._before = current
        _BLOCKS.depth = depth + 1
        return self

    def __exit__(self, *exc_info) -> None:
        _BLOCKS.depth -= 1
        if self._before is not None:
            import numba

            numba.set_num_threads(self._before)
            self._before = None
