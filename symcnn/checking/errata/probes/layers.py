"""Document 003's claims about single layers that no index formula states: dropout's scaling, the
kernel and stride of adaptive pooling, the parameters of a depthwise separable convolution.

- **dropout**: the kept value and the expectation from symcnn's ``dropout`` formula (the mask put
  in), the probability of keeping an element measured on the masks the runtime draws
  (:func:`symcnn.runtime.masks.draw_mask`); the document's ``p`` is read as symcnn's (the drop
  probability) unless ``options["p"]`` is ``"keep"``.
- **adaptive pooling**: an average pool of the claimed kernel and stride against symcnn's
  ``adaptive_avgpool2d``, along one axis, for every output size up to the input size (a pool reduces).
- **activations**: ``f(x)`` of ReLU, Leaky ReLU and ELU against symcnn's op (``options["op"]``) at
  positive, zero and negative ``x``, the slope ``alpha`` a symbol.
- **separable convolution**: parameter counts from the registry's shapes of ``conv2d`` (standard),
  ``conv2d`` with ``groups = C_in`` (depthwise, one filter per input channel) and a 1x1 ``conv2d``
  (pointwise), with or without biases.

Example:
    >>> case = next(iter(SEPARABLE.cases({})))
    >>> case.label, dict(SEPARABLE.evidence(case, {}).derived)
    ('K=1, C_in=1, C_out=1, no biases', {'standard': 1, 'separable': 2, 'ratio': 1/2})
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import sympy
from sympy import Array, Symbol

from symcnn import registry
from symcnn.checking.errata.probes.core import Case, Evidence, Probe
from symcnn.runtime.masks import draw_mask
from symcnn.symbolic.instances import evaluate_layer
from symcnn.symbolic.tensors import symbol_array

__all__ = ["ACTIVATION", "DROPOUT", "ADAPTIVE_POOLING", "SEPARABLE"]

# --- activations ---------------------------------------------------------------------------------------

#: Inputs of an activation, in the order tried: each side of 0, and 0.
_POINTS = (sympy.Integer(2), sympy.Integer(-3), sympy.Integer(0), sympy.Rational(1, 2), sympy.Rational(-1, 4))


def _activation_cases(options) -> list[Case]:
    return [Case(f"x = {point}", {"x": point}) for point in _POINTS]


def _activation_evidence(case: Case, options) -> Evidence:
    alpha = Symbol("alpha", positive=True)
    settings = {"alpha": alpha} if "alpha" in registry.get(options["op"]).keys() else {}
    value = evaluate_layer(options["op"], {"input": Array([[case.values["x"]]])}, settings)[0, 0]
    return Evidence({"x": case.values["x"], "alpha": alpha}, {"f": value})


#: An activation's value, against symcnn's op (``options["op"]``).
ACTIVATION = Probe("{op}", _activation_cases, _activation_evidence)

# --- dropout -------------------------------------------------------------------------------------------

#: Drop probabilities (symcnn's p), in the order tried: 1/2 first, where keep and drop probability agree.
_DROP = (sympy.Rational(1, 2), sympy.Rational(1, 4), sympy.Rational(3, 4), sympy.Rational(1, 10))
_MASK_ELEMENTS = 1 << 16


@functools.lru_cache(maxsize=None)
def _kept_fraction(drop: sympy.Rational) -> float:
    """The fraction of ones in a mask the runtime draws with drop probability ``drop``."""
    mask = np.empty((1, _MASK_ELEMENTS), dtype=np.float32)
    draw_mask(mask, seed=0, layer=0, step=0, drop=float(drop))
    return float(mask.mean())


def _dropout_cases(options) -> list[Case]:
    return [Case(f"symcnn's p = {drop} (the drop probability; the document's p read as "
                 f"{'1 - p' if options.get('p') == 'keep' else 'p'} = "
                 f"{1 - drop if options.get('p') == 'keep' else drop})", {"drop": drop}) for drop in _DROP]


def _dropout_evidence(case: Case, options) -> Evidence:
    drop = case.values["drop"]
    x, mask = symbol_array("x", (1, 1)), symbol_array("m", (1, 1))
    output = evaluate_layer("dropout", {"input": x, "mask": mask}, {"p": drop})[0, 0]
    kept, dropped = output.xreplace({mask[0, 0]: 1}), output.xreplace({mask[0, 0]: 0})
    keep = 1 - drop  # a mask element is 1 with probability 1 - p (symcnn/runtime/masks.py)
    derived = {"kept_value": kept, "dropped_value": dropped, "keep_probability": _kept_fraction(drop),
               "expectation": sympy.expand(keep * kept + drop * dropped)}
    # Six standard deviations of the fraction of ones in the measured mask.
    tolerance = 6 * math.sqrt(float(keep * drop) / _MASK_ELEMENTS)
    return Evidence({"x": x[0, 0], "p": keep if options.get("p") == "keep" else drop}, derived,
                    tolerances={"keep_probability": tolerance})


#: Inverted dropout's values and probabilities, against symcnn's formula and the runtime's masks.
DROPOUT = Probe("symcnn's dropout formula and the runtime's masks", _dropout_cases, _dropout_evidence)

# --- adaptive pooling ------------------------------------------------------------------------------------

_LARGEST_INPUT = 8


def _adaptive_cases(options) -> list[Case]:
    return [Case(f"input size {size}, output size {out}", {"input": size, "output": out})
            for size in range(1, _LARGEST_INPUT + 1) for out in range(1, size + 1)]


@functools.lru_cache(maxsize=None)
def _adaptive_output(size: int, out: int) -> tuple[Array, int]:
    settings = registry.get("adaptive_avgpool2d").settings_of({"output": (out, 1)})
    x = symbol_array("x", (1, 1, size, 1))
    pooled = evaluate_layer("adaptive_avgpool2d", {"input": x}, settings)
    outputs = registry.get("adaptive_avgpool2d").output_shape((1, size, 1), settings)[1]
    along = {x[0, 0, index, 0]: _position(index) for index in range(size)}  # x0, x1, ... along the axis
    return Array([pooled[0, 0, i, 0].xreplace(along) for i in range(out)]), outputs


def _position(index: int) -> Symbol:
    return Symbol(f"x{index}", real=True)


def _adaptive_evidence(case: Case, options) -> Evidence:
    size, out = case.values["input"], case.values["output"]
    pooled, outputs = _adaptive_output(size, out)
    x = Array([_position(index) for index in range(size)])
    return Evidence({"n_in": size, "n_out": out, "x": x}, {"Y": pooled, "outputs": outputs}, {"Y": (out,)})


#: Adaptive average pooling's kernel and stride, against ``adaptive_avgpool2d``.
ADAPTIVE_POOLING = Probe("adaptive_avgpool2d", _adaptive_cases, _adaptive_evidence)

# --- depthwise separable convolution --------------------------------------------------------------------


def _parameters(in_channels: int, **settings) -> int:
    """How many parameters a ``conv2d`` of these settings has, from the registry's shapes."""
    entry = registry.get("conv2d")
    resolved = entry.settings_of(settings)
    kernel = resolved["kernel"]
    return sum(math.prod(shape) for shape in entry.parameter_shapes((in_channels, *kernel), resolved).values())


