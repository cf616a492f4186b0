"""Document 003's claims about initializing, stabilizing and explaining a network, checked against
symcnn's derivations and its runtime.

- **initialization**: at each weight of the shipped ``seed004`` network, ``n_in`` and ``n_out`` are the
  numbers of terms that one output and one input gradient sum over in symcnn's formulas
  (:func:`symcnn.symbolic.derive.reduction_terms`). Xavier's variance is compared with Glorot and
  Bengio's rule, the harmonic mean of the forward ``1/n_in`` and the backward ``1/n_out``; He's with
  the variance that keeps a ReLU layer's output variance (``E[relu(z)^2] = Var(z)/2``, by SymPy's
  statistics) and with the variance of the weights symcnn's ``Network`` draws (measured). A uniform
  distribution's bound is compared through its variance (``Var(U[-a, a]) = a^2/3``).
- **stable softmax**: the shifted form against symcnn's ``softmax``, exactly, with ``max(x)`` symbolic.
- **gradient clipping**: at gradients symcnn derives (a dense layer's, at drawn numbers), the clipped
  gradient's norm and direction against ``min(||g||, threshold)`` and ``g/||g||``.
- **Grad-CAM**: ``alpha`` against symcnn's ``global_avgpool`` of the gradient of a class score with
  respect to the feature maps, derived through a small head (1x1 conv, ReLU, global average pool,
  dense).

Example:
    >>> [case.label for case in INITIALIZATION.cases({"rule": "xavier"})][:1]
    ['seed004 conv1 (conv2d 3 -> 16, kernel 3x3): n_in = 27, n_out = 144']
"""

from __future__ import annotations

import functools
import math

import sympy
from sympy import Array, Symbol
from sympy.stats import E as expectation
from sympy.stats import Normal, Uniform, variance

from symcnn.checking.errata.probes.core import Case, Evidence, Probe, rationals
from symcnn.runtime.network import Network
from symcnn.spec import load_spec
from symcnn.symbolic import layers
from symcnn.symbolic.adjoint import derive_gradient
from symcnn.symbolic.derive import LayerConfig, derive, reduction_terms, vjp
from symcnn.symbolic.instances import bind_layer, evaluate_layer
from symcnn.symbolic.tensors import indices_of, symbol_array

__all__ = ["INITIALIZATION", "STABLE_SOFTMAX", "GRADIENT_CLIPPING", "GRAD_CAM"]

# --- initialization ------------------------------------------------------------------------------------

_NETWORK = "seed004"


@functools.lru_cache(maxsize=None)
def _weights() -> tuple[tuple[str, int, int, str], ...]:
    """Each weight of the network: its name, n_in, n_out (counted in symcnn's formulas) and a label."""
    found = []
    for layer in load_spec(_NETWORK).layers:
        if not layer.name or "out_channels" not in layer.settings and "out_features" not in layer.settings:
            continue
        formula, values = bind_layer(layer.kind, layer.input_shape, layer.settings)
        fan_in = reduction_terms(formula.rhs.xreplace(values))
        fan_out = reduction_terms(derive_gradient(formula, "input").rhs.xreplace(values))
        shape = (f"{layer.input_shape[0]} -> {layer.settings['out_channels']}, kernel "
                 f"{'x'.join(map(str, layer.settings['kernel']))}" if "kernel" in layer.settings
                 else f"{layer.input_shape[0]} -> {layer.settings['out_features']}")
        found.append((f"{layer.name}.weight", fan_in, fan_out,
                      f"{_NETWORK} {layer.name} ({layer.kind} {shape}): n_in = {fan_in}, n_out = {fan_out}"))
    return tuple(found)


@functools.lru_cache(maxsize=None)
def _drawn_variance(name: str) -> tuple[float, int]:
    """The variance of weight ``name`` as symcnn's Network draws it (seed 0), and how many values."""
    weight = Network.from_spec(_NETWORK, dtype="float64", seed=0).params[name]
    return float(weight.var()), int(weight.size)


