"""General gradient formulas in index notation, derived from the forward index formulas.

For an op ``Y[o] = f(X, W, b)[o]`` and a loss ``L``, the gradient with respect to an operand
``T`` is ``dL/dT[t] = sum_o dL/dY[o] * dY[o]/dT[t]``. :func:`derive_gradient` computes it the
way document 000 does by hand, but mechanically and keeping every condition:

1. differentiate ``sum_o dL/dY[o] * Y[o]`` with respect to ``T[t]`` (SymPy's ``diff`` on
   ``Indexed``), which leaves Kronecker deltas ``delta(t, s*i + d*u - p)``;
2. flatten the sums into terms, and eliminate each delta by solving its affine index equation
   for one summation index: ``i = (t + p - d*u) / s``, with the conditions that ``s`` divides
   the numerator and that the solved index stays in its range (``0 <= i <= H_out - 1``);
3. what remains is gather form: each element of the gradient computes its own sum.

Example:
    >>> from symcnn.symbolic import ops
    >>> print(derive_gradient(ops.conv2d(), "bias").equation())
    Eq(dL/db[c_out], Sum(dL/dY[n, c_out, i, j], (n, 0, N - 1), (i, 0, floor((H_in - d_h*(K_h - 1) + 2*p_h - 1)/s_h)), (j, 0, floor((W_in - d_w*(K_w - 1) + 2*p_w - 1)/s_w))))
"""  # noqa: E501  (a doctest's output, as printed)

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass, replace
from typing import Mapping, Optional, Sequence

import sympy
from sympy import And, Eq, Expr, IndexedBase, KroneckerDelta, Mod, Piecewise, S, Sum, Symbol

from symcnn.registry import differentiable, is_input_role
from symcnn.symbolic.display import LatexDisplay
from symcnn.symbolic.functions import Bracket
from symcnn.symbolic.ops import IndexFormula, Tensor

__all__ = ["GatherTerm", "GradientFormula", "derive_gradient", "gradients_of", "sum_terms", "lift_conditions",
           "GRADIENT_NAMES"]

#: The ``IndexedBase`` names of the gradient tensors, by the role of the tensor they belong to.
GRADIENT_NAMES = {"input": "dL/dX", "weight": "dL/dW", "bias": "dL/db", "output": "dL/dY"}

# Fallback index names for the gradient's free indices, by rank (document 000 writes k, l).
_FALLBACK_INDICES = {1: ("c_out",), 2: ("n", "k"), 4: ("n", "c", "k", "l")}


def _index_symbol(name: str) -> Symbol:
    return Symbol(name, integer=True, nonnegative=True)


@dataclass(frozen=True)
class GatherTerm:
    """``sum_{limits} [conditions] * body``: one term of a gradient, in gather form."""

    limits: tuple[tuple[Symbol, Expr, Expr], ...]
    conditions: tuple[sympy.Basic, ...]
    body: Expr

    def expr(self) -> Expr:
        body = self.body
        if self.conditions:
            condition = self.conditions[0] if len(self.conditions) == 1 else And(*self.conditions, evaluate=False)
            body = Piecewise((body, condition), (S.Zero, True), evaluate=False)
        return Sum(body, *self.limits) if self.limits else body

    def substitute(self, values: Mapping[Expr, Expr]) -> "GatherTerm":
        limits = tuple((var, low.xreplace(values), high.xreplace(values)) for var, low, high in self.limits)
        conditions = tuple(condition.xreplace(values) for condition in self.conditions)
        return _tidied(GatherTerm(limits, conditions, self.body.xreplace(values)))


