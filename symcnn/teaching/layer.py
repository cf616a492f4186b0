"""Exercises on one layer: a gradient entry (or a whole gradient) of a registry op at a small configuration.

Everything comes from symcnn's machinery: the configuration is a
:class:`~symcnn.symbolic.derive.LayerConfig` of the op's registry settings
(:func:`~symcnn.teaching.topics.layer_settings`), the answer is :func:`~symcnn.symbolic.derive.derive`'s
gradient at the given numbers, and the working is :func:`~symcnn.symbolic.steps.steps`' chain rule as
``symcnn derive --steps`` prints it (:func:`~symcnn.views.steps.latex_entries`).

Numbers are small integers; an exercise whose answer would not be a rational number at them (a
sigmoid at 1) is asked in symbols instead, and one whose symbolic answer has cases (ReLU's mask,
max pooling's routing) in numbers. Inputs of an op with a max are distinct, so that the answer is
unique (no ties).

Example:
    >>> import random
    >>> exercise = layer_exercise(1, "convolution", "conv2d", 1, random.Random(3))
    >>> exercise.answer.kind in ("number", "matrix"), exercise.setup.asked.startswith("grad_")
    (True, True)
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import sympy
from sympy import Array, Symbol

from symcnn import registry
from symcnn.checking.index.vocabulary import DISTINCT_INPUT_OPS
from symcnn.printing.latex import latex
from symcnn.symbolic.derive import Derivation, LayerConfig, derive
from symcnn.symbolic.instances import formula_symbol, op_formula
from symcnn.symbolic.ops import adaptive_window
from symcnn.symbolic.steps import steps
from symcnn.symbolic.tensors import element_name, indices_of
from symcnn.teaching.model import Answer, Exercise, Given, Setup, Working, bmatrix, matrix_rows
from symcnn.teaching.topics import GUARD_ROLES, enlarges, layer_settings, output_size_setting
from symcnn.views.steps import SubstitutionLatexPrinter, latex_entries

__all__ = ["Instance", "layer_config", "numbers", "layer_exercise", "gradient_name", "tensor_name", "ROLE_NAMES",
           "describe_layer", "entries", "other_settings", "article", "CONFIG_FIELDS", "configure", "MAX_OUTPUTS",
           "asked_array", "output_symbol"]

#: How the sheet names each tensor (document 002's letters).
ROLE_NAMES = {"input": "X", "weight": "W", "bias": "b", "grad_output": r"\frac{\partial L}{\partial Y}"}
#: LayerConfig's field for each setting it has a field for; other settings go in ``settings``.
CONFIG_FIELDS = {"kernel": "kernel", "stride": "stride", "padding": "padding", "dilation": "dilation", "bias": "bias",
           "out_channels": "channels_out", "out_features": "channels_out"}
#: How often a gradient is asked, by tensor: the weight and the input more than the bias.
_ROLE_WEIGHTS = {"grad_weight": 3, "grad_input": 3, "grad_bias": 1}


def gradient_name(symbol: Symbol) -> str:
    return r"\frac{\partial L}{\partial %s}" % latex(symbol)


def tensor_name(role: str) -> str:
    return r"\frac{\partial L}{\partial %s}" % ROLE_NAMES[role]


def layer_config(op: str, settings: Mapping[str, Any], level: int, rng: random.Random) -> LayerConfig:
    """The op at the smallest input that gives (at least) a 2x2 output, for a windowed op; for a pool to a
    given output size, an input from it (:func:`_pooled_size`); for statistics over the batch, two samples
    of 1x2 (three at level 3); 2x2 (2x3 at level 3) otherwise; three input features for an op on vectors."""
    fields: dict[str, Any] = {}
    others: dict[str, Any] = {}
    for key, value in settings.items():
        (fields.__setitem__(CONFIG_FIELDS[key], value) if key in CONFIG_FIELDS else others.__setitem__(key, value))
    entry = registry.get(op)
    if 3 not in entry.inputs:
        return LayerConfig(op, input_size=rng.choice((2, 3)) if level > 1 else 3, settings=others, **fields)
    output = output_size_setting(entry)
    if output is not None:
        size = tuple(_pooled_size(out, level, rng) for out in entry.setting(output).read(others[output]))
        return LayerConfig(op, input_size=size, settings=others, **fields)
    if "kernel" not in entry.keys():
        if _statistics_over_batch(op):
            return LayerConfig(op, input_size=(1, 2), batch=3 if level == 3 else 2, settings=others, **fields)
        size = (2, 3) if level == 3 else (2, 2)
        return LayerConfig(op, input_size=size, settings=others, **fields)
    for height in range(2, 9):
        width = height + (1 if level == 3 and rng.random() < 0.5 else 0)
        try:
            config = LayerConfig(op, input_size=(height, width), settings=others, **fields)
        except ValueError:  # the window does not fit yet
            continue
        if min(config.output_shape[2:]) >= 2:
            return config
    raise ValueError(f"topic: no small input fits {op} with {settings}")


def _pooled_size(out: int, level: int, rng: random.Random) -> int:
    """An input size that pools to ``out`` over windows (PyTorch's adaptive ones) of 2 that do not overlap at
    level 1, that may at level 2 (``2*out - 1``: neighbours share a row), and that do at level 3, where
    their lengths may differ too (``2*out + 1``), the input at most 5 along an axis (hand work)."""
    if level == 1:
        return 2 * out
    if level == 2:
        return 2 * out + rng.choice((-1, 0))
    return rng.choice([size for size in (2 * out - 1, 2 * out + 1) if size <= 5] or [2 * out - 1])


@functools.lru_cache(maxsize=None)
def _statistics_over_batch(op: str) -> bool:
    """Whether the op's formula reduces over the batch (batch normalization's statistics): the batch size
    is a bound of one of its sums."""
    formula = op_formula(op)
    return formula.parameters.get("batch") in formula.rhs.free_symbols


def numbers(config: LayerConfig, derivation: Derivation, rng: random.Random, low: int = -3) -> dict[str, Array]:
    """Small integers for every tensor: inputs distinct where the op takes a max (one answer), weights
    and upstream gradients nonzero."""
    values = {}
    for role, array in derivation.tensors.items():
        count = len(array)
        if role == "input" and config.op in DISTINCT_INPUT_OPS:
            drawn = rng.sample(range(low, low + max(10, count + 2)), count)
        elif role == "input":
            drawn = [rng.randint(low, 3) for _ in range(count)]
        elif role == "bias":
            drawn = [rng.randint(-2, 2) for _ in range(count)]
        else:
            drawn = [rng.choice((-2, -1, 1, 2, 3)) for _ in range(count)]
        values[role] = Array(drawn, array.shape)
    return values


@dataclass(frozen=True)
class Instance:
    """A derived layer with its numbers (``None`` in symbols) and what is asked of it."""

    config: LayerConfig
    derivation: Derivation
    values: Optional[dict[str, Array]]
    asked: str  # grad_weight, grad_input, grad_bias; output (the forward)
    index: Optional[tuple[int, ...]]  # None: the whole tensor

    @property
    def substitution(self) -> dict[Symbol, sympy.Expr]:
        if self.values is None:
            return {}
        return {self.derivation.tensors[role][index]: value[index]
                for role, value in self.values.items() for index in indices_of(value.shape)}

    def answer_array(self) -> Array:
        return asked_array(self.derivation, self.asked).applyfunc(lambda entry: entry.xreplace(self.substitution))

    def answer(self) -> Answer:
        array = self.answer_array()
        if self.index is not None or len(array) == 1:
            value = array[self.index] if self.index is not None else entries(array)[0]
            return Answer("number" if self.values is not None else "expression", value)
        return Answer("matrix", matrix_rows(array))


def asked_array(derivation: Derivation, asked: str) -> Array:
    """What ``asked`` names, symbolic: the output (``output``) or a gradient (``grad_weight``)."""
    return derivation.output if asked == "output" else derivation.gradients[asked]


def _choose_asked(derivation: Derivation, numeric: bool, level: int, rng: random.Random) -> tuple[str, bool]:
    """Which gradient is asked (or, of an op that enlarges its map, the output too: each input element spreads
    over a window of it), and whether whole: a small one in numbers (up to 4 entries; 9 at level 1)."""
    weights = {"output": 3, **_ROLE_WEIGHTS} if enlarges(derivation.config.entry) else _ROLE_WEIGHTS
    roles = [role for role in weights if role == "output" or role in derivation.gradients]
    role = rng.choices(roles, weights=[weights[role] for role in roles])[0]
    size = len(asked_array(derivation, role))
    whole = size == 1 or (numeric and (size <= 4 or (level == 1 and size <= 9 and rng.random() < 0.4)))
    return role, whole


def _choose_entry(symbolic: Array, answer: Array, numeric: bool, rng: random.Random) -> tuple[int, ...]:
    """An entry to ask for: among those with a rational answer (a number worked by hand; in symbols, any) and a
    nonzero one if there is, one of the longest chain rules."""
    indices = [tuple(index) for index in indices_of(symbolic.shape)]
    rational = [index for index in indices if sympy.sympify(answer[index]).is_Rational] if numeric else indices
    nonzero = [index for index in rational if answer[index] != 0] or rational or indices
    terms = {index: len(sympy.Add.make_args(symbolic[index])) for index in nonzero}
    most = max(terms.values())
    return rng.choice([index for index, count in terms.items() if count == most])


def entries(array: Array) -> list[sympy.Expr]:
    return [sympy.sympify(array[index]) for index in indices_of(array.shape)]


def _rational(array: Array) -> bool:
    return all(entry.is_Rational for entry in entries(array))


def _instance(config: LayerConfig, level: int, rng: random.Random) -> Instance:
    """The layer in numbers or in symbols, as the level asks and as the answer allows."""
    derivation = derive(config)
    asked, whole = _choose_asked(derivation, level != 2, level, rng)
    symbolic = asked_array(derivation, asked)
    has_cases = any(entry.has(sympy.Piecewise) for entry in entries(symbolic))
    attempts = [("numbers", -3)] * 10 + [("numbers", 0)] * 10 + [("symbols", 0)]
    if level == 2:
        attempts = attempts[-1:] + attempts[:-1]
    for mode, low in attempts:
        if mode == "symbols":
            if has_cases:
                continue
            return Instance(config, derivation, None, asked, _choose_entry(symbolic, symbolic, False, rng))
        values = numbers(config, derivation, rng, low)
        candidate = Instance(config, derivation, values, asked, None)
        answer = candidate.answer_array()
        if whole and _rational(answer):
            return candidate
        if not whole:
            index = _choose_entry(symbolic, answer, True, rng)
            if sympy.sympify(answer[index]).is_Rational:
                return Instance(config, derivation, values, asked, index)
    raise ValueError(f"topic: no small integers give {config.op} a rational answer")


def article(noun: str) -> str:
    return "An" if noun[0].lower() in "aeiou" else "A"


def describe_layer(config: LayerConfig) -> str:
    """The layer in words, from its registry entry: ``2-D convolution (1 kernel of size 2, stride 1, padding 0)``."""
    entry = config.entry
    words = entry.settings_text({**_guards(config), **config.settings})
    shape = "×".join(map(str, config.input_shape[1:] if config.input_shape[1] > 1 or len(config.input_shape) < 4
                              else config.input_shape[2:]))
    text = f"{article(entry.title)} {entry.title} layer" + (f" ({words})" if words else "")
    if config.batch > 1:
        text += f" takes a batch $X$ of {config.batch} samples of shape {shape} (one sample a row)"
    else:
        text += f" takes an input $X$ of shape {shape}"
    text += f": {entry.summary}." if entry.summary else "."
    if entry.nondifferentiable and entry.nondifferentiable not in entry.summary:
        text += f" Rule at non-differentiable points: {entry.nondifferentiable}."
    output = output_size_setting(entry)
    if output is not None:
        text += " " + _windows_text(config.input_shape[2:], config.settings[output])
    return text


def _guards(config: LayerConfig) -> dict[str, str]:
    """Each guard setting left a symbol (ε), as its symbol in math markup, for the settings in words."""
    guards = [setting for setting in config.entry.settings
              if setting.roles == GUARD_ROLES and setting.key not in config.settings]
    formula = op_formula(config.op) if guards else None
    return {setting.key: f"${latex(formula_symbol(formula, setting.roles[0]))}$" for setting in guards}


def _windows_text(input_size: tuple[int, int], output: tuple[int, int]) -> str:
    """An adaptive pool's windows in words: output row $i$ reads rows $\\lfloor i H/H_{out} \\rfloor$ to
    $\\lceil (i + 1) H/H_{out} \\rceil - 1$ of the input, here rows 0–1 and 1–2; columns likewise."""
    spans = []
    for axis, size, out in zip(("rows", "columns"), input_size, output):
        windows = [tuple(int(bound) for bound in adaptive_window(index, size, out)) for index in range(out)]
        spans.append(f"{axis} " + ", ".join(f"{first}–{last}" for first, last in windows))
    return (r"Output element $(i, j)$ reads the input's rows $\lfloor i H/H_{out} \rfloor$ to "
            r"$\lceil (i + 1) H/H_{out} \rceil - 1$ and likewise its columns (PyTorch's windows): here "
            f"{spans[0]} and {spans[1]}.")


def givens(instance: Instance) -> tuple[Given, ...]:
    tensors = instance.derivation.tensors
    shown = instance.values if instance.values is not None else tensors
    roles = ("input", "weight", "bias") + (("grad_output",) if instance.asked != "output" else ())
    return tuple(Given(ROLE_NAMES[role], matrix_rows(shown[role])) for role in roles if role in tensors)


def question(instance: Instance) -> tuple[str, str]:
    """The question, and the LaTeX of what it asks for."""
    role = instance.asked.removeprefix("grad_")
    how = "numbers" if instance.values is not None else "the symbols of the givens"
    if instance.asked == "output":
        rows = matrix_rows(instance.derivation.output)
        if instance.index is None:
            return f"Compute the layer's whole output $Y$ (a {len(rows)}×{len(rows[0])} matrix), in {how}.", "Y"
        target = latex(output_symbol(instance.derivation, instance.index))
        return f"Compute the output entry ${target}$, in {how}.", target
    if instance.index is None:
        target = tensor_name(role)
        rows = matrix_rows(instance.derivation.gradients[instance.asked])
        return (f"Compute the whole gradient ${target}$ (a {len(rows)}×{len(rows[0])} matrix), in {how}.", target)
    target = gradient_name(instance.derivation.tensors[role][instance.index])
    return f"Compute ${target}$, in {how}.", target


def output_symbol(derivation: Derivation, index: tuple[int, ...]) -> Symbol:
    """An output entry's name, as ``symcnn derive --steps`` names it (``y11``)."""
    return Symbol(element_name("y", index, derivation.output.shape), real=True)


