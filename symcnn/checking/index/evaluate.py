"""The claim interpreter: an index-notation claim evaluated at configurations of the op, entry by
entry, against its derivation there; and the entry point :func:`check_claim`.

A claim such as ``\\frac{\\partial L}{\\partial X_{k,l}} = \\sum_{m}\\sum_{n} \\frac{\\partial L}{\\partial Y_{k-m,l-n}}
W_{m,n}`` is read against an op (:data:`~symcnn.checking.index.vocabulary.DEFAULT_TENSORS` names its
tensors, :data:`~symcnn.checking.index.vocabulary.PARAMETER_NAMES` its shape parameters), planned once
(:class:`~symcnn.checking.index.plan.Plan`), then evaluated at configurations of increasing size
(:func:`~symcnn.checking.index.search.configurations`; here :class:`_Context`, one configuration),
against the element-wise derivative of the expanded forward pass or the forward pass itself
(:func:`~symcnn.checking.index.derivation.derivation`). The first configuration with a difference is
the counter-example. docs/errata.md lists the vocabulary.

Example:
    >>> from symcnn.checking.parse import parse_claim
    >>> claim = parse_claim(r"Y_{i,j} = \\sum_{m}\\sum_{n} X_{i+m,j+n} W_{m,n}", tensors={"X", "W", "Y"})
    >>> result = check_claim(claim, "conv2d")
    >>> result.correct, result.checked
    (True, 4)
"""

from __future__ import annotations

import functools
import itertools
import math
from fractions import Fraction
from typing import Mapping, Optional, Sequence

import sympy
from sympy import Expr, IndexedBase, Symbol

from symcnn.checking.claims import OPEN, Claim, ClaimSyntaxError, Equation
from symcnn.checking.index.derivation import Table, derivation
from symcnn.checking.index.plan import ClaimTensor, Plan, free_symbols, plan_claim
from symcnn.checking.index.search import configurations, describe, expansion_terms
from symcnn.checking.index.vocabulary import PARAMETER_NAMES
from symcnn.checking.limits import Budget, check_search_size
from symcnn.checking.result import CheckOptions, CheckResult, Difference, equal, show
from symcnn.checking.sizes import check_constants, check_expansion, check_power
from symcnn.symbolic.expand import unroll
from symcnn.symbolic.functions import FirstArgmax, MaxOver, WindowMax

__all__ = ["check_claim"]


def check_claim(claim: Claim, op: str, options: Optional[CheckOptions] = None) -> CheckResult:
    """Check a parsed index-notation claim against ``op`` over small configurations."""
    options = options or CheckOptions()
    return _run(plan_claim(claim, op, options))


def _run(plan: Plan) -> CheckResult:
    """The claim at each configuration in turn; the first with a difference is the counter-example."""
    try:
        return _search(plan)
    except ClaimSyntaxError as error:  # a limit of symcnn.checking.limits, met while evaluating
        raise ValueError(f"formula: {error}") from None


def _search(plan: Plan) -> CheckResult:
    chosen = configurations(plan)
    if not chosen:
        raise ValueError("formula: no configuration of the op satisfies the claim's conditions and options")
    if any(kind == "tensor" for _, kind in plan.equations):  # compared with the derivation: its size first
        check_search_size([(expansion_terms(plan, config), describe(plan.op, config)) for config in chosen])
    budget = Budget()
    for number, config in enumerate(chosen, start=1):
        try:
            differences = _differences(plan, config, budget)
        except ZeroDivisionError:
            raise ValueError(f"formula: divides by zero at {describe(plan.op, config)}") from None
        if differences:
            return CheckResult(plan.claim.text, plan.op, "index", False, number, describe(plan.op, config),
                               tuple(differences), tuple(plan.notes))
    return CheckResult(plan.claim.text, plan.op, "index", True, len(chosen), None, (), tuple(plan.notes))


def _differences(plan: Plan, config: Mapping[str, int], budget: Budget) -> list[Difference]:
    values = plan.parameter_values(config)
    differences = []
    context = _Context(plan, config, values, budget)
    for equation, kind in plan.equations:
        if kind == "identity":
            differences += context.identity(equation)
        else:
            differences += context.tensor_claim(equation)
    return differences


