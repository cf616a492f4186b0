"""Index-notation claims, checked against an op's derivation over small configurations.

A claim such as ``\\frac{\\partial L}{\\partial X_{k,l}} = \\sum_{m}\\sum_{n} \\frac{\\partial L}{\\partial Y_{k-m,l-n}}
W_{m,n}`` is read against an op (:data:`DEFAULT_TENSORS` names its tensors, :data:`PARAMETER_NAMES`
its shape parameters), planned once (:class:`_Plan`: which tensor is which, its axes and index maps,
the parameters the claim mentions, its where-clause), then evaluated at configurations of increasing
size (:class:`_Context`), entry by entry, against the element-wise derivative of the expanded forward
pass (:func:`symcnn.symbolic.verify.elementwise_gradients`) or the forward pass itself. The first configuration
with a difference is the counter-example. docs/errata.md lists the vocabulary.

Example:
    >>> from symcnn.checking.claims import parse_claim
    >>> claim = parse_claim(r"Y_{i,j} = \\sum_{m}\\sum_{n} X_{i+m,j+n} W_{m,n}", tensors={"X", "W", "Y"})
    >>> result = check_claim(claim, "conv2d")
    >>> result.correct, result.checked
    (True, 4)
"""

from __future__ import annotations

import functools
import itertools
import math
import random
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Mapping, Optional, Sequence

import sympy
from sympy import Array, Expr, IndexedBase, Symbol

from symcnn.symbolic import ops
from symcnn.checking.checker import CheckOptions, CheckResult, Difference, _equal, _show
from symcnn.checking.claims import OPEN, Claim, Equation, MatrixValue, base_name, is_gradient_name, tensor_base
from symcnn.symbolic.expand import evaluate, unroll
from symcnn.views.formula import FORMULA_OPS
from symcnn.symbolic.functions import FirstArgmax, MaxOver, WindowMax
from symcnn.symbolic.tensors import indices_of, symbol_array
from symcnn.validation import integer, pair
from symcnn.symbolic.verify import elementwise_gradients

__all__ = ["check_claim", "PARAMETER_NAMES", "DEFAULT_TENSORS"]

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
_SPATIAL = ("conv2d", "maxpool2d", "avgpool2d")
_ELEMENTWISE = ("relu", "leaky_relu", "elu")
_ROLE_PREFIX = {"input": "x", "weight": "w", "bias": "b", "target": "t"}
_LABELS = {"image": "NCHW", "weight4": "OIHW", "features": "NF", "weight2": "OI", "vector": "O"}
_CHANNELS_LAST = {"NCHW": "NHWC", "OIHW": "HWIO"}
_DISPLAY = {"batch": "N", "in_channels": "C_in", "out_channels": "C_out", "in_features": "F_in",
            "out_features": "F_out"}


class _ReadOutside(Exception):
    """A claim read a tensor outside its shape (or at a non-integer index)."""


# --- index-notation claims: names and axes ---------------------------------------------------------------


@dataclass(frozen=True)
class _Tensor:
    """How one of the claim's tensor names maps onto the derivation."""

    name: str
    role: str  # input, weight, bias, target, output, softmax, grad_output, grad_input, ...
    letters: str  # the claim's axes, as canonical letters
    canonical: str  # the project tensor's axes
    maps: tuple  # per claim axis: (sign, offset expression)
    zero_outside: bool


def _role_of(name: str, vocabulary: Mapping[str, str], op: str) -> str:
    for key in (name, base_name(name)):
        if key in vocabulary:
            return vocabulary[key]
    known = ", ".join(sorted(vocabulary))
    raise ValueError(f"formula: {name} is not a tensor of {op} (its names: {known}; name others with --tensor NAME=ROLE)")


def _resolve_role(name: str, vocabulary: Mapping[str, str], op: str) -> str:
    """``X`` -> input; ``dL/dX`` -> grad_input; ``dL/dY`` -> grad_output."""
    if name in vocabulary:
        return vocabulary[name]
    if is_gradient_name(name):
        role = _role_of(name[4:], vocabulary, op)
        if role.startswith("grad_") or role in ("target", "softmax"):
            raise ValueError(f"formula: {name}: {name[4:]} has no gradient in {op}")
        return "grad_" + role
    return _role_of(name, vocabulary, op)


def _canonical_letters(role: str, rank: int) -> str:
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


def _letters(name: str, role: str, claim_rank: int, canonical: str, layouts: Mapping[str, str]) -> str:
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


# --- configurations ----------------------------------------------------------------------------------------


def _fixed_configuration(op: str, options: CheckOptions) -> dict[str, int]:
    fixed = {}
    for option, (height, width) in (("kernel", ("kernel_height", "kernel_width")),
                                    ("stride", ("stride_h", "stride_w")),
                                    ("padding", ("padding_h", "padding_w")),
                                    ("dilation", ("dilation_h", "dilation_w"))):
        value = getattr(options, option)
        if value is not None:
            minimum = 0 if option == "padding" else 1
            fixed[height], fixed[width] = pair(value, option, minimum)
    if options.input_size is not None:
        if op in ("dense", "softmax", "softmax_cross_entropy", "cross_entropy"):
            fixed["in_features"] = integer(options.input_size, "input_size", 1)
        else:
            fixed["in_height"], fixed["in_width"] = pair(options.input_size, "input_size", 1)
    for option, role in (("channels_in", "in_channels"), ("channels_out", "out_channels"), ("batch", "batch")):
        value = getattr(options, option)
        if value is not None:
            fixed[role] = integer(value, option, 1)
    return fixed