@dataclass(frozen=True)
class GradientFormula(LatexDisplay):
    """``dL/dT[indices] = sum of terms``: the gradient of ``forward`` with respect to ``wrt``.

    ``gradient`` is the gradient tensor (role ``grad_input``, ``grad_weight`` or ``grad_bias``),
    ``grad_output`` the upstream gradient ``dL/dY`` (``None`` when the op is itself the loss).
    """

    forward: IndexFormula
    wrt: str
    gradient: Tensor
    indices: tuple[Symbol, ...]
    terms: tuple[GatherTerm, ...]
    grad_output: Optional[Tensor]
    notes: tuple[str, ...] = ()

    @property
    def rhs(self) -> Expr:
        return sympy.Add(*[term.expr() for term in self.terms])

    def equation(self) -> Eq:
        return Eq(self.gradient.base[self.indices], self.rhs, evaluate=False)

    @property
    def conditions(self) -> tuple[sympy.Basic, ...]:
        return tuple(condition for term in self.terms for condition in term.conditions)

    @property
    def operands(self) -> tuple[Tensor, ...]:
        upstream = (self.grad_output,) if self.grad_output is not None else ()
        return upstream + self.forward.operands

    def as_index_formula(self) -> IndexFormula:
        """The gradient as an :class:`IndexFormula`, to expand at small shapes like any op."""
        return IndexFormula(
            op=f"{self.forward.op} {self.gradient.role}",
            output=self.gradient,
            indices=self.indices,
            rhs=self.rhs,
            operands=self.operands,
            parameters=self.forward.parameters,
        )

    def substitute(self, values: Mapping[Expr, Expr]) -> "GradientFormula":
        """Specialize shape parameters (``{s_h: 1}``) and simplify what becomes trivial."""
        values = {sympy.sympify(key): sympy.sympify(value) for key, value in values.items()}

        def sub_tensor(tensor: Optional[Tensor]) -> Optional[Tensor]:
            if tensor is None:
                return None
            return replace(tensor, shape=tuple(sympy.sympify(dim).xreplace(values) for dim in tensor.shape))

        terms = tuple(term.substitute(values) for term in self.terms)
        return replace(
            self,
            forward=self.forward.substitute(values),
            gradient=sub_tensor(self.gradient),
            grad_output=sub_tensor(self.grad_output),
            terms=tuple(term for term in terms if term.body != 0),
        )


# --- step 2: flatten nested sums into terms ---------------------------------------------------


def _fresh(variable: Symbol, taken: set) -> Symbol:
    for prime in itertools.count(1):
        candidate = Symbol(variable.name + "'" * prime, **variable.assumptions0)
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable")


def _pull_deltas_out_of_piecewise(piecewise: Piecewise) -> Expr:
    """``Piecewise((delta*a, c), (delta*b, True))`` -> ``delta * Piecewise((a, c), (b, True))``."""
    branches = [(expr, cond) for expr, cond in piecewise.args]
    delta_sets = [
        {factor for factor in sympy.Mul.make_args(expr) if isinstance(factor, KroneckerDelta)}
        for expr, _ in branches
        if expr != 0
    ]
    common = set.intersection(*delta_sets) if delta_sets else set()
    if not common:
        return piecewise
    stripped = [(expr / sympy.Mul(*common) if expr != 0 else expr, cond) for expr, cond in branches]
    return sympy.Mul(*common) * Piecewise(*stripped)


def sum_terms(expr: Expr, taken: set) -> list[tuple[list, Expr]]:
    """``expr`` as a list of ``(limits, summand)`` with every outer ``Sum`` flattened.

    A ``Sum`` inside a non-polynomial function (``1/sum exp``, ``log sum``) stays whole.
    Bound variables are renamed where two sums of one product would share a name.
    """
    if isinstance(expr, sympy.Add):
        return [term for arg in expr.args for term in sum_terms(arg, taken)]
    if isinstance(expr, Sum):
        limits, function = [], expr.function
        for variable, low, high in expr.limits:
            if variable in taken:
                fresh = _fresh(variable, taken | expr.free_symbols | function.free_symbols)
                function = function.xreplace({variable: fresh})
                variable = fresh
            taken.add(variable)
            limits.append((variable, low, high))
        return [(limits + inner_limits, summand) for inner_limits, summand in sum_terms(function, taken)]
    if isinstance(expr, sympy.Mul):
        combined = [([], S.One)]
        for factor in expr.args:
            factor_terms = sum_terms(factor, taken)
            combined = [(l1 + l2, s1 * s2) for l1, s1 in combined for l2, s2 in factor_terms]
        return combined
    if isinstance(expr, Piecewise):
        pulled = _pull_deltas_out_of_piecewise(expr)
        if pulled is not expr:
            return sum_terms(pulled, taken)
    return [([], expr)]


