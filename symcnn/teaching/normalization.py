"""Exercises on a layer with statistics (batch and layer normalization), worked by hand with the statistics
named as document 003 names them (:mod:`symcnn.teaching.statistics`).

- In numbers (levels 1 and 3): ε = 0, said so, and inputs whose variance is the square of a rational, so
  that every value is an exact small fraction. Asked: the output (the normalized values, scaled and
  shifted), or a gradient (∂L/∂γ, ∂L/∂β, ∂L/∂x), an entry or whole.
- In symbols (level 2): ε a symbol, the batch's mean and variance written μ and σ² (``mu``, ``sigma2`` in
  an answers file), document 003's compact form. Asked: an entry of ∂L/∂γ, ∂L/∂β or ∂L/∂x. The key
  carries the statistics' definitions, which the grader puts in before it compares (any correct form is
  right, the expanded one too).

The working is the chain rule laid out as ``symcnn derive --steps`` lays it out (chain rule, partials,
terms), through the statistics: the forward with μ and σ² named, then ∂L/∂σ², then ∂L/∂μ, then the entry.

Example:
    >>> import random
    >>> exercise = statistics_exercise(1, "normalization", "batchnorm2d", 2, random.Random(1))
    >>> exercise.answer.kind, sorted(symbol.name for symbol, _ in exercise.answer.definitions)
    ('expression', ['beta', 'gamma', 'mu', 'sigma', 'sigma2'])
"""

from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import sympy
from sympy import Array, Expr, Symbol

from symcnn.printing.latex import latex
from symcnn.symbolic.derive import LayerConfig
from symcnn.symbolic.instances import formula_symbol, op_formula
from symcnn.symbolic.steps import ChainPartial
from symcnn.symbolic.tensors import element_name, indices_of
from symcnn.teaching import layer
from symcnn.teaching.model import Answer, Exercise, Given, Setup, Working, bmatrix, matrix_rows
from symcnn.teaching.statistics import Chain, compact_gradient, compact_node_gradients, named_chain, partial
from symcnn.teaching.topics import GUARD_ROLES

__all__ = ["statistics_exercise"]

#: How often each thing is asked: in numbers (the output too), and in symbols.
_NUMBER_WEIGHTS = {"output": 2, "grad_weight": 2, "grad_bias": 1, "grad_input": 3}
_SYMBOL_WEIGHTS = {"grad_weight": 3, "grad_bias": 1, "grad_input": 3}
_LABEL = r" && \text{%s}"


@functools.lru_cache(maxsize=8)
def _chain(config: LayerConfig) -> Chain:
    return named_chain(config)


@functools.lru_cache(maxsize=None)
def _formula(op: str):
    return op_formula(op)


def _square(value: Fraction) -> bool:
    return all(math.isqrt(part) ** 2 == part for part in (value.numerator, value.denominator))


def _inputs(count: int, rng: random.Random) -> list[int]:
    """Small integers whose variance is the square of a rational (σ exact at ε = 0), not all equal."""
    for _ in range(1000):
        drawn = [rng.randint(-3, 4) for _ in range(count)]
        mean = Fraction(sum(drawn), count)
        variance = sum((value - mean) ** 2 for value in drawn) / count
        if variance and _square(variance):
            return drawn
    raise ValueError(f"topic: no small integers of a square variance for {count} inputs")


def _numbers(chain: Chain, rng: random.Random) -> dict[str, Array]:
    """The input (of an exact σ), the scale γ and the upstream gradient nonzero, the shift β small."""
    tensors = chain.tensors
    choices = {"weight": (-2, -1, 1, 2, 3), "bias": tuple(range(-2, 3)), "grad_output": (-2, -1, 1, 2, 3)}
    values = {"input": Array(_inputs(len(tensors["input"]), rng), tensors["input"].shape)}
    for role in ("weight", "bias", "grad_output"):
        values[role] = Array([rng.choice(choices[role]) for _ in range(len(tensors[role]))], tensors[role].shape)
    return values