def _spatial_candidates(op: str, mentioned: set, fixed: Mapping[str, int], parameter_only: bool) -> list[dict]:
    """Convolution and pooling configurations: every stride, padding and dilation the claim mentions
    (stride 1, padding 0, dilation 1 otherwise; a pool's stride is its window), kernels 2x2 and 3x2
    (2x2 and 3x3 for a claim with one kernel size K), inputs with one and two output rows and, at
    strides above 1, one more row (a remainder no window reaches). A parameter-only claim (an output
    size) gets a wider grid: it is cheap."""
    conv = op == "conv2d"
    strides = [1, 2, 3] if mentioned & {"stride_h", "stride_w"} else [None]
    paddings = [0, 1, 2] if conv and mentioned & {"padding_h", "padding_w"} else [0]
    dilations = [1, 2] if conv and mentioned & {"dilation_h", "dilation_w"} else [1]
    square = "square_kernel" in mentioned
    kernels = [(1, 1), (2, 2), (3, 2), (2, 3), (3, 3), (4, 4)] if parameter_only else (
        [(2, 2), (3, 3)] if square else [(2, 2), (3, 2)])
    candidates = []
    for stride, padding, dilation, kernel in itertools.product(strides, paddings, dilations, kernels):
        config = {"kernel_height": fixed.get("kernel_height", kernel[0]),
                  "kernel_width": fixed.get("kernel_width", kernel[1])}
        for axis, kernel_role in (("h", "kernel_height"), ("w", "kernel_width")):
            default_stride = stride if stride is not None else (1 if conv else config[kernel_role])
            config[f"stride_{axis}"] = fixed.get(f"stride_{axis}", default_stride)
            if conv:
                config[f"padding_{axis}"] = fixed.get(f"padding_{axis}", padding)
                config[f"dilation_{axis}"] = fixed.get(f"dilation_{axis}", dilation)
        sizes = {}
        for axis, kernel_role in (("h", "kernel_height"), ("w", "kernel_width")):
            extent = config.get(f"dilation_{axis}", 1) * (config[kernel_role] - 1) + 1
            pad = config.get(f"padding_{axis}", 0)
            sizes[axis] = max(1, extent - 2 * pad), max(1, config[f"stride_{axis}"] + extent - 2 * pad)
        if parameter_only:
            inputs = [(h, w) for h in range(1, 7) for w in ([h] if "in_width" not in mentioned else range(1, 7))]
        else:
            # One output row and two columns; two of each; at stride > 1, a remainder row no window reaches.
            inputs = [(sizes["h"][0], sizes["w"][1]), (sizes["h"][1], sizes["w"][1])]
            if config["stride_h"] > 1:
                inputs.append((sizes["h"][1] + 1, sizes["w"][0]))
        for height, width in inputs:
            candidate = dict(config, in_height=fixed.get("in_height", height), in_width=fixed.get("in_width", width))
            # Two images and two channels each way where a mixed-up batch or channel index shows: two
            # outputs each way, the larger kernel, a stride and padding up to 2 and 1.
            candidate["_channels"] = (not parameter_only and (height, width) == (sizes["h"][1], sizes["w"][1])
                                      and kernel == kernels[-1] and config["stride_h"] <= 2
                                      and config.get("padding_h", 0) <= 1)
            candidates.append(candidate)
    return candidates


def _candidates(op: str, mentioned: set, fixed: Mapping[str, int], parameter_only: bool) -> list[dict]:
    """Every configuration to try, before the claim's constraints; sorted by size later."""
    if op in _SPATIAL:
        result = []
        for config in _spatial_candidates(op, mentioned, fixed, parameter_only):
            channels = [(1, 1, 1), (2, 2, 2)] if config.pop("_channels") else [(1, 1, 1)]
            for batch, c_in, c_out in channels:
                config = dict(config, batch=batch, in_channels=c_in)
                if op == "conv2d":
                    config["out_channels"] = c_out
                result.append(config)
        return result
    if op == "dense":
        return [dict(batch=n, in_features=f, out_features=o) for n, f, o in
                itertools.product([1, 2], [1, 2, 3], [1, 2, 3])]
    if op in ("softmax", "softmax_cross_entropy", "cross_entropy") or op in _ELEMENTWISE and "in_features" in mentioned:
        return [dict(batch=n, in_features=f) for n, f in itertools.product([1, 2], [2, 3, 4])]
    shapes = [(1, 1, 2, 2), (1, 1, 3, 2), (1, 2, 2, 3), (2, 2, 3, 2)]
    return [dict(batch=n, in_channels=c, in_height=h, in_width=w) for n, c, h, w in shapes]


def _cost(config: Mapping[str, int]) -> tuple:
    """Configurations in increasing size: stride, padding and dilation above their neutral values
    first (a counter-example at stride 1 is simpler than one at stride 3), then the tensors' size."""
    excess = sum(config.get(f"stride_{a}", 1) - 1 + config.get(f"padding_{a}", 0) + config.get(f"dilation_{a}", 1) - 1
                 for a in "hw")
    size = config.get("batch", 1) * config.get("in_channels", 1) * config.get("in_height", 1) * config.get(
        "in_width", 1) * config.get("in_features", 1)
    weights = config.get("out_channels", 1) * config.get("kernel_height", 1) * config.get("kernel_width", 1) * \
        config.get("out_features", 1)
    return excess, size + weights, tuple(sorted(config.items()))


def _describe(op: str, config: Mapping[str, int]) -> str:
    parts = []
    for role in ("batch", "in_channels", "out_channels", "in_features", "out_features"):
        if role in config:
            parts.append(f"{_DISPLAY[role]}={config[role]}")
    if "in_height" in config:
        parts.append(f"input {config['in_height']}x{config['in_width']}")
    for name, height, width in (("kernel", "kernel_height", "kernel_width"), ("stride", "stride_h", "stride_w"),
                                ("padding", "padding_h", "padding_w"), ("dilation", "dilation_h", "dilation_w")):
        if height in config:
            value = config[height] if config[height] == config[width] else f"{config[height]}x{config[width]}"
            parts.append(f"{name} {value}" if name != "kernel" else f"kernel {config[height]}x{config[width]}")
    return ", ".join(parts)


