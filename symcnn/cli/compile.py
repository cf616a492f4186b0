"""``symcnn compile``: a spec's kernels compiled into numba's cache now, in parallel processes, so that
a later process's first pass loads them in a fraction of a second (:mod:`symcnn.runtime.compiling`).

Example:
    $ symcnn compile seed004
    $ symcnn compile my.toml --dtype float32 --dtype float64
"""

from __future__ import annotations

__all__ = ["add_compile", "run_compile"]


def add_compile(commands) -> None:
    command = commands.add_parser(
        "compile", help="compile a spec's kernels into numba's cache now, in parallel processes",
        description="Compile every kernel a Network of SPEC calls (training and evaluation mode, every gradient) "
                    "into numba's on-disk cache, in one worker process per free CPU (SYMCNN_COMPILE_WORKERS=N: "
                    "N workers; 0: in this process), so that the first pass of a later process only loads them. "
                    "Kernels already in the cache are loaded, not compiled again. A spec that is not shipped is "
                    "generated first, as Network.from_spec does.")
    command.add_argument("spec", metavar="SPEC", help="a shipped spec name or a .toml path")
    command.add_argument("--dtype", choices=("float32", "float64"), action="append",
                         help="the kernels' floating-point type (default float32; give it twice for both)")


def run_compile(args) -> int:
    from symcnn.runtime.network import Network

    for dtype in dict.fromkeys(args.dtype or ["float32"]):
        net = Network.from_spec(args.spec, dtype=dtype)
        summary = net.compile()
        kernels = (len(summary.loaded) + len(summary.compiled_by_workers) + len(summary.compiled_here)
                   + len(summary.compiled_elsewhere))
        parts = [f"{len(summary.loaded)} loaded from numba's cache"]
        if summary.compiled_by_workers:
            parts.append(f"{len(summary.compiled_by_workers)} compiled by {summary.workers} worker processes")
        if summary.compiled_here or not summary.compiled_by_workers:
            parts.append(f"{len(summary.compiled_here)} compiled in this process")
        if summary.compiled_elsewhere:
            parts.append(f"{len(summary.compiled_elsewhere)} compiled by another process at the same time")
        print(f"{net.spec.name} ({dtype}): {kernels} kernels ready in {summary.seconds:.1f} s: {', '.join(parts)}")
    return 0
