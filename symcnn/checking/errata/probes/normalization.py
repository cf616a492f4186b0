"""Document 003's normalization claims, checked against symcnn's ``batchnorm2d`` and ``layernorm``.

Batch normalization: the forward chain (``mu_B``, ``sigma2_B``, ``x̂``, ``y``) against the op's output
and the four backward lines against gradients symcnn derives. The last line, ``dL/dx``, is compared
with the op's input gradient (:func:`symcnn.symbolic.derive.derive`); the three before it name
nodes of the forward chain (``x̂``, ``sigma2_B``, ``mu_B``), and are compared with symcnn's
vector-Jacobian product (:func:`symcnn.symbolic.derive.vjp`) through that chain, with the nodes
``mu`` and ``sigma2`` either free (``statistics="free"``: every term of a line counts, even one that
vanishes at the batch's statistics) or the batch's. Each case is one channel of a small batch,
its ``m = N*H*W`` values as the claim's ``x[0..m-1]``, exact numbers drawn for the input, scale,
shift and upstream gradient, ``epsilon`` a symbol.

Layer normalization: ``LN(x)`` over each sample's features against the op's output as ``epsilon -> 0``
(the document has no epsilon), at samples of distinct and of equal values.

Example:
    >>> case = next(iter(BATCHNORM.cases({"statistics": "batch"})))
    >>> case.label
    'N=2, C=1, 1x1 (channel 0: m = 2 values)'
    >>> sorted(BATCHNORM.evidence(case, {"statistics": "batch"}).derived)
    ['dL/dmu', 'dL/dsigma2', 'dL/dx', 'dL/dxhat', 'y']
"""

from __future__ import annotations

import functools
import math

import sympy
from sympy import Array, Symbol

from symcnn.checking.errata.probes.core import Case, Evidence, Probe, rationals
from symcnn.symbolic import ops
from symcnn.symbolic.derive import LayerConfig, derive, vjp
from symcnn.symbolic.instances import evaluate_layer
from symcnn.symbolic.tensors import indices_of, symbol_array

__all__ = ["BATCHNORM", "LAYERNORM"]

#: Batch shapes (N, C, H, W), smallest channel first.
_BATCH_SHAPES = ((2, 1, 1, 1), (1, 1, 1, 2), (3, 1, 1, 1), (2, 2, 1, 1), (2, 1, 1, 2))
_MU, _SIGMA2 = Symbol("mu", real=True), Symbol("sigma2", positive=True)


@functools.lru_cache(maxsize=None)
def _batch_norm_at(shape: tuple[int, int, int, int], seed: int):
    """``batchnorm2d`` derived at an input of ``shape`` (N, C, H, W), every operand a drawn number: the
    derivation, the numbers by role (arrays of the operands' shapes) and the substitution of them."""
    result = derive(LayerConfig("batchnorm2d", input_size=shape[2:], batch=shape[0], channels_in=shape[1]))
    numbers, substitution = {}, {}
    for offset, (role, array) in enumerate(sorted(result.tensors.items())):
        drawn = rationals(seed + offset, math.prod(array.shape))
        numbers[role] = Array(drawn, array.shape)
        substitution.update({array[index]: value for index, value in zip(indices_of(array.shape), drawn)})
    return result, numbers, substitution


def _channel(array: Array, channel: int) -> Array:
    """A ``(N, C, H, W)`` array's channel ``channel``: its ``N*H*W`` values, row-major."""
    batch, _, height, width = array.shape
    return Array([array[n, channel, i, j] for n in range(batch) for i in range(height) for j in range(width)])


def _batch_cases(options) -> list[Case]:
    return [Case(f"N={shape[0]}, C={shape[1]}, {shape[2]}x{shape[3]} (channel {channel}: m = "
                 f"{shape[0] * shape[2] * shape[3]} values)", {"shape": shape, "channel": channel})
            for shape in _BATCH_SHAPES for channel in range(shape[1])]


def _chain_gradients(x: Array, upstream: Array, gamma, mu, sigma2) -> dict:
    """The gradients at the forward chain's nodes, by symcnn's vjp: ``xhat_k = (x_k - mu)/sqrt(sigma2 +
    epsilon)``, ``y_k = gamma*xhat_k + beta``, ``sigma2 = (1/m) sum (x_k - mu)^2``; ``dL/dmu`` is the
    total derivative, through ``sigma2`` too."""
    m = len(x)
    xhat_symbols = Array([Symbol(f"xhat{k}", real=True) for k in range(m)])
    grad_xhat = vjp(gamma * xhat_symbols, upstream, {"xhat": xhat_symbols})["xhat"]
    xhat = Array([(x[k] - _MU) / sympy.sqrt(_SIGMA2 + ops.epsilon) for k in range(m)])
    through_xhat = vjp(xhat, grad_xhat, {"mu": Array([_MU]), "sigma2": Array([_SIGMA2])})
    grad_sigma2 = through_xhat["sigma2"][0]
    variance = Array([sum((x[k] - _MU) ** 2 for k in range(m)) / m])
    grad_mu = through_xhat["mu"][0] + vjp(variance, Array([grad_sigma2]), {"mu": Array([_MU])})["mu"][0]
    at = {_MU: mu, _SIGMA2: sigma2}
    return {"dL/dxhat": grad_xhat.applyfunc(lambda value: value.xreplace(at)),
            "dL/dsigma2": grad_sigma2.xreplace(at), "dL/dmu": grad_mu.xreplace(at)}