# --- step 3: eliminate the Kronecker deltas ---------------------------------------------------


def _solve_delta(equation: Expr, candidates: Sequence[Symbol]):
    """``(variable, value, divisibility condition or None)`` solving ``equation = 0``.

    A coefficient ``1/s`` (a transposed convolution reads ``X[(i + p - d*u)/s]``) is cleared:
    ``k = (i + p - d*u)/s`` gives ``i = s*k - p + d*u``, an index for every ``k``, with no condition.
    """
    equation = sympy.expand(equation)
    for variable in candidates:
        coefficient = equation.coeff(variable)
        if coefficient == 0 or (equation - coefficient * variable).has(variable):
            continue  # not affine in this variable
        rest = sympy.expand(equation - coefficient * variable)
        unit, divisor = sympy.fraction(coefficient)
        if divisor != 1 and unit in (1, -1):
            coefficient, rest = unit, sympy.expand(rest * divisor)
        numerator, denominator = -rest, coefficient
        if denominator.could_extract_minus_sign():
            numerator, denominator = rest, -coefficient
        divisible = None if denominator == 1 else Eq(Mod(numerator, denominator), 0)
        return variable, numerator / denominator, divisible
    return None


def _digit(expr: Expr, variable: Symbol):
    """``(place value, radix)`` when ``expr`` is a digit of ``variable`` in a mixed radix.

    ``Mod(v, R)`` is ``(1, R)``; ``Mod(floor(v/P), R)`` is ``(P, R)``; ``floor(v/P)`` is ``(P, None)``.
    """
    radix = None
    if isinstance(expr, Mod):
        expr, radix = expr.args
    if expr == variable:
        return S.One, radix
    if isinstance(expr, sympy.floor):
        quotient = expr.args[0]
        place = sympy.simplify(variable / quotient)
        if quotient.has(variable) and not place.has(variable):
            return place, radix
    return None


def _solve_mixed_radix(deltas: list, bound: list):
    """Solve the deltas of a flatten: ``t_m = digit_m(v)`` for one bound ``v`` -> ``v = sum t_m P_m``.

    Returns ``(variable, value, deltas used)`` when the digits of ``v`` form a complete mixed
    radix (place values 1, R_1, R_1*R_2, ...); then the digits' own ranges imply ``v``'s.
    """
    for variable in bound:
        digits = []
        for delta in deltas:
            for free, digit_expr in (delta.args, reversed(delta.args)):
                digit = _digit(digit_expr, variable) if not free.has(variable) else None
                if digit is not None:
                    digits.append((digit, free, delta))
                    break
        if len(digits) < 2:
            continue
        # Walk the places up from 1: each digit's place is the previous place times its radix.
        chain, place, remaining = [], S.One, list(digits)
        while remaining:
            found = next((d for d in remaining if sympy.simplify(d[0][0] - place) == 0), None)
            if found is None:
                break
            chain.append(found)
            remaining.remove(found)
            radix = found[0][1]
            if radix is None:
                break
            place = place * radix
        if not remaining and chain and chain[-1][0][1] is None:
            value = sympy.Add(*[free * digit_place for (digit_place, _), free, _ in chain])
            return variable, value, [delta for _, _, delta in chain]
    return None


