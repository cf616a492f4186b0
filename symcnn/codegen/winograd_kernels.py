"""A convolution's forward and input-gradient kernels by Winograd's minimal filtering, where its spec asks for it.

A spec's ``[kernels]`` table with ``winograd = true`` marks its convolutions
(:attr:`symcnn.spec.LayerSpec.winograd`). For each, :func:`forward_kernel` and :func:`gradient_kernel` lower the
direct kernel as always (:mod:`symcnn.codegen.lower`) and, where the layer is a 3 x 3, stride-1 correlation with
channels enough to pay (:func:`symcnn.codegen.backends.numba_cpu.winograd.winograd_schedule`; its input gradient
is one too, the taps reversed), the Winograd kernel, which carries the direct one as its variant for small
batches: a batch of fewer than two work items' images would leave a thread idle and compute a whole item for a
few images. Its module names them ``<name>_winograd`` and ``<name>_direct`` and calls the one a batch suits
(:func:`symcnn.codegen.package.small_batch_forms`). The weight's and bias's gradients stay direct.

Example (``suite-wide``'s conv3 with ``winograd = true``: Winograd from 16 images, 8 an item):

    >>> from dataclasses import replace
    >>> from symcnn.codegen.lower import layer_formula
    >>> from symcnn.spec import load_spec
    >>> conv3 = next(layer for layer in load_spec("suite-wide").layers if layer.label == "conv3")
    >>> kernel = forward_kernel(replace(conv3, winograd=True), *layer_formula(conv3))
    >>> kernel.kind, kernel.small_batch.below, kernel.small_batch.kernel.kind
    ('winograd', 16, 'lanes')
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

from symcnn.codegen.backends.numba_cpu.winograd import TILE, winograd_schedule
from symcnn.codegen.docstrings import kernel_docstring
from symcnn.codegen.epilogue import FusedElementwise
from symcnn.codegen.kernel_ir import Kernel, SmallBatch
from symcnn.codegen.lower import (ARGUMENT_ORDER, SWITCH, Lowering, batch_symbol, forward_invariants, gradient_output,
                                  gradient_terms, kernel_arguments, kernel_name)
from symcnn.codegen import lower
from symcnn.codegen.small_batches import GROUPS_BELOW
from symcnn.symbolic import ops
from symcnn.symbolic.adjoint import GradientFormula
from symcnn.spec import LayerSpec

__all__ = ["forward_kernel", "gradient_kernel", "winograd_forward_kernel", "winograd_gradient_kernel"]

#: What a Winograd kernel's docstring adds to its formula's.
NOTE = (f"\n\nComputed by Winograd's minimal filtering F({TILE}x{TILE}, 3x3) (the spec's [kernels] winograd = true):"
        "\nthe same sums in another order, not bit for bit the direct kernel's.")

#: The module's names of the two forms and what each is (the docstring of the function that calls one).
FORMS = (("direct", "the direct sums, parallel over each image's rows"),
         ("winograd", f"Winograd's F({TILE}x{TILE}, 3x3), parallel over groups of images"))


def forward_kernel(layer: LayerSpec, formula: ops.IndexFormula, values: dict, what: str = "forward",
                   fused: Optional[FusedElementwise] = None, saving: bool = False) -> Optional[Kernel]:
    """:func:`symcnn.codegen.lower.forward_kernel`'s kernel, or where ``layer`` asks for Winograd and it applies,
    the Winograd kernel with that one as its variant for small batches."""
    direct = lower.forward_kernel(layer, formula, values, what, fused, saving)
    if direct is None or saving or not layer.winograd:
        return direct
    return _with_direct(winograd_forward_kernel(layer, formula, values, what, fused), direct)


def gradient_kernel(layer: LayerSpec, gradient: GradientFormula, values: dict, prefix: str = "",
                    fused: Optional[FusedElementwise] = None) -> Kernel:
    """:func:`symcnn.codegen.lower.gradient_kernel`'s kernel, or where ``layer`` asks for Winograd and ``gradient``
    is its input's, a correlation Winograd takes, that kernel with the direct one as its variant for small
    batches."""
    direct = lower.gradient_kernel(layer, gradient, values, prefix, fused)
    if not layer.winograd or gradient.gradient.role != "grad_input":
        return direct
    return _with_direct(winograd_gradient_kernel(layer, gradient, values, prefix, fused), direct)


def _with_direct(kernel: Optional[Kernel], direct: Kernel) -> Kernel:
    if kernel is None:
        return direct
    return replace(kernel, small_batch=SmallBatch(GROUPS_BELOW * kernel.winograd.images, replace(direct, name=""),
                                                  FORMS))


def winograd_forward_kernel(layer: LayerSpec, formula: ops.IndexFormula, values: dict, what: str = "forward",
                            fused: Optional[FusedElementwise] = None) -> Optional[Kernel]:
    """The kernel ``<label>_<what>`` computing ``formula`` by Winograd's minimal filtering (each output element
    stored through ``fused``, as :func:`symcnn.codegen.lower.forward_kernel` does), or ``None`` where it does
    not apply."""
    concrete = formula.substitute(values)
    batch = batch_symbol(formula)
    fused_reads = (fused.argument,) if fused is not None and fused.expression.has(fused.base) else ()
    lowering = Lowering(concrete.tensors, batch, {fused.base: fused.argument} if fused_reads else {}, fused)
    terms, precomputer, invariant = forward_invariants(lowering, concrete)
    if precomputer.precomputed():
        return None  # statistics of its own (none in a convolution's formula)
    schedule = winograd_schedule(lowering, concrete.indices, concrete.output.shape, batch, invariant, "out",
                                 concrete.tensors)
    if schedule is None:
        return None
    doc = kernel_docstring(formula, None, values) + NOTE
    arguments = kernel_arguments(lowering, terms, ("out",), ARGUMENT_ORDER, fused_reads)
    return Kernel(kernel_name(layer.label, what), doc, arguments, "out", imports=lowering.printer.imports(),
                  batch_from="x", **schedule)


def winograd_gradient_kernel(layer: LayerSpec, gradient: GradientFormula, values: dict, prefix: str = "",
                             fused: Optional[FusedElementwise] = None) -> Optional[Kernel]:
    """The kernel of ``gradient`` (an input's) by Winograd's minimal filtering, each sum stored through ``fused``
    as :func:`symcnn.codegen.lower.gradient_kernel` does, or ``None`` where it does not apply."""
    concrete = gradient.substitute(values)
    tensors = concrete.operands + (concrete.gradient,)
    lowering = Lowering(tensors, batch_symbol(gradient.forward),
                        {SWITCH: "switch"} | ({fused.base: fused.argument} if fused else {}), fused)
    terms = gradient_terms(concrete)
    output_name = gradient_output(gradient)
    schedule = winograd_schedule(lowering, concrete.indices, concrete.gradient.shape, lowering.batch, terms,
                                 output_name, tensors)
    if schedule is None:
        return None
    arguments = kernel_arguments(lowering, terms, (output_name,), ARGUMENT_ORDER, (fused.argument,) if fused else ())
    doc = kernel_docstring(gradient.forward, gradient, values) + NOTE
    return Kernel(kernel_name(layer.label, prefix + gradient.gradient.role), doc, arguments, output_name,
                  imports=lowering.printer.imports(), batch_from="grad_output", **schedule)
