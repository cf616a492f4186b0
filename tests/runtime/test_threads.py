"""symcnn.runtime.threads: each pass runs on the CPUs that nothing else is running on, never on more
threads than the user set, and a user's settings are never overridden.

Machines are faked (CPU counts, /proc and cgroup files, a clock): no test here times anything. OpenMP's
nesting is read in fresh processes (numba starts its threads once per process).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from symcnn.runtime import threads
from symcnn.runtime.network import Network
from symcnn.runtime.threads import LoadSample, LoadWatch, free_cpus, kernel_threads


@pytest.fixture(autouse=True)
def numba_threads_restored():
    """Every test leaves numba's thread count in this thread as it found it."""
    before = numba.get_num_threads()
    yield
    numba.set_num_threads(before)


def two_threads():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has a single thread here")
    numba.set_num_threads(2)


class FixedWatch:
    """A LoadWatch that always answers ``free``."""

    def __init__(self, free: int):
        self.free = free

    def free_cpus(self) -> int:
        return self.free


@pytest.mark.parametrize("sample, free", [
    (LoadSample(usable=2, online=2, runnable=1, own_running=1), 2),  # only this process
    (LoadSample(usable=2, online=2, runnable=2, own_running=1), 1),  # a busy loop on the other core
    (LoadSample(usable=2, online=2, runnable=2, own_running=2), 2),  # the other runnable one is our own worker
    (LoadSample(usable=2, online=2, runnable=4, own_running=1), 1),  # more load than CPUs: still one thread
    (LoadSample(usable=8, online=8, runnable=3, own_running=1), 6),  # two busy cores of eight
    (LoadSample(usable=1, online=2, runnable=1, own_running=1), 1),  # pinned to one CPU (taskset)
    (LoadSample(usable=2, online=64, runnable=40, own_running=1), 2),  # a 2-CPU container on a busy host
    (LoadSample(usable=2, online=64, runnable=70, own_running=1), 1),  # ... on a host with no CPU free
    (LoadSample(usable=4, online=4, runnable=None, own_running=1), 4),  # load unknown: the usable CPUs
])
def test_free_cpus(sample, free):
    assert free_cpus(sample) == free


def test_runnable_tasks_reads_the_running_count_of_loadavg(tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("1.97 1.22 0.62 3/111 30923\n")
    assert threads.runnable_tasks(loadavg) == 3
    assert threads.runnable_tasks(tmp_path / "missing") is None
    loadavg.write_text("garbage\n")
    assert threads.runnable_tasks(loadavg) is None


def test_own_running_threads_counts_the_tasks_in_state_r(tmp_path):
    for tid, stat in {"10": "10 (python) R 1 2", "11": "11 (numba (worker)) S 1 2", "12": "12 (python) R 1"}.items():
        (tmp_path / tid).mkdir()
        (tmp_path / tid / "stat").write_text(stat)
    (tmp_path / "13").mkdir()  # a thread that ended between the listing and the read
    assert threads.own_running_threads(tmp_path) == 2
    assert threads.own_running_threads(tmp_path / "missing") == 1  # the caller, at least


def test_own_running_threads_here_counts_the_caller():
    if not os.path.isdir("/proc/self/task"):
        pytest.skip("no /proc")
    assert threads.own_running_threads() >= 1


@pytest.mark.parametrize("levels, quota", [
    ({"": "max 100000"}, None),  # unlimited
    ({"": "max 100000", "box": "150000 100000"}, 1.5),  # a container's --cpus=1.5
    ({"": "400000 100000", "box": "max 100000", "box/inner": "200000 100000"}, 2.0),  # the tightest level
    ({"box": "bad values"}, None),
])
def test_cgroup_cpu_quota(tmp_path, levels, quota):
    root = tmp_path / "cgroup"
    for relative, text in levels.items():
        (root / relative).mkdir(parents=True, exist_ok=True)
        (root / relative / "cpu.max").write_text(text + "\n")
    deepest = max(levels, key=len)
    membership = tmp_path / "membership"
    membership.write_text(f"0::/{deepest}\n")
    assert threads.cgroup_cpu_quota(root, membership) == quota


def test_cgroup_v1_or_no_cgroup_is_no_quota(tmp_path):
    membership = tmp_path / "membership"
    membership.write_text("12:cpu,cpuacct:/docker/abc\n")
    assert threads.cgroup_cpu_quota(tmp_path, membership) is None
    assert threads.cgroup_cpu_quota(tmp_path, tmp_path / "missing") is None


def test_usable_cpus_is_capped_by_the_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(threads, "_quota", lambda: None)
    assert threads.usable_cpus() == 4
    monkeypatch.setattr(threads, "_quota", lambda: 1.5)
    assert threads.usable_cpus() == 2


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_load_watch_samples_at_most_every_interval_and_needs_two_samples_to_take_threads_away():
    clock, loads = Clock(), iter([1, 2, 2, 2, 1])
    reads = []

    def read():
        runnable = next(loads)
        reads.append(runnable)
        return LoadSample(usable=2, online=2, runnable=runnable, own_running=1)

    watch = LoadWatch(read=read, clock=clock, every=0.05)
    assert watch.free_cpus() == 2 and len(reads) == 1  # quiet
    clock.now = 0.01
    assert watch.free_cpus() == 2 and len(reads) == 1  # within the interval: the last answer
    clock.now = 0.06
    assert watch.free_cpus() == 2 and len(reads) == 2  # a load seen once: maybe a task's instant
    clock.now = 0.12
    assert watch.free_cpus() == 1 and len(reads) == 3  # seen twice in a row: one thread
    clock.now = 0.18
    assert watch.free_cpus() == 1
    clock.now = 0.24
    assert watch.free_cpus() == 2  # the load gone: threads back at once


def test_kernel_threads_uses_the_free_cpus_and_restores_the_count():
    two_threads()
    with kernel_threads(FixedWatch(1)):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == 2
    with kernel_threads(FixedWatch(2)):
        assert numba.get_num_threads() == 2


def test_kernel_threads_never_uses_more_than_the_user_set():
    two_threads()
    numba.set_num_threads(1)  # the user's choice
    with kernel_threads(FixedWatch(8)):
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == 1


def test_kernel_threads_restores_the_count_after_an_error():
    two_threads()
    with pytest.raises(RuntimeError), kernel_threads(FixedWatch(1)):
        raise RuntimeError("a kernel failed")
    assert numba.get_num_threads() == 2


def test_a_block_inside_another_keeps_the_outer_count():
    two_threads()
    with kernel_threads(FixedWatch(1)):
        with kernel_threads(FixedWatch(2)):  # one choice per pass: the outer block's
            assert numba.get_num_threads() == 1
        assert numba.get_num_threads() == 1
    assert numba.get_num_threads() == 2
    with kernel_threads(FixedWatch(2)):
        with kernel_threads(FixedWatch(1)):
            assert numba.get_num_threads() == 2


def test_adaptation_off_keeps_numbas_count(monkeypatch):
    two_threads()
    monkeypatch.setenv(threads.ENVIRONMENT, "0")
    with kernel_threads(FixedWatch(1)):
        assert numba.get_num_threads() == 2


@pytest.mark.parametrize("value", ["yes", "2", "-1"])
def test_a_bad_setting_is_a_one_line_error(monkeypatch, value):
    monkeypatch.setenv(threads.ENVIRONMENT, value)
    with pytest.raises(ValueError, match=f"^{threads.ENVIRONMENT}: must be 0 or 1, got '{value}'$"):
        with kernel_threads(FixedWatch(1)):
            pass
    monkeypatch.setenv(threads.ENVIRONMENT, "1")
    two_threads()
    with kernel_threads(FixedWatch(1)):  # the refused block left nothing open: this one chooses
        assert numba.get_num_threads() == 1


def test_no_environment_variable_is_written(monkeypatch):
    two_threads()
    before = dict(os.environ)
    with kernel_threads(FixedWatch(1)):
        pass
    assert dict(os.environ) == before


def test_a_network_pass_runs_on_the_free_cpus_and_gives_the_same_numbers(monkeypatch):
    """A pass inside kernel_threads runs on the chosen count (seen from inside a kernel call), and its
    results are bit for bit those of a pass on two threads."""
    two_threads()
    net = Network.from_spec("digits", seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, *net.spec.input_shape)).astype(np.float32)
    labels = rng.integers(0, net.spec.classes, 5)
    monkeypatch.setenv(threads.ENVIRONMENT, "0")
    _, reference = net.loss_and_grads(x, labels)
    monkeypatch.setenv(threads.ENVIRONMENT, "1")
    monkeypatch.setattr(threads, "_WATCH", FixedWatch(1))
    seen = []
    original = net._call

    def spy(kernel_name, arrays):
        seen.append(numba.get_num_threads())
        return original(kernel_name, arrays)

    monkeypatch.setattr(net, "_call", spy)
    _, adapted = net.loss_and_grads(x, labels)
    assert seen and set(seen) == {1}
    assert numba.get_num_threads() == 2
    for name in reference:
        assert np.array_equal(reference[name], adapted[name]), name


