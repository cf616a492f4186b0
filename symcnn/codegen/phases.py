"""Strided gathers by phase: a formula's divisibility conditions rewritten away before scheduling.

A strided convolution's input gradient (and the transposed convolution, its adjoint) is a gather
whose reads are valid only where the stride divides an index:
``dL/dX[n, c, k, l] = sum_{c_out, u, v} [s | k + p - d*u and ...] W[c_out, c, u, v] * dL/dY[n, c_out, (k + p - d*u)/s, ...]``.
Lowered as written, every output element tests every tap, three tests in four fail at stride 2,
and the branches keep the loops scalar. Three exact rewrites of the sum's terms take the tests
out, keyed on no op (every value is still the formula's, substituted):

- **phases**: an output index with a unit coefficient in a condition is split by its residue
  modulo the divisor, ``k = s*q_k + r``. In phase ``r`` the condition no longer depends on the
  output (``s | r + p - d*u``), and the phase is a kernel of its own over a strided view of the
  output, ``grad_input_p1 = grad_input[:, :, 1::2, :]``, indexed by ``q_k``;
- **taps**: a condition on one summation index alone holds on an arithmetic progression of its
  values, ``u = u_0 + m*t_u`` (none: the term vanishes in that phase); a read at exactly
  ``u_0 + m*t_u`` becomes a read of a strided view at ``t_u`` (``weight[:, :, 1::2, :]``), and the
  quotient ``(r + p - d*u)/s`` is now affine in ``t_u`` with integer coefficients;
- **quotients**: a condition whose widest unit-coefficient index is a summation index (a transposed
  convolution's weight gradient sums over output rows ``i`` with ``s | i + p - d*u``) sums over the
  quotient instead, ``i = s*q_i - p + d*u``; ``i``'s range becomes a bound of the read it indexes.

The index a condition is solved for is the one of widest range among those with a unit
coefficient: the position (which runs over a map), not the tap (which runs over a kernel). What is
left of each phase is a plain correlation whose conditions are the bounds of its reads (those that
hold everywhere dropped): the lanes schedule takes it (a zero-padded copy makes them reads of zeros)
or any other schedule does. :func:`split_phases` returns ``None`` for terms without divisibility
conditions, or with one it does not solve (then the kernel keeps its tests, unchanged), or when no
phase has a sum left to run: an element-wise gather (a 2x2 pool's gradient at stride 2) saves
only its tests by phases, and reads its operands once per phase and writes each output line in
several passes (measured on seed004's max-pool gradient: 0.23 ms with its tests, 0.70 ms in phases);
:mod:`symcnn.codegen.taps` takes its tests out instead, one tap per element.

Example (a 1-D strided gather: input gradient of a stride-2 convolution with 3 taps and padding 1):
    >>> from sympy import Eq, IndexedBase, Le, Mod
    >>> from symcnn.symbolic.ops import Tensor
    >>> W, G = IndexedBase("W"), IndexedBase("G")
    >>> k, u = (Symbol(name, integer=True, nonnegative=True) for name in "ku")
    >>> term = GatherTerm(((u, 0, 2),), (Eq(Mod(k + 1 - u, 2), 0), Le(0, (k + 1 - u)/2), Le((k + 1 - u)/2, 3)),
    ...                   W[u] * G[(k + 1 - u)/2])
    >>> tensors = (Tensor("weight", W, (3,)), Tensor("grad_output", G, (4,)))
    >>> split = split_phases({W: "weight", G: "grad_output"}, (k,), (sympy.Integer(8),), [term], tensors, "out")
    >>> [(phase.output, phase.shape, [(t.limits, t.conditions, t.body) for t in phase.terms]) for phase in split.phases]
    [('out_p0', (4,), [(((t_u, 0, 0),), (), G[q_k - t_u]*weight_p0[t_u])]), ('out_p1', (4,), [(((t_u, 0, 1),), (q_k - t_u + 1 <= 3,), G[q_k - t_u + 1]*weight_p1[t_u])])]
    >>> [view.printed() for view in split.views]
    ['out[0::2]', 'weight[1::2]', 'out[1::2]', 'weight[0::2]']
"""  # noqa: E501  (a doctest's output, as printed)

