"""The configuration search: which small configurations of the op a claim is evaluated at, and in
which order. A claim is tried at configurations in increasing size (stride, padding and dilation
above their neutral values first, then the tensors' size), so that the first that differs is the
smallest counter-example.

Example:
    >>> from symcnn.checking.index.plan import plan_claim
    >>> from symcnn.checking.parse import parse_claim
    >>> from symcnn.checking.result import CheckOptions
    >>> claim = parse_claim(r"Y_{i,j} = \\sum_{m}\\sum_{n} X_{i+m,j+n} W_{m,n}", tensors={"X", "W", "Y"})
    >>> chosen = configurations(plan_claim(claim, "conv2d", CheckOptions()))
    >>> len(chosen), describe("conv2d", chosen[0])
    (4, 'N=1, C_in=1, C_out=1, input 2x3, kernel 2x2, stride 1, padding 0, dilation 1')
    >>> describe("conv2d", chosen[-1])  # the claim's X has no batch or channel axis: both stay 1
    'N=1, C_in=1, C_out=1, input 4x3, kernel 3x2, stride 1, padding 0, dilation 1'
"""

from __future__ import annotations

import itertools
import math
from typing import Mapping

import sympy
from sympy import Symbol

from symcnn import registry
from symcnn.checking.index.plan import Plan
from symcnn.checking.index.vocabulary import (CLASSIFIER_OPS, CONVOLUTION_OPS, DENSE_OPS, ELEMENTWISE_OPS,
                                              PARAMETER_DISPLAY, SPATIAL_OPS)
from symcnn.checking.sizes import check_constants
from symcnn.symbolic.derive import reduction_terms

__all__ = ["configurations", "describe", "expansion_terms"]


def configurations(plan: Plan) -> list[dict]:
    """The configurations to evaluate ``plan``'s claim at, smallest first: the free parameters of its
    op, with the options' and the claim's fixed values, each satisfying the claim's constraints."""
    mentioned = {role for roles in plan.parameter_symbols.values() for role in roles}
    if any(set(roles) == {"kernel_height", "kernel_width"} for roles in plan.parameter_symbols.values()):
        mentioned.add("square_kernel")
    parameter_only = all(kind == "identity" for _, kind in plan.equations)
    fixed = {**plan.fixed, **plan.forced}
    chosen, seen = [], set()
    free_roles = {role for role, value in plan.forward.parameters.items() if isinstance(value, Symbol)}
    mentioned |= free_roles & {"in_features"}  # an activation read as features (Y[i] = ...) searches their count
    for candidate in _candidates(plan.op, mentioned, fixed, parameter_only):
        config = {role: value for role, value in candidate.items() if role in free_roles}
        config.update({role: value for role, value in fixed.items() if role in free_roles})
        key = tuple(sorted(config.items()))
        if key in seen or not _admissible(plan, config):
            continue
        seen.add(key)
        chosen.append(config)
    chosen.sort(key=_cost)
    return chosen


def _admissible(plan: Plan, config: Mapping[str, int]) -> bool:
    values = plan.parameter_values(config)
    if values is None:
        return False
    if any(value is None for value in values.values()):
        return False
    parameters = plan.all_parameters(config)
    if any(parameters.get(role, 1) < 1 for role in ("out_height", "out_width")):
        return False
    if "in_height" in config and "kernel_height" in config:
        for axis in ("h", "w"):
            kernel = config["kernel_height" if axis == "h" else "kernel_width"]
            extent = config.get(f"dilation_{axis}", 1) * (kernel - 1) + 1
            size = config["in_height" if axis == "h" else "in_width"] + 2 * config.get(f"padding_{axis}", 0)
            if extent > size:
                return False
    names = {symbol.name: value for symbol, value in values.items()}
    for constraint in plan.constraints:
        check_constants(constraint.lhs, names)  # before xreplace computes with the values
        check_constants(constraint.rhs, names)
        left = constraint.lhs.xreplace(values)
        right = sympy.sympify(constraint.rhs).xreplace(values)
        if sympy.simplify(left - right) != 0:
            return False
    if plan.options.constraint is not None and not plan.options.constraint(plan.all_parameters(config)):
        return False
    return True