def _forward_working(instance: Instance) -> tuple[Working, ...]:
    """The asked output entries as ``symcnn derive --steps`` shows the forward: each expression, and with the
    givens' numbers put in, its value."""
    output = instance.derivation.output
    chosen = [instance.index] if instance.index is not None else [tuple(index) for index in indices_of(output.shape)]
    printer = SubstitutionLatexPrinter(instance.substitution)
    rows = []
    for index in chosen:
        expression, name = output[index], latex(output_symbol(instance.derivation, index))
        if instance.values is None:
            rows.append(f"{name} &= {latex(expression)}")
        else:
            value = latex(expression.xreplace(instance.substitution))
            rows.append(f"{name} &= {latex(expression)} = {printer.doprint(expression)} = {value}")
    if instance.values is not None and instance.index is None:
        rows.append(f"Y &= {bmatrix(matrix_rows(instance.answer_array()))}")
    return (Working("The forward: each output entry, the inputs each reads", tuple(rows)),)


def working(instance: Instance) -> tuple[Working, ...]:
    """``symcnn derive --steps`` of each asked entry (at the input numbers), then the other numbers put in."""
    if instance.asked == "output":
        return _forward_working(instance)
    role = instance.asked.removeprefix("grad_")
    tensor = instance.derivation.tensors[role]
    entries = [tensor[instance.index].name] if instance.index is not None else [tensor[(0,) * len(tensor.shape)]
                                                                              .name.rstrip("0123456789_")]
    input_values = instance.values["input"] if instance.values is not None else None
    walk = steps(instance.config, input_values, entries)
    parts = [Working(f"${gradient_name(entry.symbol)}$ by the chain rule", rows) for entry, rows in latex_entries(walk)]
    if instance.values is not None:
        numbers_in = {symbol: value for symbol, value in instance.substitution.items()
                      if symbol not in set(instance.derivation.tensors["input"])}
        printer = SubstitutionLatexPrinter(numbers_in)
        rows = []
        for entry in walk.entries:
            value = entry.result.xreplace(numbers_in)
            plain = entry.result.is_Atom or entry.result.is_number  # d: its value alone
            rows.append(f"{gradient_name(entry.symbol)} &= {latex(value)}" if plain
                        else f"{gradient_name(entry.symbol)} &= {printer.doprint(entry.result)} = {latex(value)}")
        if instance.index is None:
            rows.append(f"{tensor_name(role)} &= {bmatrix(matrix_rows(instance.answer_array()))}")
        parts.append(Working("With the given weights and upstream gradient", tuple(rows)))
    return tuple(parts)