@dataclass(frozen=True)
class _Instance:
    """The layer, its numbers (``None`` in symbols) and the point they make: each tensor entry's number,
    ε = 0 and the statistics' values (empty in symbols)."""

    chain: Chain
    values: Optional[dict[str, Array]]
    point: dict[Expr, Expr]

    @classmethod
    def of(cls, chain: Chain, values: Optional[dict[str, Array]]) -> "_Instance":
        point: dict[Expr, Expr] = {}
        if values is not None:
            point = {chain.tensors[role][index]: values[role][index] for role in values
                     for index in indices_of(values[role].shape)}
            point[_epsilon(chain)] = sympy.S.Zero
            point.update({node.symbol: node.value.xreplace(point) for node in chain.nodes})
        return cls(chain, values, point)

    def at(self, expression: Expr) -> Expr:
        return sympy.sympify(expression).xreplace(self.point)

    def shown(self, expression: Expr) -> str:
        """``expression``, and its value at the numbers: ``expr = value`` (the expression alone in symbols)."""
        text = latex(expression)
        if self.values is None:
            return text
        value = latex(self.at(expression))
        return text if value == text else f"{text} = {value}"


def _epsilon(chain: Chain) -> Symbol:
    formula = _formula(chain.config.op)
    setting = next(setting for setting in chain.config.entry.settings if setting.roles == GUARD_ROLES)
    return formula_symbol(formula, setting.roles[0])


def _tensor_latex(chain: Chain, role: str) -> str:
    """A tensor as the formula names it (``X``, ``\\gamma``, ``\\beta``)."""
    return latex(_formula(chain.config.op).operand(role).base)


def _output_symbol(chain: Chain, index: tuple[int, ...]) -> Symbol:
    """An output entry's name, as ``symcnn derive --steps`` names it (``y000``)."""
    return Symbol(element_name("y", index, chain.output.shape), real=True)


def _forward_rows(instance: _Instance) -> list[str]:
    """μ, σ² (their definitions, at the numbers) and each output entry with μ and σ² named."""
    chain = instance.chain
    rows = [f"{latex(node.symbol)} &= {instance.shown(node.definition)}" for node in chain.nodes]
    output = chain.output
    rows += [f"{latex(_output_symbol(chain, index))} &= {instance.shown(output[index])}"
             for index in indices_of(output.shape)]
    return rows


def _node_rows(instance: _Instance) -> list[str]:
    """Each statistic's gradient, the last first: its chain rule, then its short form (at the numbers). A
    later statistic's partial that vanishes once the statistics are put in (``d sigma2/d mu``, 0 at the mean)
    is shown so, and its term left out of the short form."""
    chain, rows = instance.chain, []
    compact = compact_node_gradients(chain)
    upstream = chain.tensors["grad_output"]
    for position in reversed(range(len(chain.nodes))):
        node = chain.nodes[position]
        terms = [latex(upstream[index] * ChainPartial(_output_symbol(chain, index), node.symbol))
                 for index in indices_of(upstream.shape) if partial(chain.output[index], node.symbol) != 0]
        for later in chain.nodes[position + 1:]:
            name, factor = ChainPartial(later.symbol, node.symbol), partial(later.definition, node.symbol)
            if instance.values is None and sympy.expand(factor.xreplace(chain.definitions)) == 0:
                shown = f"{latex(sympy.factor_terms(factor))} = 0" + _LABEL % "the statistics put in"
            else:
                shown = instance.shown(sympy.factor_terms(factor))
            rows.append(f"{latex(name)} &= {shown}")
            terms.append(f"{_gradient(later.symbol)} {latex(name)}")
        rows.append(f"{_gradient(node.symbol)} &= {' + '.join(terms)} = {instance.shown(compact[node.name])}")
    return rows


def _gradient(symbol: Symbol) -> str:
    return r"\frac{\partial L}{\partial %s}" % latex(symbol)


