"""Exercises beyond one layer's gradient: output sizes and parameter counts, spotting the wrong formula,
and a small network's backward pass.

- **sizes**: a windowed op at a realistic input; the answer is the registry's output shape (or its
  parameter count), the working the op's formula's output size (:mod:`symcnn.symbolic.ops`) with
  the numbers put in;
- **spot**: three gradient entries of a layer, one of them changed; each is checked by
  ``symcnn check`` (:func:`symcnn.checking.checker.check`) for the key;
- **network**: a convolution, an activation and a pooling op (each from its topic's registry kind),
  backpropagated layer by layer with :func:`~symcnn.symbolic.derive.derive`, the first layer's
  chain rule as ``derive --steps`` shows it.

Example:
    >>> import random
    >>> sizes_exercise(1, "conv2d", 1, random.Random(0)).answer.kind in ("shape", "number")
    True
"""

from __future__ import annotations

import math
import random
import string

import sympy
from sympy import Array

from symcnn import registry
from symcnn.checking.checker import check
from symcnn.checking.result import CheckOptions
from symcnn.printing.latex import latex
from symcnn.symbolic.derive import LayerConfig, derive
from symcnn.symbolic.instances import bind_layer
from symcnn.symbolic.steps import steps
from symcnn.symbolic.tensors import indices_of
from symcnn.teaching import layer
from symcnn.teaching.model import Answer, Exercise, Given, Setup, Working, bmatrix, matrix_rows
from symcnn.views.steps import latex_entries
from symcnn.teaching.topics import ACTIVATIONS, POOLING, layer_settings

__all__ = ["sizes_exercise", "spot_exercise", "network_exercise"]


# --- output sizes and parameter counts ------------------------------------------------------------------

def _size_settings(entry: registry.Op, level: int, rng: random.Random) -> dict:
    """Realistic settings: channels 8 to 64, kernels 2 to 5; strides and padding from level 2, dilation at 3."""
    settings = {}
    for setting in entry.settings:
        if setting.kind == "count":
            settings[setting.key] = rng.choice((8, 16, 32, 64))
        elif setting.default_from is not None:  # a pool's stride: its window, or 1 from level 2
            if level >= 2 and rng.random() < 0.5:
                settings[setting.key] = 1
        elif setting.kind == "pair" and setting.default is registry.REQUIRED:
            settings[setting.key] = rng.choice((2, 3, 5))
        elif setting.kind == "pair" and level >= 2:
            step = 2 if (setting.key != "dilation" or level == 3) else 0
            settings[setting.key] = setting.read(setting.default)[0] + rng.randint(0, step)
    return settings


def sizes_exercise(number: int, op: str, level: int, rng: random.Random) -> Exercise:
    entry = registry.get(op)
    for _ in range(50):
        shape = (rng.choice((1, 3, 16)), *([rng.choice((28, 32, 31, 64))] * 2))
        try:
            settings = entry.settings_of(_size_settings(entry, level, rng))
            output = entry.output_shape(shape, settings)
        except ValueError:
            continue
        formula, values = bind_layer(op, shape, settings)
        sizes = formula.output.shape[2:]
        divisions = [floor.args[0].xreplace(values) for size in sizes for floor in size.atoms(sympy.floor)]
        if level == 3 or all(division.is_Integer for division in divisions):
            break  # below level 3 the division is exact: no floor to take
    words = entry.settings_text(settings)
    shown = "×".join(map(str, shape))
    statement = (f"{layer.article(entry.title)} {entry.title} layer ({words}) takes an input of shape C×H×W = {shown} "
                 "(batch axis left out).")
    rows = []
    for name, size in zip((r"H_{out}", r"W_{out}"), sizes):
        rows.append(f"{name} &= {latex(size)} = {latex(size.xreplace(values))}")
    parameters = entry.parameter_shapes(shape, settings)
    setup = Setup(((op, dict(settings)),), {"input_shape": shape})
    if parameters and rng.random() < 0.5:
        count = sum(math.prod(item) for item in parameters.values())
        times = r" \times "
        rows = [f"\\text{{{role}}} &: {times.join(map(str, item))} = {math.prod(item)}"
                for role, item in parameters.items()] + [f"\\text{{total}} &= {count}"]
        return Exercise(number, "sizes", f"{entry.title}: parameter count", statement, (),
                        "How many learned parameters does the layer have (weights and biases)?",
                        Answer("number", sympy.Integer(count)),
                        (Working("Each parameter's shape (the registry's)", tuple(rows)),), setup)
    return Exercise(number, "sizes", f"{entry.title}: output shape", statement, (),
                    "Give the output's shape C×H×W (like `16x30x30`).", Answer("shape", tuple(output)),
                    (Working("The output size, by the op's formula", tuple(rows),
                             f"The output has {output[0]} channels."),), setup)


