"""The names an index-notation claim may use, per op: its tensors and their roles, its shape
parameters, the axes (layouts) of its tensors, and the op-name tables that say which op is searched
and derived how.

Example:
    >>> DEFAULT_TENSORS["conv2d"]["K"], PARAMETER_NAMES["K_h"]
    ('weight', ('kernel_height',))
    >>> resolve_role("dL/dX", DEFAULT_TENSORS["conv2d"], "conv2d")
    'grad_input'
    >>> claim_letters("X", "input", 3, canonical_letters("input", 4), {"X": "HWC"})
    'HWC'
"""

from __future__ import annotations

from typing import Callable, Iterator, Mapping

import sympy

from symcnn import registry
from symcnn.checking.claims import base_name, is_gradient_name
from symcnn.symbolic import ops
from symcnn.symbolic.functions import MaxOver

__all__ = ["PARAMETER_NAMES", "PARAMETER_DISPLAY", "DEFAULT_TENSORS", "ROLE_PREFIX", "SPATIAL_OPS",
           "CONVOLUTION_OPS", "ELEMENTWISE_OPS", "FEATURE_OPS", "DENSE_OPS", "CLASSIFIER_OPS", "BIAS_OPS",
           "FLATTENING_OPS", "SOFTMAX_READING_OPS", "DISTINCT_INPUT_OPS", "OpKind", "GENERIC_TENSORS",
           "default_tensors", "op_formula", "resolve_role",
           "canonical_letters", "claim_letters"]

#: Shape-parameter names of index-notation claims, each mapped to the op parameters it sets.
PARAMETER_NAMES: dict[str, tuple[str, ...]] = {
    "s": ("stride_h", "stride_w"), "S": ("stride_h", "stride_w"), "s_h": ("stride_h",), "s_w": ("stride_w",),
    "p": ("padding_h", "padding_w"), "P": ("padding_h", "padding_w"), "p_h": ("padding_h",), "p_w": ("padding_w",),
    "d": ("dilation_h", "dilation_w"), "r": ("dilation_h", "dilation_w"), "D": ("dilation_h", "dilation_w"),
    "d_h": ("dilation_h",), "d_w": ("dilation_w",),
    "K": ("kernel_height", "kernel_width"), "F": ("kernel_height", "kernel_width"),
    "K_h": ("kernel_height",), "K_w": ("kernel_width",),
    "N": ("batch",), "B": ("batch",),
    "C": ("in_channels",), "C_in": ("in_channels",), "C_out": ("out_channels",),
    "H": ("in_height",), "H_in": ("in_height",), "W": ("in_width",), "W_in": ("in_width",),
    "N_in": ("in_height", "in_width"), "I": ("in_height", "in_width"),
    "H_out": ("out_height",), "W_out": ("out_width",), "N_out": ("out_height", "out_width"),
    "O": ("out_height", "out_width"),
    "F_in": ("in_features",), "F_out": ("out_features",),
}
#: How a configuration and a note name an op parameter that has no spatial axis.
PARAMETER_DISPLAY = {"batch": "N", "in_channels": "C_in", "out_channels": "C_out", "in_features": "F_in",
                     "out_features": "F_out"}
#: The letter of a role's element symbols in a derivation (``x00``, ``w01``).
ROLE_PREFIX = {"input": "x", "weight": "w", "bias": "b", "target": "t"}


# --- op kinds and names ------------------------------------------------------------------------------------
# Every decision of the index checker that depends on the op is one of these: a kind read from the
# op registry (symcnn/registry/) and the op's formula, or, for the names documents give an op's
# tensors, a table of vocabulary with a default for any op not in it.

_CONV_NAMES = {"X": "input", "I": "input", "A": "input", "W": "weight", "K": "weight", "b": "bias",
               "Y": "output", "S": "output", "Z": "output", "output": "output"}
