"""A registered op at a concrete configuration: its formula, and the values of its parameters.

The registry (:mod:`symcnn.registry`) says which formula parameter each setting of a layer fixes;
this module builds the formula (:mod:`symcnn.symbolic.ops`) and binds those parameters, the same
way for every op. Code generation, the kernel-vs-symbolic check, the walk-through reports and the
small-shape derivations all instantiate layers here.

Example:
    >>> formula, values = bind_layer("maxpool2d", (16, 8, 8), {"kernel": (2, 2), "stride": (2, 2)})
    >>> formula.op, sorted((str(symbol), value) for symbol, value in values.items())[:3]
    ('maxpool2d', [('C_in', 16), ('H_in', 8), ('K_h', 2)])
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import sympy
from sympy import Array, Expr, Symbol

from symcnn import registry
from symcnn.registry import input_role, is_input_role
from symcnn.symbolic.expand import evaluate
from symcnn.symbolic.ops import IndexFormula

__all__ = ["op_formula", "bind_layer", "evaluate_layer", "formula_symbol"]

Number = Callable[[Any], Expr]


def op_formula(op: str, settings: Mapping[str, Any] = {}, rank: Optional[int] = None,
               number: Number = sympy.nsimplify, mode: str = "training", inputs: int = 2) -> IndexFormula:
    """The formula of ``op`` with its ``option`` settings applied (numbers through ``number``, counts as they are).

    Option settings missing from ``settings`` keep the factory's default (a symbol such as
    ``alpha``, for the general formula). ``rank`` is the input's rank with the batch axis;
    ``mode="evaluation"`` gives the evaluation-mode formula of an op that has one (batch norm);
    ``inputs``, how many inputs an op that joins them (add, concat) takes.

    >>> op_formula("relu", rank=2).indices
    (n, k)
    """
    entry = registry.get(op)
    options = {}
    for setting in entry.settings:
        if setting.option and setting.key in settings:
            value = settings[setting.key]
            exact = isinstance(value, bool) or setting.kind == "count"  # a flag, or a count (groups)
            options[setting.key] = value if exact else number(value)
    if entry.ranked:
        options["rank"] = rank if rank is not None else max(entry.inputs) + 1
    if entry.merges:
        options["inputs"] = inputs
    formula = entry.load_formula(mode)(**options)
    if not isinstance(formula, IndexFormula):
        raise ValueError(f"{op}: the registered formula factory returned {type(formula).__name__}, "
                         "not an IndexFormula")
    return formula


def formula_symbol(formula: IndexFormula, role: str) -> Optional[Symbol]:
    """The symbol of a parameter, by role: a shape parameter's, or a free symbol of the formula
    named as the role (a slope ``alpha``); ``None`` where derived or absent."""
    symbol = formula.parameters.get(role)
    if symbol is None:
        symbol = next((free for free in formula.rhs.free_symbols if free.name == role), None)
    return symbol if isinstance(symbol, Symbol) else None


def _values(formula: IndexFormula, op: str, input_shape: tuple, settings: Mapping[str, Any],
            number: Number) -> dict[Symbol, Any]:
    """Each parameter's symbol -> its value: sizes as ints, a ``number`` setting through ``number``."""
    entry = registry.get(op)
    numbers = {role for setting in entry.settings if setting.kind == "number" for role in setting.roles}
    values: dict[Symbol, Any] = {}
    for role, value in entry.roles(tuple(map(tuple, input_shape)) if entry.merges else tuple(input_shape),
                                   settings).items():
        symbol = formula_symbol(formula, role)
        if symbol is not None:
            values[symbol] = number(value) if role in numbers else value
    return values


def bind_layer(op: str, input_shape: tuple[int, ...], settings: Mapping[str, Any],
               number: Number = sympy.nsimplify, mode: str = "training") -> tuple[IndexFormula, dict[Symbol, Any]]:
    """The formula of a layer, and each shape parameter's value except the batch size.

    ``input_shape`` is without the batch axis (of an op that joins inputs, the tuple of their
    shapes); ``settings`` as :meth:`symcnn.registry.Op.settings_of` returns them (a spec layer's
    ``settings``). Values are plain ints; option settings (a slope) are built into the formula
    through ``number``. ``mode``: as :func:`op_formula`'s.

    >>> formula, values = bind_layer("concat", ((2, 4, 4), (3, 4, 4)), {})
    >>> formula.output.shape[1].subs(values)
    5
    """
    merges = registry.get(op).merges
    rank = len(input_shape[0] if merges else input_shape) + 1
    formula = op_formula(op, settings, rank=rank, number=number, mode=mode,
                         inputs=len(input_shape) if merges else 2)
    return formula, _values(formula, op, input_shape, settings, number)


def evaluate_layer(op: str, arrays: Mapping[str, Array], settings: Mapping[str, Any],
                   number: Number = sympy.nsimplify) -> Array:
    """The layer's output on SymPy arrays by role (``input``, ``weight``, ``bias``), exactly.

    >>> from symcnn.symbolic.tensors import symbol_array
    >>> evaluate_layer("relu", {"input": Array([[-1, 2]])}, {})
    [[0, 2]]
    """
    if registry.get(op).merges:  # every input's shape: input, input2, ...
        count = sum(1 for role in arrays if is_input_role(role))
        input_shape = tuple(tuple(arrays[input_role(number)].shape)[1:] for number in range(1, count + 1))
        formula = op_formula(op, settings, rank=len(input_shape[0]) + 1, number=number, inputs=count)
    else:
        input_shape = tuple(arrays["input"].shape)[1:]
        formula = op_formula(op, settings, rank=len(input_shape) + 1, number=number)
    values = _values(formula, op, input_shape, settings, number)
    # Shape parameters are checked against the arrays by evaluate; other parameters (a slope)
    # are substituted into the formula first.
    shape_roles = {symbol: role for role, symbol in formula.parameters.items()}
    formula = formula.substitute({symbol: value for symbol, value in values.items() if symbol not in shape_roles})
    return evaluate(formula, arrays, {shape_roles[symbol]: value for symbol, value in values.items()
                                      if symbol in shape_roles})