# --- index-notation claims: evaluation ---------------------------------------------------------------------


def _op_formula(op: str, rank: int, bias: bool) -> ops.IndexFormula:
    """The op's forward formula; an activation's at rank 2 ``(N, F)`` or 4 ``(N, C, H, W)``; a
    convolution or dense layer with a bias only where the claim has one."""
    if op in _ELEMENTWISE:
        return {"relu": ops.relu, "leaky_relu": ops.leaky_relu, "elu": ops.elu}[op](rank=rank)
    if op in ("conv2d", "dense"):
        return FORMULA_OPS[op](bias=bias)
    return FORMULA_OPS[op]()


def _tensor_ranks(claim: Claim) -> dict[str, int]:
    ranks: dict[str, int] = {}
    for equation in claim.equations + claim.definitions:
        for side in (equation.lhs, equation.rhs):
            if isinstance(side, MatrixValue):
                raise ValueError("formula: a matrix belongs to an element-wise claim (against a worked example)")
            for node in sympy.preorder_traversal(side):
                if isinstance(node, sympy.Indexed):
                    name, rank = str(node.base.label), len(node.indices)
                elif isinstance(node, IndexedBase):
                    name, rank = str(node.label), 0
                else:
                    continue
                if name in ranks and ranks[name] != rank and not (rank == 0 and isinstance(node, IndexedBase)):
                    raise ValueError(f"formula: {name} is read with {ranks[name]} and with {rank} indices")
                if rank or name not in ranks:
                    ranks[name] = max(rank, ranks.get(name, 0))
    return ranks


def _index_symbols(claim: Claim) -> set:
    """Names that are indices: the left sides' indices, summation and max variables, ranges, definitions."""
    indices = {symbol for symbol, _, _ in claim.ranges}
    indices |= {definition.lhs for definition in claim.definitions if isinstance(definition.lhs, Symbol)}
    for equation in claim.equations + claim.definitions:
        if isinstance(equation.lhs, sympy.Indexed):
            indices |= {symbol for index in equation.lhs.indices for symbol in sympy.sympify(index).free_symbols}
        for side in (equation.lhs, equation.rhs):
            if isinstance(side, MatrixValue):
                continue
            for node in sympy.preorder_traversal(side):
                if isinstance(node, (sympy.Sum, MaxOver)):
                    indices |= {limit[0] for limit in node.limits}
    return indices


def _scalar_reads(claim: Claim, vocabulary: Mapping[str, str]) -> Claim:
    """Bare tensor names as reads of a tensor with no indices (the loss ``L``, a bias ``b`` of one
    channel, ``dL/db``), unless they are indices or shape parameters (``K`` the kernel size)."""
    indices = _index_symbols(claim)

    def is_tensor(name: str) -> bool:
        inner = name[4:] if is_gradient_name(name) else name
        return (inner in vocabulary or base_name(inner) in vocabulary) and (
            inner not in PARAMETER_NAMES or vocabulary.get(inner) == "output" and inner == "L")

    def convert(expr):
        if isinstance(expr, MatrixValue):
            return expr
        replacements = {symbol: tensor_base(symbol.name) for symbol in sympy.sympify(expr).free_symbols
                        if isinstance(symbol, Symbol) and symbol not in indices and is_tensor(symbol.name)}
        return sympy.sympify(expr).xreplace(replacements) if replacements else expr

    return replace(claim, equations=tuple(Equation(convert(e.lhs), convert(e.rhs)) for e in claim.equations),
                   definitions=tuple(Equation(e.lhs, convert(e.rhs)) for e in claim.definitions))


def check_claim(claim: Claim, op: str, options: Optional[CheckOptions] = None) -> CheckResult:
    """Check a parsed index-notation claim against ``op`` over small configurations."""
    options = options or CheckOptions()
    vocabulary = {**DEFAULT_TENSORS[op], **options.tensors}
    claim = _scalar_reads(claim, vocabulary)
    ranks = _tensor_ranks(claim)
    roles = {name: _resolve_role(name, vocabulary, op) for name in ranks}
    rank = 4 if max(ranks.values(), default=4) >= 2 else 2
    forward = _op_formula(op, rank, bias=bool({"bias", "grad_bias"} & set(roles.values())))
    plan = _Plan.build(claim, op, forward, roles, ranks, options)
    return plan.run()