def _entry_rows(instance: _Instance, role: str, index: tuple[int, ...]) -> list[str]:
    """One entry's chain rule through the statistics: chain rule, partials, terms (as ``derive --steps``)."""
    chain = instance.chain
    symbol = chain.tensors[role][index]
    upstream = chain.tensors["grad_output"]
    partials = [(upstream[output], ChainPartial(_output_symbol(chain, output), symbol),
                 partial(chain.output[output], symbol)) for output in indices_of(upstream.shape)]
    partials += [(None, ChainPartial(node.symbol, symbol), sympy.factor_terms(partial(node.definition, symbol)))
                 for node in chain.nodes]
    partials = [(factor, name, derivative) for factor, name, derivative in partials if derivative != 0]
    terms = [latex(factor * name) if factor is not None else f"{_gradient(name.args[0])} {latex(name)}"
             for factor, name, _ in partials]
    rows = [f"{_gradient(symbol)} &= {' + '.join(terms)}" + _LABEL % "chain rule"]
    for number, (_, name, derivative) in enumerate(partials):
        rows.append(f"{latex(name)} &= {instance.shown(derivative)}" + (_LABEL % "partials" if number == 0 else ""))
    rows.append(f"{_gradient(symbol)} &= {instance.shown(compact_gradient(chain, role, index))}" + _LABEL % "terms")
    return rows


def _asked(chain: Chain, numeric: bool, rng: random.Random) -> tuple[str, Optional[tuple[int, ...]]]:
    """What is asked (``output`` or a gradient) and its entry (``None``: the whole tensor, in numbers only
    and up to 4 entries)."""
    weights = _NUMBER_WEIGHTS if numeric else _SYMBOL_WEIGHTS
    asked = rng.choices(list(weights), weights=list(weights.values()))[0]
    array = chain.output if asked == "output" else chain.tensors[asked.removeprefix("grad_")]
    indices = [tuple(index) for index in indices_of(array.shape)]
    if asked == "output" or (numeric and (len(indices) == 1 or (len(indices) <= 4 and rng.random() < 0.4))):
        return asked, None
    return asked, rng.choice(indices)


def _answer(instance: _Instance, asked: str, index: Optional[tuple[int, ...]]) -> Answer:
    chain = instance.chain
    if asked == "output":
        return Answer("matrix", matrix_rows(chain.output.applyfunc(instance.at)))
    role = asked.removeprefix("grad_")
    tensor = chain.tensors[role]
    if index is None:
        array = Array([instance.at(compact_gradient(chain, role, tuple(entry))) for entry in indices_of(tensor.shape)],
                      tensor.shape)
        rows = matrix_rows(array)
        return Answer("matrix", rows) if len(array) > 1 else Answer("number", rows[0][0])
    value = compact_gradient(chain, role, index)
    if instance.values is not None:
        return Answer("number", instance.at(value))
    return Answer("expression", value, _definitions(chain))


def _definitions(chain: Chain) -> tuple[tuple[Symbol, Expr], ...]:
    """The names an answer may use: the statistics (``sigma`` too, as LaTeX's ``\\sigma^2`` reads), and the
    scale and shift by their Greek names where they have one entry."""
    definitions = [(node.symbol, node.value) for node in chain.nodes]
    variance = chain.nodes[-1]
    definitions.append((Symbol("sigma", real=True), sympy.sqrt(variance.value)))
    for role in ("weight", "bias"):
        tensor = chain.tensors[role]
        if len(tensor) == 1:
            definitions.append((Symbol(str(_formula(chain.config.op).operand(role).base), real=True),
                                tensor[(0,) * tensor.rank()]))
    return tuple(sorted(definitions, key=lambda pair: pair[0].name))


def _statement(instance: _Instance) -> str:
    names, text = _names(instance), layer.describe_layer(instance.chain.config)
    if instance.values is not None:
        return text + (" Take $\\epsilon = 0$ so that the numbers stay exact (PyTorch's default $10^{-5}$ changes "
                       f"them only slightly); {names} are the mean and the (biased) variance it normalizes with.")
    return text + (f" Keep $\\epsilon$ a symbol, and write {names} for the mean and the (biased) variance it "
                   "normalizes with, as document 003 does (`mu` and `sigma2` in an answers file).")