def lift_conditions(summand: Expr) -> tuple[tuple[sympy.Basic, ...], Expr]:
    """``(conditions, body)``: a summand's :class:`~symcnn.symbolic.functions.Bracket` factors (the
    conditions on indices a formula states where it reads a tensor, as a transposed convolution
    does) as conditions of its term, and the rest of it. The elimination of the Kronecker deltas
    then solves them along with its own; a kernel tests them.

    >>> from symcnn.symbolic import ops
    >>> lift_conditions(Bracket(ops.i < ops.K_h) * ops.X[ops.i])
    ((i < K_h,), X[i])
    """
    brackets = [factor for factor in sympy.Mul.make_args(summand) if isinstance(factor, Bracket)]
    if not brackets:
        return (), summand
    conditions = tuple(condition for bracket in brackets for condition in bracket.conditions)
    return conditions, sympy.Mul(*[factor for factor in sympy.Mul.make_args(summand) if factor not in brackets])


def _eliminate(limits: list, summand: Expr, preferred: Sequence[Symbol]) -> GatherTerm:
    lifted, summand = lift_conditions(summand)
    conditions: list = list(lifted)
    limits = list(limits)
    factors = sympy.Mul.make_args(summand)
    deltas = [f for f in factors if isinstance(f, KroneckerDelta)]
    radix = _solve_mixed_radix(deltas, [limit[0] for limit in limits])
    if radix is not None:  # a flatten's index map: invert it whole
        variable, value, used = radix
        summand = sympy.Mul(*[f for f in factors if f not in used]).subs(variable, value)
        limits = [limit for limit in limits if limit[0] != variable]
    while True:
        factors = sympy.Mul.make_args(summand)
        delta = next((f for f in factors if isinstance(f, KroneckerDelta)), None)
        if delta is None:
            break
        summand = sympy.Mul(*[f for f in factors if f is not delta])
        equation = delta.args[0] - delta.args[1]
        bound = [limit[0] for limit in limits if equation.has(limit[0])]
        # Solve for an output index of the forward where one appears: what remains is then a
        # sum over the (short) kernel window, document 000's form.
        ordered = [v for v in bound if v in preferred] + [v for v in bound if v not in preferred]
        solution = _solve_delta(equation, ordered)
        if solution is None:
            conditions.append(Eq(delta.args[0], delta.args[1]))
            continue
        variable, value, divisible = solution
        low, high = next((lo, hi) for var, lo, hi in limits if var == variable)
        limits = [(var, lo.subs(variable, value), hi.subs(variable, value))
                  for var, lo, hi in limits if var != variable]
        conditions = [condition.subs(variable, value) for condition in conditions]
        if divisible is not None:
            conditions.append(divisible)
        conditions += [sympy.Le(low, value), sympy.Le(value, high)]
        summand = summand.subs(variable, value)
    return GatherTerm(tuple(limits), tuple(conditions), summand)


def _tidy(term: GatherTerm, index_ranges: Mapping[Symbol, tuple[Expr, Expr]]) -> GatherTerm:
    """Drop conditions that always hold, and sums over a single value."""
    limits, body, conditions = list(term.limits), term.body, list(term.conditions)
    for variable, low, high in list(limits):
        if sympy.simplify(high - low) == 0:  # a one-value sum (global pooling's 1x1 output)
            limits.remove((variable, low, high))
            body = body.subs(variable, low)
            conditions = [condition.subs(variable, low) for condition in conditions]
    kept = []
    for condition in conditions:
        condition = condition.simplify() if isinstance(condition, sympy.Rel) and condition.has(Mod) else condition
        if condition is sympy.true or _implied_by_range(condition, index_ranges):
            continue
        if condition is sympy.false:
            return GatherTerm((), (), S.Zero)
        if condition not in kept:
            kept.append(condition)
    return GatherTerm(tuple(limits), tuple(kept), body)


@functools.lru_cache(maxsize=4096)
def _tidied(term: GatherTerm) -> GatherTerm:
    """:func:`_tidy` without index ranges, once per term: a layer's lowering substitutes its shapes into the same
    gradient for each kernel that reads it, and for each vector width."""
    return _tidy(term, {})