@dataclass
class _Plan:
    """Everything fixed before the configuration search."""

    claim: Claim
    op: str
    forward: ops.IndexFormula
    tensors: dict[str, _Tensor]
    equations: list  # (target Equation, kind) with kind "tensor" or "identity"
    substitutions: dict
    constraints: list  # Equations over parameters
    ranges: dict
    parameter_symbols: dict  # Symbol -> roles
    fixed: dict
    forced: dict
    options: CheckOptions
    notes: list

    @classmethod
    def build(cls, claim, op, forward, roles, ranks, options) -> "_Plan":
        notes: list[str] = []
        parameter_roles = set(forward.parameters)
        tensors = {}
        forced: dict[str, int] = {}
        shapes = {tensor.role: tensor for tensor in forward.operands}
        shapes["output"] = forward.output
        for name, role in roles.items():
            project = _project_tensor(forward, role)
            rank = len(project.shape)
            canonical = _canonical_letters(role, rank)
            if op in ("flatten",) and role in ("output", "grad_output"):
                canonical = "NF"
            letters = _letters(name, role, ranks[name], canonical, options.layouts)
            for position, letter in enumerate(canonical):
                if letter not in letters:
                    dimension = sympy.sympify(project.shape[position])
                    if dimension == 1:
                        continue
                    if not isinstance(dimension, Symbol) or letter in "HWF":
                        raise ValueError(f"formula: {name} is read with {ranks[name]} indices; its axis {letter} "
                                         f"(of {canonical}) needs one")
                    parameter = _role_of_symbol(forward, dimension)
                    forced[parameter] = 1
            maps = options.index_maps.get(name) or options.index_maps.get(base_name(name))
            if maps is not None and len(maps) != ranks[name]:
                raise ValueError(f"index_maps: {name} has {ranks[name]} indices, the map {len(maps)}")
            if maps is None and (name in options.one_based or base_name(name) in options.one_based):
                maps = tuple((1, -1) for _ in range(ranks[name]))
            maps = tuple((sign, sympy.sympify(offset)) for sign, offset in maps) if maps else \
                tuple((1, sympy.S.Zero) for _ in range(ranks[name]))
            zero = name in options.zero_outside or base_name(name) in options.zero_outside or (
                role == "input" and project.zero_padded)
            tensors[name] = _Tensor(name, role, letters, canonical, maps, zero)
        for parameter, value in forced.items():
            display = _DISPLAY.get(parameter, parameter)
            notes.append(f"{display} fixed at 1: the claim's tensors have no {display} axis")
        # Equations: targets and chains.
        equations, constraints, substitutions = [], [], {}
        target_names = set()
        for equation in claim.equations:
            lhs = equation.lhs
            if isinstance(lhs, (sympy.Indexed, IndexedBase)):
                name = str(lhs.label if isinstance(lhs, IndexedBase) else lhs.base.label)
                role = roles[name]
                if role not in ("output", "grad_input", "grad_weight", "grad_bias"):
                    raise ValueError(f"formula: the left side {lhs} is the {role.replace('_', ' ')}, which is given, "
                                     f"not derived; a claim is about the output or a gradient")
                if _same_tensor(lhs, equation.rhs, roles):
                    continue  # an alias in a chain: delta^[z]_i = dL/dz_i = ...
                target_names.add(name)
                equations.append((equation, "tensor"))
            else:
                equations.append((equation, "identity"))
        # Index symbols: the left sides' free symbols, summation and range variables. A left-side
        # symbol named like a parameter (s in X_{i s + u}) is the parameter, unless some read or the
        # where-clause uses it as an index on its own (p in document 004's P_{c,p,q}).
        bare = {index for equation, _ in equations for side in (equation.lhs, equation.rhs)
                for node in sympy.sympify(side).atoms(sympy.Indexed) for index in node.indices
                if isinstance(index, Symbol)} | {symbol for symbol, _, _ in claim.ranges}
        index_symbols = set()
        for equation, kind in equations:
            if kind == "tensor":
                index_symbols |= {symbol for symbol in _free(equation.lhs)
                                  if symbol in bare or symbol.name not in PARAMETER_NAMES}
        for equation, _ in equations:
            for node in sympy.preorder_traversal(equation.rhs):
                if isinstance(node, (sympy.Sum,)) or type(node).__name__ == "MaxOver":
                    index_symbols |= {limit[0] for limit in node.limits}
        ranges = {symbol: (low, high) for symbol, low, high in claim.ranges}
        index_symbols |= set(ranges)
        for definition in claim.definitions:
            if not isinstance(definition.lhs, Symbol):
                raise ValueError(f"formula: a where-clause must define a name, got {definition.lhs}")
            if definition.lhs.name in PARAMETER_NAMES and definition.lhs not in index_symbols:
                constraints.append(definition)
            else:
                substitutions[definition.lhs] = definition.rhs
        # Parameters: every other free symbol.
        parameter_symbols = {}
        free = set()
        for equation, _ in equations:
            free |= _free(equation.lhs) | _free(equation.rhs)
        for equation in constraints:
            free |= _free(equation.lhs) | _free(equation.rhs)
        for value in substitutions.values():
            free |= _free(value)
        for offset_maps in (tensor.maps for tensor in tensors.values()):
            for _, offset in offset_maps:
                free |= offset.free_symbols
        for size_name in options.sizes.values():
            free.add(Symbol(size_name))
        free -= index_symbols | set(substitutions) | set(OPEN)
        for symbol in sorted(free, key=lambda s: s.name):
            if symbol.name not in PARAMETER_NAMES:
                raise ValueError(f"formula: {symbol.name} is not an index of the left side, a summation index or a "
                                 f"shape parameter of {op} ({', '.join(sorted(_parameter_names(forward)))})")
            wanted = PARAMETER_NAMES[symbol.name]
            missing = [role for role in wanted if role not in parameter_roles]
            if missing:
                raise ValueError(f"formula: {symbol.name} is a {missing[0].replace('_', ' ')}, which {op} does not have")
            parameter_symbols[symbol] = wanted
        fixed = _fixed_configuration(op, options)
        return cls(claim, op, forward, tensors, equations, substitutions, constraints, ranges, parameter_symbols,
                   fixed, forced, options, notes)

    # configurations -----------------------------------------------------------------------------------
    def configurations(self) -> list[dict]:
        mentioned = {role for roles in self.parameter_symbols.values() for role in roles}
        if any(set(roles) == {"kernel_height", "kernel_width"} for roles in self.parameter_symbols.values()):
            mentioned.add("square_kernel")
        parameter_only = all(kind == "identity" for _, kind in self.equations)
        fixed = {**self.fixed, **self.forced}
        chosen, seen = [], set()
        free_roles = {role for role, value in self.forward.parameters.items() if isinstance(value, Symbol)}
        for candidate in _candidates(self.op, mentioned, fixed, parameter_only):
            config = {role: value for role, value in candidate.items() if role in free_roles}
            config.update({role: value for role, value in fixed.items() if role in free_roles})
            key = tuple(sorted(config.items()))
            if key in seen or not self._admissible(config):
                continue
            seen.add(key)
            chosen.append(config)
        chosen.sort(key=_cost)
        return chosen

    def _admissible(self, config: Mapping[str, int]) -> bool:
        values = self.parameter_values(config)
        if values is None:
            return False
        for name, value in values.items():
            if value is None:
                return False
        parameters = self.all_parameters(config)
        if any(parameters.get(role, 1) < 1 for role in ("out_height", "out_width")):
            return False
        if "in_height" in config and "kernel_height" in config:
            for axis in ("h", "w"):
                extent = config.get(f"dilation_{axis}", 1) * (config["kernel_height" if axis == "h" else "kernel_width"] - 1) + 1
                size = config["in_height" if axis == "h" else "in_width"] + 2 * config.get(f"padding_{axis}", 0)
                if extent > size:
                    return False
        for constraint in self.constraints:
            left = constraint.lhs.xreplace(values)
            right = sympy.sympify(constraint.rhs).xreplace(values)
            if sympy.simplify(left - right) != 0:
                return False
        if self.options.constraint is not None and not self.options.constraint(self.all_parameters(config)):
            return False
        return True

    def all_parameters(self, config: Mapping[str, int]) -> dict[str, int]:
        """Every parameter of the op at ``config``, the derived ones (``out_height``) included."""
        result = dict(config)
        for role, (arguments, function) in _derived_parameters(self.forward.op, self.forward).items():
            if all(argument in config for argument in arguments):
                result[role] = int(function(*[config[argument] for argument in arguments]))
        return result

    def parameter_values(self, config: Mapping[str, int]) -> Optional[dict]:
        """Each parameter symbol of the claim at ``config`` (None when a square name meets a non-square one)."""
        parameters = self.all_parameters(config)
        values = {}
        for symbol, roles in self.parameter_symbols.items():
            found = {parameters.get(role) for role in roles}
            if len(found) != 1 or None in found:
                return None
            values[symbol] = sympy.Integer(found.pop())
        return values

    # running ---------------------------------------------------------------------------------------------
    def run(self) -> CheckResult:
        configurations = self.configurations()
        if not configurations:
            raise ValueError("formula: no configuration of the op satisfies the claim's conditions and options")
        for number, config in enumerate(configurations, start=1):
            differences = self.compare(config)
            if differences:
                return CheckResult(self.claim.text, self.op, "index", False, number, _describe(self.op, config),
                                   tuple(differences), tuple(self.notes))
        return CheckResult(self.claim.text, self.op, "index", True, len(configurations), None, (), tuple(self.notes))

    def compare(self, config: Mapping[str, int]) -> list[Difference]:
        values = self.parameter_values(config)
        differences = []
        context = _Context(self, config, values)
        for equation, kind in self.equations:
            if kind == "identity":
                differences += context.identity(equation)
            else:
                differences += context.tensor_claim(equation)
        return differences