@functools.lru_cache(maxsize=None)
def _relu_second_moment() -> sympy.Expr:
    """``E[relu(z)^2] / Var(z)`` for a zero-mean normal ``z``: 1/2."""
    sigma = Symbol("sigma", positive=True)
    z = Normal("z", 0, sigma)
    return sympy.simplify(expectation(sympy.Piecewise((z**2, z > 0), (0, True))) / sigma**2)


def _uniform_bound(target: sympy.Expr) -> sympy.Expr:
    """The bound ``a`` of ``U[-a, a]`` of variance ``target``: ``Var(U[-a, a]) = a^2 Var(U[-1, 1])``."""
    return sympy.sqrt(target / variance(Uniform("w", -1, 1)))


def _initialization_cases(options) -> list[Case]:
    cases = []
    for name, fan_in, fan_out, label in _weights():
        values = {"weight": name, "n_in": fan_in, "n_out": fan_out}
        if options.get("rule") == "he":
            cases.append(Case(f"{label}, the variance that keeps a ReLU layer's output variance", values))
            cases.append(Case(f"{label}, as symcnn's Network draws it", {**values, "drawn": True}))
        else:
            cases.append(Case(label, values))
    return cases


def _initialization_evidence(case: Case, options) -> Evidence:
    fan_in, fan_out = case.values["n_in"], case.values["n_out"]
    given = {"n_in": fan_in, "n_out": fan_out}
    if options.get("rule") == "he":
        if case.values.get("drawn"):
            measured, count = _drawn_variance(case.values["weight"])
            # Six standard deviations of a sample variance of `count` normal values.
            tolerance = 6 * measured * math.sqrt(2 / (count - 1))
            return Evidence(given, {"variance": measured, "bound": math.sqrt(3 * measured)},
                            # the bound sqrt(3 v) moves by 3/(2 sqrt(3 v)) per unit of v
                            tolerances={"variance": tolerance, "bound": 1.5 * tolerance / math.sqrt(3 * measured)})
        target = 1 / (fan_in * _relu_second_moment())  # n_in Var(W) E[relu(z)^2] = Var(z)
    else:
        target = sympy.Rational(2, fan_in + fan_out)  # the harmonic mean of 1/n_in and 1/n_out
    return Evidence(given, {"variance": target, "bound": _uniform_bound(target)})


#: Xavier's and He's variances (``options["rule"]``: ``"xavier"`` or ``"he"``).
INITIALIZATION = Probe("Glorot's and He's variances at n_in and n_out of symcnn's formulas (seed004's weights), "
                       "and for He the weights symcnn's Network draws", _initialization_cases,
                       _initialization_evidence)

# --- stable softmax -----------------------------------------------------------------------------------


def _softmax_cases(options) -> list[Case]:
    return [Case(f"F = {features}", {"F": features}) for features in range(1, 6)]


def _softmax_evidence(case: Case, options) -> Evidence:
    features = case.values["F"]
    x = symbol_array("x", (1, features))
    probabilities = evaluate_layer("softmax", {"input": x}, {})
    return Evidence({"F": features, "x": Array([x[0, k] for k in range(features)])},
                    {"p": Array([probabilities[0, k] for k in range(features)])}, {"p": (features,)})


#: The softmax computed on ``x - max(x)``, against symcnn's ``softmax``.
STABLE_SOFTMAX = Probe("softmax", _softmax_cases, _softmax_evidence)

# --- gradient clipping --------------------------------------------------------------------------------

_THRESHOLDS = ((sympy.Rational(1, 2), "half the gradient's norm"), (2, "twice the gradient's norm"),
               (1, "the gradient's norm"))


