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

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import sympy
from sympy import Array, Expr, Symbol

from symcnn import registry
from symcnn.registry import input_role
from symcnn.symbolic.display import LatexDisplay
from symcnn.symbolic.functions import MaxOver
from symcnn.symbolic.instances import bind_layer, evaluate_layer
from symcnn.symbolic.tensors import indices_of, symbol_array, symbol_table, upstream_array
from symcnn.validation import integer, pair

__all__ = ["vjp", "gradient", "partial_derivative", "LayerConfig", "Derivation", "derive", "parse_values",
           "derivable_ops", "reduction_terms", "MAX_EXPANSION_TERMS"]

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


#: The letters of the elements of an op's inputs (x, then an add's or concat's z, p, ...): none
#: another tensor's (w, b, m, g and the upstream's a b c d).
INPUT_LETTERS = "xzpqrstuv"

#: LayerConfig's fields that set an op's setting of the same meaning, where the op has it.
_SETTING_FIELDS = {"kernel": "kernel", "stride": "stride", "padding": "padding", "dilation": "dilation",
                   "bias": "bias", "out_channels": "channels_out", "out_features": "channels_out"}
#: Fields an op without the setting must leave at their defaults (a pool takes no padding).
_REFUSED_UNLESS_DEFAULT = {"padding": (0, 0), "dilation": (1, 1)}


def derivable_ops() -> tuple[str, ...]:
    """The ops :func:`derive` expands: every registered op but the losses (a scalar of two operands,
    derived in the worked examples and the network walk-through instead).

    >>> derivable_ops()[:4], "softmax" in derivable_ops(), "cross_entropy" in derivable_ops()
    (('conv2d', 'maxpool2d', 'avgpool2d', 'global_avgpool'), True, False)
    """
    return registry.names(loss=False)