_DERIVED_CACHE: dict = {}


def _derived_parameters(op: str, forward: ops.IndexFormula) -> dict:
    """The op's derived parameters (``out_height`` = its output-size rule) as Python functions of the
    free ones, compiled once from the op's own expressions (lambdify: the rule stays defined once)."""
    if op not in _DERIVED_CACHE:
        free = {value: role for role, value in forward.parameters.items() if isinstance(value, Symbol)}
        derived = {}
        for role, expr in forward.parameters.items():
            if isinstance(expr, Symbol):
                continue
            symbols = sorted(sympy.sympify(expr).free_symbols, key=lambda symbol: symbol.name)
            derived[role] = (tuple(free[symbol] for symbol in symbols), sympy.lambdify(symbols, expr, "math"))
        _DERIVED_CACHE[op] = derived
    return _DERIVED_CACHE[op]


def _project_tensor(forward: ops.IndexFormula, role: str) -> ops.Tensor:
    base = role[5:] if role.startswith("grad_") else role
    if base == "output":
        return forward.output
    if base == "softmax":
        return forward.operand("input")
    try:
        return forward.operand(base)
    except KeyError:
        raise ValueError(f"formula: {forward.op} has no {base}") from None


def _role_of_symbol(forward: ops.IndexFormula, symbol: Symbol) -> str:
    for role, value in forward.parameters.items():
        if value == symbol:
            return role
    raise ValueError(f"formula: the size {symbol} of {forward.op} is not a parameter")


def _parameter_names(forward) -> set:
    return {name for name, roles in PARAMETER_NAMES.items() if all(role in forward.parameters for role in roles)}


def _free(expr) -> set:
    if isinstance(expr, MatrixValue):
        return set()
    return {symbol for symbol in sympy.sympify(expr).free_symbols if isinstance(symbol, Symbol)
            and not isinstance(symbol, sympy.Dummy)} - _labels(expr)


def _labels(expr) -> set:
    return {node.label for node in sympy.sympify(expr).atoms(IndexedBase)}


def _same_tensor(lhs, rhs, roles) -> bool:
    if isinstance(lhs, sympy.Indexed) and isinstance(rhs, sympy.Indexed):
        return roles.get(str(lhs.base.label)) == roles.get(str(rhs.base.label)) and lhs.indices == rhs.indices
    if isinstance(lhs, IndexedBase) and isinstance(rhs, IndexedBase):
        return roles.get(str(lhs.label)) == roles.get(str(rhs.label))
    return False


# --- one configuration ---------------------------------------------------------------------------------------


class _Table:
    """A derived array as a dict from index to entry (SymPy's ``Array.__getitem__`` is slow)."""

    def __init__(self, array):
        if isinstance(array, sympy.NDimArray):
            self.shape = tuple(int(size) for size in array.shape)
            self.entries = {tuple(index): array[index] for index in indices_of(self.shape)}
        else:  # a scalar (the loss)
            self.shape = ()
            self.entries = {(): sympy.sympify(array)}

    def contains(self, index) -> bool:
        return len(index) == len(self.shape) and all(0 <= v < size for v, size in zip(index, self.shape))