# --- spot the wrong formula ----------------------------------------------------------------------------

def _tensor_of(symbol: sympy.Symbol) -> str:
    """The tensor a symbol is an entry of: ``x`` for ``x01``; the upstream gradient's ``a b c d`` are one."""
    letters = symbol.name.rstrip("0123456789_")
    return letters if letters != symbol.name else "upstream"


def _changed(expression: sympy.Expr, candidates: list, rng: random.Random) -> sympy.Expr:
    """``expression`` with one plausible mistake: two entries of a tensor swapped, a term dropped, or an
    entry replaced by another of its tensor (``candidates``: the symbols the gradient is written in)."""
    present = sorted(expression.free_symbols, key=str)
    terms = sympy.Add.make_args(expression)
    mistakes = []
    pairs = [(first, second) for first in present for second in present
             if str(first) < str(second) and _tensor_of(first) == _tensor_of(second)]
    if pairs:
        first, second = rng.choice(pairs)
        mistakes.append(expression.xreplace({first: second, second: first}))
    if len(terms) >= 2:
        mistakes.append(sympy.Add(*[term for term in terms if term != rng.choice(terms)]))
    replaced = rng.choice(present) if present else None
    absent = [symbol for symbol in candidates if symbol not in present and replaced is not None
              and _tensor_of(symbol) == _tensor_of(replaced)]
    if absent:
        mistakes.append(expression.xreplace({replaced: rng.choice(absent)}))
    mistakes = [mistake for mistake in mistakes if sympy.expand(mistake - expression) != 0]
    return rng.choice(mistakes) if mistakes else expression + 1


def spot_exercise(number: int, op: str, level: int, rng: random.Random) -> Exercise:
    entry = registry.get(op)
    # only the settings symcnn check can be told (its options mirror LayerConfig's fields): an output padding stays 0
    settings = {key: value for key, value in layer_settings(entry, level, rng).items()
                if key in layer.CONFIG_FIELDS and key != "bias"}
    config = layer.layer_config(op, {**settings, **({"bias": False} if "bias" in entry.keys() else {})}, level, rng)
    symbolic = derive(config)
    values = None
    if any(element.has(sympy.Piecewise) for array in symbolic.gradients.values() for element in layer.entries(array)):
        values = layer.numbers(config, symbolic, rng)["input"]  # routing decided by numbers, as document 002 does
    derivation = derive(config, values)
    pool = [(role, tuple(index)) for role in ("grad_weight", "grad_input") if role in derivation.gradients
            for index in indices_of(derivation.gradients[role].shape)
            if derivation.gradients[role][index] != 0]
    chosen = rng.sample(pool, min(3, len(pool)))
    wrong = rng.randrange(len(chosen))
    letters = string.ascii_uppercase
    choices, working = [], []
    options = CheckOptions(input_size=config.input_size, kernel=config.kernel if "kernel" in entry.keys() else None,
                           stride=config.stride if "kernel" in entry.keys() else None,
                           padding=config.padding if "padding" in entry.keys() else None,
                           dilation=config.dilation if "dilation" in entry.keys() else None,
                           channels_out=config.channels_out,
                           values=[str(value) for value in layer.entries(values)] if values is not None else None)
    for number_of_choice, (role, index) in enumerate(chosen):
        symbol = derivation.tensors[role.removeprefix("grad_")][index]
        right = derivation.gradients[role][index]
        written_in = [element.free_symbols for element in layer.entries(derivation.gradients[role])]
        vocabulary = sorted(set().union(*written_in), key=str)
        shown = _changed(right, vocabulary, rng) if number_of_choice == wrong else right
        claim = f"{layer.gradient_name(symbol)} = {latex(shown)}"
        choices.append(claim)
        verdict = check(claim, op, options)
        found = "correct" if verdict.correct else "wrong: " + "; ".join(
            f"derived ${latex(sympy.sympify(difference.derived))}$" for difference in verdict.differences)
        working.append(f"{letters[number_of_choice]}: `symcnn check` says {found}")
    givens = (Given("X", matrix_rows(values)),) if values is not None else ()
    statement = layer.describe_layer(config) + " Its upstream gradient is " + \
        f"${layer.ROLE_NAMES['grad_output']} = {bmatrix(matrix_rows(derivation.tensors['grad_output']))}$."
    question = ("Exactly one of these gradient entries is wrong. Which one? Answer with its letter.")
    setup = Setup(((op, {"input_size": config.input_size, "kernel": config.kernel, "stride": config.stride,
                         "padding": config.padding, "dilation": config.dilation, "bias": False,
                         "channels_out": config.channels_out, "settings": layer.other_settings(config)}),),
                  {"input": values} if values is not None else {}, chosen[wrong][0], chosen[wrong][1])
    return Exercise(number, "spot", f"{entry.title}: spot the wrong formula", statement, givens, question,
                    Answer("choice", letters[wrong]), (Working("Each formula checked", (), "; ".join(working) + "."),),
                    setup, tuple(choices))


