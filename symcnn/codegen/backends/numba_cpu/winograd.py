"""Winograd's F(4 x 4, 3 x 3): a 3 x 3, stride-1 convolution's forward pass in fewer multiplications, where a
spec asks for it (``[kernels] winograd = true``).

A 4 x 4 tile of one output channel from one input channel takes 144 multiply-adds directly; Winograd's minimal
filtering (:func:`symcnn.symbolic.winograd.minimal_filtering`, proved equal to the registry's ``conv2d``
formula by :func:`~symcnn.symbolic.winograd.check_2d`) computes it from 36 products of transformed values::

    Y = A^T [ sum_c (G g_c G^T) .* (B^T d_c B) ] A        (.*: element by element over the 6 x 6 tile)

Summed over the input channels ``c`` at each of the 36 tile positions ``e``, the products are 36 matrix
products ``M[e, t, k] = sum_c V[e, c, t] U[e, c, k]`` (tiles ``t`` by output channels ``k``), which the direct
kernels' register blocks compute (:func:`~symcnn.codegen.backends.numba_cpu.registers.register_tile`). A work
item takes a few images (:data:`ITEM_TILES` tiles): copies them zero-padded with their channels last,
transforms each tile (``B^T d B``, two passes of 1-D transforms vectorized over channels), sums the
products, and transforms them back (``A^T M A``), storing each output element as the formula's constant
term (the bias) plus its value, through the kernel's epilogue (a fused ReLU). The filters are transformed
once a call. The transforms are printed from the matrices, their coefficients in the input's dtype; the
loops are the template's.

It is not the formula's order of additions: float32 outputs differ from the direct kernel's by several times
its rounding (max |error| 3.7e-5 against 6.0e-6 on outputs up to 5, PyTorch in float64 the reference:
docs/performance.md), so a spec opts in, and a batch of fewer than two items' images takes the direct
kernel (:attr:`~symcnn.codegen.kernel_ir.Kernel.small_batch`). It pays where the channels are many, the
output channels above all, over which each input tile's transform is shared (:data:`MIN_LANES`).
:func:`winograd_schedule` returns ``None`` where the kernel is not such a correlation or would not pay.

Example (``suite-wide``'s conv3, 128 -> 128 channels at 8 x 8, with ``winograd = true``):

    >>> from symcnn.codegen.lower import layer_formula
    >>> from symcnn.spec import load_spec
    >>> conv3 = next(layer for layer in load_spec("suite-wide").layers if layer.label == "conv3")
    >>> from symcnn.codegen.winograd_kernels import winograd_forward_kernel
    >>> kernel = winograd_forward_kernel(conv3, *layer_formula(conv3))
    >>> kernel.kind, kernel.winograd.images, kernel.winograd.positions
    ('winograd', 8, 36)
    >>> [s for s in kernel.winograd.inputs.statements if s.startswith("q0")], dict(kernel.winograd.constants)["k4"]
    (['q0 = k4*p0 - k6*p2 + p4'], '4')
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import NamedTuple, Optional

import sympy
from sympy import Expr, Indexed, Sum, Symbol

from symcnn.codegen.backends.numba_cpu.lanes import UNROLL, _is_bound_of
from symcnn.codegen.backends.numba_cpu.registers import WIDE_BLOCK_ROWS, lane_group, register_tile
from symcnn.codegen.backends.numba_cpu.stagings import named_array
from symcnn.codegen.epilogue import epilogue_at
from symcnn.codegen.kernel_ir import Loop, Registers, Separable, Staging, Winograd
from symcnn.printing.nodes import FloorDiv
from symcnn.symbolic.winograd import Transforms, minimal_filtering

__all__ = ["winograd_schedule", "Correlation", "correlation", "TILE", "ITEM_TILES", "MIN_LANES", "MIN_CHANNELS"]

#: Outputs per tile along each axis: F(4 x 4, 3 x 3), 36 products for 16 outputs (144 directly).
TILE = 4
TAPS = 3

#: A work item takes enough images for about this many tiles (the product's rows): 8 images of 8 x 8, 2 of
#: 16 x 16 (the probe's, docs/bench/winograd_probe.py). Its buffers (36 x tiles x channels) stay within L2.
ITEM_TILES = 32

#: Winograd is used for at least this many output channels (the kernel's lanes) and this many channels summed.
#: The products (36 per tile for each pair of channels) shrink by 4x; the input's copy and transform, made once
#: per tile and input channel, are shared by every output channel, so they pay only over enough of them.
#: Measured, each kernel against the direct one (batch 64, 2 threads, docs/performance.md), Winograd's time over
#: the direct kernel's, channels summed -> output channels: 128 -> 128 at 8 x 8 0.62 (forward), 0.60 (input
#: gradient); 32 -> 128 at 16 x 16 0.55; 64 -> 128 0.68; 64 -> 64 0.75; 32 -> 64 0.65; 128 -> 64 at 8 x 8 0.57;
#: but 128 -> 32 at 16 x 16 1.20 (an input gradient) and 32 -> 32 at 32 x 32 1.14.
MIN_LANES = 64
MIN_CHANNELS = 32

#: At most this many tiles per image (a 32 x 32 map): the larger were not measured.
MAX_IMAGE_TILES = 64


@functools.cache
def _transforms() -> Transforms:
    return minimal_filtering(TILE, TAPS)


class Correlation(NamedTuple):
    """A correlation as F(m x m, 3 x 3) takes it: ``output[n, k, i, j] = constant + sum_{c, u, v} weight *
    image[n, c, i + u + offsets[0], j + v + offsets[1]]``, ``weight`` a read at ``k``, ``c`` and the taps ``u, v``
    (``W[k, c, u, v]``; an input gradient's ``W[c, k, 2 - u, 2 - v]``), the image read as zero outside its
    shape."""

    weight: Indexed
    image: Indexed
    constant: Optional[Expr]
    channel: Symbol
    channels: int
    taps: tuple[Symbol, Symbol]
    offsets: tuple[int, int]  # minus the padding
    image_shape: tuple[int, ...]


def correlation(indices, shape, batch, terms, tensors) -> Optional[Correlation]:
    """``terms`` (over ``indices`` of ``shape``) as a 3 x 3, stride-1, dilation-1 correlation of one group, or
    ``None``: a forward pass, or the input gradient of one (``W[c_out, c_in, u, v] * dL/dY[n, c_out, k - u + p,
    l - v + p]``, read with its taps reversed, ``u -> 2 - u``: the same sum reindexed)."""
    if len(indices) != 4 or shape[0] != batch or not all(size.is_Integer for size in shape[1:]):
        return None
    products = [term for term in terms if term.limits]
    constants = [term for term in terms if not term.limits]
    if len(products) != 1 or len(constants) > 1:
        return None
    (product,) = products
    shapes = {tensor.base: tensor.shape for tensor in tensors}
    factors = sympy.Mul.make_args(product.body)
    if len(factors) != 2 or not all(isinstance(factor, Indexed) and factor.base in shapes for factor in factors):
        return None
    limits = {var: (low, high) for var, low, high in product.limits}
    for weight, image in (factors, factors[::-1]):
        if len(weight.indices) != 4 or len(image.indices) != 4 or image.indices[0] != indices[0]:
            continue
        # a tap read backwards (its coefficient -1 in the image's index) is reversed: u -> 2 - u
        reversed_taps = {var: TAPS - 1 - var for position in (2, 3) for var in image.indices[position].free_symbols
                         if limits.get(var) == (0, TAPS - 1) and image.indices[position].coeff(var) == -1}
        form = _forward_correlation(indices, limits, weight.xreplace(reversed_taps), image.xreplace(reversed_taps),
                                    [c.xreplace(reversed_taps) for c in product.conditions], shapes)
        if form is not None:
            return form._replace(constant=constants[0].body if constants else None)
    return None


def _forward_correlation(indices, limits, weight: Indexed, image: Indexed, conditions, shapes) -> Optional[Correlation]:
    """``weight * image`` summed over ``limits`` as ``sum_{c, u, v} weight(lane, c, u, v) * image[n, c, row + u -
    p_h, column + v - p_w]``, every condition a bound of the image's, or ``None``."""
    _, lane, row, column = indices
    channel = image.indices[1]
    taps = [next((var for var in limits if limits[var] == (0, TAPS - 1)
                  and sympy.expand(image.indices[position] - axis - var).is_Integer), None)
            for position, axis in ((2, row), (3, column))]
    if (not isinstance(channel, Symbol) or None in taps or set(limits) != {channel, *taps}
            or limits[channel][0] != 0 or {lane, channel} != set(weight.indices[:2])
            or not set().union(*(index.free_symbols for index in weight.indices)) <= {lane, channel, *taps}
            or not all(size.is_Integer for size in shapes[image.base][1:])
            or not all(_is_bound_of(c, [(image, shapes[image.base])]) for c in conditions)):
        return None
    offsets = [int(sympy.expand(image.indices[position] - axis - tap))
               for position, axis, tap in ((2, row, taps[0]), (3, column, taps[1]))]
    if any(offset > 0 for offset in offsets):
        return None
    return Correlation(weight, image, None, channel, int(limits[channel][1]) + 1, tuple(taps), tuple(offsets),
                       tuple(int(size) for size in shapes[image.base][1:]))


def winograd_schedule(lowering, indices, shape, batch, terms, output_name: str, tensors) -> Optional[dict]:
    """The :class:`~symcnn.codegen.kernel_ir.Kernel` fields of the Winograd schedule, or ``None`` where the
    kernel is not a correlation it takes (:func:`correlation`) or would not pay (:data:`MIN_LANES`,
    :data:`MIN_CHANNELS`, :data:`MAX_IMAGE_TILES`, output channels a whole number of the register blocks'
    groups)."""
    form = correlation(indices, shape, batch, terms, tensors)
    if form is None:
        return None
    lanes, height, width = (int(size) for size in shape[1:])
    channels = form.channels
    group = lane_group(lanes)
    if group is None or lanes < MIN_LANES or channels < MIN_CHANNELS:
        return None
    transforms = _transforms()
    m, a = transforms.m, transforms.tile
    tiles_h, tiles_w = -(-height // m), -(-width // m)
    per_image = tiles_h * tiles_w
    if per_image > MAX_IMAGE_TILES:
        return None
    copy_extents = (tiles_h * m + TAPS - 1, tiles_w * m + TAPS - 1)
    if any(size - 1 - offset >= extent for size, offset, extent in zip(form.image_shape[1:], form.offsets,
                                                                        copy_extents)):
        return None  # an image row no output reads would be copied past the tiles (numba does not bounds-check)
    images = max(1, ITEM_TILES // per_image)
    tiles = -(-images * per_image // WIDE_BLOCK_ROWS) * WIDE_BLOCK_ROWS  # whole blocks of the product's rows
    slots = -(-tiles // per_image)  # the copy's images: a padding tile reads zeros

    code = lowering.code
    symbol = functools.partial(Symbol, integer=True, nonnegative=True)
    item, slot, t, e, row, col, h, w, i0, j0 = (symbol(name) for name in (
        "item", "slot", "t", "e", "row", "column", "h", "w", "i0", "j0"))
    image_index, lane, out_row, out_column = indices
    channel, (tap_h, tap_w) = form.channel, form.taps
    first = images * item
    # not u and v: a convolution's formula names its taps so
    x_tiles, v, product, u, g, y = (named_array(lowering, name) for name in (
        "x_tiles", "v_tiles", "product", "u_filters", "g", "y"))
    between_filters, between_in, between_out = (named_array(lowering, name) for name in (
        "between_filters", "between_in", "between_out"))
    image_name, weight_name = code(form.image.base), code(form.weight.base)
    constants: dict = {}

    filter_copy = Staging("g", (str(TAPS), str(TAPS), str(lanes)),
                          (Loop(code(lane), str(lanes)), Loop(code(tap_h), str(TAPS)), Loop(code(tap_w), str(TAPS))),
                          _index(code, g, tap_h, tap_w, lane), code(form.weight), per_image=False, zeroed=False)
    weight_lanes = f"{weight_name}.shape[{list(form.weight.indices).index(lane)}]"  # an input gradient's: axis 1
    filters = _separable(
        code, transforms.G, constants, Loop(code(lane), weight_lanes), TAPS, a,
        lambda j: g[row, j, lane], between_filters, (TAPS, a, lanes), row, col, lane,
        lambda position: u[FloorDiv(lane, group), position * a + col, channel, sympy.Mod(lane, group)])
    copy = Staging("x_tiles", (str(slots), *(str(extent) for extent in copy_extents), str(channels)),
                   (Loop(code(slot), code(sympy.Min(images, batch - first))), Loop(code(channel), str(channels)),
                    Loop(code(h), str(form.image_shape[1])), Loop(code(w), str(form.image_shape[2]))),
                   _index(code, x_tiles, slot, h - form.offsets[0], w - form.offsets[1], channel),
                   code(form.image.base[first + slot, channel, h, w]), per_image=False, zeroed=True)
    origin = ((code(slot), code(FloorDiv(t, per_image))),
              (code(i0), code(m * FloorDiv(sympy.Mod(t, per_image), tiles_w))),
              (code(j0), code(m * sympy.Mod(sympy.Mod(t, per_image), tiles_w))))
    inputs = _separable(
        code, transforms.BT, constants, Loop(code(channel), f"{image_name}.shape[1]"), a, a,
        lambda j: x_tiles[slot, i0 + row, j0 + j, channel], between_in, (a, a, channels), row, col, channel,
        lambda position: v[position * a + col, t, channel])
    registers = _from_zero(lowering, product, register_tile(
        lowering, [(channel, 0, channels - 1)], [(t, tiles)], (v[e, t, channel], u[e, channel, lane]), lane,
        product[e, t, lane], UNROLL, lanes, packed=True))
    outputs = _separable(
        code, transforms.AT, constants, Loop(code(lane), f"{code(lowering.array(output_name))}.shape[1]"), a, m,
        lambda j: product[row * a + j, t, lane], between_out, (a, m, lanes), row, col, lane,
        lambda position: y[position, col, lane])
    store = lowering.array(output_name)[tuple(indices)]
    value = y[out_row - i0, out_column - j0, lane] + (form.constant if form.constant is not None else 0)
    return {
        "kind": "winograd",
        "output_loops": (Loop(code(item), code(FloorDiv(batch + images - 1, images)), parallel=True),),  # the items
        "winograd": Winograd(
            images=images,
            tiles=code(per_image * sympy.Min(images, batch - first)),
            positions=a * a,
            filter_loop=Loop(code(channel), str(channels), parallel=True),
            filter_copy=filter_copy,
            filters=filters,
            u_shape=(str(lanes // group), str(a * a), str(channels), str(group)),
            copy=copy,
            tile_origin=origin,
            inputs=inputs,
            v_shape=(str(a * a), str(tiles), str(channels)),
            product_shape=(str(a * a), str(tiles), str(lanes)),
            registers=registers,
            outputs=outputs,
            y_shape=(str(m), str(m), str(lanes)),
            store_loops=(Loop(code(lane), str(lanes)),
                         Loop(code(out_row), code(sympy.Min(height, i0 + m)), start=code(i0)),
                         Loop(code(out_column), code(sympy.Min(width, j0 + m)), start=code(j0))),
            image=f"{code(image_index)} = {code(first + slot)}",
            store=code(store),
            value=code(value),
            constants=tuple((name, code(number)) for number, name in constants.items()),
            epilogue=epilogue_at(lowering, store),
        ),
    }


def _from_zero(lowering, product, registers: Registers) -> Registers:
    """``registers`` (and its narrow blocks) starting each block's sums at the identity, in the products' dtype,
    instead of loading them: ``product`` then needs no zeroing (measured: zeroing it took about a fifth of a
    16 x 16 layer's time)."""
    zero = (ZERO, f"{lowering.code(product)}.dtype.type({lowering.identity(Sum)})")
    started = replace(registers, views=(zero, *registers.views),
                      loads=tuple(f"{load.split(' = ')[0]} = {ZERO}" for load in registers.loads))
    return replace(started, narrow=_from_zero(lowering, product, registers.narrow)) if registers.narrow else started


#: The name of a block's first value of each sum (the identity in the products' dtype).
ZERO = "zero"


def _index(code, array, *indices) -> str:
    """The printed index of ``array[indices]`` (a staging's target)."""
    printed = code(array[indices])
    return printed[printed.index("[") + 1:-1]


def _separable(code, matrix, constants: dict, lane_loop: Loop, rows: int, columns: int, read, between,
               between_shape, row: Symbol, column: Symbol, lane: Symbol, stored) -> Separable:
    """``matrix * d * matrix^T`` of each lane's ``rows`` x ``rows`` tile ``d`` (``read(j)``: the current row's
    element ``j``) in two passes through ``between``; ``stored(i)``: where the result's row ``i`` of the current
    column goes. ``matrix`` is ``columns`` x ``rows``."""
    statements = _transform(code, matrix, constants)
    return Separable(
        lane=lane_loop, rows=rows, columns=columns,
        first_reads=tuple(f"p{j} = {code(read(j))}" for j in range(rows)),
        statements=statements,
        first_stores=tuple(f"{code(between[row, j, lane])} = q{j}" for j in range(columns)),
        between=str(between.label),
        between_shape=tuple(str(extent) for extent in between_shape),
        second_reads=tuple(f"p{i} = {code(between[i, column, lane])}" for i in range(rows)),
        second_stores=tuple(f"{code(stored(i))} = q{i}" for i in range(columns)))


def _transform(code, matrix, constants: dict) -> tuple[str, ...]:
    """``q = matrix * p`` as statements, common subexpressions named once (``s0 = ...``), every coefficient but
    1 and -1 a named constant (``k0``: the template binds it in the input's dtype, so that a float32 kernel
    computes in float32)."""
    inputs = [Symbol(f"p{j}") for j in range(matrix.cols)]
    expressions = list(matrix * sympy.Matrix(inputs))
    temporaries, reduced = sympy.cse(expressions, symbols=sympy.numbered_symbols("s"))

    def named(expr):
        numbers = sorted((number for number in expr.atoms(sympy.Number) if abs(number) != 1 and number != 0),
                         key=sympy.default_sort_key)
        for number in numbers:
            constants.setdefault(abs(number), f"k{len(constants)}")
        return expr.xreplace({number: (1 if number > 0 else -1) * Symbol(constants[abs(number)])
                              for number in numbers})

    return tuple([f"{name} = {code(named(value))}" for name, value in temporaries]
                 + [f"q{position} = {code(named(value))}" for position, value in enumerate(reduced)])