def _batch_evidence(case: Case, options) -> Evidence:
    shape, channel = case.values["shape"], case.values["channel"]
    result, numbers, substitution = _batch_norm_at(shape, seed=3)
    x, upstream = _channel(numbers["input"], channel), _channel(numbers["grad_output"], channel)
    gamma, beta = numbers["weight"][channel], numbers["bias"][channel]
    m = len(x)
    mean = sum(x) / m
    variance = sum((value - mean) ** 2 for value in x) / m
    free = options.get("statistics") == "free"
    mu, sigma2 = (_MU, _SIGMA2) if free else (mean, variance)
    derived = _chain_gradients(x, upstream, gamma, mu, sigma2)
    if not free:
        derived["y"] = _channel(result.output.applyfunc(lambda value: value.xreplace(substitution)), channel)
        derived["dL/dx"] = _channel(result.gradients["grad_input"].applyfunc(
            lambda value: value.xreplace(substitution)), channel)
    given = {"m": m, "x": x, "dL/dy": upstream, "gamma": gamma, "beta": beta, "epsilon": ops.epsilon,
             "mu": mu, "sigma2": sigma2, **{name: value for name, value in derived.items() if name != "dL/dx"}}
    shapes = {name: (m,) for name in ("xhat", "y", "dL/dxhat", "dL/dx")}
    return Evidence(given, derived, shapes)


#: Batch normalization's forward and backward lines (options: ``statistics`` ``"batch"`` or ``"free"``).
BATCHNORM = Probe("batchnorm2d (training mode) and the gradients symcnn derives", _batch_cases, _batch_evidence)

#: Layer normalization's inputs without the batch axis: features, then maps (C, H, W).
_LAYER_SHAPES = ((2,), (3,), (1, 1, 2), (2, 1, 1), (1, 2, 2))


def _layer_cases(options) -> list[Case]:
    cases = []
    for shape in _LAYER_SHAPES:
        size = f"F = {shape[0]}" if len(shape) == 1 else f"C, H, W = {', '.join(map(str, shape))}"
        ones = ", ".join(["1"] * math.prod(shape))
        cases.append(Case(f"{size}: a sample of distinct values", {"shape": shape, "sample": 0, "equal": False}))
        cases.append(Case(f"{size}: a sample of equal values, x = ({ones})", {"shape": shape, "sample": 1,
                                                                             "equal": True}))
    return cases


@functools.lru_cache(maxsize=None)
def _layer_output(shape: tuple[int, ...]):
    """``layernorm`` of a batch of two samples of ``shape``: its output, in symbols, and the symbols."""
    tensors = {"input": symbol_array("x", (2, *shape)), "weight": symbol_array("w", shape),
               "bias": symbol_array("b", shape)}
    return evaluate_layer("layernorm", tensors, {}), tensors


def _layer_evidence(case: Case, options) -> Evidence:
    shape, sample = case.values["shape"], case.values["sample"]
    output, tensors = _layer_output(shape)
    flat = [(sample, *index) for index in indices_of(shape)]
    drawn = iter(rationals(5 + sample, 3 * len(flat)))
    values = {tensors["input"][index]: sympy.S.One if case.values["equal"] else next(drawn) for index in flat}
    values.update({tensors[role][index[1:]]: next(drawn) for role in ("weight", "bias") for index in flat})
    x, gamma, beta = (Array([tensors[role][index if role == "input" else index[1:]].xreplace(values)
                             for index in flat]) for role in ("input", "weight", "bias"))
    # The document has no epsilon: symcnn's value as epsilon -> 0 (at equal features, the value for every
    # epsilon > 0: the numerator is exactly 0), the numbers put in first.
    derived = Array([output[index].xreplace(values).xreplace({ops.epsilon: 0}) for index in flat])
    return Evidence({"F": len(flat), "x": x, "gamma": gamma, "beta": beta}, {"LN": derived}, {"LN": (len(flat),)})


#: Layer normalization over each sample's features, against ``layernorm`` as epsilon -> 0.
LAYERNORM = Probe("layernorm as epsilon -> 0", _layer_cases, _layer_evidence)