_POOL_NAMES = {"X": "input", "A": "input", "Y": "output", "P": "output", "output": "output"}
_ACTIVATION_NAMES = {"X": "input", "S": "input", "Z": "input", "x": "input", "Y": "output", "A": "output",
                     "output": "output"}
#: The tensor names each op knows without being told, by role (the documents' names included).
DEFAULT_TENSORS: dict[str, dict[str, str]] = {
    "conv2d": _CONV_NAMES,
    "maxpool2d": _POOL_NAMES,
    "avgpool2d": _POOL_NAMES,
    "global_avgpool": _POOL_NAMES,
    "flatten": {"X": "input", "P": "input", "Y": "output", "h": "output", "output": "output"},
    "dense": {"X": "input", "h": "input", "x": "input", "W": "weight", "b": "bias", "Y": "output", "z": "output",
              "output": "output"},
    "relu": _ACTIVATION_NAMES,
    "leaky_relu": _ACTIVATION_NAMES,
    "elu": _ACTIVATION_NAMES,
    "softmax": {"X": "input", "z": "input", "Y": "output", "p": "output", "output": "output"},
    "softmax_cross_entropy": {"X": "input", "z": "input", "T": "target", "y": "target", "p": "softmax",
                              "L": "output"},
    "cross_entropy": {"X": "input", "p": "input", "yhat": "input", "T": "target", "y": "target", "L": "output"},
}
#: The tensor names of an op the table above does not list.
GENERIC_TENSORS = {"X": "input", "W": "weight", "b": "bias", "Y": "output", "output": "output"}


def default_tensors(op: str) -> dict[str, str]:
    """The tensor names ``op`` knows without being told (the documents' names, else generic ones)."""
    return DEFAULT_TENSORS.get(op, GENERIC_TENSORS)
class OpKind:
    """The registered ops of one kind, read from the op registry when asked (so that an op
    registered later belongs too): ``"conv2d" in SPATIAL_OPS``, ``list(SPATIAL_OPS)``."""

    def __init__(self, predicate: Callable[[registry.Op], bool]):
        self._predicate = predicate

    def __contains__(self, op: object) -> bool:
        return isinstance(op, str) and op in registry.names() and self._predicate(registry.get(op))

    def __iter__(self) -> Iterator[str]:
        return iter([name for name in registry.names() if self._predicate(registry.get(name))])


def _formula(entry: registry.Op) -> ops.IndexFormula:
    return entry.load_formula()()


#: Sliding-window ops on images (a kernel setting): searched over kernels, strides and input sizes.
SPATIAL_OPS = OpKind(lambda entry: "kernel" in entry.keys())
#: Of those, the ones with padding, dilation and output channels (and a stride of 1 by default, where a
#: pool's stride is its window).
CONVOLUTION_OPS = OpKind(lambda entry: {"kernel", "padding", "out_channels"} <= set(entry.keys()))
#: Element-wise activations (images or features, no parameters): an image ``(N, C, H, W)``, or
#: features ``(N, F)`` where a claim says so.
ELEMENTWISE_OPS = OpKind(lambda entry: entry.ranked and not entry.parameterized)
#: Ops on features ``(N, F)`` only: their ``input_size`` is a number of features.
FEATURE_OPS = OpKind(lambda entry: entry.inputs == (1,))
#: Of those, the ones with a weight: searched over batch, input and output features.
DENSE_OPS = OpKind(lambda entry: entry.inputs == (1,) and entry.parameterized)
#: And the ones without: searched over batch and features.
CLASSIFIER_OPS = OpKind(lambda entry: entry.inputs == (1,) and not entry.parameterized)
#: Ops whose bias is optional: derived with one only where the claim reads it.
BIAS_OPS = OpKind(lambda entry: "bias" in entry.keys())
#: Ops whose output is features ``(N, F)`` whatever their input (read off the formula).
FLATTENING_OPS = OpKind(lambda entry: entry.inputs == (3,) and len(_formula(entry).output.shape) == 2)
#: Ops whose claims may read the softmax of the input (``p``), derived beside the output: the
#: documents write the loss through its softmax.
SOFTMAX_READING_OPS = ("softmax_cross_entropy",)
#: Ops derived at inputs with distinct values: a max over a window (read off the formula) is then
#: unambiguous.
DISTINCT_INPUT_OPS = OpKind(lambda entry: any(isinstance(node, MaxOver)
                                              for node in sympy.preorder_traversal(_formula(entry).rhs)))