def _separable_cases(options) -> list[Case]:
    sizes = sorted(itertools.product(range(1, 4), range(1, 4), range(1, 5)), key=lambda size: (sum(size), size))
    return [Case(f"K={kernel}, C_in={c_in}, C_out={c_out}, {'with' if bias else 'no'} biases",
                 {"K": kernel, "C_in": c_in, "C_out": c_out, "bias": bias})
            for kernel, c_in, c_out in sizes for bias in (False, True)]


def _separable_evidence(case: Case, options) -> Evidence:
    kernel, c_in, c_out, bias = (case.values[key] for key in ("K", "C_in", "C_out", "bias"))
    standard = _parameters(c_in, out_channels=c_out, kernel=kernel, bias=bias)
    separable = (_parameters(c_in, out_channels=c_in, kernel=kernel, groups=c_in, bias=bias)  # depthwise
                 + _parameters(c_in, out_channels=c_out, kernel=1, bias=bias))  # pointwise
    return Evidence({"K": kernel, "C_in": c_in, "C_out": c_out},
                    {"standard": standard, "separable": separable, "ratio": sympy.Rational(standard, separable)})


#: A depthwise separable convolution's parameters, against the registry's shapes.
SEPARABLE = Probe("the registry's parameter shapes of conv2d (standard, depthwise with groups = C_in, "
                  "pointwise 1x1)", _separable_cases, _separable_evidence)
