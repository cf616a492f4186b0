"""Loop-invariant reductions: computed once, not once per output element.

A normalization's formula reads statistics at every output element: batch norm's of a whole channel
(over the batch and the map), layer norm's of a whole sample. Its derived gradients are sums of
products whose factors depend on different indices. Lowered as they read, each output element
would recompute them: ``N*H*W`` times the work, or more for a sum nested in a sum (the variance reads
the mean; layer norm's weight gradient sums over the batch a product that reads the sample's mean).
Two generic rewrites, keyed on no op:

- :func:`factor_sums`: a gather term ``sum_{L} a * f(L1) * g(L2)`` whose factors split by summation
  indices (``L1``, ``L2`` disjoint, ``a`` free of both) becomes ``a * (sum_{L1} f) * (sum_{L2} g)``:
  products of independent sums, each a reduction of its own; and within one group, an index that only
  some factors read is summed in a sum of those factors, nested in the others' loops:
  ``sum_{n, q} G[n] * X[n, q]`` becomes ``sum_n G[n] * (sum_q X[n, q])``;
- :class:`Precomputer`: a reduction that depends on fewer indices than the loops around it (the
  output's, the term's own sum's, an enclosing sum's) is computed before the output loops, once per
  value of the indices it does depend on (per channel, per sample), into an array the body then reads
  (``stat0[c]``, ``stat0[n]``); nested reductions first (the mean before the variance that reads it),
  and a reduction written twice with other summation indices once. A sum of exponentials stays where
  it is, computed in its term shifted by its maximum (log-sum-exp).

The factors of the products that are then loop-invariant (``gamma[c]/sqrt(stat1[c] + epsilon)``)
are arrays too: :mod:`symcnn.codegen.coefficients`.

Kernels of the shipped specs without batch norm have neither (their sums are of one product of
reads, and their only inner reduction, softmax's normalizer, is a sum of exponentials), so they are
generated as before.

Example:
    >>> from sympy import IndexedBase, Symbol
    >>> from symcnn.codegen.kernel_ir import Loop
    >>> X, G = IndexedBase("X"), IndexedBase("G")
    >>> n, q, c = (Symbol(name, integer=True, nonnegative=True) for name in "nqc")
    >>> term = GatherTerm(((q, 0, 3),), (), X[n, c] * G[q, c])
    >>> factor_sums(term).body
    X[n, c]*Sum(G[q, c], (q, 0, 3))
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Mapping, NamedTuple, Optional

import sympy
from sympy import Expr, Indexed, IndexedBase, Sum, Symbol

from symcnn.codegen.kernel_ir import Loop, Reduction, SavedStatistics
from symcnn.codegen.rewrites import shifted_exponential_sum
from symcnn.symbolic.adjoint import GatherTerm
from symcnn.symbolic.functions import MaxOver

__all__ = ["factor_sums", "Precomputed", "Precomputer"]


def factor_sums(term: GatherTerm) -> GatherTerm:
    """``term`` as a product of independent sums where its factors split by summation index, each sum
    nested as deep as its factors allow (see the module's docstring); unchanged when it has conditions,
    or one group of factors that nests no deeper and nothing but numbers outside it (a convolution's
    sum of products)."""
    if term.conditions or not term.limits:
        return term
    bound = [limit[0] for limit in term.limits]
    outside, groups = [], []  # groups: [set of bound variables, factors]
    for factor in sympy.Mul.make_args(term.body):
        variables = factor.free_symbols & set(bound)
        if not variables:
            outside.append(factor)
            continue
        joined = [group for group in groups if group[0] & variables]
        factors = [f for group in joined for f in group[1]] + [factor]
        merged = [variables.union(*(group[0] for group in joined)), factors]
        groups = [group for group in groups if group not in joined] + [merged]
    nested = [_nested(factors, [limit for limit in term.limits if limit[0] in variables])
              for variables, factors in groups]
    if len(groups) == 1 and all(factor.is_number for factor in outside):
        limits, body = nested[0]
        if len(limits) == len(term.limits):
            return term  # nothing moved
        # one group: its outermost sum stays the term's own loops, the sums nested in it become reads
        return GatherTerm(tuple(limits), (), sympy.Mul(*outside) * body)
    sums = [Sum(body, *limits) for limits, body in nested]
    read = set().union(*(group[0] for group in groups))
    counts = [high - low + 1 for variable, low, high in term.limits if variable not in read]  # sum of a constant
    return GatherTerm((), (), sympy.Mul(*outside) * sympy.Mul(*counts) * sympy.Mul(*sums))


def _nested(factors: list, limits: list) -> tuple[list, Expr]:
    """``sum_{limits} prod(factors)`` as ``(outer limits, body)``, each summation index moved into a sum
    of only the factors that read it: ``sum_{n, q} G[n] * X[n, q]`` is ``sum_n G[n] * (sum_q X[n, q])``
    (the inner sum then a reduction of its own, computed once per ``n``; :class:`Precomputer`). Only
    indices whose ranges read no other summation index move."""
    variables = [limit[0] for limit in limits]
    if any(sympy.sympify(bound).free_symbols & set(variables) for limit in limits for bound in limit[1:]):
        return limits, sympy.Mul(*factors)  # ranges that depend on each other: left as written
    for variable in variables:
        reading = [position for position, factor in enumerate(factors) if variable in factor.free_symbols]
        if len(reading) == len(factors):
            continue
        inner = [v for v in variables if all(position in reading for position, factor in enumerate(factors)
                                             if v in factor.free_symbols)]
        inner_limits = [limit for limit in limits if limit[0] in inner]
        outer_limits = [limit for limit in limits if limit[0] not in inner]
        inner_body = _nested([factors[position] for position in reading], inner_limits)
        rest = [factor for position, factor in enumerate(factors) if position not in reading]
        return _nested(rest + [Sum(inner_body[1], *inner_body[0]) if inner_body[0] else inner_body[1]],
                       outer_limits)
    return limits, sympy.Mul(*factors)


@dataclass(frozen=True)
class Precomputed:
    """Arrays ``names`` of ``shape`` filled before the output loops, in one loop nest: over ``loops``
    (the indices their values depend on; the first parallel), ``names[k][index] = values[k]``, where
    ``values[k]`` is the result of ``reductions[k]`` (statistics, all summed in one pass over the
    same ranges) or, without reductions, an expression of earlier arrays (coefficients,
    :mod:`symcnn.codegen.coefficients`)."""

    names: tuple[str, ...]
    shape: tuple[str, ...]  # printed extents
    loops: tuple[Loop, ...]
    reductions: tuple[Reduction, ...]  # none, or one per name, each over the first's loops
    index: str  # printed
    values: tuple[str, ...]  # printed


class _Entry(NamedTuple):
    """An array before printing: a statistic (``value`` a reduction) or a coefficient."""

    kind: str
    name: str
    axes: tuple  # (index, last)
    value: Expr


#: A loop's range: its first and last value.
Range = tuple[Expr, Expr]


class Precomputer:
    """Finds the reductions of a kernel's terms that depend on fewer indices than the loops around
    them, and replaces each by a read of an array computed before the output loops
    (:class:`Precomputed`), innermost first; also holds the coefficient arrays of
    :mod:`symcnn.codegen.coefficients`.

    A reduction that reads only output indices, and not the batch index, is computed before the
    output loops too, though once per output element (a weight gradient's per-channel sums): once for
    all the terms that read it.

    ``indices`` and ``extents`` are the kernel's output indices and sizes; ``batch_index`` the output
    index of the batch (``None``: the kernel has none). ``array`` makes an array name printable,
    ``loop``, ``reduction`` and ``code`` print as the lowering does; ``collapse`` (optional) rewrites
    a reduction's loops as a :class:`GatherTerm` over reshaped views, which it records in a dict
    (:func:`~symcnn.codegen.layout.collapse_rows`: one loop over a row of 1,024 where there were 32 of 32).
    """

    def __init__(self, indices, extents, batch_index: Optional[Symbol], array: Callable, loop: Callable,
                 reduction: Callable[[str, Expr], Reduction], code: Callable[[Expr], str],
                 collapse: Optional[Callable[[GatherTerm, dict], GatherTerm]] = None):
        self.output: dict[Symbol, Range] = {index: (sympy.S.Zero, sympy.sympify(extent) - 1)
                                            for index, extent in zip(indices, extents)}
        self.batch_index = batch_index
        self.array, self.loop, self.reduction, self.code = array, loop, reduction, code
        self.reads: dict = {}  # (canonical value, its axes) -> the read that replaces it (across terms)
        self.entries: list[_Entry] = []
        self.counts = {"stat": 0, "coef": 0}
        self.collapse = collapse
        self.views: dict[str, str] = {}  # (name, printed reshape) of the views the reductions read

    def for_output(self, indices, extents, batch_index: Optional[Symbol]) -> "Precomputer":
        """A Precomputer for another output of the same kernel (:mod:`symcnn.codegen.backward`): its
        arrays are this one's, so that a reduction both outputs read is computed once."""
        other = copy.copy(self)  # shallow: the arrays, their reads and the views stay shared
        other.output = {index: (sympy.S.Zero, sympy.sympify(extent) - 1) for index, extent in zip(indices, extents)}
        other.batch_index = batch_index
        return other

    def existing(self, value: Expr) -> Optional[Expr]:
        """The read of an array that already holds the reduction ``value`` at every output element (a
        statistic computed for another output of the kernel), or ``None``."""
        if not isinstance(value, Sum):
            return None
        axes = tuple((index, high) for index, (_, high) in self.output.items() if index in value.free_symbols)
        return self.reads.get((_canonical(value), axes))

    def with_views(self, schedule: dict) -> dict:
        """A kernel's schedule fields, with the views the precomputed reductions read added to its own."""
        views = {**self.views, **dict(schedule.get("views", ()))}
        if any(self.views[name] != source for name, source in schedule.get("views", ()) if name in self.views):
            raise ValueError(f"two views of one name in a kernel: {sorted(views)}")
        return {**schedule, "views": tuple(views.items())} if views else schedule

    def ranges(self, limits=()) -> dict[Symbol, Range]:
        """The loops around a term's body: the output's, then the term's own ``limits``."""
        return {**self.output, **{limit[0]: (sympy.sympify(limit[1]), sympy.sympify(limit[2])) for limit in limits}}

    def replace(self, body: Expr, limits=()) -> Expr:
        """``body`` with every invariant reduction read from its precomputed array; ``limits``: the
        term's own summation ranges (loops around the body too)."""
        return self._replace(body, self.ranges(limits))

    def _replace(self, expr: Expr, loops: dict) -> Expr:
        if isinstance(expr, (Sum, MaxOver)):
            inner = {**loops, **{limit[0]: (limit[1], limit[2]) for limit in expr.limits}}
            function = self._replace(expr.function, inner)
            node = expr if function == expr.function else expr.func(function, *expr.limits)
            axes = self.axes(node, loops)
            free = node.free_symbols
            if axes is None and not free & (set(loops) - set(self.output)) and self.batch_index not in free:
                axes = tuple((index, high) for index, (_, high) in self.output.items() if index in free)
            # a sum of exponentials stays in its term, computed there shifted by its maximum (log-sum-exp)
            if axes is None or shifted_exponential_sum(node, Symbol("peak")) is not None:
                return node
            return self._array("stat", node, axes)
        if not expr.args or isinstance(expr, Indexed):
            return expr
        args = [self._replace(arg, loops) for arg in expr.args]
        return expr if all(a is b for a, b in zip(args, expr.args)) else expr.func(*args)

    @staticmethod
    def axes(value: Expr, loops: dict) -> Optional[tuple]:
        """The loops ``value`` depends on, as ``(index, last)``, when they are fewer than all of
        ``loops`` and each runs from 0 to a bound that no loop changes (an array can then hold one
        value per iteration); else ``None``."""
        free = value.free_symbols
        axes = [(index, high) for index, (low, high) in loops.items() if index in free]
        if len(axes) == len(loops) or any(loops[index][0] != 0 or high.free_symbols & set(loops)
                                          for index, high in axes):
            return None
        return tuple(axes)

    def coefficient(self, value: Expr, axes: tuple) -> Expr:
        """A read of an array holding ``value`` at every point of ``axes`` (``(index, last)``)."""
        return self._array("coef", value, axes)

    def _array(self, kind: str, value: Expr, axes: tuple) -> Expr:
        key = (_canonical(value) if kind == "stat" else value, axes)
        if key not in self.reads:
            name = f"{kind}{self.counts[kind]}"
            self.counts[kind] += 1
            if kind == "stat" and self.collapse is not None:
                term = self.collapse(GatherTerm(tuple(value.limits), (), value.function), self.views)
                value = value.func(term.body, *term.limits)
            self.entries.append(_Entry(kind, name, axes, value))
            base = self.array(name)
            self.reads[key] = base[tuple(index for index, _ in axes)] if axes else base[0]
        return self.reads[key]

    def kept(self, tracked: Mapping[str, Expr]) -> Optional[tuple[SavedStatistics, tuple]]:
        """The statistics to keep for the backward pass (:mod:`symcnn.codegen.saved_statistics`): every
        statistic computed so far, then an array per ``tracked`` value (a buffer's batch value, by its role:
        batch norm's mean ``stat0[c]/m``), as rows of one array; with the seeds :meth:`seed` takes. ``None``
        when there is no statistic, or one of no index, or they differ in shape, or an extent is neither a
        constant nor the batch."""
        stats = [entry for entry in self.entries if entry.kind == "stat"]
        if not stats or not stats[0].axes or any(entry.axes != stats[0].axes for entry in stats):
            return None  # none, a single value (not a row of an array), or rows of different shapes
        axes = stats[0].axes
        extents = [self.code(last + 1) for _, last in axes]  # printed: a constant, or N for the batch
        if not all(extent.isdigit() or extent == "N" for extent in extents):
            return None
        shape = tuple(int(extent) if extent.isdigit() else extent for extent in extents)
        rows = [entry.name for entry in stats]
        tracked_rows = []
        for role, value in tracked.items():
            read = self.replace(value)
            if tuple((index, last) for index, last in axes if index in read.free_symbols) != axes:
                return None
            rows.append(str(self.coefficient(read, axes).base))
            tracked_rows.append((role, len(rows) - 1))
        seeds = tuple((value, key_axes, read, rows.index(str(read.base)))
                      for (value, key_axes), read in self.reads.items() if str(read.base) in rows[:len(stats)])
        return SavedStatistics(tuple(rows), shape, tuple(tracked_rows)), seeds

    def seed(self, seeds: tuple, statistics: IndexedBase) -> None:
        """Read the forward pass's statistics (:meth:`kept`'s ``seeds``) from the rows of ``statistics``
        instead of computing them: a reduction this Precomputer meets that is one of them, written with
        any summation indices, becomes ``statistics[row, c]``."""
        renamed: dict = {}  # the forward kernel's reads -> this kernel's (a variance reads the mean)
        for value, axes, read, row in seeds:
            kept = statistics[(row, *(index for index, _ in axes))]
            self.reads[(value.xreplace(renamed), axes)] = kept
            renamed[read] = kept

    def precomputed(self) -> tuple[Precomputed, ...]:
        """The arrays, in the order they are computed: consecutive ones over the same indices filled in
        one loop nest, statistics summed in one pass where their sums run over the same ranges and none
        reads another's array (batch norm's sums of ``dL/dY`` and of ``X * dL/dY`` beside the variance:
        the arrays read once, not once per sum)."""
        groups: list[list[_Entry]] = []
        for entry in self.entries:
            if groups and _joins(groups[-1], entry):
                groups[-1].append(_renamed(entry, groups[-1][0]) if entry.kind == "stat" else entry)
            else:
                groups.append([entry])
        return tuple(self._printed(group) for group in groups)

    def _printed(self, group: list[_Entry]) -> Precomputed:
        loops = tuple(self.loop(index, 0, last, parallel=position == 0)
                      for position, (index, last) in enumerate(group[0].axes))
        names = tuple(entry.name for entry in group)
        if group[0].kind == "stat":
            reductions = tuple(self.reduction(f"{name}_acc", entry.value) for name, entry in zip(names, group))
            values = tuple(reduction.name for reduction in reductions)
        else:
            reductions, values = (), tuple(self.code(entry.value) for entry in group)
        return Precomputed(names, tuple(loop.stop for loop in loops) or ("1",), loops, reductions,
                           ", ".join(loop.variable for loop in loops) or "0", values)


def _joins(group: list[_Entry], entry: _Entry) -> bool:
    """``entry`` can be filled in ``group``'s loop nest: the same kind over the same indices, and for a
    statistic, a sum over the same ranges (its indices renamed to the first's without capture) that
    reads no array of the group."""
    first = group[0]
    if entry.kind != first.kind or entry.axes != first.axes:
        return False
    if entry.kind != "stat":
        return True
    names = {member.name for member in group}
    ranges = [tuple(limit[1:]) for limit in first.value.limits]
    return ([tuple(limit[1:]) for limit in entry.value.limits] == ranges
            and not {str(read.base) for read in entry.value.atoms(Indexed)} & names
            and not entry.value.free_symbols & set(first.value.variables))


def _renamed(entry: _Entry, first: _Entry) -> _Entry:
    """A statistic's summation indices renamed to ``first``'s (one loop nest for both)."""
    renaming = dict(zip(entry.value.variables, first.value.variables))
    return entry._replace(value=entry.value.xreplace(renaming))


def _canonical(node: Expr) -> Expr:
    """``node`` with its summation indices renamed in order, so that ``sum_q X[q]`` and ``sum_r X[r]``
    over the same range compare equal."""
    renaming = {limit[0]: Symbol(f"_index{position}", integer=True) for position, limit in enumerate(node.limits)}
    return node.xreplace(renaming)
