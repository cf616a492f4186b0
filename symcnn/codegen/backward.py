"""One kernel for all of a layer's gradients when they read the same statistics: each computed once.

A normalization's gradient kernels each compute their channel's (or sample's) sums before their
outputs (:mod:`symcnn.codegen.invariants`). Batch norm's input and weight gradients compute the same
four in training mode: the mean, the variance, ``sum dL/dY`` and ``sum X * dL/dY``; its bias gradient
is one of them, ``sum dL/dY``. Run one after another, a training step reads the activation and its
gradient nine times where three would do (measured on ``suite-residual``: the weight and bias gradients'
kernels took 0.83 ms per 16-channel layer beside the input gradient's 0.68 ms).

:func:`backward_kernel` lowers all of a layer's gradients in one kernel, ``<label>_backward``: their
statistics and coefficients first, one :class:`~symcnn.codegen.invariants.Precomputer` shared across the
outputs (a reduction that two outputs read, written with any summation indices, is one array), then each
output in a phase of its own, as its own kernel would compute it. An output that *is* a statistic (a
plain sum already computed for another output: the bias's gradient) is stored from it. The same sums
of the same values: equal to the separate kernels' to rounding, not bit for bit (LLVM may vectorize a
sum in another order in another kernel; so a PyTorch module's whole pass, which equals its layer-by-layer
pass bit for bit, calls the separate kernels, as the operators do: :mod:`symcnn.torch.whole_pass`).

Made only where it computes fewer statistics than the separate kernels together, a decision from the
formulas alone (no op is named); layers without statistics (convolutions, dense layers) have none. The
separate kernels stay: the PyTorch operators call them one gradient at a time, and so does a pass that
needs only some of a layer's gradients (:meth:`symcnn.runtime.network.Network._backward` calls
``<label>_backward`` when it needs all of them).

Example:
    >>> from symcnn.codegen.network import layer_kernels
    >>> from symcnn.spec import load_spec
    >>> layer = next(layer for layer in load_spec("suite-batchnorm").layers if layer.kind == "batchnorm2d")
    >>> backward = next(kernel for kernel in layer_kernels(layer) if kernel.name.endswith("_backward"))
    >>> backward.name, backward.arguments
    ('bn1_backward', ('grad_output', 'x', 'weight', 'grad_input', 'grad_weight', 'grad_bias'))
"""

from __future__ import annotations

from typing import Optional

from sympy import Sum

from symcnn.codegen.coefficients import invariant_terms
from symcnn.codegen.invariant_loops import invariants_inside
from symcnn.codegen.kernel_ir import Kernel
from symcnn.codegen.lower import (ARGUMENT_ORDER, STATISTICS, SWITCH, Lowering, batch_symbol, gradient_output,
                                  gradient_terms, kernel_arguments, kernel_name, summation)
from symcnn.codegen.widths import per_vector_width
from symcnn.spec import LayerSpec
from symcnn.symbolic.adjoint import GatherTerm, GradientFormula

__all__ = ["BACKWARD", "SAVED", "backward_kernel", "statistic_count"]

#: What ``<label>_backward`` computes: every gradient of its layer (after the mode's prefix, ``bn1_eval_backward``).
BACKWARD = "backward"
#: The suffix of the backward kernel that reads the statistics its forward kernel kept: ``bn1_backward_saved``.
SAVED = "saved"


def statistic_count(kernel: Kernel) -> int:
    """How many statistics (reductions computed before the output loops) ``kernel`` computes."""
    return sum(len(array.names) for array in kernel.precomputed if array.reductions)