def _operands(op: str, rank: int, bias: bool, config: Mapping[str, int]) -> tuple[ops.IndexFormula, dict, dict]:
    forward = _op_formula(op, rank, bias)
    bindings = {forward.parameters[role]: sympy.Integer(value) for role, value in config.items()}
    arrays = {}
    for tensor in forward.operands:
        shape = tuple(int(sympy.sympify(dim).xreplace(bindings)) for dim in tensor.shape)
        arrays[tensor.role] = symbol_array(_ROLE_PREFIX.get(tensor.role, tensor.role[0]), shape)
    parameters = {role: value for role, value in config.items() if role in forward.parameters}
    return forward, arrays, parameters


def _distinct_values(array: Array) -> dict:
    """Max pooling's input as distinct numbers (a fixed permutation): "the" maximum is unambiguous,
    and the routing conditions of the derivation and of a claim both evaluate."""
    numbers = list(range(1, len(array) + 1))
    random.Random(len(array)).shuffle(numbers)
    return {array[index]: sympy.Integer(number) for index, number in zip(indices_of(array.shape), numbers)}


@functools.lru_cache(maxsize=512)
def _derivation(op: str, rank: int, bias: bool, config_items: tuple, gradients: bool) -> dict:
    """The derivation at one configuration, as tables by role: the operands, the output, and with
    ``gradients`` the upstream gradient and every gradient (the element-wise VJP)."""
    forward, arrays, parameters = _operands(op, rank, bias, dict(config_items))
    result = {role: _Table(array) for role, array in arrays.items()}
    if gradients:
        roles = [tensor.role for tensor in forward.operands if tensor.role in ("input", "weight", "bias")]
        upstream, derived = elementwise_gradients(forward, arrays, parameters, roles)
        if upstream is not None:
            result["grad_output"] = _Table(upstream)
        for role, array in derived.items():
            result["grad_" + role] = _Table(array)
    result["output"] = _Table(evaluate(forward, arrays, parameters))
    if op == "softmax_cross_entropy":
        result["softmax"] = _Table(evaluate(ops.softmax(), {"input": arrays["input"]}))
    if op == "maxpool2d":  # values substituted after differentiation, as symcnn derive does
        values = _distinct_values(arrays["input"])
        for table in result.values():
            table.entries = {index: sympy.sympify(entry).xreplace(values) for index, entry in table.entries.items()}
    result["identities"] = _one_hot(forward, arrays)
    return result


def _one_hot(forward: ops.IndexFormula, arrays) -> dict:
    """The op's identities at this configuration (one-hot targets sum to 1) as a substitution."""
    if not forward.identities or "target" not in arrays:
        return {}
    targets = arrays["target"]
    substitution = {}
    for row in range(targets.shape[0]):
        last = targets[row, targets.shape[1] - 1]
        substitution[last] = 1 - sum(targets[row, column] for column in range(targets.shape[1] - 1))
    return substitution


_FUNCTIONS = (sympy.exp, sympy.log, sympy.Max, sympy.Min, sympy.sqrt, sympy.Abs)