#: A fresh process: start numba's threads as ``how`` says, then print the threading layer and the active
#: levels of nested regions in the OpenMP runtime numba's pool is linked to.
NESTING_PROBE = """
import ctypes, sys
import numba
from symcnn.runtime.threads import kernel_threads
how = sys.argv[1]
if how in ("numba", "numba-then-pass"):
    numba.set_num_threads(1)  # the user's own code starts numba's threads first
if how in ("pass", "numba-then-pass"):
    with kernel_threads():  # what every symcnn pass opens
        pass
if numba.threading_layer() != "omp":
    print(numba.threading_layer(), 0)
    raise SystemExit
from numba.np.ufunc import omppool
print("omp", ctypes.CDLL(omppool.__file__).omp_get_max_active_levels())
"""


def nesting_after(how: str, **environment: str) -> int:
    """The OpenMP active levels after ``how`` in a fresh process (skips where numba's layer is not OpenMP)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OMP_")} | environment
    result = subprocess.run([sys.executable, "-c", NESTING_PROBE, how], capture_output=True, text=True, env=env,
                            check=True, timeout=120)
    layer, levels = result.stdout.split()
    if layer != "omp":
        pytest.skip(f"numba's threading layer here is {layer}, not OpenMP")
    return int(levels)


def test_a_pass_turns_off_the_openmp_nesting_numba_turned_on():
    """numba's OpenMP layer turns nesting on for the whole process (so PyTorch, imported later into the same
    runtime, starts threads inside its ops); a symcnn pass sets one level again, also after the user's own
    code started numba's threads."""
    assert nesting_after("numba") > 1  # what a pass undoes: numba's own setting
    assert nesting_after("pass") == 1
    assert nesting_after("numba-then-pass") == 1


@pytest.mark.parametrize("environment, levels", [({"OMP_MAX_ACTIVE_LEVELS": "3"}, 3), ({"OMP_NESTED": "false"}, 1)])
def test_the_nesting_the_environment_asks_for_is_kept(environment, levels):
    assert nesting_after("pass", **environment) == levels


def test_nesting_asked_for_without_a_number_is_left_as_numba_set_it():
    assert nesting_after("pass", OMP_NESTED="true") == nesting_after("numba", OMP_NESTED="true") > 1
