"""A formula evaluated as printed: the JSON of ``symcnn formula`` (its ``srepr``) read back and computed
by brute force, element by element, with bounds-checked reads.

The reader of a tensor raises on an index outside its shape, or a fractional one, unless the JSON lists
the tensor in ``zero_outside`` (then the read is 0): a formula that relies on an unstated "X is zero there"
fails here. Index arithmetic is exact (integers and fractions), tensor values are float64.

Two conventions of the printed notation, both as the text and LaTeX views state them:

- an Iverson bracket is *strongly* zero (Knuth): ``[false] * x`` is 0 without reading ``x`` (a
  transposed convolution's bracket guards a read at ``(i + p - d*u)/s``, an index only where it holds);
  a ``Piecewise`` reads only the branch whose condition holds;
- symcnn's reductions are evaluated by their definitions, since plain SymPy cannot: ``MaxOver`` is the
  maximum over its window, ``FirstArgmax`` is 1 where its position is the window's first maximum in
  row-major order (the first limit slowest), else 0.

Two shortcuts keep it fast and change no value: a reduction is computed once per value of its free
symbols (a batch norm's variance, inside every term of its gradient, once per channel), and a ``Sum``
whose summand is a product of factors over disjoint sets of its variables is the product of their sums
(the distributive law: batch norm's gradient nests twelve sums in one term).
"""

from __future__ import annotations

import itertools
import math
import operator
from fractions import Fraction
from typing import Mapping

import numpy as np
import sympy
from sympy import Indexed, Symbol

from symcnn.symbolic.functions import Bracket, FirstArgmax, MaxOver
from symcnn.views.formula import from_srepr

__all__ = ["OutOfRange", "evaluate_printed", "integer_values"]

_RELATIONS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
              ">=": operator.ge}
_FUNCTIONS = {sympy.exp: math.exp, sympy.log: math.log, sympy.tanh: math.tanh}


class OutOfRange(AssertionError):
    """A read outside a tensor that the formula does not declare zero there, or at a fractional index."""


def integer_values(texts: Mapping[str, str], values: Mapping[str, object]) -> dict[str, int]:
    """Each JSON expression (a shape or a parameter, as text) at ``values`` (by symbol name), as an int."""
    result = {}
    for key, text in texts.items():
        # every name a symbol (SymPy's own N, S or E would otherwise shadow a size)
        expr = sympy.sympify(text, locals={name: Symbol(name) for name in values})
        value = expr.xreplace({symbol: sympy.sympify(values[symbol.name]) for symbol in expr.free_symbols})
        if not value.is_Integer:
            raise AssertionError(f"{key} = {text} is {value} at {values}, not an integer")
        result[key] = int(value)
    return result