class _ReadOutside(Exception):
    """A claim read a tensor outside its shape (or at a non-integer index)."""


_FUNCTIONS = (sympy.exp, sympy.log, sympy.Max, sympy.Min, sympy.Abs, sympy.factorial)  # sqrt is a Pow


class _Context:
    """The claim evaluated at one configuration."""

    def __init__(self, plan: Plan, config: Mapping[str, int], values: Mapping[Symbol, int], budget: Budget):
        self.plan = plan
        self.config = config
        self.values = dict(values)
        self.env = {symbol: int(value) for symbol, value in values.items()}
        self.parameters = plan.all_parameters(config)
        self.rank = len(plan.forward.operand("input").shape)
        self.needs_gradients = any(tensor.role.startswith("grad_") for tensor in plan.tensors.values())
        self._offset_cache: dict[str, list[tuple[int, int]]] = {}  # per context (a method cache would keep it alive)
        self.budget = budget
        self.where = describe(plan.op, config)
        # What each name stands for here, as the limits read it: parameters, then where-definitions.
        self.sizes: dict[str, object] = {symbol.name: value for symbol, value in self.values.items()}
        for name, definition in plan.substitutions.items():
            self.sizes[name.name] = check_constants(definition, self.sizes)

    @functools.cached_property
    def derived(self) -> dict:
        bias = any(tensor.role == "bias" for tensor in self.plan.forward.operands)
        return derivation(self.plan.op, self.rank, bias, tuple(sorted(self.config.items())), self.needs_gradients)

    # identities over parameters ---------------------------------------------------------------------------
    def identity(self, equation: Equation) -> list[Difference]:
        left = self._number(equation.lhs)
        right = self._number(equation.rhs)
        if left == right or not (left.is_Number and right.is_Number) and sympy.simplify(left - right) == 0:
            return []
        if isinstance(equation.lhs, Symbol) and equation.lhs.name in PARAMETER_NAMES:
            return [Difference(equation.lhs.name, show(right), show(left))]
        return [Difference(str(equation.lhs), f"{equation.rhs} = {right}", show(left))]

    def _number(self, expr):
        return sympy.sympify(self.value(self.prepare(expr), {}))

    # tensors ------------------------------------------------------------------------------------------------
    def _table(self, role: str) -> Table:
        if role not in self.derived:
            raise ValueError(f"formula: {self.plan.op} has no {role.replace('_', ' ')} to read")
        return self.derived[role]

    def _offsets(self, name: str) -> list[tuple[int, int]]:
        if name not in self._offset_cache:
            tensor = self.plan.tensors[name]
            self._offset_cache[name] = [(sign, int(sympy.sympify(offset).xreplace(self.values)))
                                        for sign, offset in tensor.maps]
        return self._offset_cache[name]

    def project_index(self, tensor: ClaimTensor, claim_index: Sequence) -> tuple:
        """symcnn's index of ``tensor``'s entry that the claim writes ``claim_index``."""
        full = [0] * len(tensor.canonical)
        for (sign, offset), letter, value in zip(self._offsets(tensor.name), tensor.letters, claim_index):
            full[tensor.canonical.index(letter)] = sign * value + offset
        return tuple(full)

    def read(self, tensor: ClaimTensor, claim_index: Sequence):
        for value in claim_index:
            if not isinstance(value, int):
                raise _ReadOutside(f"reads {tensor.name}{_index_text(claim_index)}, at a non-integer index")
        table = self._table(tensor.role)
        index = self.project_index(tensor, claim_index)
        if table.contains(index):
            return table.entries[index]
        if tensor.zero_outside and _outside_only_spatially(tensor, index, table.shape):
            return sympy.S.Zero
        raise _ReadOutside(f"reads {tensor.name}{_index_text(claim_index)}, outside its shape "
                           f"{_claim_shape(tensor, table.shape)}")

    def axis_range(self, tensor: ClaimTensor, axis: int) -> tuple[int, int]:
        """The claim's indices of ``tensor``'s axis ``axis``, from its size in symcnn's indices."""
        size = self._table(tensor.role).shape[tensor.canonical.index(tensor.letters[axis])]
        sign, offset = self._offsets(tensor.name)[axis]
        ends = [sign * (0 - offset), sign * (size - 1 - offset)]
        return min(ends), max(ends)

    def prepare(self, expr) -> Expr:
        """Where-definitions, parameters and the sizes of ``options.sizes`` substituted, open sum bounds closed."""
        expr = sympy.sympify(expr)
        check_constants(expr, self.sizes)  # before xreplace computes with the parameters' values
        if self.plan.substitutions:
            expr = expr.xreplace(self.plan.substitutions)
        expr = expr.xreplace(self.values)
        expr = _resolve_sizes(expr, self.plan.options.sizes, self.values)
        return self._close_sums(expr)

    def _close_sums(self, expr):
        def close(node):
            limits = []
            for variable, low, high in node.limits:
                if (low, high) == OPEN:
                    low, high = self.variable_range(variable, node.function)
                limits.append((variable, low, high))
            return node.func(self._close_sums(node.function), *limits)

        return expr.replace(lambda node: isinstance(node, sympy.Sum) and any(
            (limit[1], limit[2]) == OPEN for limit in node.limits), close)

    def variable_range(self, variable: Symbol, scope) -> tuple[int, int]:
        if variable in self.plan.ranges:
            return self.plan.ranges[variable]
        found = None
        for node in sympy.sympify(scope).atoms(sympy.Indexed):
            tensor = self.plan.tensors.get(str(node.base.label))
            if tensor is None:
                continue
            for axis, index in enumerate(node.indices):
                if index == variable:
                    low, high = self.axis_range(tensor, axis)
                    found = (low, high) if found is None else (max(found[0], low), min(found[1], high))
        if found is None:
            raise ValueError(f"formula: the range of {variable} is not given and it indexes no tensor on its own; "
                             f"write \\sum_{{{variable}=0}}^{{...}}")
        return found

    # the evaluator: the claim's value at one point, without building the unrolled expression ----------------
    def index(self, expr, env) -> object:
        """An index expression as a Python number (int, or Fraction where it does not divide)."""
        if isinstance(expr, int):
            return expr
        if expr.is_Integer:
            return int(expr)
        if isinstance(expr, Symbol):
            if expr in env:
                return env[expr]
            raise ValueError(f"formula: {expr} has no value here (an index of the left side, a summation "
                             f"index or a parameter)")
        if expr.is_Rational:
            return Fraction(int(expr.p), int(expr.q))
        if isinstance(expr, sympy.Add):
            return _integral(sum(self.index(arg, env) for arg in expr.args))
        if isinstance(expr, sympy.Mul):
            return _integral(math.prod(self.index(arg, env) for arg in expr.args))
        if isinstance(expr, sympy.Pow) and expr.exp.is_Integer:
            base, exponent = self.index(expr.base, env), int(expr.exp)
            check_power(base, exponent)
            return _integral(Fraction(base) ** exponent)
        if isinstance(expr, sympy.floor):
            return math.floor(self.index(expr.args[0], env))
        if isinstance(expr, sympy.ceiling):
            return math.ceil(self.index(expr.args[0], env))
        if isinstance(expr, sympy.Mod):
            return _integral(Fraction(self.index(expr.args[0], env)) % Fraction(self.index(expr.args[1], env)))
        value = self.value(expr, env)
        if value.is_Integer:
            return int(value)
        raise ValueError(f"formula: cannot use {expr} as an index")

    def truth(self, condition, env):
        """A condition: True, False, or a SymPy relation between tensor entries (ReLU's ``S > 0``)."""
        if condition in (sympy.true, True):
            return sympy.true
        if condition in (sympy.false, False):
            return sympy.false
        if isinstance(condition, sympy.And):
            parts = [self.truth(arg, env) for arg in condition.args]
            return sympy.And(*parts)
        if isinstance(condition, sympy.Or):
            return sympy.Or(*[self.truth(arg, env) for arg in condition.args])
        if isinstance(condition, sympy.Not):
            return sympy.Not(self.truth(condition.args[0], env))
        if isinstance(condition, sympy.Rel):
            if not condition.has(sympy.Indexed, IndexedBase):
                left, right = self.index(condition.lhs, env), self.index(condition.rhs, env)
                return sympy.true if _compare(condition, left, right) else sympy.false
            return condition.func(self.value(condition.lhs, env), self.value(condition.rhs, env))
        raise ValueError(f"formula: cannot read {condition} as a condition")

    def value(self, expr, env):
        """The claim's expression at ``env`` (index values): a SymPy expression in the entries."""
        if isinstance(expr, (int, Fraction)):
            return sympy.Rational(expr)
        if expr.is_Number:
            return expr
        if isinstance(expr, Symbol):
            return sympy.Rational(self.index(expr, env))
        if isinstance(expr, sympy.Indexed):
            tensor = self.plan.tensors[expr.base.label.name]
            return self.read(tensor, [self.index(index, env) for index in expr.indices])
        if isinstance(expr, IndexedBase):
            return self.read(self.plan.tensors[expr.label.name], [])
        if isinstance(expr, sympy.Add):
            return sympy.Add(*[self.value(arg, env) for arg in expr.args])
        if isinstance(expr, sympy.Mul):
            # Factors without reads first: an indicator that is 0 spares a read it guards.
            factors = sorted(expr.args, key=_has_reads)
            values = []
            for factor in factors:
                value = self.value(factor, env)
                if value == 0:
                    return sympy.S.Zero
                values.append(value)
            return sympy.Mul(*values)
        if isinstance(expr, sympy.Pow):
            base, exponent = self.value(expr.base, env), self.value(expr.exp, env)
            check_constants(sympy.Pow(base, exponent, evaluate=False))  # before SymPy computes it
            return base ** exponent
        if isinstance(expr, (sympy.Sum, MaxOver)):
            terms = []
            for point in self._points(expr.limits, env):
                terms.append(self.value(expr.function, point))
            if isinstance(expr, MaxOver):
                return WindowMax(*terms)
            return sympy.Add(*terms)
        if isinstance(expr, sympy.Piecewise):
            pieces = []
            for branch, condition in expr.args:
                truth = self.truth(condition, env)
                if truth is sympy.false:
                    continue
                pieces.append((self.value(branch, env), truth))
                if truth is sympy.true:
                    break
            if not pieces:
                return sympy.nan
            if pieces[0][1] is sympy.true:
                return pieces[0][0]
            return sympy.Piecewise(*pieces)
        if isinstance(expr, (sympy.floor, sympy.ceiling, sympy.Mod)):
            return sympy.Rational(self.index(expr, env))
        if isinstance(expr, FirstArgmax):
            concrete = expr.xreplace({symbol: sympy.Integer(value) for symbol, value in env.items()
                                      if isinstance(value, int)})
            window = math.prod(len(self._range(*limit, env)) for limit in concrete.limits if len(limit) == 3)
            self.budget.spend(window * window, self.where)  # each element's routing compares it with the others
            return self.value(unroll(concrete), env)
        if isinstance(expr, _FUNCTIONS) or isinstance(expr, WindowMax):
            args = [self.value(arg, env) for arg in expr.args]
            check_constants(expr.func(*args, evaluate=False))  # exp(10^6) before SymPy computes it
            return expr.func(*args)
        raise ValueError(f"formula: cannot evaluate {type(expr).__name__} {expr}")

    def _points(self, limits, env):
        """Every assignment of the limits' variables, the first varying slowest (row-major)."""
        points = [dict(env)]
        for depth, (variable, low, high) in enumerate(limits, start=1):
            ranges = [self._range(variable, low, high, point) for point in points]
            count = sum(len(values) for values in ranges)  # before the points are made: a sum to 10^9 stops here
            if depth == len(limits):
                self.budget.spend(count, self.where)
            else:
                self.budget.afford(count, self.where)
            points = [{**point, variable: value} for point, values in zip(points, ranges) for value in values]
        return points

    def _range(self, variable, low, high, env) -> range:
        low, high = self.index(low, env), self.index(high, env)
        if not isinstance(low, int) or not isinstance(high, int):
            raise ValueError(f"formula: the bounds of {variable} are not integers here ({low} to {high})")
        return range(low, high + 1)

    # tensor claims --------------------------------------------------------------------------------------------
    def tensor_claim(self, equation: Equation) -> list[Difference]:
        lhs = equation.lhs
        name = str(lhs.label if isinstance(lhs, IndexedBase) else lhs.base.label)
        tensor = self.plan.tensors[name]
        target = self._table(tensor.role)
        value = self.prepare(equation.rhs)
        lhs_indices = () if isinstance(lhs, IndexedBase) else tuple(self.prepare(index) for index in lhs.indices)
        variables = sorted(set().union(*[free_symbols(index) for index in lhs_indices]) if lhs_indices else set(),
                           key=lambda symbol: symbol.name)
        ranges = []
        for variable in variables:
            bare_axes = [axis for axis, index in enumerate(lhs_indices) if index == variable]
            low, high = (self.axis_range(tensor, bare_axes[0]) if bare_axes else self.variable_range(variable, value))
            ranges.append(range(low, high + 1))
        identities = self.derived["identities"]
        self.budget.spend(math.prod(len(values) for values in ranges), self.where)
        differences = []
        for point in itertools.product(*ranges):
            env = dict(zip(variables, point))
            claim_index = [self.index(index, env) for index in lhs_indices]
            entry = f"{name}{_index_text(claim_index)}"
            project = self.project_index(tensor, claim_index)
            if not target.contains(project):
                differences.append(Difference(entry, f"the left side is outside {name}'s shape "
                                                      f"{_claim_shape(tensor, target.shape)}", "-"))
                continue
            derived = target.entries[project]
            try:
                claimed = self.value(value, env)
            except _ReadOutside as outside:
                differences.append(Difference(entry, str(outside), show(derived)))
                continue
            if identities:
                claimed = sympy.sympify(claimed).xreplace(identities)
                derived = sympy.sympify(derived).xreplace(identities)
            check_expansion(sympy.sympify(claimed), f" at {entry}")  # before the comparison expands it
            if not equal(claimed, derived):
                differences.append(Difference(entry, show(claimed), show(derived)))
        return differences


