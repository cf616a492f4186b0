"""Fusion across layers, forward: an element-wise layer's forward pass stored by the kernel of the layer it reads.

When the output of a layer P (a convolution, a dense layer, a pool, an add: any op) is read by one
element-wise layer E alone (ReLU, tanh, ...: :func:`~symcnn.codegen.fusion.elementwise_gradient`), E
reads it at one index: ``Y_E[idx] = f(X_E[idx])``. P's forward kernel can then store ``f(value)`` where
it stored its value (bias included: an epilogue, :mod:`symcnn.codegen.epilogue`, with the value as
:data:`~symcnn.codegen.epilogue.STORED` and no other read), and E's kernel, a read and a write of an
activation-sized array and a launch, is not run. P's own output is then never computed: the runtime
runs every fused kernel in evaluation passes that fold (:meth:`symcnn.runtime.network.Network._forward`
with ``fold``), with evaluation mode's formula of P where its op has one (batch norm's), and in passes
with gradients those whose skipped output no gradient kernel reads (ReLU's ``[0 < Y]`` reads E's output;
:func:`symcnn.runtime.evaluation.trainable_fusions`). A batch norm folded into the layer before it
(:mod:`symcnn.codegen.folding`) and followed by E gives one kernel for all three: the producer's folded
forward pass storing E's value (``conv1_with_relu1_folded_forward``).

The fused kernel is ``<P>_with_<E>_forward`` in a module of its own, ``<P>_with_<E>``; the package lists
it in ``FORWARD_FUSED`` for the runtime. Where P's op has a formula for each mode (batch norm), that kernel
is its evaluation one, ``<P>_with_<E>_eval_forward`` (or the folded one), and P's training formula
storing E's value is ``<P>_with_<E>_forward``, listed in ``TRAINING_FORWARD_FUSED``
(:func:`training_fused_kernels`): a training pass runs it, batch norm's statistics computed from the
batch as in its own kernel. A kernel in phases (a transposed convolution) stores E's value into each
phase's strided view of its output. Where P's schedule cannot store through an epilogue, the pair is not
fused; nor is one whose E calls a function (tanh, the sigmoid, ELU: :data:`FUSE_FUNCTION_CALLS`), a cost
decision from E's formula.

Example:
    >>> from symcnn.spec import load_spec
    >>> [(p.label, e.label) for p, e in forward_pairs(load_spec("seed004"))]
    [('conv1', 'relu1')]
    >>> forward_fused_kernels(load_spec("seed004"))["relu1"][:2]
    ('conv1', 'conv1_with_relu1')
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple, Optional

from sympy import Function, IndexedBase, Max, Min, Piecewise

from symcnn import registry
from symcnn.codegen.docstrings import kernel_docstring
from symcnn.codegen.epilogue import STORED, FusedElementwise, Unfusable
from symcnn.codegen.folding import FOLDED_FORWARD, folded_layer, folded_title, folds, titled
from symcnn.codegen.fusion import configuration, elementwise_gradient
from symcnn.codegen.kernel_ir import Kernel
from symcnn.codegen.lower import ARRAY_NAMES, SAVING, layer_formula
from symcnn.codegen.winograd_kernels import forward_kernel
from symcnn.spec import LayerSpec, NetworkSpec

__all__ = ["forward_pairs", "forward_module", "ForwardFusion", "forward_fused_kernels", "training_fused_kernels"]


#: Whether to fuse an E whose forward formula calls a function (tanh, the sigmoid, ELU: an ``exp``). Not by
#: default: in the producer's store loop, a row of a tile (28 columns of suite-lenet's conv1), the vector
#: ``exp`` leaves a scalar remainder on each row, where E's own kernel runs it along the whole image;
#: measured slower than the two kernels (suite-lenet's evaluation pass 0.96 ms unfused, 1.09 ms fused;
#: conv1 -> tanh1 0.43 ms as two kernels, 0.50 ms fused; with tanh in float32 arithmetic, 0.36 against 0.48:
#: docs/performance.md). A selection (ReLU's and
#: LeakyReLU's ``Piecewise``, a ``Max``) costs a compare per element in any loop and is fused. The tests
#: set it to exercise every epilogue.
FUSE_FUNCTION_CALLS = False


def _calls_a_function(elementwise: LayerSpec) -> bool:
    """Whether E's forward formula applies a function other than a selection (``Piecewise``, ``Max``, ``Min``).

    >>> from symcnn.spec import load_spec
    >>> _calls_a_function(load_spec("suite-lenet").layers[1]), _calls_a_function(load_spec("suite-vgg").layers[1])
    (True, False)
    """
    formula, _ = layer_formula(elementwise)
    return any(not isinstance(call, (Piecewise, Max, Min)) for call in formula.rhs.atoms(Function))


class ForwardFusion(NamedTuple):
    """A fused pair's kernel: ``layer``, the label of the layer whose output E reads (P); ``module``, the
    kernel's module; ``kernel``, P's (or, for a folded normalization, its producer's) forward kernel; in
    training mode, where P's kernel computes statistics, ``saving``: the same kernel keeping them for the
    backward pass, ``<kernel>_saving`` (:mod:`symcnn.codegen.saved_statistics`)."""

    layer: str
    module: str
    kernel: Kernel
    saving: Optional[Kernel] = None


def forward_pairs(spec: NetworkSpec) -> list[tuple[LayerSpec, LayerSpec]]:
    """The pairs ``(P, E)`` to fuse, in network order: E element-wise, its one input P's output, which no
    other layer reads; P not a dropout (the identity in evaluation mode: no kernel to fuse into). A
    layer is in one pair at most: in a chain conv -> ReLU -> tanh, ReLU goes into the convolution's
    kernel and tanh stays unfused.

    >>> from symcnn.spec import load_spec
    >>> [(p.label, e.label) for p, e in forward_pairs(load_spec("resnet-mini"))][:2]
    [('stem_bn', 'stem_relu'), ('b1_bn1', 'relu5')]
    """
    readers = spec.consumers()
    layers = {layer.label: layer for layer in spec.layers}
    pairs, taken = [], set()
    for layer in spec.layers:
        if len(readers[layer.label]) != 1 or layer.label in taken or registry.get(layer.kind).mask_drop is not None:
            continue
        reader = layers[readers[layer.label][0]]
        if reader.inputs == (layer.label,) and reader.label not in taken and elementwise_gradient(reader) is not None:
            pairs.append((layer, reader))
            taken |= {layer.label, reader.label}
    return pairs


def _epilogue(elementwise: LayerSpec, indices) -> FusedElementwise:
    """E's forward formula as an epilogue of a kernel whose output indices are ``indices``: its input's
    element replaced by the stored value, sizes and settings (LeakyReLU's slope) substituted."""
    formula, values = layer_formula(elementwise)
    (operand,) = formula.operands
    expression = formula.rhs.xreplace({operand.base[tuple(formula.indices)]: STORED}).xreplace(values)
    if expression.has(operand.base):
        raise Unfusable(f"{elementwise.label}: its formula reads its input elsewhere than at its own index")
    return FusedElementwise(expression, IndexedBase("X_E"), tuple(indices), ARRAY_NAMES["output"])


def _producer(layer: LayerSpec, folded: dict[str, str], layers: dict) -> tuple[LayerSpec, str, str, str]:
    """What computes ``layer``'s output in an evaluation pass that folds: the layer whose kernel it is,
    that kernel's mode, suffix and docstring title (empty: its own). ``layer`` itself (in evaluation
    mode where its op has one), or the layer a normalization folds into, with its bias (its folded kernel)."""
    if layer.label in folded:
        producer = layers[folded[layer.label]]
        return folded_layer(producer), "training", FOLDED_FORWARD, folded_title(producer, layer)
    if registry.get(layer.kind).evaluation is not None:
        return layer, "evaluation", "eval_forward", ""
    return layer, "training", "forward", ""


def _lowered(producer: LayerSpec, mode: str, elementwise: LayerSpec, saving: bool = False) -> Optional[Kernel]:
    """``producer``'s forward kernel (in ``mode``) storing ``elementwise``'s forward pass, or ``None``
    where its schedule cannot or ``elementwise`` calls a function (:data:`FUSE_FUNCTION_CALLS`); with
    ``saving``, the kernel keeping its statistics, or ``None`` where it has none."""
    if _calls_a_function(elementwise) and not FUSE_FUNCTION_CALLS:
        return None
    formula, values = layer_formula(producer, mode)
    try:
        return forward_kernel(producer, formula, values, fused=_epilogue(elementwise, formula.indices), saving=saving)
    except Unfusable:
        return None


def forward_module(producer: LayerSpec, elementwise: LayerSpec) -> str:
    """The module of a pair's fused kernel, ``<P>_with_<E>`` (P the layer whose kernel it is: for a
    folded normalization, the layer it folds into). A module of its own, so that P's stays shared."""
    return f"{producer.label}_with_{elementwise.label}"


def forward_fused_kernels(spec: NetworkSpec, taken: frozenset = frozenset()) -> dict[str, ForwardFusion]:
    """The fused kernel of each pair of :func:`forward_pairs` that fuses, by E's label. Pairs of one
    configuration (a VGG stage's) are lowered once. A pair whose module name is a layer's label or in
    ``taken`` (the other modules, casefolded) is not fused."""
    layers, folded = {layer.label: layer for layer in spec.layers}, folds(spec)
    return _fused_kernels(spec, taken, lambda layer: _producer(layer, folded, layers))


def training_fused_kernels(spec: NetworkSpec, taken: frozenset = frozenset()) -> dict[str, ForwardFusion]:
    """For each pair of :func:`forward_pairs` whose P has a formula for each mode (batch norm), by E's label:
    P's training-mode forward kernel storing E's value, ``<P>_with_<E>_forward`` in the module
    ``<P>_with_<E>`` (beside the evaluation one, ``_eval_forward``, where P is not folded). Otherwise as
    :func:`forward_fused_kernels`.

    >>> from symcnn.spec import load_spec
    >>> {e: (f.layer, f.kernel.name) for e, f in training_fused_kernels(load_spec("suite-batchnorm")).items()}
    {'relu2': ('bn1', 'bn1_with_relu2_forward'), 'relu6': ('bn2', 'bn2_with_relu6_forward')}
    """
    return _fused_kernels(spec, taken, lambda layer: (layer, "training", "forward", "")
                          if registry.get(layer.kind).evaluation is not None else None)


def _fused_kernels(spec: NetworkSpec, taken: frozenset, producer_of) -> dict[str, ForwardFusion]:
    """The fused kernel of each pair ``(layer, E)`` for which ``producer_of(layer)`` gives (the layer whose
    kernel it is, its mode, the kernel name's suffix, its docstring title; see :func:`_producer`), not
    ``None``, by E's label; each configuration lowered once."""
    taken = taken | {layer.label.casefold() for layer in spec.layers}
    fusions: dict[str, ForwardFusion] = {}
    lowered: dict[str, Optional[Kernel]] = {}
    for layer, elementwise in forward_pairs(spec):
        chosen = producer_of(layer)
        if chosen is None:
            continue
        producer, mode, suffix, title = chosen
        module = forward_module(producer, elementwise)
        if module.casefold() in taken:
            continue
        key = configuration(producer, elementwise) + mode
        if key not in lowered:
            lowered[key] = _lowered(producer, mode, elementwise)
            lowered[key + SAVING] = _lowered(producer, mode, elementwise, saving=True) if mode == "training" else None
        if lowered[key] is not None:
            kernel = titled(lowered[key], title) if title else lowered[key]
            saving = lowered[key + SAVING]
            fusions[elementwise.label] = ForwardFusion(
                layer.label, module, _named(kernel, elementwise, f"{module}_{suffix}"),
                _named(saving, elementwise, f"{module}_{suffix}_{SAVING}") if saving is not None else None)
    return fusions


def _named(kernel: Kernel, elementwise: LayerSpec, name: str) -> Kernel:
    """The fused ``kernel`` under ``name``, its docstring the producer's forward pass, then E's. No label
    in it: identical pairs (a VGG stage's) give identical kernels, generated once."""
    formula, values = layer_formula(elementwise)
    doc = (f"{kernel.formula}\n\nFused with the forward pass of the element-wise layer E that alone reads this "
           f"layer's output:\nit stores E's Y, its input X the value above:\n{kernel_docstring(formula, None, values)}")
    return replace(kernel, name=name, formula=doc)