@functools.lru_cache(maxsize=None)
def _parameter_gradient(features: int, outputs: int) -> Array:
    """Every parameter gradient of a dense layer, at drawn numbers, one after the other."""
    result = derive(LayerConfig("dense", input_size=features, channels_out=outputs))
    numbers = {}
    for offset, (_, array) in enumerate(sorted(result.tensors.items())):
        drawn = rationals(11 + offset, math.prod(array.shape))
        numbers.update({array[index]: value for index, value in zip(indices_of(array.shape), drawn)})
    flat = [result.gradients[role][index].xreplace(numbers) for role in ("grad_weight", "grad_bias")
            for index in indices_of(result.gradients[role].shape)]
    return Array(flat)


def _clipping_cases(options) -> list[Case]:
    return [Case(f"dense {features} -> {outputs} (its {features * outputs + outputs} parameter gradients), "
                 f"threshold {words}", {"features": features, "outputs": outputs, "scale": scale})
            for features, outputs in ((1, 1), (2, 1), (2, 2)) for scale, words in _THRESHOLDS]


def _clipping_evidence(case: Case, options) -> Evidence:
    gradient = _parameter_gradient(case.values["features"], case.values["outputs"])
    norm = sympy.sqrt(sum(value**2 for value in gradient))
    threshold = case.values["scale"] * norm
    return Evidence({"g": gradient, "P": len(gradient), "threshold": threshold},
                    {"clipped_norm": sympy.Min(norm, threshold), "direction": gradient / norm},
                    {"clipped": (len(gradient),), "direction": (len(gradient),)})


#: Clipping by the norm, at gradients symcnn derives.
GRADIENT_CLIPPING = Probe("a gradient of norm min(||g||, threshold) in g's direction, at dense layers' "
                          "derived gradients", _clipping_cases, _clipping_evidence)

# --- Grad-CAM -----------------------------------------------------------------------------------------

_MAPS = ((1, 1, 2), (1, 2, 2), (2, 2, 2), (2, 2, 3))
_CLASSES = 2


@functools.lru_cache(maxsize=None)
def _class_gradient(maps: tuple[int, int, int], target: int) -> Array:
    """``dy^c/dA`` for feature maps ``A`` of shape ``maps`` through a 1x1 conv (2 maps), ReLU, global
    average pooling and a dense layer to the class scores, every number drawn."""
    channels = maps[0]
    feature_maps = Array(rationals(21, math.prod(maps)), (1, *maps))
    conv_weight = Array(rationals(22, 2 * channels), (2, channels, 1, 1))
    dense_weight = Array(rationals(23, _CLASSES * 2), (_CLASSES, 2))
    symbols = symbol_array("a", (1, *maps))
    scores = layers.dense(layers.flatten(layers.global_avgpool(layers.relu(layers.conv2d(symbols, conv_weight)))),
                          dense_weight)
    upstream = Array([[1 if score == target else 0 for score in range(_CLASSES)]])
    gradient = vjp(scores, upstream, {"A": symbols})["A"]
    values = {symbols[index]: feature_maps[index] for index in indices_of(symbols.shape)}
    return gradient.applyfunc(lambda value: value.xreplace(values))


def _grad_cam_cases(options) -> list[Case]:
    return [Case(f"A of {maps[0]} map(s) {maps[1]}x{maps[2]}, class {target}", {"maps": maps, "class": target})
            for maps in _MAPS for target in range(_CLASSES)]


def _grad_cam_evidence(case: Case, options) -> Evidence:
    maps = case.values["maps"]
    gradient = _class_gradient(maps, case.values["class"])
    pooled = layers.global_avgpool(gradient)
    return Evidence({"K": maps[0], "H": maps[1], "W": maps[2], "Z": maps[1] * maps[2],
                     "dyc_dA": Array([[[gradient[0, k, i, j] for j in range(maps[2])] for i in range(maps[1])]
                                      for k in range(maps[0])])},
                    {"alpha": Array([pooled[0, k, 0, 0] for k in range(maps[0])])}, {"alpha": (maps[0],)})


#: Grad-CAM's weights, against symcnn's global average pool of a gradient it derives.
GRAD_CAM = Probe("global_avgpool of the derived dy^c/dA", _grad_cam_cases, _grad_cam_evidence)