@dataclass(frozen=True)
class LayerConfig:
    """One op at a small, concrete configuration, validated on construction.

    ``input_size`` is ``(H, W)`` (an int means square) for an op of ``(C, H, W)`` inputs and the
    number of input features for an op of flat inputs (``dense``); ``channels_out`` is the output
    channels (``conv2d``) or features (``dense``). ``stride`` of a pool defaults to its kernel
    (PyTorch's default), of conv2d to 1. ``settings`` gives the op's other settings (a slope
    ``alpha``); one left out stays a symbol. Fields an op has no setting for are ignored, except
    padding and dilation, which an op without them refuses. ``inputs`` is how many inputs an op
    that joins them (add, concat) takes, each of the input's shape (default 2).
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
    settings: Mapping[str, object] = field(default_factory=dict)
    inputs: Optional[int] = None

    def __post_init__(self):
        if self.op not in derivable_ops():
            raise ValueError(f"op: must be one of {', '.join(derivable_ops())}, got {self.op!r}")
        entry = registry.get(self.op)
        set_field = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        set_field("batch", integer(self.batch, "batch", 1))
        set_field("channels_in", integer(self.channels_in, "channels_in", 1))
        set_field("channels_out", integer(self.channels_out, "channels_out", 1))
        if entry.merges:
            set_field("inputs", integer(2 if self.inputs is None else self.inputs, "inputs", 2, len(INPUT_LETTERS)))
        elif self.inputs not in (None, 1):
            raise ValueError(f"inputs: {self.op} takes one input, got {self.inputs!r}")
        if 3 not in entry.inputs:
            set_field("input_size", integer(self.input_size, "input_size", 1))
        else:
            set_field("input_size", pair(self.input_size, "input_size", 1))
        for key, default in _REFUSED_UNLESS_DEFAULT.items():
            value = pair(getattr(self, key), key, 0 if key == "padding" else 1)
            if key not in entry.keys() and value != default:
                raise ValueError(f"{key}: {self.op} takes no {key}, got {value[0]}x{value[1]}")
        given = {key: getattr(self, field_name) for key, field_name in _SETTING_FIELDS.items()
                 if key in entry.keys()}
        if not isinstance(self.settings, Mapping):
            raise ValueError(f"settings: must be a mapping of {self.op}'s settings, got {self.settings!r}")
        overlap = set(self.settings) & set(_SETTING_FIELDS)
        if overlap:
            raise ValueError(f"settings: give {sorted(overlap)[0]} as its own field")
        given.update(self.settings)
        resolved = entry.settings_of(given)
        for key, field_name in _SETTING_FIELDS.items():
            if key in resolved and key not in ("out_channels", "out_features"):
                set_field(field_name, resolved[key])
        if "kernel" in resolved:  # the window fields hold pairs, the op's or the defaults
            set_field("stride", resolved["stride"])
            set_field("padding", resolved.get("padding", (0, 0)))
            set_field("dilation", resolved.get("dilation", (1, 1)))
        # A number setting left out stays a symbol in the formula (alpha): not resolved here.
        chosen = {key: value for key, value in resolved.items()
                  if entry.setting(key).kind != "number" or key in self.settings}
        set_field("settings", chosen)
        entry.output_shape(self.entry_shape, self._shape_settings(entry))  # refuses a window that does not fit
        if entry.check_training_input is not None:  # derive expands the training-mode formula
            entry.check_training_input(self.input_shape, self._shape_settings(entry))
        self._refuse_too_large()

    def __hash__(self) -> int:  # the settings mapping is not hashable; its items are
        return hash((self.op, self.input_size, self.kernel, self.channels_in, self.channels_out, self.stride,
                     self.padding, self.dilation, self.batch, self.bias, tuple(sorted(self.settings.items()))))

    def _shape_settings(self, entry) -> dict:
        defaults = {setting.key: setting.default for setting in entry.settings if setting.kind == "number"}
        return {**defaults, **self.settings}

    @property
    def entry(self) -> registry.Op:
        """The op's registry entry."""
        return registry.get(self.op)

    @property
    def input_shape(self) -> tuple[int, ...]:
        if isinstance(self.input_size, int):
            return (self.batch, self.input_size)
        return (self.batch, self.channels_in, *self.input_size)

    @property
    def entry_shape(self):
        """The input shape without the batch axis as the registry and the formula take it: for an op
        that joins inputs, the tuple of their shapes (``inputs`` copies)."""
        shape = self.input_shape[1:]
        return (shape,) * self.inputs if self.entry.merges else shape

    @property
    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each learned parameter's shape, by role (``weight``, ``bias``)."""
        return {} if self.entry.merges else self.entry.parameter_shapes(self.input_shape[1:],
                                                                        self._shape_settings(self.entry))

    @property
    def weight_shape(self) -> Optional[tuple[int, ...]]:
        return self.parameter_shapes.get("weight")

    @property
    def has_bias(self) -> bool:
        return "bias" in self.parameter_shapes

    @property
    def output_shape(self) -> tuple[int, ...]:
        return (self.batch, *self.entry.output_shape(self.entry_shape, self._shape_settings(self.entry)))

    @property
    def expansion_terms(self) -> int:
        """The size of the expansion: output elements times the terms each one reduces over.

        Read off the formula: its longest reduction (a sum over every index it reduces, times the
        terms of a reduction nested in it), where a
        max over a window of ``K`` elements counts ``K*K`` terms (each element's routing condition compares it with
        every other element of its window).
        """
        formula, values = bind_layer(self.op, self.entry_shape, self._shape_settings(self.entry))
        if "batch" in formula.parameters:  # a reduction over the batch (batch norm's statistics)
            values[formula.parameters["batch"]] = self.batch
        outputs = math.prod(self.output_shape)
        if outputs > MAX_EXPANSION_TERMS:  # too large already: the windows need not be measured
            return outputs
        ranges = dict(zip(formula.indices, self.output_shape))
        return outputs * reduction_terms(formula.rhs.xreplace(values), ranges)

    def _refuse_too_large(self) -> None:
        terms = self.expansion_terms
        if terms > MAX_EXPANSION_TERMS:
            raise ValueError(
                f"configuration: too large to expand symbolically ({terms:,} terms, the limit is "
                f"{MAX_EXPANSION_TERMS:,}); the general index formula covers any size"
            )