from __future__ import annotations

import itertools
import math
from typing import Mapping, NamedTuple, Optional

import sympy
from sympy import Expr, Indexed, IndexedBase, Symbol

from symcnn.codegen.kernel_ir import Kernel
from symcnn.printing.nodes import divisibility
from symcnn.symbolic.adjoint import GatherTerm
from symcnn.symbolic.ops import Tensor

__all__ = ["View", "Phase", "PhaseSplit", "split_phases", "without_single_loops", "shared_loops"]


class View(NamedTuple):
    """``name = source[slices]``: a strided view of a kernel argument (or of another view)."""

    name: str
    base: IndexedBase  # how the phase's terms read it
    source: str
    slices: tuple[Optional[tuple[int, int]], ...]  # per axis: (first, step), or None for the whole axis
    shape: tuple[Expr, ...]

    def printed(self) -> str:
        pieces = (f"{piece[0]}::{piece[1]}" if piece else ":" for piece in self.slices)
        return f"{self.source}[{', '.join(pieces)}]"


class Phase(NamedTuple):
    """One phase: ``output[indices] = sum of terms``, with no divisibility condition left. ``output``
    is a view of the kernel's output (its elements of these residues), or the output itself."""

    output: str
    indices: tuple[Symbol, ...]
    shape: tuple[Expr, ...]
    terms: tuple[GatherTerm, ...]
    tensors: tuple[Tensor, ...]  # the kernel's tensors and the views the terms read


class PhaseSplit(NamedTuple):
    """The phases of a kernel, and the views they read and write, in the order they are defined."""

    phases: tuple[Phase, ...]
    views: tuple[View, ...]


class _Unsolved(Exception):
    """A divisibility condition none of the rewrites solves: the kernel keeps its tests."""


class _Views:
    """The views a kernel's phases define, in order, with the arrays' printed names."""

    def __init__(self, names: Mapping[IndexedBase, str], tensors):
        self.names = dict(names)
        self.tensors = {self.names[tensor.base]: tensor for tensor in tensors if tensor.base in self.names}
        self.made: list[View] = []

    def make(self, name: str, source: str, slices, shape) -> View:
        """The view ``source[slices]`` named ``name`` (made unique), or the same one made before."""
        slices = tuple(slices)
        for view in self.made:
            if (view.source, view.slices) == (source, slices) and view.name.startswith(name):
                return view
        while name in self.names.values():
            name += "_"
        view = View(name, IndexedBase(name), source, slices, tuple(shape))
        self.made.append(view)
        self.names[view.base] = name
        return view

    def operand(self, source: str, slices, label: str) -> Optional[View]:
        """A view of the operand printed ``source`` (``None``: not an operand of the kernel)."""
        tensor = self.tensors.get(source)
        if tensor is None:
            return None
        shape = [size if piece is None else sympy.Integer(_extent(size, piece[1], piece[0]))
                 for piece, size in zip(slices, tensor.shape)]
        return self.make(f"{source}_p{label}" if label else f"{source}_taps", source, slices, shape)

    def as_tensors(self) -> tuple[Tensor, ...]:
        """The operand views as tensors (shapes for the schedules; never zero-padded)."""
        return tuple(Tensor(self.tensors[view.source].role, view.base, view.shape)
                     for view in self.made if view.source in self.tensors)


def split_phases(names: Mapping[IndexedBase, str], indices, shape, terms, tensors,
                 output: str) -> Optional[PhaseSplit]:
    """The kernel ``output[indices] = sum of terms`` as phases without divisibility conditions (see
    the module's docstring), or ``None``: no such condition, or one not solved. ``names`` prints
    each tensor's array (views are named after it)."""
    if not any(divisibility(condition) for term in terms for condition in term.conditions):
        return None
    views = _Views(names, tensors)
    terms = [GatherTerm(tuple((var, sympy.sympify(low), sympy.sympify(high)) for var, low, high in term.limits),
                        term.conditions, term.body) for term in terms]
    try:
        phases = _phases(views, output, tuple(indices), tuple(sympy.sympify(size) for size in shape), terms, "")
    except _Unsolved:
        return None
    if (len(phases) > 1 or phases[0].output != output) and not any(
            high != low for phase in phases for term in phase.terms for _, low, high in term.limits):
        return None  # element-wise phases (a 2x2 pool's gradient): see the module's docstring
    every = views.as_tensors()
    return PhaseSplit(tuple(phase._replace(tensors=tuple(tensors) + every) for phase in phases), tuple(views.made))