def _implied_by_range(condition, index_ranges: Mapping[Symbol, tuple[Expr, Expr]]) -> bool:
    """``small <= large`` that every index in its range satisfies: ``0 <= k`` or ``k <= H_in - 1`` for a
    free index ``k`` whose own range says as much, or a concatenation's ``c <= C_1 + C_2 - 1`` for
    ``c <= C_1 - 1``. The difference ``large - small`` is linear in each index with a numeric slope, so
    its least value over the ranges is at one end of each; the condition holds where that value is
    nonnegative by the symbols' assumptions (sizes positive)."""
    if not isinstance(condition, (sympy.LessThan, sympy.GreaterThan)):
        return False
    lower_first = isinstance(condition, sympy.LessThan)
    small, large = (condition.lhs, condition.rhs) if lower_first else (condition.rhs, condition.lhs)
    difference = sympy.expand(large - small)
    for index in difference.free_symbols & set(index_ranges):
        slope = difference.diff(index)
        if not slope.is_number:
            return False
        low, high = index_ranges[index]
        difference = sympy.expand(difference.subs(index, high if slope < 0 else low))
    return difference.is_nonnegative is True


def _apply_identities(term: GatherTerm, identities) -> GatherTerm:
    """Replace ``sum_v T[.., v]`` by its known value (one-hot targets: 1), where a term has it.

    The identity's other indices match anything (``sum_j T[n, j] = 1`` for every ``n``).
    """
    for total, value in identities:
        (variable, low, high), = total.limits
        others = total.function.free_symbols - {variable} - total.function.atoms(IndexedBase)
        others = {symbol for symbol in others if isinstance(symbol, Symbol)}
        wilds = {symbol: sympy.Wild(f"w_{symbol.name}") for symbol in others}
        for limit in term.limits:
            if (limit[1], limit[2]) != (low, high) or any(c.has(limit[0]) for c in term.conditions):
                continue
            pattern = total.function.xreplace({variable: limit[0], **wilds})
            coefficient, dependent = term.body.as_independent(limit[0], as_Add=False)
            if dependent.match(pattern) is not None:
                limits = tuple(other for other in term.limits if other != limit)
                return GatherTerm(limits, term.conditions, coefficient * value)
    return term


# --- the derivation ------------------------------------------------------------------------------


def _rename_captured(term: GatherTerm) -> GatherTerm:
    """Rename a summation index that a reduction kept whole in the body also binds.

    Batch normalization's gradient sums over ``r`` beside the variance ``sum_r (X[r] - mu)^2``
    that it leaves inside a square root: substituting a value for the outer ``r`` (expanding the
    sum) must not reach the inner one.
    """
    inner = {limit[0] for node in term.body.atoms(Sum) for limit in node.limits}
    clashing = [limit[0] for limit in term.limits if limit[0] in inner]
    if not clashing:
        return term
    taken = inner | {limit[0] for limit in term.limits} | term.body.free_symbols
    renaming = {}
    for variable in clashing:
        renaming[variable] = _fresh(variable, taken)
        taken.add(renaming[variable])
    body = term.body
    kept = {node: sympy.Dummy() for node in body.atoms(Sum)}
    body = body.xreplace(kept).xreplace(renaming).xreplace({dummy: node for node, dummy in kept.items()})
    limits = tuple((renaming.get(var, var), low, high) for var, low, high in term.limits)
    conditions = tuple(condition.xreplace(renaming) for condition in term.conditions)
    return GatherTerm(limits, conditions, body)


def _nice_indices(forward: IndexFormula, target: Tensor, taken: set) -> tuple[Symbol, ...]:
    """Free-index names for ``dL/dT``: the forward's own where it reads ``T`` at bare indices.

    Of several reads, the one indexed most by the forward's output indices wins (softmax reads
    ``X[n, i]`` and, inside its normalizing sum, ``X[n, j]``: the gradient is indexed ``n, i``).
    """
    reads = sorted(
        (node for node in forward.rhs.atoms(sympy.Indexed) if node.base == target.base),
        key=lambda node: (-sum(index in forward.indices for index in node.indices), sympy.default_sort_key(node)),
    )
    read = reads[0] if reads else None
    fallback = _FALLBACK_INDICES.get(len(target.shape), tuple(f"t{m}" for m in range(len(target.shape))))
    names = []
    for axis in range(len(target.shape)):
        index = read.indices[axis] if read is not None else None
        symbol = index if isinstance(index, Symbol) else _index_symbol(fallback[axis])
        while symbol in taken or symbol in names:
            symbol = _fresh(symbol, taken | set(names))
        names.append(symbol)
    return tuple(names)


