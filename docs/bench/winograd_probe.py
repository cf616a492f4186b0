"""Probe: a 3 x 3 stride-1 convolution's forward pass by Winograd's F(m x m, 3 x 3) in numba, against the
generated direct kernel and PyTorch, with the time of each stage.

A record for docs/performance.md (issue #19, session 36), not part of the package: the measurements that
decide how a Winograd schedule would enter the generator. The transforms are
:func:`symcnn.symbolic.winograd.minimal_filtering`'s matrices, printed here with SymPy (common
subexpressions, float32 constants); the loops are hand-written. Layer: NCHW float32, ``padding`` 1 (the
output the input's size), bias and ReLU fused into the store, as the generated ``conv3_with_relu6_forward``
of ``suite-wide``. Per parallel item (``--images`` images):

1. the images copied channels-last and zero-padded (``xp[b, h, w, c]``);
2. the input transform ``B^T d B``, row pass then column pass, each vectorized over channels, into
   ``v[e, t, c]`` (``e`` one of the ``a^2`` tile positions, ``t`` a tile of the item);
3. ``v`` transposed to ``vt[e, c, t]``, so that the product's broadcast values are contiguous;
4. for each ``e``, the product ``m[e, t, k] = sum_c vt[e, c, t] u[e, c, k]``, in register blocks of
   ``--tiles`` tiles x 32 output channels (``u``: the filter transform ``G g G^T``, once per call);
5. the output transform ``A^T m A``, vectorized over output channels, plus bias, ReLU, stored.

Usage, from the repository root:
    PYTHONPATH=. python docs/bench/winograd_probe.py --shape 64 128 128 8 8 --m 4
    PYTHONPATH=. python docs/bench/winograd_probe.py --shape 64 32 128 16 16 --images 2 --layer conv2
    PYTHONPATH=. python docs/bench/winograd_probe.py --shape 64 32 32 32 32 --images 1 --spec suite-vgg --layer conv2
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time
from pathlib import Path

import llvmlite.binding
import numba
import numpy as np
import sympy
from numba import njit, prange
from sympy.printing.pycode import PythonCodePrinter

from symcnn.runtime.vector_width import wide_vectors
from symcnn.symbolic.winograd import minimal_filtering

# as the generated modules set them (symcnn/codegen/backends/numba_cpu/templates/layer.py.jinja)
llvmlite.binding.set_option("symcnn", "-force-vector-interleave=1")
numba.config.SLP_VECTORIZE = 1


class Float32Printer(PythonCodePrinter):
    """Every number as a float32 constant: numba computes ``4*d`` for a float32 ``d`` in float64."""

    def _print_Rational(self, number):
        return f"np.float32({float(number)!r})"

    _print_Integer = _print_Rational
    _print_Float = _print_Rational
    _print_Half = _print_Rational
    _print_One = _print_Rational
    _print_NegativeOne = _print_Rational
    _print_Zero = _print_Rational


def transform_statements(matrix, inputs: list[str], outputs: list[str]) -> list[str]:
    """``outputs = matrix * inputs`` as statements, common subexpressions named once."""
    expressions = matrix * sympy.Matrix([sympy.Symbol(name) for name in inputs])
    temporaries, reduced = sympy.cse(list(expressions), symbols=sympy.numbered_symbols("s"))
    printer = Float32Printer()
    return [f"{name} = {printer.doprint(value)}" for name, value in temporaries] + [
        f"{name} = {printer.doprint(value)}" for name, value in zip(outputs, reduced)
    ]


def kernel_source(
    C: int, K: int, H: int, W: int, m: int, images: int, tiles_per_block: int, lanes: int = 32, transpose: bool = True
) -> str:
    """The probe's numba source: ``stage_*`` functions over a whole batch's buffers and ``forward``, the
    stages fused per item."""
    transforms = minimal_filtering(m, 3)
    a, r, pad = transforms.tile, 3, 1
    tiles_h, tiles_w = -(-H // m), -(-W // m)
    per_image = tiles_h * tiles_w
    tiles = per_image * images
    assert tiles % tiles_per_block == 0 and K % lanes == 0, "probe: tiles per item and lanes must divide"
    hp, wp = tiles_h * m + r - 1, tiles_w * m + r - 1
    lines: list[str] = []

    def emit(depth: int, *statements: str) -> None:
        lines.extend("    " * depth + statement for statement in statements)

    def two_passes(depth: int, matrix, load, store, size_in: int, size_out: int, lane: str, between: str) -> None:
        # out = matrix * in * matrix^T in two passes, each a loop of short lane loops (one long loop body
        # of every load and store, LLVM does not vectorize): each input row i times matrix^T into
        # between[i, j, lane], then matrix times each column jo of that, stored by ``store(i, "jo", value)``
        emit(depth, f"for i in range({size_in}):", f"    for {lane} in range(lanes):")
        emit(depth + 2, *(f"p{j} = {load('i', j)}" for j in range(size_in)))
        emit(
            depth + 2,
            *transform_statements(matrix, [f"p{j}" for j in range(size_in)], [f"q{j}" for j in range(size_out)]),
        )
        emit(depth + 2, *(f"{between}[i, {j}, {lane}] = q{j}" for j in range(size_out)))
        emit(depth, f"for jo in range({size_out}):", f"    for {lane} in range(lanes):")
        emit(depth + 2, *(f"p{i} = {between}[{i}, jo, {lane}]" for i in range(size_in)))
        emit(
            depth + 2,
            *transform_statements(matrix, [f"p{i}" for i in range(size_in)], [f"q{i}" for i in range(size_out)]),
        )
        emit(depth + 2, *(store(i, "jo", f"q{i}") for i in range(size_out)))

    emit(
        0, "@njit(fastmath={'contract'}, error_model='numpy')", "def micro(e, t0, kb, vt, u, mb):", "    wide_vectors()"
    )
    emit(1, *(f"acc{t}_{k} = np.float32(0.0)" for t in range(tiles_per_block) for k in range(lanes)))
    emit(1, f"for c in range({C}):")
    emit(
        2,
        *(
            (f"v{t} = vt[e, c, t0 + {t}]" if transpose else f"v{t} = vt[e, t0 + {t}, c]")
            for t in range(tiles_per_block)
        ),
    )
    emit(2, *(f"u{k} = u[e, c, kb * {lanes} + {k}]" for k in range(lanes)))
    emit(2, *(f"acc{t}_{k} += v{t} * u{k}" for t in range(tiles_per_block) for k in range(lanes)))
    emit(
        1, *(f"mb[e, t0 + {t}, kb * {lanes} + {k}] = acc{t}_{k}" for t in range(tiles_per_block) for k in range(lanes))
    )
    emit(0, "")

    emit(0, "@njit(parallel=True, fastmath={'contract'}, error_model='numpy')", "def filter_transform(weight, u):")
    emit(1, "lanes = weight.shape[0]")
    emit(1, f"for c in prange({C}):")
    # the weight's output channels last (a transposed copy), so that the transform is vectorized over them
    emit(2, f"g = np.empty(({r}, {r}, {K}), dtype=weight.dtype)")
    emit(
        2,
        f"for k in range({K}):",
        f"    for i in range({r}):",
        f"        for j in range({r}):",
        "            g[i, j, k] = weight[k, c, i, j]",
    )
    emit(2, f"between = np.empty(({r}, {a}, {K}), dtype=weight.dtype)")
    two_passes(2, transforms.G, lambda i, j: f"g[{i}, {j}, k]", lambda i, j, value: f"u[{i * a} + {j}, c, k] = {value}",
               r, a, "k", "between")
    emit(0, "")

    emit(0, "@njit(fastmath={'contract'}, error_model='numpy')", "def stage_input(x, first, xp, v, vt):")
    emit(1, "lanes = x.shape[1]", f"between = np.empty(({a}, {a}, {C}), dtype=x.dtype)")
    emit(1, f"for b in range({images}):", "    n = first + b")
    emit(2, f"for c in range({C}):", f"    for h in range({H}):", f"        for w in range({W}):")
    emit(5, f"xp[b, h + {pad}, w + {pad}, c] = x[n, c, h, w]")
    emit(1, f"for t in range({tiles}):")
    emit(
        2,
        f"b = t // {per_image}",
        f"i0 = (t % {per_image}) // {tiles_w} * {m}",
        f"j0 = (t % {per_image}) % {tiles_w} * {m}",
    )
    two_passes(2, transforms.BT, lambda i, j: f"xp[b, i0 + {i}, j0 + {j}, c]",
               lambda i, j, value: f"v[{i * a} + {j}, t, c] = {value}", a, a, "c", "between")
    if transpose:
        emit(1, f"for e in range({a * a}):", f"    for c in range({C}):", f"        for t in range({tiles}):")
        emit(4, "vt[e, c, t] = v[e, t, c]")
    emit(0, "")

    emit(0, "@njit(fastmath={'contract'}, error_model='numpy')", "def stage_product(vt, u, mb):")
    emit(
        1,
        f"for e in range({a * a}):",
        f"    for t0 in range(0, {tiles}, {tiles_per_block}):",
        f"        for kb in range({K // lanes}):",
        "            micro(e, t0, kb, vt, u, mb)",
    )
    emit(0, "")

    emit(0, "@njit(fastmath={'contract'}, error_model='numpy')", "def stage_output(mb, bias, first, out):")
    emit(1, "lanes = mb.shape[2]", f"between = np.empty(({a}, {m}, {K}), dtype=mb.dtype)")
    emit(1, f"for t in range({tiles}):")
    emit(
        2,
        f"n = first + t // {per_image}",
        f"i0 = (t % {per_image}) // {tiles_w} * {m}",
        f"j0 = (t % {per_image}) % {tiles_w} * {m}",
    )

    def store_output(i, j, value: str) -> str:
        # plus bias, ReLU; a tile past the map's edge (a size m does not divide) stores only what is inside
        store = f"out[n, k, i0 + {i}, j0 + {j}] = max(np.float32(0.0), {value} + bias[k])"
        return f"if i0 + {i} < {H} and j0 + {j} < {W}: {store}" if (H % m or W % m) else store

    two_passes(2, transforms.AT, lambda i, j: f"mb[{i} * {a} + {j}, t, k]", store_output, a, m, "k", "between")
    emit(0, "")

    emit(0, "@njit(parallel=True, fastmath={'contract'}, error_model='numpy')", "def forward(x, weight, bias, out, u):")
    emit(1, "filter_transform(weight, u)")
    emit(1, f"for item in prange(x.shape[0] // {images}):")
    emit(
        2,
        f"xp = np.zeros(({images}, {hp}, {wp}, {C}), dtype=x.dtype)",
        f"v = np.empty(({a * a}, {tiles}, {C}), dtype=x.dtype)",
        f"vt = np.empty(({a * a}, {C}, {tiles}), dtype=x.dtype)",
        f"mb = np.empty(({a * a}, {tiles}, {K}), dtype=x.dtype)",
    )
    emit(
        2,
        f"stage_input(x, item * {images}, xp, v, vt)",
        f"stage_product({'vt' if transpose else 'v'}, u, mb)",
        f"stage_output(mb, bias, item * {images}, out)",
    )
    return "\n".join(lines) + "\n"


def median_ms(function, *arguments, repeat: int) -> float:
    function(*arguments)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function(*arguments)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", nargs=5, type=int, default=[64, 128, 128, 8, 8], metavar=("N", "C", "K", "H", "W"))
    parser.add_argument("--m", type=int, default=4, help="outputs per tile along each axis: F(m x m, 3 x 3)")
    parser.add_argument("--images", type=int, default=8, help="images per parallel item")
    parser.add_argument("--tiles", type=int, default=8, help="tiles per register block of the product")
    parser.add_argument("--lanes", type=int, default=32, help="output channels per register block of the product")
    parser.add_argument(
        "--no-transpose", action="store_true", help="the product reads the input transform's v[e, t, c] as it is"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=31)
    parser.add_argument("--spec", default="suite-wide", help="the spec whose generated kernel is timed beside")
    parser.add_argument("--layer", default="conv3", help="its 3 x 3 convolution of this shape (fused with ReLU)")
    options = parser.parse_args()
    numba.set_num_threads(options.threads)
    N, C, K, H, W = options.shape
    # checked before compiling: the probe's loops assume whole items, blocks and lane groups
    per_item = options.images * -(-H // options.m) * -(-W // options.m)
    if min(N, C, K, H, W, options.m, options.images, options.tiles, options.lanes) < 1:
        parser.error("--shape, --m, --images, --tiles, --lanes: must be >= 1")
    if N % options.images or per_item % options.tiles or K % options.lanes:
        parser.error(f"--images must divide N ({N}), --tiles the tiles of an item ({per_item}), "
                     f"--lanes the output channels ({K})")
    namespace = {"njit": njit, "prange": prange, "np": np, "wide_vectors": wide_vectors}
    started = time.perf_counter()
    exec(
        compile(
            kernel_source(
                C, K, H, W, options.m, options.images, options.tiles, options.lanes, transpose=not options.no_transpose
            ),
            "<winograd_probe>",
            "exec",
        ),
        namespace,
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, C, H, W)).astype(np.float32)
    weight = (rng.standard_normal((K, C, 3, 3)) / np.sqrt(9 * C)).astype(np.float32)
    bias = (0.1 * rng.standard_normal(K)).astype(np.float32)
    a = options.m + 2
    u = np.empty((a * a, C, K), np.float32)
    out = np.empty((N, K, H, W), np.float32)
    namespace["forward"](x, weight, bias, out, u)
    print(f"compiled in {time.perf_counter() - started:.1f} s")

    import torch  # the oracle extra: the float64 reference and PyTorch's time

    torch.set_num_threads(options.threads)
    with torch.no_grad():
        reference = torch.relu(
            torch.nn.functional.conv2d(
                torch.from_numpy(x).double(),
                torch.from_numpy(weight).double(),
                torch.from_numpy(bias).double(),
                padding=1,
            )
        ).numpy()
    scale = np.abs(reference).max()
    print(
        f"F({options.m}x{options.m}, 3x3): max |error| {np.abs(out - reference).max():.2e} (outputs up to {scale:.2f})"
    )

    xp = np.zeros(
        (options.images, -(-H // options.m) * options.m + 2, -(-W // options.m) * options.m + 2, C), np.float32
    )
    v, vt = np.empty((a * a, per_item, C), np.float32), np.empty((a * a, C, per_item), np.float32)
    mb = np.empty((a * a, per_item, K), np.float32)
    flops = 2 * N * K * C * 9 * H * W
    stages = {
        "filter transform (2 threads)": (namespace["filter_transform"], (weight, u)),
        "input: copy, transform, transpose (1 item, 1 thread)": (namespace["stage_input"], (x, 0, xp, v, vt)),
        "product (1 item, 1 thread)": (namespace["stage_product"], (v if options.no_transpose else vt, u, mb)),
        "output transform, bias, ReLU (1 item, 1 thread)": (namespace["stage_output"], (mb, bias, 0, out)),
    }
    for label, (function, arguments) in stages.items():
        print(f"  {label:54s} {median_ms(function, *arguments, repeat=options.repeat):.3f} ms")
    product_flops = 2 * a * a * per_item * C * K
    product_ms = median_ms(namespace["stage_product"], v if options.no_transpose else vt, u, mb, repeat=options.repeat)
    print(f"  product: {product_flops / product_ms / 1e6:.0f} GFLOP/s on one thread")

    winograd = median_ms(namespace["forward"], x, weight, bias, out, u, repeat=options.repeat)
    with torch.no_grad():
        xt, wt, bt = torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias)
        pytorch = median_ms(
            lambda: torch.relu(torch.nn.functional.conv2d(xt, wt, bt, padding=1)), repeat=options.repeat
        )
    rows = [("winograd (this probe)", winograd), ("pytorch conv2d + relu", pytorch)]
    try:
        from symcnn.runtime.loader import load_kernels
        from symcnn.spec import load_spec

        spec = load_spec(options.spec)
        package = load_kernels(spec)
        # the layer's kernel fused with the ReLU after it, as the network calls it: <layer>_with_relu<k>
        modules = [
            importlib.import_module(f"{package.__name__}.{path.stem}")
            for path in sorted(Path(package.__file__).parent.glob(f"{options.layer}_with_relu*.py"))
        ]
        direct = next(
            getattr(module, f"{module.__name__.rsplit('.', 1)[1]}_forward")
            for module in modules
            if hasattr(module, f"{module.__name__.rsplit('.', 1)[1]}_forward")
        )
        direct_out = np.empty_like(out)
        rows.insert(
            1,
            (
                f"generated direct ({options.spec} {direct.__name__})",
                median_ms(direct, x, weight, bias, direct_out, repeat=options.repeat),
            ),
        )
        print(f"generated direct: max |error| {np.abs(direct_out - reference).max():.2e}")
    except (ValueError, AttributeError, ImportError, StopIteration) as error:
        print(f"(no generated kernel of this shape timed: {error})")
    print(f"{N} x {C} -> {K} channels, {H} x {W}, {options.threads} threads, median of {options.repeat}:")
    for label, ms in rows:
        print(f"  {label:58s} {ms:7.3f} ms  {flops / ms / 1e6:6.0f} GFLOP/s (direct-equivalent)")


if __name__ == "__main__":
    main()