class _Evaluator:
    def __init__(self, arrays: Mapping[str, np.ndarray], zero_outside: set[str]):
        self.arrays, self.zero_outside = arrays, zero_outside
        self.memo: dict = {}
        self.free: dict = {}
        self.splits: dict = {}

    def read(self, node: Indexed, env: dict) -> float:
        name = str(node.base)
        array = self.arrays[name]
        index = [self.value(position, env) for position in node.indices]
        if any(Fraction(value).denominator != 1 for value in index):
            raise OutOfRange(f"{node} read at the fractional index {index}")
        index = tuple(int(value) for value in index)
        if len(index) != array.ndim:
            raise OutOfRange(f"{node} has {len(index)} indices, the tensor {array.ndim} axes")
        if all(0 <= value < size for value, size in zip(index, array.shape)):
            return float(array[index])
        if name in self.zero_outside:
            return 0.0
        raise OutOfRange(f"{node} read at {index}, outside {name} of shape {array.shape}, "
                         "which the formula does not declare zero outside its shape")

    def window(self, limits, env: dict):
        """Every assignment of the limits' variables, in row-major order (the first limit slowest)."""
        variables = [limit[0] for limit in limits]
        ranges = [range(int(self.value(low, env)), int(self.value(high, env)) + 1) for _, low, high in limits]
        for values in itertools.product(*ranges):
            yield {**env, **dict(zip(variables, values))}

    def reduction(self, node, env: dict):
        # A reduction's value depends only on its free symbols: memoized on them (a batch norm's
        # variance, nested in every term of its gradient, is computed once per channel).
        if node not in self.free:
            self.free[node] = tuple(sorted((s for s in node.free_symbols if isinstance(s, Symbol) and s in env),
                                           key=str))
        key = (node, tuple(env[symbol] for symbol in self.free[node]))
        if key not in self.memo:
            self.memo[key] = self.compute_reduction(node, env)
        return self.memo[key]

    def split(self, node: sympy.Sum):
        """``(factors over no variable, [Sum over each connected set of variables])``, or ``None`` for one set."""
        if node not in self.splits:
            variables = [limit[0] for limit in node.limits]
            group = {variable: {variable} for variable in variables}  # connected sets, merged below

            def join(connected):
                merged = set().union(*(group[v] for v in connected))
                for variable in merged:
                    group[variable] = merged

            for variable, low, high in node.limits:  # a bound that names another variable ties the two
                join({variable} | ((low.free_symbols | high.free_symbols) & set(variables)))
            factors = sympy.Mul.make_args(node.function)
            for factor in factors:
                used = factor.free_symbols & set(variables)
                if used:
                    join(used)
            sets = []
            for variable in variables:
                if group[variable] not in sets:
                    sets.append(group[variable])
            if len(sets) == 1:
                self.splits[node] = None
            else:
                constant = [factor for factor in factors if not factor.free_symbols & set(variables)]
                sums = [sympy.Sum(sympy.Mul(*[f for f in factors if f.free_symbols & part]),
                                  *[limit for limit in node.limits if limit[0] in part]) for part in sets]
                self.splits[node] = (constant, sums)
        return self.splits[node]

    def compute_reduction(self, node, env: dict):
        if isinstance(node, sympy.Sum):
            split = self.split(node)
            if split is not None:
                constant, sums = split
                return self.value(sympy.Mul(*constant, *sums, evaluate=False), env)
            return sum((self.value(node.function, inner) for inner in self.window(node.limits, env)), 0)
        if isinstance(node, MaxOver):  # by definition: the window's maximum
            return max(self.value(node.function, inner) for inner in self.window(node.limits, env))
        # FirstArgmax, by definition: 1 where `position` is the window's first maximum in row-major order
        best, best_at = None, None
        for inner in self.window(node.limits, env):
            element = self.value(node.function, inner)
            if best is None or element > best:
                best, best_at = element, tuple(inner[limit[0]] for limit in node.limits)
        position = tuple(self.value(coordinate, env) for coordinate in node.position)
        return 1 if position == best_at else 0

    def truth(self, condition, env: dict) -> bool:
        if condition is sympy.true or condition is sympy.false:
            return bool(condition)
        if isinstance(condition, sympy.And):
            return all(self.truth(part, env) for part in condition.args)
        if isinstance(condition, sympy.Or):
            return any(self.truth(part, env) for part in condition.args)
        if isinstance(condition, sympy.Not):
            return not self.truth(condition.args[0], env)
        if isinstance(condition, sympy.Rel):
            return _RELATIONS[condition.rel_op](self.value(condition.lhs, env), self.value(condition.rhs, env))
        raise NotImplementedError(f"condition {condition!r} ({type(condition).__name__})")

    def value(self, node, env: dict):
        if node.is_Integer:
            return int(node)
        if node.is_Rational:
            return Fraction(int(node.p), int(node.q))
        if node.is_Float:
            return float(node)
        if isinstance(node, Symbol):
            return env[node]  # an unbound symbol is a KeyError: the JSON left a parameter undefined
        if isinstance(node, Indexed):
            return self.read(node, env)
        if isinstance(node, sympy.Add):
            return sum((self.value(arg, env) for arg in node.args), 0)
        if isinstance(node, sympy.Mul):
            # brackets first: a false one is 0 without reading the other factors (strongly zero)
            factors = sorted(node.args, key=lambda arg: not isinstance(arg, Bracket))
            product = 1
            for factor in factors:
                product = product * self.value(factor, env)
                if product == 0 and isinstance(factor, Bracket):
                    return 0
            return product
        if isinstance(node, sympy.Pow):
            base, exponent = self.value(node.base, env), self.value(node.exp, env)
            if isinstance(exponent, Fraction) and exponent.denominator != 1:
                return float(base) ** float(exponent)
            return base ** exponent
        if isinstance(node, Bracket):
            return 1 if all(self.truth(condition, env) for condition in node.conditions) else 0
        if isinstance(node, sympy.Piecewise):
            for expr, condition in node.args:
                if self.truth(condition, env):
                    return self.value(expr, env)
            raise AssertionError(f"no branch of {node} holds")
        if isinstance(node, (sympy.Sum, MaxOver, FirstArgmax)):
            return self.reduction(node, env)
        if isinstance(node, sympy.Mod):
            return self.value(node.args[0], env) % self.value(node.args[1], env)
        if isinstance(node, sympy.floor):
            return math.floor(self.value(node.args[0], env))
        if isinstance(node, sympy.ceiling):
            return math.ceil(self.value(node.args[0], env))
        if node.func in _FUNCTIONS:
            return _FUNCTIONS[node.func](float(self.value(node.args[0], env)))
        raise NotImplementedError(f"{node!r} ({type(node).__name__})")


def evaluate_printed(data: Mapping, arrays: Mapping[str, np.ndarray], values: Mapping[str, object],
                     zero_outside=None) -> np.ndarray:
    """The left-hand side of the JSON's formula at every index of its shape, computed from its ``srepr``.

    ``arrays`` by tensor name (``X``, ``dL/dY``), ``values`` every symbol by name (sizes, settings, ``alpha``);
    ``zero_outside`` overrides the JSON's list (to show what happens without it).
    """
    equation = from_srepr(data["srepr"])
    zero = set(data["zero_outside"] if zero_outside is None else zero_outside)
    evaluator = _Evaluator(arrays, zero)
    lhs, rhs = equation.lhs, equation.rhs
    indices = lhs.indices if isinstance(lhs, Indexed) else ()
    named = {symbol: values[symbol.name] for symbol in equation.free_symbols
             if isinstance(symbol, Symbol) and symbol.name in values and symbol not in indices}
    role = next(role for role, tensor in data["tensors"].items() if tensor["name"] == str(lhs.base if indices else lhs))
    shape = tuple(integer_values(dict(enumerate(data["tensors"][role]["shape"])), values).values())
    result = np.empty(shape)
    for index in itertools.product(*(range(size) for size in shape)):
        result[index] = float(evaluator.value(rhs, {**named, **dict(zip(indices, index))}))
    return result