def _phases(views: _Views, output: str, indices, shape, terms, label: str) -> list[Phase]:
    """The phases of ``output[indices] = sum of terms``: the terms resolved, then, where a condition
    names an output index, the phases of each residue of it (and of those, recursively)."""
    ranges = {index: (0, int(size) - 1) for index, size in zip(indices, shape) if size.is_Integer}
    resolved, divisors = [], {}
    for term in terms:
        term = _resolve(term, ranges)
        if term is None:
            continue  # no value of its taps passes its conditions
        resolved.append(term)
        for condition in term.conditions:
            if divisibility(condition):
                index, divisor = _output_split(condition, indices, ranges, term)
                divisors[index] = math.lcm(divisors.get(index, 1), divisor)
    if not divisors:
        terms = tuple(_single_loops_first(_read_views(views, term, label)) for term in resolved)
        return [Phase(output, indices, shape, terms, ())]
    split = [index for index in indices if index in divisors]
    phases = []
    for residues in itertools.product(*(range(divisors[index]) for index in split)):
        at = dict(zip(split, residues))
        extents = {index: _extent(size, divisors[index], at[index])
                   for index, size in zip(indices, shape) if index in at}
        if 0 in extents.values():
            continue  # an axis shorter than the divisor: no element has this residue
        quotients = {index: Symbol(f"q_{index.name}", integer=True, nonnegative=True) for index in split}
        local = ("" if max(residues) < 10 else "_").join(str(residue) for residue in residues)
        phase_label = label + local
        phase_shape = tuple(sympy.Integer(extents[index]) if index in at else size
                            for index, size in zip(indices, shape))
        view = views.make(f"{output}_p{local}", output,
                          [(at[index], divisors[index]) if index in at else None for index in indices], phase_shape)
        values = {index: divisors[index] * quotients[index] + at[index] for index in split}
        phases += _phases(views, view.name, tuple(quotients.get(index, index) for index in indices), phase_shape,
                          [_substitute(term, values) for term in resolved], phase_label + "_")
    return phases


def _single_loops_first(term: GatherTerm) -> GatherTerm:
    """``term`` with its sums over one value (a phase's single tap) outermost: the same sum in the
    same order, and the innermost loop, the one a schedule unrolls, one that runs."""
    single = [limit for limit in term.limits if limit[1] == limit[2]]
    return GatherTerm(tuple(single) + tuple(limit for limit in term.limits if limit not in single),
                      term.conditions, term.body)


def without_single_loops(term: GatherTerm) -> GatherTerm:
    """``term`` with each sum over one value (a phase's single tap) replaced by that value. The
    lanes schedule wants the loop (its streamed read indexed by loop variables); the others do not."""
    single = {var: low for var, low, high in term.limits if low == high}
    if not single:
        return term
    kept = GatherTerm(tuple(limit for limit in term.limits if limit[0] not in single), term.conditions, term.body)
    return _substitute(kept, single)


def _extent(size, divisor: int, residue: int) -> int:
    """How many of ``0 .. size - 1`` leave ``residue`` modulo ``divisor``."""
    size = sympy.sympify(size)
    if not size.is_Integer:
        raise _Unsolved(f"a phase of an axis of symbolic size {size}")
    return len(range(residue, int(size), divisor))


# --- one term's conditions -------------------------------------------------------------------------


def _resolve(term: GatherTerm, ranges) -> Optional[GatherTerm]:
    """``term`` with every divisibility condition that a summation index solves rewritten away (taps
    or quotients); ``None`` when no value passes. The conditions left name an output index."""
    term = _drop_implied(term, ranges)
    while term is not None:
        summed = {limit[0] for limit in term.limits}
        for condition in term.conditions:
            found = divisibility(condition)
            if not found:
                continue
            numerator, divisor = found
            if not (divisor.is_Integer and divisor > 1):
                raise _Unsolved(f"a divisor {divisor}")
            symbols = numerator.free_symbols
            if len(symbols) == 1 and symbols <= summed:
                term = _taps(term, condition, symbols.pop())
                break
            variable = _solved_for(numerator, {**ranges, **_limit_ranges(term)})
            if variable in summed:
                term = _quotient(term, condition, variable, int(divisor), ranges)
                break
        else:
            return term
        term = _drop_implied(term, ranges) if term is not None else None
    return None