class _Context:
    """The claim evaluated at one configuration."""

    def __init__(self, plan: _Plan, config: Mapping[str, int], values: Mapping[Symbol, int]):
        self.plan = plan
        self.config = config
        self.values = dict(values)
        self.env = {symbol: int(value) for symbol, value in values.items()}
        self.parameters = plan.all_parameters(config)
        self.rank = len(plan.forward.operand("input").shape)
        self.needs_gradients = any(tensor.role.startswith("grad_") for tensor in plan.tensors.values())

    @functools.cached_property
    def derived(self) -> dict:
        bias = any(tensor.role == "bias" for tensor in self.plan.forward.operands)
        return _derivation(self.plan.op, self.rank, bias, tuple(sorted(self.config.items())), self.needs_gradients)

    # identities over parameters ---------------------------------------------------------------------------
    def identity(self, equation: Equation) -> list[Difference]:
        left = self._number(equation.lhs)
        right = self._number(equation.rhs)
        if left == right or not (left.is_Number and right.is_Number) and sympy.simplify(left - right) == 0:
            return []
        if isinstance(equation.lhs, Symbol) and equation.lhs.name in PARAMETER_NAMES:
            return [Difference(equation.lhs.name, _show(right), _show(left))]
        return [Difference(str(equation.lhs), f"{equation.rhs} = {right}", _show(left))]

    def _number(self, expr):
        return sympy.sympify(self.value(self.prepare(expr), {}))

    # tensors ------------------------------------------------------------------------------------------------
    def _table(self, role: str) -> _Table:
        if role not in self.derived:
            raise ValueError(f"formula: {self.plan.op} has no {role.replace('_', ' ')} to read")
        return self.derived[role]

    @functools.cache
    def _offsets(self, name: str) -> list[tuple[int, int]]:
        tensor = self.plan.tensors[name]
        return [(sign, int(sympy.sympify(offset).xreplace(self.values))) for sign, offset in tensor.maps]

    def project_index(self, tensor: _Tensor, claim_index: Sequence) -> tuple:
        """symcnn's index of ``tensor``'s entry that the claim writes ``claim_index``."""
        full = [0] * len(tensor.canonical)
        for (sign, offset), letter, value in zip(self._offsets(tensor.name), tensor.letters, claim_index):
            full[tensor.canonical.index(letter)] = sign * value + offset
        return tuple(full)

    def read(self, tensor: _Tensor, claim_index: Sequence):
        for value in claim_index:
            if not isinstance(value, int):
                raise _ReadOutside(f"reads {tensor.name}{_index_text(claim_index)}, at a non-integer index")
        table = self._table(tensor.role)
        index = self.project_index(tensor, claim_index)
        if table.contains(index):
            return table.entries[index]
        if tensor.zero_outside and _outside_only_spatially(tensor, index, table.shape):
            return sympy.S.Zero
        raise _ReadOutside(f"reads {tensor.name}{_index_text(claim_index)}, outside its shape "
                           f"{_claim_shape(tensor, table.shape)}")

    def axis_range(self, tensor: _Tensor, axis: int) -> tuple[int, int]:
        """The claim's indices of ``tensor``'s axis ``axis``, from its size in symcnn's indices."""
        size = self._table(tensor.role).shape[tensor.canonical.index(tensor.letters[axis])]
        sign, offset = self._offsets(tensor.name)[axis]
        ends = [sign * (0 - offset), sign * (size - 1 - offset)]
        return min(ends), max(ends)

    def prepare(self, expr) -> Expr:
        """Where-definitions, parameters and the sizes of ``options.sizes`` substituted, open sum bounds closed."""
        expr = sympy.sympify(expr)
        if self.plan.substitutions:
            expr = expr.xreplace(self.plan.substitutions)
        expr = expr.xreplace(self.values)
        expr = _resolve_sizes(expr, self.plan.options.sizes, self.values)
        return self._close_sums(expr)

    def _close_sums(self, expr):
        def close(node):
            limits = []
            for variable, low, high in node.limits:
                if (low, high) == OPEN:
                    low, high = self.variable_range(variable, node.function)
                limits.append((variable, low, high))
            return node.func(self._close_sums(node.function), *limits)

        return expr.replace(lambda node: isinstance(node, sympy.Sum) and any(
            (limit[1], limit[2]) == OPEN for limit in node.limits), close)

    def variable_range(self, variable: Symbol, scope) -> tuple[int, int]:
        if variable in self.plan.ranges:
            return self.plan.ranges[variable]
        found = None
        for node in sympy.sympify(scope).atoms(sympy.Indexed):
            tensor = self.plan.tensors.get(str(node.base.label))
            if tensor is None:
                continue
            for axis, index in enumerate(node.indices):
                if index == variable:
                    low, high = self.axis_range(tensor, axis)
                    found = (low, high) if found is None else (max(found[0], low), min(found[1], high))
        if found is None:
            raise ValueError(f"formula: the range of {variable} is not given and it indexes no tensor on its own; "
                             f"write \\sum_{{{variable}=0}}^{{...}}")
        return found

    # the evaluator: the claim's value at one point, without building the unrolled expression ----------------
    def index(self, expr, env) -> object:
        """An index expression as a Python number (int, or Fraction where it does not divide)."""
        if isinstance(expr, int):
            return expr
        if expr.is_Integer:
            return int(expr)
        if isinstance(expr, Symbol):
            if expr in env:
                return env[expr]
            raise ValueError(f"formula: {expr} has no value here (an index of the left side, a summation "
                             f"index or a parameter)")
        if expr.is_Rational:
            return Fraction(int(expr.p), int(expr.q))
        if isinstance(expr, sympy.Add):
            return _integral(sum(self.index(arg, env) for arg in expr.args))
        if isinstance(expr, sympy.Mul):
            return _integral(math.prod(self.index(arg, env) for arg in expr.args))
        if isinstance(expr, sympy.Pow):
            return _integral(Fraction(self.index(expr.base, env)) ** int(expr.exp))
        if isinstance(expr, sympy.floor):
            return math.floor(self.index(expr.args[0], env))
        if isinstance(expr, sympy.ceiling):
            return math.ceil(self.index(expr.args[0], env))
        if isinstance(expr, sympy.Mod):
            return _integral(Fraction(self.index(expr.args[0], env)) % Fraction(self.index(expr.args[1], env)))
        value = self.value(expr, env)
        if value.is_Integer:
            return int(value)
        raise ValueError(f"formula: cannot use {expr} as an index")

    def truth(self, condition, env):
        """A condition: True, False, or a SymPy relation between tensor entries (ReLU's ``S > 0``)."""
        if condition in (sympy.true, True):
            return sympy.true
        if condition in (sympy.false, False):
            return sympy.false
        if isinstance(condition, sympy.And):
            parts = [self.truth(arg, env) for arg in condition.args]
            return sympy.And(*parts)
        if isinstance(condition, sympy.Or):
            return sympy.Or(*[self.truth(arg, env) for arg in condition.args])
        if isinstance(condition, sympy.Not):
            return sympy.Not(self.truth(condition.args[0], env))
        if isinstance(condition, sympy.Rel):
            if not condition.has(sympy.Indexed, IndexedBase):
                left, right = self.index(condition.lhs, env), self.index(condition.rhs, env)
                return sympy.true if _compare(condition, left, right) else sympy.false
            return condition.func(self.value(condition.lhs, env), self.value(condition.rhs, env))
        raise ValueError(f"formula: cannot read {condition} as a condition")

    def value(self, expr, env):
        """The claim's expression at ``env`` (index values): a SymPy expression in the entries."""
        if isinstance(expr, (int, Fraction)):
            return sympy.Rational(expr)
        if expr.is_Number:
            return expr
        if isinstance(expr, Symbol):
            return sympy.Rational(self.index(expr, env))
        if isinstance(expr, sympy.Indexed):
            tensor = self.plan.tensors[expr.base.label.name]
            return self.read(tensor, [self.index(index, env) for index in expr.indices])
        if isinstance(expr, IndexedBase):
            return self.read(self.plan.tensors[expr.label.name], [])
        if isinstance(expr, sympy.Add):
            return sympy.Add(*[self.value(arg, env) for arg in expr.args])
        if isinstance(expr, sympy.Mul):
            # Factors without reads first: an indicator that is 0 spares a read it guards.
            factors = sorted(expr.args, key=_has_reads)
            values = []
            for factor in factors:
                value = self.value(factor, env)
                if value == 0:
                    return sympy.S.Zero
                values.append(value)
            return sympy.Mul(*values)
        if isinstance(expr, sympy.Pow):
            return self.value(expr.base, env) ** self.value(expr.exp, env)
        if isinstance(expr, (sympy.Sum, MaxOver)):
            terms = []
            for point in self._points(expr.limits, env):
                terms.append(self.value(expr.function, point))
            if isinstance(expr, MaxOver):
                return WindowMax(*terms)
            return sympy.Add(*terms)
        if isinstance(expr, sympy.Piecewise):
            pieces = []
            for branch, condition in expr.args:
                truth = self.truth(condition, env)
                if truth is sympy.false:
                    continue
                pieces.append((self.value(branch, env), truth))
                if truth is sympy.true:
                    break
            if not pieces:
                return sympy.nan
            if pieces[0][1] is sympy.true:
                return pieces[0][0]
            return sympy.Piecewise(*pieces)
        if isinstance(expr, (sympy.floor, sympy.ceiling, sympy.Mod)):
            return sympy.Rational(self.index(expr, env))
        if isinstance(expr, FirstArgmax):
            concrete = expr.xreplace({symbol: sympy.Integer(value) for symbol, value in env.items()
                                      if isinstance(value, int)})
            return self.value(unroll(concrete), env)
        if isinstance(expr, _FUNCTIONS) or isinstance(expr, WindowMax):
            return expr.func(*[self.value(arg, env) for arg in expr.args])
        raise ValueError(f"formula: cannot evaluate {type(expr).__name__} {expr}")

    def _points(self, limits, env):
        """Every assignment of the limits' variables, the first varying slowest (row-major)."""
        points = [dict(env)]
        for variable, low, high in limits:
            expanded = []
            for point in points:
                for value in range(self.index(low, point), self.index(high, point) + 1):
                    expanded.append({**point, variable: value})
            points = expanded
        return points

    # tensor claims --------------------------------------------------------------------------------------------
    def tensor_claim(self, equation: Equation) -> list[Difference]:
        lhs = equation.lhs
        name = str(lhs.label if isinstance(lhs, IndexedBase) else lhs.base.label)
        tensor = self.plan.tensors[name]
        target = self._table(tensor.role)
        value = self.prepare(equation.rhs)
        lhs_indices = () if isinstance(lhs, IndexedBase) else tuple(self.prepare(index) for index in lhs.indices)
        variables = sorted(set().union(*[_free(index) for index in lhs_indices]) if lhs_indices else set(),
                           key=lambda symbol: symbol.name)
        ranges = []
        for variable in variables:
            bare_axes = [axis for axis, index in enumerate(lhs_indices) if index == variable]
            low, high = (self.axis_range(tensor, bare_axes[0]) if bare_axes else self.variable_range(variable, value))
            ranges.append(range(low, high + 1))
        identities = self.derived["identities"]
        differences = []
        for point in itertools.product(*ranges):
            env = dict(zip(variables, point))
            claim_index = [self.index(index, env) for index in lhs_indices]
            entry = f"{name}{_index_text(claim_index)}"
            project = self.project_index(tensor, claim_index)
            if not target.contains(project):
                differences.append(Difference(entry, f"the left side is outside {name}'s shape "
                                                      f"{_claim_shape(tensor, target.shape)}", "-"))
                continue
            derived = target.entries[project]
            try:
                claimed = self.value(value, env)
            except _ReadOutside as outside:
                differences.append(Difference(entry, str(outside), _show(derived)))
                continue
            if identities:
                claimed, derived = sympy.sympify(claimed).xreplace(identities), sympy.sympify(derived).xreplace(identities)
            if not _equal(claimed, derived):
                differences.append(Difference(entry, _show(claimed), _show(derived)))
        return differences