def other_settings(config: LayerConfig) -> dict[str, Any]:
    """The settings LayerConfig takes in ``settings`` (not as a field of its own): a slope alpha."""
    return {key: value for key, value in config.settings.items() if key not in CONFIG_FIELDS}


def setup(instance: Instance) -> Setup:
    config = instance.config
    fields = dict(input_size=config.input_size, kernel=config.kernel, channels_in=config.channels_in,
                  channels_out=config.channels_out, stride=config.stride, padding=config.padding,
                  dilation=config.dilation, bias=config.bias, settings=other_settings(config))
    return Setup(((config.op, fields),), dict(instance.values or {}), instance.asked, instance.index)


#: The most output entries an exercise's layer has (a 5x5 map): the upstream gradient is a given, read by hand.
MAX_OUTPUTS = 25


def configure(op: str, level: int, rng: random.Random) -> LayerConfig:
    """``op`` at settings of ``level`` that fit together and keep the output small (drawn again where they do
    not: an output padding drawn without the stride it needs; a transposed convolution's stride, dilation
    and output padding all drawn at once)."""
    entry = registry.get(op)
    for _ in range(40):
        try:
            config = layer_config(op, layer_settings(entry, level, rng), level, rng)
        except ValueError:
            continue
        if math.prod(config.output_shape) <= MAX_OUTPUTS:
            return config
    raise ValueError(f"topic: no settings of level {level} fit {op}")


def layer_exercise(number: int, topic: str, op: str, level: int, rng: random.Random) -> Exercise:
    """An exercise on ``op``'s gradient at a configuration of ``level``."""
    config = configure(op, level, rng)
    instance = _instance(config, level, rng)
    text, target = question(instance)
    return Exercise(number, topic, f"{config.entry.title}: {target.join('$$')}", describe_layer(config),
                    givens(instance), text, instance.answer(), working(instance), setup(instance))