def _output_split(condition, indices, ranges, term) -> tuple[Symbol, int]:
    """The output index a condition left by :func:`_resolve` is split by, and the divisor."""
    numerator, divisor = divisibility(condition)
    variable = _solved_for(numerator, {**ranges, **_limit_ranges(term)})
    if variable not in indices:
        raise _Unsolved(f"no index with a unit coefficient in {condition}")
    return variable, int(divisor)


def _solved_for(numerator: Expr, ranges) -> Optional[Symbol]:
    """Of the indices with coefficient +-1 in ``numerator`` (affine), the one of widest range."""
    numerator = sympy.expand(numerator)
    candidates = [symbol for symbol in numerator.free_symbols if symbol in ranges and numerator.coeff(symbol) in (1, -1)
                  and not (numerator - numerator.coeff(symbol) * symbol).has(symbol)]
    if not candidates:
        return None
    # the widest; of equals, an output index (the phases), then by name: deterministic
    return max(candidates, key=lambda s: (ranges[s][1] - ranges[s][0], s.name))


def _limit_ranges(term: GatherTerm) -> dict:
    return {var: (int(low), int(high)) for var, low, high in term.limits if low.is_Integer and high.is_Integer}


def _taps(term: GatherTerm, condition, variable: Symbol) -> Optional[GatherTerm]:
    """``variable``'s values that pass ``condition`` as ``variable = first + step*t``, ``t`` from 0."""
    low, high = next((low, high) for var, low, high in term.limits if var == variable)
    if not (low.is_Integer and high.is_Integer):
        raise _Unsolved(f"the taps of {variable} between {low} and {high}")
    passing = []
    for value in range(int(low), int(high) + 1):
        holds = condition.subs(variable, value)
        if holds not in (sympy.true, sympy.false):
            raise _Unsolved(f"{condition} at {variable} = {value}")
        if holds:
            passing.append(value)
    if not passing:
        return None
    # a*u = b (mod s) holds every s/gcd(a, s) values of u: the step, also of a single value, so
    # that the quotient (a*u - b)/s stays integer in t
    numerator, divisor = divisibility(condition)
    coefficient = sympy.expand(numerator).coeff(variable)
    if not coefficient.is_Integer:
        raise _Unsolved(f"{condition} is not affine in {variable}")
    step = int(divisor) // math.gcd(int(coefficient), int(divisor))
    if passing != list(range(passing[0], passing[-1] + 1, step)):
        raise _Unsolved(f"the taps of {condition} are not evenly spaced")
    tap = _fresh(f"t_{variable.name}", term)
    limits = tuple((tap, sympy.S.Zero, sympy.Integer(len(passing) - 1)) if var == variable else (var, low, high)
                   for var, low, high in term.limits)
    kept = GatherTerm(limits, tuple(c for c in term.conditions if c != condition), term.body)
    return _substitute(kept, {variable: passing[0] + step * tap}, limits_too=False)


