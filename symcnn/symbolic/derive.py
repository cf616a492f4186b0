"""Gradients of the small-shape layers by differentiation: the oracle of every other result.

:func:`vjp` is the vector-Jacobian product: for an output ``Y`` and an upstream gradient
``G = dL/dY`` it returns ``dL/dT[idx] = sum_o G[o] * dY[o]/dT[idx]`` for every tensor ``T`` asked
for. :func:`derive` runs one op at a small configuration (:class:`LayerConfig`) end to end:
symbols named as the documents name them, the output, every gradient, optionally evaluated at
numeric input values.

Example (document 002):
    >>> result = derive(LayerConfig("conv2d", input_size=(3, 3), kernel=(2, 2), bias=False))
    >>> result.gradients["grad_weight"][0, 0, 0, 0]
    a*x00 + b*x01 + c*x10 + d*x11
    >>> result.gradients["grad_input"][0, 0, 1, 1]
    a*w11 + b*w10 + c*w01 + d*w00
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import sympy
from sympy import Array, Expr, Symbol

from symcnn.symbolic import layers
from symcnn.symbolic.display import LatexDisplay
from symcnn.symbolic.tensors import indices_of, symbol_array, symbol_table, upstream_array
from symcnn.validation import check_window, integer, output_sizes, pair

__all__ = ["vjp", "gradient", "partial_derivative", "LayerConfig", "Derivation", "derive", "parse_values", "OPS",
           "MAX_EXPANSION_TERMS"]

OPS = ("conv2d", "maxpool2d", "avgpool2d", "dense")

#: The largest expansion :func:`derive` accepts, in terms (see ``LayerConfig.expansion_terms``):
#: about 5 s of SymPy work on this project's 2-core machines. The general index formulas cover
#: any size.
MAX_EXPANSION_TERMS = 20_000


def gradient(scalar: Expr, wrt: Array) -> Array:
    """``d scalar / d wrt[idx]`` for every element of the symbol array ``wrt``."""
    return vjp(Array([scalar]), Array([sympy.S.One]), {"wrt": wrt})["wrt"]


def vjp(output: Array, upstream: Array, wrt: Mapping[str, Array]) -> dict[str, Array]:
    """The vector-Jacobian product of ``output`` with ``upstream``, for each array in ``wrt``.

    ``wrt`` maps a name to an array of symbols (``{"input": x, "weight": w}``); the result maps
    the same names to arrays of the same shapes. Upstream values may be symbols or numbers.
    Non-differentiable points follow the rules of :mod:`symcnn.symbolic.functions`.

    >>> from symcnn.symbolic.tensors import symbol_array
    >>> x = symbol_array("x", (1, 2))
    >>> vjp(Array([[3 * x[0, 0] * x[0, 1]]]), Array([[2]]), {"input": x})["input"]
    [[6*x01, 6*x00]]
    """
    output, upstream = Array(output), Array(upstream)
    if output.shape != upstream.shape:
        raise ValueError(f"upstream: expected shape {tuple(output.shape)} like the output, got {tuple(upstream.shape)}")
    targets: dict[Symbol, tuple[str, tuple[int, ...]]] = {}
    for name, array in wrt.items():
        for index in indices_of(array.shape):
            element = array[index]
            if not isinstance(element, Symbol):
                raise ValueError(f"{name}: gradients are taken with respect to symbols; element {index} is {element}")
            targets[element] = (name, tuple(index))
    sums: dict[Symbol, list[Expr]] = {symbol: [] for symbol in targets}
    for index in indices_of(output.shape):
        element, weight = output[index], upstream[index]
        if weight == 0:
            continue
        # Differentiate term by term, and only the terms that hold the symbol: an expanded
        # convolution is a long sum of short products, and SymPy's diff of the whole sum
        # costs a derivative object per term.
        for term in sympy.Add.make_args(element):
            for symbol in term.free_symbols & targets.keys():
                sums[symbol].append(weight * _term_derivative(term, symbol))
    results = {}
    for name, array in wrt.items():
        elements = [sympy.Add(*sums[array[index]]) for index in indices_of(array.shape)]
        results[name] = Array(elements, array.shape)
    return results


def partial_derivative(expression: Expr, symbol: Symbol) -> Expr:
    """``d expression / d symbol`` by SymPy, over the terms that hold the symbol only.

    >>> from sympy import symbols
    >>> w00, x00, x01 = symbols("w00 x00 x01")
    >>> partial_derivative(w00 * x00 + x01, w00)
    x00
    """
    return sympy.Add(*[_term_derivative(term, symbol) for term in sympy.Add.make_args(expression)
                       if symbol in term.free_symbols])


def _term_derivative(term: Expr, symbol: Symbol) -> Expr:
    """``d term / d symbol``, with a shortcut for a product holding the symbol once."""
    coefficient, dependent = term.as_independent(symbol, as_Add=False)
    if dependent == symbol:
        return coefficient
    return sympy.diff(term, symbol)


@dataclass(frozen=True)
class LayerConfig:
    """One op at a small, concrete configuration, validated on construction.

    ``input_size`` is ``(H, W)`` (an int means square) for the spatial ops and the number of
    input features for ``dense``; ``channels_out`` is the output features of ``dense``.
    ``stride`` of a pool defaults to its kernel (PyTorch's default), of conv2d to 1.
    """

    op: str
    input_size: object = (3, 3)
    kernel: object = (2, 2)
    channels_in: int = 1
    channels_out: int = 1
    stride: Optional[object] = None
    padding: object = 0
    dilation: object = 1
    batch: int = 1
    bias: bool = True

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"op: must be one of {', '.join(OPS)}, got {self.op!r}")
        set_field = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        set_field("batch", integer(self.batch, "batch", 1))
        set_field("channels_in", integer(self.channels_in, "channels_in", 1))
        set_field("channels_out", integer(self.channels_out, "channels_out", 1))
        if self.op == "dense":
            set_field("input_size", integer(self.input_size, "input_size", 1))
            self._refuse_too_large()
            return
        set_field("input_size", pair(self.input_size, "input_size", 1))
        set_field("kernel", pair(self.kernel, "kernel", 1))
        default_stride = 1 if self.op == "conv2d" else self.kernel
        set_field("stride", pair(default_stride if self.stride is None else self.stride, "stride", 1))
        set_field("padding", pair(self.padding, "padding", 0))
        set_field("dilation", pair(self.dilation, "dilation", 1))
        if self.op != "conv2d":
            if self.padding != (0, 0):
                raise ValueError(f"padding: {self.op} takes no padding, got {self.padding[0]}x{self.padding[1]}")
            if self.dilation != (1, 1):
                raise ValueError(f"dilation: {self.op} takes no dilation, got {self.dilation[0]}x{self.dilation[1]}")
        check_window(self.input_size, self.kernel, self.padding, self.dilation)
        self._refuse_too_large()

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self.op == "dense":
            return (self.batch, self.input_size)
        return (self.batch, self.channels_in, *self.input_size)

    @property
    def weight_shape(self) -> Optional[tuple[int, ...]]:
        if self.op == "conv2d":
            return (self.channels_out, self.channels_in, *self.kernel)
        if self.op == "dense":
            return (self.channels_out, self.input_size)
        return None

    @property
    def has_bias(self) -> bool:
        return self.bias and self.op in ("conv2d", "dense")

    @property
    def output_shape(self) -> tuple[int, ...]:
        if self.op == "dense":
            return (self.batch, self.channels_out)
        sizes = output_sizes(self.input_size, self.kernel, self.stride, self.padding, self.dilation)
        channels = self.channels_out if self.op == "conv2d" else self.channels_in
        return (self.batch, channels, *sizes)

    @property
    def expansion_terms(self) -> int:
        """The size of the expansion: output elements times the terms each one reduces over.

        A max-pooling window of ``K`` elements counts ``K*K`` terms: each element's routing
        condition compares it with every other element of its window.
        """
        if self.op == "dense":
            reduction = self.input_size
        elif self.op == "conv2d":
            reduction = self.kernel[0] * self.kernel[1] * self.channels_in
        else:
            reduction = self.kernel[0] * self.kernel[1]
            if self.op == "maxpool2d":
                reduction *= reduction
        return math.prod(self.output_shape) * reduction

    def _refuse_too_large(self) -> None:
        terms = self.expansion_terms
        if terms > MAX_EXPANSION_TERMS:
            raise ValueError(
                f"configuration: too large to expand symbolically ({terms:,} terms, the limit is "
                f"{MAX_EXPANSION_TERMS:,}); the general index formula covers any size"
            )


@dataclass(frozen=True)
class Derivation(LatexDisplay):
    """The result of :func:`derive`: symbol tensors, output and gradients, as SymPy arrays.

    ``tensors`` holds the symbolic operands by role (``input``, ``weight``, ``bias``,
    ``grad_output``); ``values`` the numbers substituted for the input, if any.
    """

    config: LayerConfig
    tensors: dict[str, Array]
    output: Array
    gradients: dict[str, Array]
    values: dict[Symbol, Expr] = field(default_factory=dict)

    def symbols(self) -> dict[str, tuple[str, tuple[int, ...]]]:
        """Every symbol left in the results: name -> (tensor role, full index)."""
        remaining = {role: array for role, array in self.tensors.items() if role != "input" or not self.values}
        return symbol_table(remaining)


def _forward(config: LayerConfig, tensors: Mapping[str, Array]) -> Array:
    x, weight, bias = tensors["input"], tensors.get("weight"), tensors.get("bias")
    if config.op == "conv2d":
        return layers.conv2d(x, weight, bias, config.stride, config.padding, config.dilation)
    if config.op == "maxpool2d":
        return layers.maxpool2d(x, config.kernel, config.stride)
    if config.op == "avgpool2d":
        return layers.avgpool2d(x, config.kernel, config.stride)
    return layers.dense(x, weight, bias)


def parse_values(values: Sequence, shape: Sequence[int]) -> Array:
    """Numbers for a tensor of ``shape`` (row-major), as exact SymPy numbers.

    >>> parse_values(["1", "0.5", "1/4", "2"], (1, 1, 2, 2)).tolist()
    [[[[1, 1/2], [1/4, 2]]]]
    """
    expected = math.prod(shape)
    if len(values) != expected:
        raise ValueError(f"values: expected {expected} numbers for an input of shape {tuple(shape)}, got {len(values)}")
    numbers = []
    for text in values:
        try:
            number = sympy.Rational(str(text).strip())
        except (TypeError, ValueError, ZeroDivisionError):
            raise ValueError(f"values: {text!r} is not a number") from None
        numbers.append(number)
    return Array(numbers, tuple(shape))


def derive(config: LayerConfig, values: Optional[Array] = None) -> Derivation:
    """Output and every gradient of ``config``'s op, symbolically; at ``values`` if given.

    ``values`` (an array of the input's shape) is substituted after differentiation, so that
    max pooling's routing is decided by the actual numbers (document 002).
    """
    tensors = {"input": symbol_array("x", config.input_shape)}
    if config.weight_shape is not None:
        tensors["weight"] = symbol_array("w", config.weight_shape)
    if config.has_bias:
        tensors["bias"] = symbol_array("b", (config.channels_out,))
    output = _forward(config, tensors)
    upstream = upstream_array(output.shape)
    tensors["grad_output"] = upstream
    wrt = {f"grad_{role}": tensors[role] for role in ("input", "weight", "bias") if role in tensors}
    gradients = vjp(output, upstream, wrt)
    substitution: dict[Symbol, Expr] = {}
    if values is not None:
        values = Array(values)
        if tuple(values.shape) != config.input_shape:
            raise ValueError(f"values: expected shape {config.input_shape}, got {tuple(values.shape)}")
        substitution = {tensors["input"][index]: values[index] for index in indices_of(values.shape)}
        output = output.applyfunc(lambda element: element.xreplace(substitution))
        gradients = {
            name: array.applyfunc(lambda element: element.xreplace(substitution)) for name, array in gradients.items()
        }
    return Derivation(config, tensors, output, gradients, substitution)
