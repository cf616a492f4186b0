"""A convolution's forward register block at 8 and 16 vectors of accumulators, as generated and with row views:
numba's compile time of each (a fresh cache, in a process of its own) and its speed (one thread), side by side.

A record for docs/performance.md ("Register blocks of 16 vectors"), not part of the package. The 16-vector block is
generated with ``registers.WIDE_ACCUMULATORS`` set to 256 for the run; the row-view variants are the generated
block rewritten so that each tile row and each streamed weight row is taken once as a view
(``row0 = tile[j, group:]``, ``w0 = weight_t[c_in, u, 0, group:]``) and read at constant indices. The rewrite
knows the lanes forward block of a convolution with its weight copy ``weight_t`` (no packed groups) and refuses
any other.

Usage, from the repository root:
    PYTHONPATH=. python docs/bench/register_block_probe.py suite-vgg conv2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HEADER = ("import numba\nimport numpy as np\nfrom numba import njit\n"
          "from symcnn.runtime.vector_width import wide_vectors\nnumba.config.SLP_VECTORIZE = 1\n\n\n")

#: Run in a fresh process per variant: compile the block (timed), then call it over every row of an image.
MEASURE = textwrap.dedent("""
    import importlib.util, json, statistics, sys, time
    import numba, numpy as np
    path, name, shapes, rows = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
    spec = importlib.util.spec_from_file_location("probe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    block = getattr(module, name)
    rng = np.random.default_rng(0)
    tile, weight_t, x_padded = (rng.standard_normal(shape).astype(np.float32) for shape in shapes)
    tile[...] = 0
    started = time.perf_counter()
    block(0, tile, weight_t, x_padded)
    compiled = time.perf_counter() - started
    times = []
    for _ in range(15):
        started = time.perf_counter()
        for i in range(rows):
            block(i, tile, weight_t, x_padded)
        times.append(time.perf_counter() - started)
    tile[...] = 0
    for i in range(rows):
        block(i, tile, weight_t, x_padded)
    print(json.dumps({"compile": compiled, "seconds": statistics.median(times), "checksum": float(tile.sum())}))
""")


def generated_block(spec_name: str, label: str, accumulators: int, out: Path) -> tuple[str, str]:
    """The source of ``label``'s forward block (wide variant) generated with ``accumulators`` values, and its name."""
    from symcnn.codegen.backends.numba_cpu import registers
    from symcnn.codegen.package import generate
    from symcnn.spec import load_spec

    registers.WIDE_ACCUMULATORS = accumulators  # read when each kernel is lowered
    spec = load_spec(spec_name)
    generate([spec_name], out)
    source = (out / spec.module_name / f"{label}.py").read_text()
    name = f"{label}_forward_wide_block0"
    start = source.index(f"def {name}(")
    start = source.rindex("@njit", 0, start)
    end = source.index("\n@njit", start + 1)
    if f"def {name}(i, tile, weight_t, x_padded):" not in source[start:end]:
        raise SystemExit(f"register_block_probe: {name} does not take (i, tile, weight_t, x_padded): refused")
    return source[start:end], name


def with_row_views(block: str) -> str:
    """``block`` with its tile rows and weight rows read through views at constant indices."""
    rows = re.search(r"for j in range\(\d+, \d+, (\d+)\)", block)
    if rows is None or "weight_t[c_in, u, " not in block or "// " in block:
        raise SystemExit("register_block_probe: not a lanes forward block over columns j with weight_t: refused")
    taps = sorted({int(v) for v in re.findall(r"weight_t\[c_in, u, (\d+), group", block)})
    lines = []
    for line in block.split("\n"):
        lines.append(line)
        indent = re.match(r"(\s*)for (group|u) in range", line)
        if indent and indent.group(2) == "group":
            lines += [f"{indent.group(1)}    row{b} = tile[j + {b}, group:]" for b in range(int(rows.group(1)))]
        elif indent:
            lines += [f"{indent.group(1)}    w{v} = weight_t[c_in, u, {v}, group:]" for v in taps]
    text = "\n".join(lines)
    text = re.sub(r"tile\[j(?: \+ (\d+))?, group(?: \+ (\d+))?\]",
                  lambda m: f"row{int(m.group(1) or 0)}[{int(m.group(2) or 0)}]", text)
    return re.sub(r"weight_t\[c_in, u, (\d+), group(?: \+ (\d+))?\]",
                  lambda m: f"w{m.group(1)}[{int(m.group(2) or 0)}]", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec")
    parser.add_argument("label", help="a convolution of the spec whose forward pass has register blocks")
    options = parser.parse_args()
    from symcnn.spec import load_spec

    layer = next((layer for layer in load_spec(options.spec).layers if layer.label == options.label), None)
    if layer is None or layer.kind != "conv2d":
        parser.error(f"label: no convolution {options.label!r} in {options.spec}")
    c_in, (c_out, rows, columns), kernel = layer.input_shape[0], layer.output_shape, layer.settings["kernel"]
    if any(layer.settings[name] != (1, 1) for name in ("stride", "dilation")) or layer.settings["groups"] != 1:
        parser.error(f"label: {options.label} is strided, dilated or grouped; the probe takes a plain convolution")
    # the block's operands: its tile (columns x output channels), the weight copy, the input zero-padded
    shapes = [(columns, c_out), (c_in, *kernel, c_out), (c_in, rows + kernel[0] - 1, columns + kernel[1] - 1)]
    flop = 2 * rows * columns * c_out * c_in * kernel[0] * kernel[1]
    print(f"{options.spec} {options.label}: forward block, one image ({flop / 1e6:.1f} MFLOP), one thread")
    with tempfile.TemporaryDirectory() as directory:
        for accumulators in (128, 256):
            out = Path(directory) / str(accumulators)
            block, name = generated_block(options.spec, options.label, accumulators, out)
            for variant, source in (("as generated", block), ("row views", with_row_views(block))):
                path = Path(directory) / f"{accumulators}_{variant.replace(' ', '_')}.py"
                path.write_text(HEADER + source, encoding="utf-8")
                environment = {**os.environ, "NUMBA_CACHE_DIR": str(Path(directory) / f"cache_{path.stem}"),
                               "NUMBA_NUM_THREADS": "1"}
                result = subprocess.run([sys.executable, "-c", MEASURE, str(path), name, json.dumps(shapes), str(rows)],
                                        capture_output=True, text=True, env=environment, check=True)
                measured = json.loads(result.stdout)
                print(f"  {accumulators // 16:2d} vectors, {variant:12s}  compile {measured['compile']:5.2f} s  "
                      f"{flop / measured['seconds'] / 1e9:6.0f} GFLOP/s  checksum {measured['checksum']:.6g}",
                      flush=True)


if __name__ == "__main__":
    main()