def _quotient(term: GatherTerm, condition, variable: Symbol, divisor: int, ranges) -> GatherTerm:
    """The sum over ``variable`` as a sum over the quotient ``q`` of ``condition``'s numerator by
    ``divisor``: ``variable = +-(divisor*q - rest)``; its old range becomes two conditions."""
    numerator = sympy.expand(divisibility(condition)[0])
    sign = numerator.coeff(variable)
    span = _span(numerator, {**ranges, **_limit_ranges(term)})
    if span is None:
        raise _Unsolved(f"the range of {numerator}")
    first, last = -(-span[0] // divisor), span[1] // divisor
    # no sign assumed while its range is found (a nonnegative symbol would decide 0 <= q as true)
    signed = Symbol(_fresh(f"q_{variable.name}", term).name, integer=True)
    value = sign * (divisor * signed - (numerator - sign * variable))
    low, high = next((low, high) for var, low, high in term.limits if var == variable)
    kept = GatherTerm(term.limits, tuple(c for c in term.conditions if c != condition), term.body)
    substituted = _substitute(kept, {variable: value}, limits_too=False)
    conditions = substituted.conditions + (sympy.Le(low, value), sympy.Le(value, high))
    for bound in conditions:  # the quotient's own range, as the formula states it
        constant = _constant_bound(bound, signed)
        if constant is not None:
            first, last = max(first, constant[0]), min(last, constant[1])
    quotient = Symbol(signed.name, integer=True, nonnegative=True) if first >= 0 else signed
    limits = tuple((quotient, sympy.Integer(first), sympy.Integer(last)) if var == variable
                   else (var, lo.xreplace({signed: quotient}), hi.xreplace({signed: quotient}))
                   for var, lo, hi in substituted.limits)
    return _substitute(GatherTerm(limits, conditions, substituted.body), {signed: quotient}, limits_too=False)


def _constant_bound(condition, variable: Symbol) -> Optional[tuple[float, float]]:
    """``(low, high)`` when ``condition`` bounds ``variable`` alone by a constant (``q <= 15``)."""
    if not isinstance(condition, (sympy.LessThan, sympy.StrictLessThan)) or condition.free_symbols != {variable}:
        return None
    difference = sympy.expand(condition.rhs - condition.lhs)  # >= 0 (> 0 when strict)
    coefficient = difference.coeff(variable)
    constant = difference - coefficient * variable + (-1 if isinstance(condition, sympy.StrictLessThan) else 0)
    if coefficient == 1:  # variable >= -constant
        return int(-constant), math.inf
    if coefficient == -1:  # variable <= constant
        return -math.inf, int(constant)
    return None


def _fresh(name: str, term: GatherTerm) -> Symbol:
    taken = {symbol.name for symbol in term.body.free_symbols} | {limit[0].name for limit in term.limits}
    while name in taken:
        name += "'"
    return Symbol(name, integer=True, nonnegative=True)


def _substitute(term: GatherTerm, values: dict, limits_too: bool = True) -> GatherTerm:
    """``term`` at ``values`` (index -> expression), indices and comparisons expanded."""
    def at(expr):
        return _expanded(expr.xreplace(values))

    limits = tuple((var, at(low), at(high)) if limits_too or var not in values else (var, low, high)
                   for var, low, high in term.limits)
    conditions = [at(condition) for condition in term.conditions]
    return GatherTerm(limits, tuple(conditions), at(term.body))


def _expanded(expr):
    """Array indices and both sides of comparisons expanded (``(2*q + 2 - 2*t)/2`` -> ``q + 1 - t``),
    re-evaluated (a comparison of numbers becomes true or false, a divisibility of ``2*q + 1`` by 2
    loses ``q``)."""
    expr = expr.replace(lambda node: isinstance(node, Indexed),
                        lambda node: node.base[tuple(sympy.expand(index) for index in node.indices)])
    if isinstance(expr, sympy.Rel):
        return expr.func(sympy.expand(expr.lhs), sympy.expand(expr.rhs))
    return expr


def _drop_implied(term: GatherTerm, ranges) -> Optional[GatherTerm]:
    """``term`` without the conditions that hold everywhere in its loops' box; ``None`` when one
    holds nowhere."""
    box = {**ranges, **_limit_ranges(term)}
    kept = []
    for condition in term.conditions:
        truth = _truth(condition, box)
        if truth is False:
            return None
        if truth is None and condition not in kept:
            kept.append(condition)
    return GatherTerm(term.limits, tuple(kept), term.body)


def _truth(condition, box) -> Optional[bool]:
    """``True`` or ``False`` when ``condition`` holds everywhere or nowhere in ``box``; else ``None``."""
    if condition in (sympy.true, sympy.false):
        return bool(condition)
    if not isinstance(condition, (sympy.LessThan, sympy.StrictLessThan, sympy.GreaterThan, sympy.StrictGreaterThan)):
        return None
    small, large = ((condition.lhs, condition.rhs) if isinstance(condition, (sympy.LessThan, sympy.StrictLessThan))
                    else (condition.rhs, condition.lhs))
    strict = isinstance(condition, (sympy.StrictLessThan, sympy.StrictGreaterThan))
    span = _span(large - small - (1 if strict else 0), box)  # integers: a < b is a <= b - 1
    if span is None:
        return None
    if span[0] >= 0:
        return True
    return False if span[1] < 0 else None


def _span(expr: Expr, box) -> Optional[tuple[int, int]]:
    """The least and greatest value of ``expr``, affine with integer coefficients, over ``box``."""
    expr = sympy.expand(expr)
    if not expr.free_symbols <= set(box):
        return None
    constant = expr.subs({symbol: 0 for symbol in expr.free_symbols})
    if not constant.is_Integer:
        return None
    low = high = int(constant)
    for symbol in expr.free_symbols:
        coefficient = expr.coeff(symbol)
        if not coefficient.is_Integer or (expr - coefficient * symbol).has(symbol):
            return None
        first, last = box[symbol]
        low += min(int(coefficient) * first, int(coefficient) * last)
        high += max(int(coefficient) * first, int(coefficient) * last)
    return low, high


# --- strided views of the operands --------------------------------------------------------------


def _read_views(views: _Views, term: GatherTerm, label: str) -> GatherTerm:
    """Each read at ``first + step*t`` on some axes (``t`` a summation index from 0, alone in that
    index; the progression inside the axis), as a read of the view ``array[first::step]`` at ``t``:
    a tap of the phase, read where the schedules expect a plain index."""
    last = {var: int(high) for var, low, high in term.limits if low == 0 and high.is_Integer}
    replaced = {}
    for read in sorted(term.body.atoms(Indexed), key=sympy.default_sort_key):
        tensor = views.tensors.get(views.names.get(read.base, ""))
        if tensor is None:
            continue
        pieces = [_progression(index, last, read.indices[:axis] + read.indices[axis + 1:], size)
                  for axis, (index, size) in enumerate(zip(read.indices, tensor.shape))]
        if not any(pieces):
            continue
        view = views.operand(views.names[read.base], [piece[1:] if piece else None for piece in pieces],
                             label.rstrip("_"))
        replaced[read] = view.base[tuple(piece[0] if piece else index for piece, index in zip(pieces, read.indices))]
    return GatherTerm(term.limits, term.conditions, term.body.xreplace(replaced))


def _progression(index: Expr, last: dict, other_indices, size) -> Optional[tuple[Symbol, int, int]]:
    """``(t, first, step)`` when ``index`` is ``first + step*t`` for a summation index ``t`` from 0 to
    ``last[t]`` that no other index of the read holds, not ``t`` itself, inside ``0 .. size - 1``."""
    index, size = sympy.expand(index), sympy.sympify(size)
    if len(index.free_symbols) != 1 or not size.is_Integer:
        return None
    (tap,) = index.free_symbols
    if tap not in last or any(other.has(tap) for other in other_indices):
        return None
    step, first = index.coeff(tap), index.subs(tap, 0)
    if not (step.is_Integer and first.is_Integer and step >= 1 and first >= 0) or (step, first) == (1, 0):
        return None
    if sympy.expand(first + step * tap - index) != 0 or first + step * last[tap] > size - 1:
        return None
    return tap, int(first), int(step)


def shared_loops(phases: list[Kernel]) -> int:
    """How many outer loops the phases can run in together: the loops every phase begins with (an image's, a
    channel's), where every phase is a scalar form (a vector schedule allocates and stages before its loops).
    Each phase writes its own elements and reads only the kernel's arguments, so the order they run in within
    those loops changes no value; run together, the phases write each image-channel plane while it is in cache
    instead of each writing every plane in turn (measured on ``suite-separable``'s stride-2 depthwise input
    gradient in a train step at batch 64: 4.03 -> 3.30 ms, docs/performance.md)."""
    if len(phases) < 2 or any(phase.lanes is not None or phase.kind not in ("sum", "accumulate") for phase in phases):
        return 0
    shared = 0
    for loops in zip(*(phase.output_loops for phase in phases)):
        if any(loop != loops[0] for loop in loops):
            break
        shared += 1
    return shared