@functools.lru_cache(maxsize=4096)
def _has_reads(expr) -> bool:
    return expr.has(sympy.Indexed, IndexedBase)


def _outside_only_spatially(tensor: ClaimTensor, index, shape) -> bool:
    """Zero padding pads rows and columns: a read past the batch or the channels is still an error."""
    return all(0 <= value < size or tensor.canonical[axis] in "HW"
               for axis, (value, size) in enumerate(zip(index, shape)))


def _integral(value):
    if isinstance(value, Fraction) and value.denominator == 1:
        return int(value)
    return value


def _compare(relation, left, right) -> bool:
    return {sympy.Eq: left == right, sympy.Ne: left != right, sympy.Lt: left < right, sympy.Le: left <= right,
            sympy.Gt: left > right, sympy.Ge: left >= right}[type(relation)]


def _resolve_sizes(expr, sizes: Mapping[int, str], values: Mapping[Symbol, int]):
    """The claim's sum bounds with the numbers of ``sizes`` read as parameters (``4096`` -> ``F_in``)."""
    if not sizes:
        return expr

    def bound(value):
        value = sympy.sympify(value)
        for number, name in sizes.items():
            if value.is_Integer and int(value) == int(number):
                return values.get(Symbol(name), Symbol(name))
        return value

    def rebuild(node):  # upper bounds only: a document's "sum to 4096" is a size
        return node.func(node.function, *[(v, low, bound(high)) for v, low, high in node.limits])

    return expr.replace(lambda node: isinstance(node, sympy.Sum), rebuild)


def _index_text(index) -> str:
    return "[" + ", ".join(str(value) for value in index) + "]" if index else ""


def _claim_shape(tensor: ClaimTensor, shape) -> str:
    sizes = [shape[tensor.canonical.index(letter)] for letter in tensor.letters]
    return "(" + ", ".join(str(size) for size in sizes) + ")"
