"""Fusion across layers: an element-wise layer's input gradient in the kernel that computes its ``dL/dY``.

An element-wise layer E (ReLU, tanh, ...: decided from its formula, :func:`elementwise_gradient`)
whose output only one layer Q reads gets its upstream gradient from Q's input-gradient kernel alone,
and reads it at one index: ``dL/dX_E[idx] = f(X_E[idx], dL/dY_E[idx])``. So Q's kernel can store
``f(X_E[idx], sum)`` where it stored its sum (an epilogue, :mod:`symcnn.codegen.epilogue`), and E's
gradient kernel, a write and a read of an activation-sized array and a launch, is never run: max
pooling's gradient with the ReLU mask before it, a convolution's input gradient with it, an average
pool's with tanh's derivative. The fused kernel, ``<Q>_with_<E>_grad_input`` (in a module of its
own, ``<Q>_with_<E>``), takes E's input as the argument ``fused_x`` (or its output as ``fused_out``,
where E's gradient reads that: tanh's ``1 - Y^2``); the package lists it in
``FUSED`` for the runtime. A kernel in phases (a strided convolution's input gradient) stores
strided views of its output, and reads E's array through the same views. Where Q's schedule cannot
store through an epilogue, the pair is not fused: a choice made from the shapes alone, like every
schedule. The derivations (``symcnn derive``, reports) keep showing each layer's own formulas; the
fused kernel's docstring shows the composition.

Example:
    >>> from symcnn.spec import load_spec
    >>> [(e.label, q.label) for e, q in fusion_pairs(load_spec("seed004"))]
    [('relu1', 'maxpool2d2')]
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import sympy
from sympy import Indexed, IndexedBase, Sum

from symcnn import registry
from symcnn.codegen.epilogue import FUSED_INPUT, FUSED_OUTPUT, STORED, FusedElementwise, Unfusable
from symcnn.codegen.kernel_ir import Kernel
from symcnn.codegen.docstrings import kernel_docstring
from symcnn.codegen.lower import ARRAY_NAMES, computed_gradient, forward_kernel, layer_formula
from symcnn.codegen.network import FANOUT_MODULE, fanout_join
from symcnn.codegen.winograd_kernels import gradient_kernel
from symcnn.spec import LayerSpec, NetworkSpec
from symcnn.symbolic.adjoint import GatherTerm, GradientFormula, derive_gradient
from symcnn.symbolic.functions import MaxOver
from symcnn.symbolic.ops import Tensor

__all__ = ["elementwise_gradient", "fusion_pairs", "fused_module", "fused_kernel", "fused_kernels", "configuration",
           "fanout_fused_kernels"]


def elementwise_gradient(layer: LayerSpec) -> Optional[GradientFormula]:
    """``layer``'s input gradient when its op is element-wise, else ``None``: its formula reads one
    operand, its input, and only at the output's own index, sums nothing, and keeps the shape; its
    input gradient (as its kernel computes it, :func:`~symcnn.codegen.lower.computed_gradient`) is then
    terms without sums or conditions that read ``dL/dY`` and either ``X`` or ``Y`` at that index only
    (ReLU's ``[X > 0] dL/dY``, tanh's ``dL/dY - Y^2 dL/dY``).

    >>> from symcnn.spec import load_spec
    >>> [layer.label for layer in load_spec("seed004").layers if elementwise_gradient(layer)]
    ['relu1']
    """
    if registry.get(layer.kind).evaluation is not None:  # its kernels differ by mode (batch norm)
        return None
    formula, values = layer_formula(layer)
    if [tensor.role for tensor in formula.operands] != ["input"] or formula.rhs.has(Sum, MaxOver):
        return None
    (operand,) = formula.operands
    if tuple(operand.shape) != tuple(formula.output.shape) or any(
            read.base != operand.base or tuple(read.indices) != tuple(formula.indices)
            for read in formula.rhs.atoms(Indexed)):
        return None
    gradient = computed_gradient(formula, "input", values)
    if any(term.limits or term.conditions for term in gradient.terms):
        return None
    reads = [read for term in gradient.terms for read in term.body.atoms(Indexed)]
    if any(tuple(read.indices) != tuple(gradient.indices)
           or read.base not in (operand.base, formula.output.base, gradient.grad_output.base) for read in reads):
        return None  # dL/dY and X or Y at the element's own index, nothing else
    if {operand.base, formula.output.base} <= {read.base for read in reads}:
        return None  # an epilogue takes one of E's arrays
    return gradient


def fusion_pairs(spec: NetworkSpec) -> list[tuple[LayerSpec, LayerSpec]]:
    """The pairs ``(E, Q)`` to fuse, in network order: E element-wise, its output read by Q alone, Q
    with one input and one mode (no mask, no evaluation kernels), E's input a layer's output (the
    network's input needs its gradient only when asked for). A layer is in one pair at most: in a
    chain ReLU -> tanh -> pool, ReLU's gradient goes into tanh's, and tanh's stays unfused."""
    readers = spec.consumers()
    layers = {layer.label: layer for layer in spec.layers}
    pairs, taken = [], set()
    for layer in spec.layers:
        if len(readers[layer.label]) != 1 or layer.inputs[0] == "input" or layer.label in taken:
            continue
        reader = layers[readers[layer.label][0]]
        entry = registry.get(reader.kind)
        if (reader.inputs != (layer.label,) or entry.merges or entry.mask_drop is not None
                or entry.evaluation is not None or reader.label in taken):
            continue
        if elementwise_gradient(layer) is not None:
            pairs.append((layer, reader))
            taken |= {layer.label, reader.label}
    return pairs


def _composed(elementwise: LayerSpec, gradient: GradientFormula, indices) -> tuple[FusedElementwise, GradientFormula]:
    """E's input gradient (``gradient``, in general form) as an epilogue over the gradient kernel's
    ``indices`` (:class:`FusedElementwise`, sizes substituted), and as the formula its docstring
    shows: E's input renamed ``X_E``, its gradient ``dL/dX_E``, its upstream gradient the kernel's
    sum ``dL/dX``. No label: identical pairs (a VGG stage's) give identical kernels, generated once."""
    _, values = layer_formula(elementwise)
    (operand,) = gradient.forward.operands
    term = GatherTerm((), (), sympy.Add(*(term.body for term in gradient.terms)))  # tanh's two terms as one
    read = operand if term.body.has(operand.base) else gradient.forward.output  # X, or Y (tanh's 1 - Y^2)
    base, argument = (IndexedBase("X_E"), FUSED_INPUT) if read is operand else (IndexedBase("Y_E"), FUSED_OUTPUT)
    at = dict(zip(gradient.indices, indices))
    upstream = gradient.grad_output.base[tuple(indices)]
    body = term.body.xreplace(at).xreplace({read.base: base})
    expression = body.xreplace(values).xreplace({upstream: STORED})
    if expression.has(gradient.grad_output.base):
        raise Unfusable(f"{elementwise.label}: its gradient reads dL/dY elsewhere than at its own index")
    shown = replace(gradient, indices=tuple(indices),
                    gradient=Tensor("grad_input", IndexedBase("dL/dX_E"), gradient.gradient.shape),
                    terms=(replace(term, body=body.xreplace({upstream: IndexedBase("dL/dX")[tuple(indices)]})),))
    return FusedElementwise(expression, base, tuple(indices), ARRAY_NAMES["grad_input"], argument), shown


def _lowered(elementwise: LayerSpec, reader: LayerSpec) -> Optional[Kernel]:
    """``reader``'s input-gradient kernel storing ``elementwise``'s input gradient, under the reader's
    kernel name and docstring, or ``None`` where its schedule cannot."""
    formula, values = layer_formula(reader)
    gradient = computed_gradient(formula, "input", values)
    try:
        fused, _ = _composed(elementwise, elementwise_gradient(elementwise), gradient.indices)
        return gradient_kernel(reader, gradient, values, fused=fused)
    except Unfusable:
        return None


def _named(kernel: Kernel, elementwise: LayerSpec, reader: LayerSpec) -> Kernel:
    """The fused ``kernel`` named for the pair, ``<reader>_with_<elementwise>_grad_input`` (in the
    module ``<reader>_with_<elementwise>``, :func:`fused_module`), its docstring the reader's
    gradient, then the element-wise gradient stored through it."""
    indices = derive_gradient(layer_formula(reader)[0], "input").indices
    doc = _fused_docstring(kernel, elementwise, indices, "the element-wise layer E that this one reads")
    return replace(kernel, name=f"{fused_module(elementwise, reader)}_grad_input", formula=doc)


def _fused_docstring(kernel: Kernel, elementwise: LayerSpec, indices, whose: str) -> str:
    """``kernel``'s docstring, then the input gradient of ``elementwise`` (E, ``whose``) stored through its sum."""
    element_formula, values = layer_formula(elementwise)
    fused, shown = _composed(elementwise, elementwise_gradient(elementwise), indices)
    read = "input X_E" if fused.argument == FUSED_INPUT else "output Y_E"
    shown_gradient = kernel_docstring(element_formula, shown, values)
    return (f"{kernel.formula}\n\nFused with the input gradient of {whose}: it stores E's dL/dX\n(E's {read} "
            f"read from {fused.argument}), the sum above as E's dL/dY:\n{shown_gradient}")


def fanout_fused_kernels(spec: NetworkSpec) -> dict[str, Kernel]:
    """For each element-wise layer E that several layers read (a residual block's ReLU, read by the block
    and its shortcut), the fan-out's sum of their gradients (:func:`~symcnn.codegen.network.fanout_kernels`)
    storing E's input gradient, by E's label: that sum is E's ``dL/dY``, read at one index, as a
    :func:`fusion_pairs` reader's is. The kernel ``fanout_<E>_with_<E>_grad_input`` (in the ``fanout``
    module) takes the gradients, then E's input or output (``fused_x``, ``fused_out``), then ``out``; E's
    own gradient kernel and a pass over an activation-sized array are not run. Not where E reads the
    network's input (its gradient is needed only when asked for), nor where the name is a layer's.

    >>> from symcnn.spec import load_spec
    >>> kernels = fanout_fused_kernels(load_spec("resnet-mini"))
    >>> sorted(kernels), kernels["b1_out"].name, kernels["b1_out"].arguments
    (['b1_out', 'b2_out', 'stem_relu'], 'fanout_b1_out_with_b1_out_grad_input', ('x', 'x2', 'fused_out', 'out'))
    """
    layers = {layer.label: layer for layer in spec.layers}
    labels = {label.casefold() for label in layers}
    kernels: dict[str, Kernel] = {}
    for label, readers in spec.consumers().items():
        elementwise = layers.get(label)
        name = f"{FANOUT_MODULE}_{label}_with_{label}"
        if (len(readers) < 2 or elementwise is None or elementwise.inputs[0] == "input"
                or name.casefold() in labels):
            continue
        gradient = elementwise_gradient(elementwise)
        if gradient is None:
            continue
        join = fanout_join(label, elementwise.output_shape, len(readers))
        formula, values = layer_formula(join)
        try:
            fused, _ = _composed(elementwise, gradient, formula.indices)
            kernel = forward_kernel(join, formula, values, fused=replace(fused, output=ARRAY_NAMES["output"]))
        except Unfusable:
            continue
        doc = _fused_docstring(kernel, elementwise, formula.indices, "the element-wise layer E these gradients reach")
        kernels[label] = replace(kernel, name=f"{name}_grad_input", formula=doc)
    return kernels


def fused_module(elementwise: LayerSpec, reader: LayerSpec) -> str:
    """The module of a pair's fused kernel: ``<reader>_with_<elementwise>``. A module of its own, so
    that the reader's module stays identical to the other layers' of its configuration (shared)."""
    return f"{reader.label}_with_{elementwise.label}"


def fused_kernel(elementwise: LayerSpec, reader: LayerSpec) -> Optional[Kernel]:
    """``reader``'s input-gradient kernel storing ``elementwise``'s input gradient (named
    ``<reader>_with_<elementwise>_grad_input``), or ``None`` where its schedule cannot."""
    kernel = _lowered(elementwise, reader)
    return kernel and _named(kernel, elementwise, reader)


def configuration(*layers: LayerSpec) -> str:
    """What the kernels of ``layers`` depend on (ops, shapes and settings, not labels), as a key: pairs
    with one key (a VGG stage's) give one kernel, lowered once."""
    return repr([(layer.kind, layer.input_shapes, layer.output_shape, sorted(layer.settings.items()))
                 for layer in layers])


def fused_kernels(spec: NetworkSpec) -> dict[str, Kernel]:
    """The fused kernel of each pair of :func:`fusion_pairs` that fuses, by E's label. A pair at the
    same configuration as an earlier one (a VGG stage's) is lowered once. A pair whose module name
    (:func:`fused_module`) is a layer's label is not fused."""
    labels = {layer.label.casefold() for layer in spec.layers}
    kernels: dict[str, Kernel] = {}
    lowered: dict[str, Optional[Kernel]] = {}
    for elementwise, reader in fusion_pairs(spec):
        if fused_module(elementwise, reader).casefold() in labels:
            continue
        key = configuration(elementwise, reader)
        if key not in lowered:
            lowered[key] = _lowered(elementwise, reader)
        if lowered[key] is not None:
            kernels[elementwise.label] = _named(lowered[key], elementwise, reader)
    return kernels