def reduction_terms(expression: Expr, index_ranges: Mapping[Symbol, int] = {}) -> int:
    """How many terms one output element's expansion reduces over (1 where nothing is reduced).

    A range whose bounds depend on an output index (an adaptive window) counts its longest, over the
    values of that index, ``index_ranges`` giving each index's number of values.

    >>> from symcnn.symbolic import ops
    >>> reduction_terms(ops.dense().rhs.xreplace({ops.F_in: 4}))
    4
    >>> window = ops.adaptive_avgpool2d().rhs.xreplace({ops.H_in: 5, ops.H_out: 3, ops.W_in: 1, ops.W_out: 1})
    >>> reduction_terms(window, {ops.i: 3, ops.j: 1})
    3
    """
    if isinstance(expression, (sympy.Sum, MaxOver)):
        length = math.prod(_longest(upper - lower + 1, index_ranges) for _, lower, upper in expression.limits)
        # a reduction nested in this one (a variance's mean) is expanded once per term
        inner = reduction_terms(expression.function, index_ranges)
        return (length * length if isinstance(expression, MaxOver) else length) * inner
    return max((reduction_terms(arg, index_ranges) for arg in expression.args if isinstance(arg, sympy.Basic)),
               default=1)


def _longest(length: Expr, index_ranges: Mapping[Symbol, int]) -> int:
    """The largest value of a range's ``length`` over the output indices it depends on."""
    if length.is_Integer:
        return int(length)
    indices = sorted(length.free_symbols, key=sympy.default_sort_key)
    if not all(index in index_ranges for index in indices):
        raise ValueError(f"configuration: a reduction's length {length} depends on {indices}, of no given range")
    return max(int(length.xreplace(dict(zip(indices, point))))
               for point in itertools.product(*(range(index_ranges[index]) for index in indices)))


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
    arrays = {role: array for role, array in tensors.items() if role != "grad_output"}
    return evaluate_layer(config.op, arrays, config.settings)


#: What ``--values`` accepts: a decimal (``-1.5``, ``2e-3``) or a fraction (``1/4``), exactly; at most
#: 40 characters and an exponent of at most 100, so that no number takes SymPy long to build.
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?(/[+-]?\d+)?\Z")
MAX_VALUE_CHARACTERS = 40
MAX_VALUE_EXPONENT = 100


def parse_values(values: Sequence, shape: Sequence[int]) -> Array:
    """Numbers for a tensor of ``shape`` (row-major), as exact SymPy numbers.

    >>> parse_values(["1", "0.5", "1/4", "2e-1"], (1, 1, 2, 2)).tolist()
    [[[[1, 1/2], [1/4, 1/5]]]]
    >>> parse_values(["1e999999999"], (1,))
    Traceback (most recent call last):
    ...
    ValueError: values: '1e999999999' is out of range (exponents up to 100)
    """
    expected = math.prod(shape)
    if len(values) != expected:
        raise ValueError(f"values: expected {expected} numbers for an input of shape {tuple(shape)}, got {len(values)}")
    numbers = []
    for text in values:
        text = str(text).strip()
        if len(text) > MAX_VALUE_CHARACTERS:
            raise ValueError(f"values: {text[:20]!r}... is longer than {MAX_VALUE_CHARACTERS} characters")
        match = _NUMBER.match(text)
        if match is None:
            raise ValueError(f"values: {text!r} is not a number")
        if match.group(3) and abs(int(match.group(3)[1:])) > MAX_VALUE_EXPONENT:
            raise ValueError(f"values: {text!r} is out of range (exponents up to {MAX_VALUE_EXPONENT})")
        try:
            number = sympy.Rational(text)
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
    for number in range(2, (config.inputs or 1) + 1):  # an add's or concat's other inputs: z, p, q, ...
        tensors[input_role(number)] = symbol_array(INPUT_LETTERS[number - 1], config.input_shape)
    for role, shape in config.parameter_shapes.items():
        tensors[role] = symbol_array(role[0], shape)
    if config.entry.mask_drop is not None:  # drawn, not learned: a symbol of the expansion, no gradient
        tensors["mask"] = symbol_array("m", config.input_shape)
    output = _forward(config, tensors)
    upstream = upstream_array(output.shape)
    tensors["grad_output"] = upstream
    wrt = {f"grad_{role}": tensors[role] for role in tensors if role not in ("grad_output", "mask")}
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