@functools.lru_cache(maxsize=4096)
def _has_reads(expr) -> bool:
    return expr.has(sympy.Indexed, IndexedBase)


def _outside_only_spatially(tensor: _Tensor, index, shape) -> bool:
    """Zero padding pads rows and columns: a read past the batch or the channels is still an error."""
    return all(0 <= value < size or tensor.canonical[axis] in "HW"
               for axis, (value, size) in enumerate(zip(index, shape)))


def _integral(value):
    if isinstance(value, Fraction) and value.denominator == 1:
        return int(value)
    return value


def _compare(relation, left, right) -> bool:
    return {sympy.Eq: left == right, sympy.Ne: left != right, sympy.Lt: left < right, sympy.Le: left <= right,
            sympy.Gt: left > right, sympy.Ge: left >= right}[type(relation)]


def _resolve_sizes(expr, sizes: Mapping[int, str], values: Mapping[Symbol, int]):
    """The claim's sum bounds with the numbers of ``sizes`` read as parameters (``4096`` -> ``F_in``)."""
    if not sizes:
        return expr

    def bound(value):
        value = sympy.sympify(value)
        for number, name in sizes.items():
            if value.is_Integer and int(value) == int(number):
                return values.get(Symbol(name), Symbol(name))
        return value

    def rebuild(node):  # upper bounds only: a document's "sum to 4096" is a size
        return node.func(node.function, *[(v, low, bound(high)) for v, low, high in node.limits])

    return expr.replace(lambda node: isinstance(node, sympy.Sum), rebuild)


def _index_text(index) -> str:
    return "[" + ", ".join(str(value) for value in index) + "]" if index else ""


def _claim_shape(tensor: _Tensor, shape) -> str:
    sizes = [shape[tensor.canonical.index(letter)] for letter in tensor.letters]
    return "(" + ", ".join(str(size) for size in sizes) + ")"