def op_formula(op: str, rank: int, bias: bool) -> ops.IndexFormula:
    """The op's forward formula; an activation's at rank 2 ``(N, F)`` or 4 ``(N, C, H, W)``; a
    convolution or dense layer with a bias only where the claim has one."""
    factory = registry.get(op).load_formula()
    if op in ELEMENTWISE_OPS:
        return factory(rank=rank)
    if op in BIAS_OPS:
        return factory(bias=bias)
    return factory()


# --- tensor names and their axes -------------------------------------------------------------------------

_LABELS = {"image": "NCHW", "weight4": "OIHW", "features": "NF", "weight2": "OI", "vector": "O"}
_CHANNELS_LAST = {"NCHW": "NHWC", "OIHW": "HWIO"}


def _role_of(name: str, vocabulary: Mapping[str, str], op: str) -> str:
    for key in (name, base_name(name)):
        if key in vocabulary:
            return vocabulary[key]
    known = ", ".join(sorted(vocabulary))
    raise ValueError(f"formula: {name} is not a tensor of {op} "
                     f"(its names: {known}; name others with --tensor NAME=ROLE)")


def resolve_role(name: str, vocabulary: Mapping[str, str], op: str) -> str:
    """``X`` -> input; ``dL/dX`` -> grad_input; ``dL/dY`` -> grad_output."""
    if name in vocabulary:
        return vocabulary[name]
    if is_gradient_name(name):
        role = _role_of(name[4:], vocabulary, op)
        if role.startswith("grad_") or role in ("target", "softmax"):
            raise ValueError(f"formula: {name}: {name[4:]} has no gradient in {op}")
        return "grad_" + role
    return _role_of(name, vocabulary, op)


def canonical_letters(role: str, rank: int) -> str:
    """The axes of symcnn's tensor of ``role`` and ``rank``: ``NCHW``, ``OIHW``, ``NF``, ``OI``, ``O``."""
    base = role[5:] if role.startswith("grad_") else role
    if base == "weight":
        return _LABELS["weight4"] if rank == 4 else _LABELS["weight2"]
    if base == "bias":
        return _LABELS["vector"]
    if rank == 4:
        return _LABELS["image"]
    if rank == 2:
        return _LABELS["features"]
    return "" if rank == 0 else "NF"[:rank]


def claim_letters(name: str, role: str, claim_rank: int, canonical: str, layouts: Mapping[str, str]) -> str:
    """The axes of the claim's tensor ``name`` read with ``claim_rank`` indices, as letters of
    ``canonical``: its layout (``layouts``), else the last ``claim_rank`` axes."""
    layout = None
    for key in (name, base_name(name), name[4:] if is_gradient_name(name) else None):
        if key is not None and key in layouts:
            layout = layouts[key]
            break
    if layout is None and "*" in layouts:
        layout = _CHANNELS_LAST.get(canonical, canonical) if layouts["*"].upper() == "NHWC" else layouts["*"]
    if layout is not None and len(layout) != claim_rank:
        # a global layout names a full tensor: keep its last claim_rank letters
        layout = layout[len(layout) - claim_rank:] if len(layout) > claim_rank else layout
    layout = (layout or canonical[len(canonical) - claim_rank:]).upper() if claim_rank else ""
    if len(layout) != claim_rank or len(set(layout)) != claim_rank or not set(layout) <= set(canonical):
        raise ValueError(f"formula: {name} is read with {claim_rank} indices, which do not fit its layout "
                         f"{layout or '(none)'} of axes {canonical} (set a layout: --layout {name}=...)")
    return layout