def _givens(instance: _Instance, asked: str) -> tuple[Given, ...]:
    chain = instance.chain
    shown = instance.values if instance.values is not None else chain.tensors
    roles = ("input", "weight", "bias") + (() if asked == "output" else ("grad_output",))
    return tuple(Given(_tensor_latex(chain, role) if role != "grad_output" else layer.ROLE_NAMES[role],
                       matrix_rows(shown[role])) for role in roles)


def _target(chain: Chain, asked: str, index: Optional[tuple[int, ...]]) -> str:
    if asked == "output":
        return "Y"
    role = asked.removeprefix("grad_")
    if index is None:
        return r"\frac{\partial L}{\partial %s}" % _tensor_latex(chain, role)
    return _gradient(chain.tensors[role][index])


def _question(instance: _Instance, asked: str, index: Optional[tuple[int, ...]]) -> str:
    target = _target(instance.chain, asked, index)
    if asked == "output":
        return f"Compute the layer's output ${target}$ (the normalized values, scaled and shifted), in numbers."
    how = "numbers" if instance.values is not None else f"the symbols of the givens, $\\epsilon$, {_names(instance)}"
    return f"Compute ${target}$, in {how}."


def _names(instance: _Instance) -> str:
    return " and ".join(f"${latex(node.symbol)}$" for node in instance.chain.nodes)


def _working(instance: _Instance, asked: str, index: Optional[tuple[int, ...]]) -> tuple[Working, ...]:
    at = " (at the givens, with $\\epsilon = 0$)" if instance.values is not None else ""
    parts = [Working(f"The forward pass with the statistics named, as document 003 names them{at}",
                     tuple(_forward_rows(instance)))]
    if asked == "output":
        output = instance.chain.output.applyfunc(instance.at)
        return (*parts, Working("The output", (f"Y &= {bmatrix(matrix_rows(output))}",)))
    role = asked.removeprefix("grad_")
    tensor = instance.chain.tensors[role]
    chosen = [tuple(entry) for entry in indices_of(tensor.shape)] if index is None else [index]
    if role == "input":
        parts.append(Working(f"The statistics' gradients, the last first (document 003's backward){at}",
                             tuple(_node_rows(instance))))
    for entry in chosen:
        parts.append(Working(f"${_gradient(tensor[entry])}$ by the chain rule{at}",
                             tuple(_entry_rows(instance, role, entry))))
    return tuple(parts)


def statistics_exercise(number: int, topic: str, op: str, level: int, rng: random.Random) -> Exercise:
    """An exercise on a layer with statistics: in numbers with ε = 0 (levels 1 and 3), in symbols with μ and
    σ² named (level 2)."""
    config = layer.configure(op, level, rng)
    chain = _chain(config)
    numeric = level != 2
    asked, index = _asked(chain, numeric, rng)
    instance = _Instance.of(chain, _numbers(chain, rng) if numeric else None)
    if numeric and asked != "output":  # prefer an entry whose answer is not 0
        role = asked.removeprefix("grad_")
        if index is not None and instance.at(compact_gradient(chain, role, index)) == 0:
            tensor = chain.tensors[role]
            nonzero = [tuple(entry) for entry in indices_of(tensor.shape)
                       if instance.at(compact_gradient(chain, role, tuple(entry))) != 0]
            index = rng.choice(nonzero) if nonzero else index
    target = _target(chain, asked, index)
    fields = dict(input_size=config.input_size, batch=config.batch, channels_in=config.channels_in,
                  settings=layer.other_settings(config))
    setup = Setup(((op, fields),), dict(instance.values or {}), asked, index,
                  {"epsilon": 0} if numeric else {})
    return Exercise(number, topic, f"{config.entry.title}: ${target}$", _statement(instance),
                    _givens(instance, asked), _question(instance, asked, index), _answer(instance, asked, index),
                    _working(instance, asked, index), setup)