def derive_gradient(forward: IndexFormula, wrt: str, identities: Optional[Sequence] = None) -> GradientFormula:
    """The gradient of ``forward`` with respect to its operand ``wrt``, derived in gather form.

    ``identities`` are facts of the inputs used to simplify, as ``(Sum, value)`` pairs (the
    loss uses ``sum_i T[n, i] = 1`` for one-hot targets).

    It reads only the formula's equation, tensors and identities: each distinct one is derived once per
    process (a network's convolutions share one general formula) and returned with the caller's ``forward``.
    """
    identities = tuple(forward.identities if identities is None else identities)
    derived = _derived(forward.op, forward.output, forward.indices, forward.rhs, forward.operands, wrt, identities)
    return replace(derived, forward=forward)


@functools.lru_cache(maxsize=512)
def _derived(op: str, output: Tensor, indices: tuple, rhs: Expr, operands: tuple, wrt: str,
             identities: tuple) -> GradientFormula:
    forward = IndexFormula(op, output, indices, rhs, operands, identities=identities)
    return _derive(forward, wrt, identities)


def _derive(forward: IndexFormula, wrt: str, identities: tuple) -> GradientFormula:
    target = forward.operand(wrt)
    placeholders = tuple(_index_symbol(f"_t{axis}") for axis in range(len(target.shape)))
    if forward.output.shape:
        grad_output = Tensor("grad_output", IndexedBase(GRADIENT_NAMES["output"]), forward.output.shape)
        limits = [(index, 0, size - 1) for index, size in zip(forward.indices, forward.output.shape)]
        scalar = Sum(grad_output.base[forward.indices] * forward.rhs, *limits)
    else:
        grad_output, scalar = None, forward.rhs
    derivative = sympy.diff(scalar, target.base[placeholders])
    ranges = {index: (S.Zero, size - 1) for index, size in zip(placeholders, target.shape)}
    taken = set(placeholders)
    terms = []
    for limits, summand in sum_terms(derivative, taken):
        term = _tidy(_eliminate(limits, summand, forward.indices), ranges)
        term = _rename_captured(_apply_identities(term, identities))
        if term.body != 0:
            terms.append(term)
    bound = {limit[0] for term in terms for limit in term.limits}
    for term in terms:  # and the variables of sums kept whole (softmax's normalizer)
        bound |= {limit[0] for node in term.body.atoms(Sum) for limit in node.limits}
    nice = _nice_indices(forward, target, bound)
    renaming = dict(zip(placeholders, nice))
    terms = [
        GatherTerm(
            tuple((var, low.xreplace(renaming), high.xreplace(renaming)) for var, low, high in term.limits),
            tuple(condition.xreplace(renaming) for condition in term.conditions),
            term.body.xreplace(renaming),
        )
        for term in terms
    ]
    several = sum(is_input_role(tensor.role) for tensor in forward.operands) > 1  # X1, X2: dL/dX1, dL/dX2
    name = f"dL/d{target.name}" if several else GRADIENT_NAMES.get(wrt, f"dL/d{target.name}")
    gradient = Tensor(f"grad_{wrt}", IndexedBase(name), target.shape)
    return GradientFormula(forward, wrt, gradient, nice, tuple(terms), grad_output)


def gradients_of(forward: IndexFormula) -> dict[str, GradientFormula]:
    """Every gradient of ``forward`` with respect to its differentiable operands, by role."""
    roles = [tensor.role for tensor in forward.operands if differentiable(tensor.role)]
    return {role: derive_gradient(forward, role, forward.identities) for role in roles}