@per_vector_width
def backward_kernel(layer: LayerSpec, gradients: list[GradientFormula], values: dict, separate: list[Kernel],
                    prefix: str = "", seeds: Optional[tuple] = None) -> Optional[Kernel]:
    """``<label>_<prefix>backward``: every one of ``gradients`` (a layer's, in one mode) in one kernel, their
    statistics computed once; ``None`` where that would compute as many sums over the batch as ``separate``
    (the gradients' own kernels) together. With ``seeds``, ``<label>_backward_saved``: the statistics the
    forward pass kept read from its ``statistics`` argument (:mod:`symcnn.codegen.saved_statistics`)."""
    if len(gradients) < 2 or not any(statistic_count(kernel) for kernel in separate):
        return None
    concretes = [gradient.substitute(values) for gradient in gradients]
    lowered = [(concrete, terms, _plain_sum(terms)) for concrete in concretes for terms in [gradient_terms(concrete)]]
    separate_sums = sum(map(statistic_count, separate)) + sum(plain is not None for _, _, plain in lowered)
    batch = batch_symbol(gradients[0].forward)
    tensors = tuple(dict.fromkeys(tensor for concrete in concretes
                                  for tensor in (*concrete.operands, concrete.gradient)))
    lowering = Lowering(tensors, batch, {SWITCH: "switch"})
    phases, views, shared, own_sums = [], {}, None, 0
    # an output that is one plain sum last, so that the statistics of the others can hold it
    for concrete, terms, plain in sorted(lowered, key=lambda entry: entry[2] is not None):
        indices, shape, output = concrete.indices, concrete.gradient.shape, gradient_output(concrete)
        fresh = shared is None
        shared = lowering.precompute_invariants(indices, shape, tensors, shared)
        if fresh and seeds is not None:
            statistics = lowering.array(STATISTICS)
            lowering.names[statistics] = STATISTICS
            shared.seed(seeds, statistics)
        held = shared.existing(plain) if plain is not None else None
        own_sums += plain is not None and held is None
        terms = [GatherTerm((), (), held)] if held is not None else invariant_terms(terms, shared)
        schedule = summation(lowering, indices, shape, batch, terms, output, tensors)
        if schedule.get("kind") == "phases" or schedule.get("epilogue") is not None:
            return None  # phases within phases: not laid out
        views.update(schedule.pop("views", ()))
        phases.append(Kernel(output, "", (), schedule.pop("output", output), **schedule))
    precomputed = shared.precomputed()  # printed before the imports are collected
    if statistic_count(Kernel("", "", (), "", (), precomputed=precomputed)) + own_sums >= separate_sums:
        return None  # no sum saved
    views.update(shared.views)
    outputs = tuple(gradient_output(concrete) for concrete in concretes)
    arguments = kernel_arguments(lowering, [term for _, terms, _ in lowered for term in terms], outputs, ARGUMENT_ORDER)
    if seeds is not None and STATISTICS not in arguments:  # read by the coefficients only
        arguments = (*arguments[:-len(outputs)], STATISTICS, *outputs)
    batch_from = next(name for name in ("grad_output", "x", arguments[0]) if name in arguments)
    doc = (f"{layer.kind}: every gradient in one kernel ({', '.join(outputs)}), their statistics computed once;\n"
           f"each output as its own kernel computes it (<label>_{prefix}{outputs[0]}, ...: its formula there).")
    if seeds is not None:
        doc += ("\nThe forward pass's statistics read from `statistics` (rows as <label>_forward_saving stored them),\n"
                "not computed again.")
    name = kernel_name(layer.label, prefix + BACKWARD) + (f"_{SAVED}" if seeds is not None else "")
    return invariants_inside(Kernel(name, doc, arguments, outputs[0], (), kind="phases", phases=tuple(phases),
                                    views=tuple(views.items()), precomputed=precomputed,
                                    imports=lowering.printer.imports(), batch_from=batch_from))


def _plain_sum(terms: list[GatherTerm]) -> Optional[Sum]:
    """The terms as one ``Sum``, when they are one unconditional sum of a body without sums (a bias's
    gradient, ``sum_{n, i, j} dL/dY[n, c, i, j]``), else ``None``."""
    if len(terms) != 1 or terms[0].conditions or not terms[0].limits or terms[0].body.has(Sum):
        return None
    return Sum(terms[0].body, *terms[0].limits)