# --- a network's backward pass --------------------------------------------------------------------------

def _windowed_pools() -> list[str]:
    return [op for op in POOLING if "kernel" in registry.get(op).keys()] or list(POOLING)


def _at(array: Array, values: dict) -> Array:
    """``array`` with ``values`` put in for its symbols."""
    return array.applyfunc(lambda element: element.xreplace(values))


def network_exercise(number: int, op: str, level: int, rng: random.Random) -> Exercise:
    """``op`` (a convolution) on a 3x3 input, then an activation, then a pooling op down to one value."""
    first = LayerConfig(op, input_size=(3, 3), kernel=(2, 2), bias=True)
    for _ in range(50):
        activation = rng.choice(list(ACTIVATIONS))
        pool = rng.choice(_windowed_pools())
        derived = derive(first)
        values = layer.numbers(first, derived, rng)
        values.pop("grad_output")
        substitution = {derived.tensors[role][index]: array[index] for role, array in values.items()
                        for index in indices_of(array.shape)}
        hidden = _at(derived.output, substitution)
        second = LayerConfig(activation, input_size=(2, 2))
        activated = derive(second, hidden)
        pooled_input = activated.output
        if len(set(layer.entries(pooled_input))) < len(pooled_input):
            continue  # a max must have one answer
        third = LayerConfig(pool, input_size=(2, 2), **({"kernel": (2, 2)} if "kernel" in registry.get(pool).keys()
                                                       else {}))
        pooled = derive(third, pooled_input)
        upstream = rng.choice((-2, -1, 1, 2, 3))
        grad_pooled = _at(pooled.gradients["grad_input"], {pooled.tensors["grad_output"][(0, 0, 0, 0)]: upstream})
        upstream_of = activated.tensors["grad_output"]
        grad_activated = _at(activated.gradients["grad_input"], {upstream_of[index]: grad_pooled[index]
                                                                 for index in indices_of(grad_pooled.shape)})
        if not all(element.is_Rational for element in layer.entries(grad_activated)):
            continue
        break
    asked = rng.choice(("grad_weight", "grad_bias"))
    final = {derived.tensors["grad_output"][index]: grad_activated[index] for index in indices_of(grad_activated.shape)}
    answer_array = _at(derived.gradients[asked], {**substitution, **final})
    names = [registry.get(name).title for name in (op, activation, pool)]
    statement = (f"A small network: {names[0]} (one 2×2 kernel $W$, bias $b$) on a 3×3 input $X$, then {names[1]}, "
                 f"then {names[2]} down to one value $p$. The loss's gradient at the end is "
                 f"$\\frac{{\\partial L}}{{\\partial p}} = {upstream}$.")
    target = layer.tensor_name(asked.removeprefix("grad_"))
    question = f"Backpropagate through the three layers and compute ${target}$."
    walk = steps(first, values["input"], ["w" if asked == "grad_weight" else "b"])
    rows = [f"{'S'} &= {bmatrix(matrix_rows(hidden))}", f"A &= {bmatrix(matrix_rows(pooled_input))}",
            f"p &= {latex(pooled.output[(0, 0, 0, 0)])}"]
    backward = [r"\frac{\partial L}{\partial A} &= " + bmatrix(matrix_rows(grad_pooled)),
                r"\frac{\partial L}{\partial S} &= " + bmatrix(matrix_rows(grad_activated)),
                f"{target} &= {bmatrix(matrix_rows(answer_array))}"]
    working = (Working("Forward", tuple(rows), f"$S$ is the {names[0]}'s output, $A$ the {names[1]}'s."),
               Working("Backward, layer by layer", tuple(backward)),
               *[Working(f"${layer.gradient_name(entry.symbol)}$ by the chain rule, with "
                         f"$a, b, c, d = \\frac{{\\partial L}}{{\\partial S}}$", rows_of_entry)
                 for entry, rows_of_entry in latex_entries(walk)][:1])
    setup = Setup(((op, {"kernel": (2, 2)}), (activation, dict(second.settings)), (pool, dict(third.settings))),
                  {**values, "grad_output": Array([[[[upstream]]]])}, asked, None)
    answer = (Answer("matrix", matrix_rows(answer_array)) if len(answer_array) > 1
              else Answer("number", layer.entries(answer_array)[0]))
    return Exercise(number, "network", f"Backward through {', '.join(names)}", statement,
                    (Given("X", matrix_rows(values["input"])), Given("W", matrix_rows(values["weight"])),
                     Given("b", matrix_rows(values["bias"]))), question, answer, working, setup)
