"""A layer's weight and bias gradients in one kernel, where the bias's is a sum of what the weight's copies.

A convolution's weight gradient in the lanes schedule over the batch (:mod:`symcnn.codegen.backends.numba_cpu.lanes`)
copies each image's ``dL/dY`` with its channel axis last before adding that image's products into its chunk's
tile. Its bias gradient, ``dL/db[c_out] = sum_{n, i, j} dL/dY[n, c_out, i, j]``, is the sum of those copies over
every axis but the channel; its own kernel reads all of ``dL/dY`` from memory once more (measured on
``suite-dilated``'s 32-channel layers, 8 MB at batch 64: 0.33-0.34 ms each in the train step).

:func:`weight_and_bias_kernel` makes ``<label>_grad_weight_and_bias(grad_output, x, grad_weight, grad_bias)``: the
weight gradient's kernel whose chunks also add each image's copy into a float64 sum per lane (read back
from the copy, just written, instead of from memory), the chunks' sums added in order at the end
(:class:`~symcnn.codegen.kernel_ir.StagedSum`): the same sums whatever the thread count. Its update is the bias
formula's summand with the copy read in place of ``dL/dY``. The weight gradient is computed exactly as its own
kernel computes it (bit for bit); the bias gradient adds the same values as its own kernel in another order
(equal to rounding), so a PyTorch module's whole pass, equal to its operators' bit for bit, keeps the separate
kernels (:class:`symcnn.torch.whole_pass`).

Made where the formulas and the weight kernel's schedule allow it, never by op: the bias gradient is one
unconditional sum of one read of an operand, over the batch and over every other axis in full, its output index
at that read's position of the weight kernel's lane; the weight kernel (and its narrow variant, if any) sums the
batch in chunks and copies that operand per image. Otherwise ``None``, and the two kernels stay apart (a dense
layer's weight gradient, in blocks of its lanes, copies nothing; a few-channel convolution's columns schedule).

Example:
    >>> from symcnn.codegen.network import layer_kernels
    >>> from symcnn.spec import load_spec
    >>> conv3 = next(layer for layer in load_spec("suite-dilated").layers if layer.label == "conv3")
    >>> fused = next(kernel for kernel in layer_kernels(conv3) if kernel.name.endswith("_and_bias"))
    >>> fused.name, fused.arguments
    ('conv3_grad_weight_and_bias', ('grad_output', 'x', 'grad_weight', 'grad_bias'))
    >>> fused.lanes.staged_sum.updates[1]
    'lane_sum1 += grad_output_t[axis0, axis1, axis2 + 1]'
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import sympy
from sympy import Indexed, Sum, Symbol

from symcnn.codegen.backends.numba_cpu.stagings import named_array
from symcnn.codegen.kernel_ir import Kernel, Loop, StagedSum
from symcnn.codegen.lower import (SWITCH, Lowering, batch_symbol, gradient_output, gradient_terms, kernel_name)
from symcnn.printing.nodes import FloorDiv
from symcnn.spec import LayerSpec
from symcnn.symbolic.adjoint import GradientFormula

__all__ = ["WEIGHT_AND_BIAS", "weight_and_bias_kernel"]

#: What the fused kernel computes, after the layer's label: ``conv1_grad_weight_and_bias``.
WEIGHT_AND_BIAS = "grad_weight_and_bias"

#: The copy's lanes are summed in blocks of at most this many (one local variable each): 32 float64 sums
#: are four 512-bit vectors, or eight 256-bit ones, of the 16 or 32 registers.
LANE_BLOCK = 32


def weight_and_bias_kernel(layer: LayerSpec, gradients: list[GradientFormula], values: dict,
                           separate: list[Kernel]) -> Optional[Kernel]:
    """``<label>_grad_weight_and_bias``: the weight gradient's kernel (among ``separate``, the gradients' own
    kernels, in the order of ``gradients``) that also sums the bias gradient from its per-image copy of
    ``dL/dY``; ``None`` where the formulas or the schedule do not allow it (see the module's docstring)."""
    roles = [gradient.gradient.role for gradient in gradients]
    if "grad_weight" not in roles or "grad_bias" not in roles:
        return None
    weight, bias = gradients[roles.index("grad_weight")], gradients[roles.index("grad_bias")]
    weight_kernel = separate[roles.index("grad_weight")]
    wide = _with_staged_sum(weight_kernel, weight, bias, values)
    narrow = weight_kernel.narrow and _with_staged_sum(weight_kernel.narrow, weight, bias, values)
    if wide is None or (weight_kernel.narrow is not None and narrow is None):
        return None
    output = gradient_output(bias)
    bias_kernel = separate[roles.index("grad_bias")]
    doc = (f"{layer.kind}: the weight's and the bias's gradients in one kernel, the bias's summed from the weight's\n"
           f"copy of each image's dL/dY. The weight's as {weight_kernel.name} computes it:\n"
           f"{weight_kernel.formula}\n\nThe bias's, as {bias_kernel.name} sums it, in another order:\n"
           f"{bias_kernel.formula}")
    # its register blocks (if any) are the weight gradient's: called by that kernel's name, not defined again
    arguments = (*weight_kernel.arguments, output)  # the variant for 256-bit vectors (if any) takes the same
    return replace(wide, name=kernel_name(layer.label, WEIGHT_AND_BIAS), formula=doc, arguments=arguments,
                   narrow=narrow and replace(narrow, arguments=arguments), blocks_of=weight_kernel.name)


def _with_staged_sum(kernel: Kernel, weight: GradientFormula, bias: GradientFormula, values: dict) -> Optional[Kernel]:
    """``kernel`` (the weight gradient's, one vector width's) with the bias gradient as its :class:`StagedSum`, or
    ``None``."""
    lanes = kernel.lanes
    if kernel.kind != "lanes" or lanes is None or not lanes.over_batch or lanes.chunk_rows is None:
        return None  # not summed in chunks of the batch (a lane-blocked dense weight gradient)
    concrete_weight, concrete_bias = weight.substitute(values), bias.substitute(values)
    batch = batch_symbol(weight.forward)
    products, sums = gradient_terms(concrete_weight), gradient_terms(concrete_bias)
    if len(products) != 1 or len(sums) != 1 or products[0].conditions or sums[0].conditions:
        return None  # not one unconditional product and one unconditional sum
    (product,), (summed,) = products, sums
    read = summed.body if isinstance(summed.body, Indexed) else None
    streamed = next((factor for factor in sympy.Mul.make_args(product.body)
                     if isinstance(factor, Indexed) and read is not None and factor.base == read.base), None)
    if streamed is None or not all(isinstance(index, Symbol) for index in (*streamed.indices, *read.indices)):
        return None
    lanes_of_weight = [index for index in streamed.indices if index in concrete_weight.indices]
    images = [var for var, low, high in product.limits if high + 1 == batch and var in streamed.indices]
    if len(lanes_of_weight) != 1 or len(images) != 1:
        return None
    lane, image = lanes_of_weight[0], images[0]
    positions = {index: position for position, index in enumerate(streamed.indices)}
    lane_position, image_position = positions[lane], positions[image]
    shape = next((tensor.shape for tensor in concrete_bias.operands if tensor.base == read.base), None)
    if shape is None:
        return None
    # the bias: its output at the lane's position, every other axis of the operand summed in full
    limits = {var: (low, high) for var, low, high in summed.limits}
    (output_index,) = concrete_bias.indices
    if read.indices[lane_position] != output_index or len(set(read.indices)) != len(read.indices):
        return None
    for position, index in enumerate(read.indices):
        if position != lane_position and limits.get(index) != (0, shape[position] - 1):
            return None
    if set(limits) != set(read.indices) - {output_index}:
        return None
    lowering = Lowering(concrete_bias.operands + (concrete_bias.gradient,), batch, {SWITCH: "switch"})
    copy_name = f"{lowering.names[read.base]}_t"
    copy = next((staging for staging in lanes.stagings if staging.name == copy_name and staging.per_image), None)
    order = [position for position in range(len(shape)) if position not in (lane_position, image_position)]
    extents = [lowering.code(shape[position]) for position in order] + [lowering.code(shape[lane_position])]
    if copy is None or not all(extent.isdigit() for extent in (*copy.shape, *extents)):
        return None  # no such copy, or an extent that is not a constant
    if tuple(copy.shape) == tuple(extents):
        group = 0  # the copy's axes in the operand's order, the lane last
    elif (len(copy.shape) == len(extents) + 1 and tuple(copy.shape[1:-1]) == tuple(extents[:-1])
          and int(copy.shape[0]) * int(copy.shape[-1]) == int(shape[lane_position])):
        group = int(copy.shape[-1])  # in groups of lanes: [lane // group, ..., lane % group]
    else:
        return None
    staged_sum = _staged_sum(lowering, copy, group, read, summed.body, gradient_output(bias), output_index,
                             shape[lane_position])
    return replace(kernel, lanes=replace(lanes, staged_sum=staged_sum))


def _staged_sum(lowering: Lowering, copy, group: int, read: Indexed, body, output: str, output_index: Symbol,
                lanes) -> StagedSum:
    """The :class:`StagedSum` of ``body`` (the bias's summand, ``read`` in it) from ``copy`` (``group``: its lanes
    in groups of that many, or 0), stored into ``output`` (the bias gradient) at ``output_index`` (``lanes`` of
    them). Each image's copy is summed in blocks of its lanes, each lane's sum a local variable (one
    statement per lane, which LLVM's SLP vectorizer packs into vectors, as the register blocks'), then added
    into the chunk's sums: a loop over the lanes inside the pixels' loops kept its sums in memory, 6.5x slower
    (measured, one thread: 0.163 against 0.025 ms for 64 images of 16 x 16 x 32)."""
    printer = lowering.printer.doprint
    axes = [Symbol(f"axis{position}", integer=True, nonnegative=True) for position in range(len(copy.shape))]
    extents = [int(extent) for extent in copy.shape]
    name, summed = "staged_sum", named_array(lowering, "staged_sum")
    if group:  # [lane // group, ..., lane % group]: a block per group, its lanes the last axis's
        width, block_loop, pixels = group, Loop(printer(axes[0]), copy.shape[0]), axes[1:-1]
        lane_of = lambda k: (axes[0], k)  # noqa: E731  (the sum's index of lane k of the block)
        element_of = lambda k: (*axes[:-1], k)  # noqa: E731
    else:  # [..., lane]: blocks of the last axis
        width = max(d for d in range(1, min(extents[-1], LANE_BLOCK) + 1) if extents[-1] % d == 0)
        block_loop, pixels = Loop(printer(axes[-1]), copy.shape[-1], step=width), axes[:-1]
        lane_of = lambda k: (axes[-1] + k,)  # noqa: E731
        element_of = lambda k: (*axes[:-1], axes[-1] + k)  # noqa: E731
    locals_ = [Symbol(f"lane_sum{k}") for k in range(width)]
    copy_base = named_array(lowering, copy.name)
    lane_axes = [axes[0], axes[-1]] if group else [axes[-1]]
    lane_index = (FloorDiv(output_index, group), sympy.Mod(output_index, group)) if group else (output_index,)
    chunk = Symbol("chunk", integer=True, nonnegative=True)
    chunks = Symbol("chunks", integer=True, positive=True)
    sums = named_array(lowering, "sums")[(chunk, *lane_index)]
    shape = (copy.shape[0], copy.shape[-1]) if group else (copy.shape[-1],)
    return StagedSum(
        output=output, name=name, shape=shape,
        block=block_loop,
        initial=tuple(f"{printer(local)} = {lowering.identity(Sum)}" for local in locals_),
        loops=tuple(Loop(printer(axis), str(extents[axes.index(axis)])) for axis in pixels),
        updates=tuple(lowering.update(local, Sum, body.xreplace({read: copy_base[element_of(k)]}))
                      for k, local in enumerate(locals_)),
        stores=tuple(lowering.update(summed[lane_of(k)], Sum, local) for k, local in enumerate(locals_)),
        chunk_loops=tuple(Loop(printer(axis), extent) for axis, extent in zip(lane_axes, shape)),
        index=", ".join(printer(axis) for axis in lane_axes),
        store_loops=(Loop(printer(output_index), lowering.code(lanes)),),
        reduction=lowering.reduction("total", Sum(sums, (chunk, 0, chunks - 1))),
        store=printer(named_array(lowering, output)[output_index]))
