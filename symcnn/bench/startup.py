"""``symcnn bench --startup``: seconds from nothing to a first train step, each a whole process's wall time.

Example (generates into a temporary directory and starts fresh processes; tens of seconds)::

    print(format_startup(measure_startup("digits", batch=4)))
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

__all__ = ["measure_startup", "format_startup", "load_average"]


# A fresh process: import the runtime, load the kernels from a directory, take one train step; print
# how many kernels this process compiled and how many it loaded from numba's cache (numba's own counts).
_FIRST_STEP = """
import json
import sys
from pathlib import Path
import numpy as np
from symcnn.runtime.loader import import_package
from symcnn.runtime.network import Network
from symcnn.spec import load_spec
spec = load_spec(sys.argv[1])
net = Network(spec, import_package(Path(sys.argv[2]) / spec.module_name, "symcnn_startup_kernels"))
x = np.zeros((int(sys.argv[3]), *spec.input_shape), dtype=np.float32)
net.train_step(x, np.zeros(len(x), dtype=np.int64))
kernels = {id(function): function for function in net._functions.values()}.values()
print(json.dumps({"compiled": sum(bool(kernel.stats.cache_misses) for kernel in kernels),
                  "loaded": sum(bool(kernel.stats.cache_hits) for kernel in kernels)}))
"""


def load_average() -> Optional[float]:
    """The machine's 1-minute load average (``/proc/loadavg``), or None where unknown: what else ran."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def measure_startup(spec_name: str, batch: int = 64, one_process: bool = True) -> dict:
    """Seconds to start from nothing: ``symcnn generate`` into an empty directory, then a new process's
    first train step twice, cold (every kernel compiled: in worker processes, one per free CPU, as
    :mod:`symcnn.runtime.compiling` chooses) and warm (numba's cache present); with ``one_process``,
    also cold with every kernel compiled in the process itself (``SYMCNN_COMPILE_WORKERS=0``, as before
    parallel compiling), on a copy of the generated package made before anything compiled. Each time is
    a whole process's wall time, the interpreter's start-up included; ``load_average`` holds the
    machine's load average at the start of each."""
    loads = {}

    def seconds(name: str, command: list, environment: Optional[dict] = None) -> tuple[float, str]:
        loads[name] = load_average()
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=environment)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:4])}: {result.stderr.strip()[-500:]}")
        return time.perf_counter() - start, result.stdout

    with tempfile.TemporaryDirectory() as directory, tempfile.TemporaryDirectory() as copy:
        generate, _ = seconds("generate", [sys.executable, "-m", "symcnn", "generate", spec_name, "--out", directory])
        shutil.copytree(directory, copy, dirs_exist_ok=True)  # nothing compiled yet: no numba cache in it
        step = [sys.executable, "-c", _FIRST_STEP, spec_name, directory, str(batch)]
        cold, counts = seconds("first_step_cold", step)
        warm, _ = seconds("first_step_warm", step)
        startup = {"generate_s": generate, "first_step_cold_s": cold, "first_step_warm_s": warm,
                   "generate_and_compile_s": generate + cold}
        if one_process:
            alone = dict(os.environ, SYMCNN_COMPILE_WORKERS="0")
            startup["first_step_cold_one_process_s"], _ = seconds(
                "first_step_cold_one_process", [sys.executable, "-c", _FIRST_STEP, spec_name, copy, str(batch)], alone)
    cold_counts = json.loads(counts.strip().splitlines()[-1])
    return {**startup, "cold_kernels": cold_counts["compiled"] + cold_counts["loaded"],
            "cold_kernels_from_workers": cold_counts["loaded"], "load_average": loads}


def format_startup(startup: dict) -> str:
    loads = startup.get("load_average", {})

    def line(text: str, key: str) -> str:
        load = loads.get(key.removesuffix("_s"))
        return f"  {text:<58} {startup[key]:6.1f} s" + (f"   (load average {load:.2f})" if load is not None else "")

    workers = (f"{startup['cold_kernels_from_workers']} of {startup['cold_kernels']} kernels compiled by worker "
               "processes" if startup.get("cold_kernels_from_workers") else "every kernel compiled in the process")
    lines = ["start-up (whole processes, wall time):",
             line("symcnn generate (SymPy derivation and rendering)", "generate_s"),
             line(f"first train step, cold ({workers})", "first_step_cold_s"),
             line("generate + cold first step", "generate_and_compile_s")]
    if "first_step_cold_one_process_s" in startup:
        lines.append(line("first train step, cold, compiled in one process (before)", "first_step_cold_one_process_s"))
    lines.append(line("first train step, warm (numba's cache present)", "first_step_warm_s"))
    return "\n".join(lines)