def _spatial_candidates(op: str, mentioned: set, fixed: Mapping[str, int], parameter_only: bool) -> list[dict]:
    """Convolution and pooling configurations: every stride, padding and dilation the claim mentions
    (stride 1, padding 0, dilation 1 otherwise; a pool's stride is its window), kernels 2x2 and 3x2
    (2x2 and 3x3 for a claim with one kernel size K), inputs with one and two output rows and, at
    strides above 1, one more row (a remainder no window reaches). A parameter-only claim (an output
    size) gets a wider grid: it is cheap."""
    conv = op in CONVOLUTION_OPS
    transposed = "output_padding" in registry.get(op).keys()  # searched at output padding 0
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
            if transposed:
                config[f"output_padding_{axis}"] = fixed.get(f"output_padding_{axis}", 0)
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
    if op in SPATIAL_OPS:
        result = []
        for config in _spatial_candidates(op, mentioned, fixed, parameter_only):
            channels = [(1, 1, 1), (2, 2, 2)] if config.pop("_channels") else [(1, 1, 1)]
            for batch, c_in, c_out in channels:
                config = dict(config, batch=batch, in_channels=c_in)
                if op in CONVOLUTION_OPS:
                    config["out_channels"] = c_out
                result.append(config)
        return result
    if op in DENSE_OPS:
        return [dict(batch=n, in_features=f, out_features=o) for n, f, o in
                itertools.product([1, 2], [1, 2, 3], [1, 2, 3])]
    if op in CLASSIFIER_OPS or op in ELEMENTWISE_OPS and "in_features" in mentioned:
        return [dict(batch=n, in_features=f) for n, f in itertools.product([1, 2], [2, 3, 4])]
    shapes = [(1, 1, 2, 2), (1, 1, 3, 2), (1, 2, 2, 3), (2, 2, 3, 2)]
    result = [dict(batch=n, in_channels=c, in_height=h, in_width=w) for n, c, h, w in shapes]
    if any(setting.roles == _OUT_SIZE for setting in registry.get(op).settings):  # an adaptive pool's output size
        result = [dict(config, out_height=out_height, out_width=out_width) for config in result
                  for out_height in range(1, config["in_height"] + 1) for out_width in range(1, config["in_width"] + 1)]
    return result


#: The roles of an output size that is a setting (an adaptive pool's): searched from 1 to the input's size.
_OUT_SIZE = ("out_height", "out_width")


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


def expansion_terms(plan: Plan, config: Mapping[str, int]) -> int:
    """The size of the op's expansion at ``config``, in terms, as ``symcnn derive`` counts it
    (:attr:`symcnn.symbolic.derive.LayerConfig.expansion_terms`): output elements times the terms
    each reduces over."""
    bindings = {value: sympy.Integer(config[role]) for role, value in plan.forward.parameters.items()
                if isinstance(value, Symbol) and role in config}
    sizes = [int(sympy.sympify(size).xreplace(bindings)) for size in plan.forward.output.shape]
    ranges = dict(zip(plan.forward.indices, sizes))  # an adaptive window's length follows the output index
    return math.prod(sizes) * reduction_terms(plan.forward.rhs.xreplace(bindings), ranges)


def describe(op: str, config: Mapping[str, int]) -> str:
    """A configuration as a counter-example names it: ``N=1, C_in=1, input 2x3, kernel 2x2, stride 1``."""
    parts = []
    for role in ("batch", "in_channels", "out_channels", "in_features", "out_features"):
        if role in config:
            parts.append(f"{PARAMETER_DISPLAY[role]}={config[role]}")
    if "in_height" in config:
        parts.append(f"input {config['in_height']}x{config['in_width']}")
    if "out_height" in config:  # an output size that is a setting
        parts.append(f"output {config['out_height']}x{config['out_width']}")
    for name, height, width in (("kernel", "kernel_height", "kernel_width"), ("stride", "stride_h", "stride_w"),
                                ("padding", "padding_h", "padding_w"), ("dilation", "dilation_h", "dilation_w")):
        if height in config:
            value = config[height] if config[height] == config[width] else f"{config[height]}x{config[width]}"
            parts.append(f"{name} {value}" if name != "kernel" else f"kernel {config[height]}x{config[width]}")
    return ", ".join(parts)
