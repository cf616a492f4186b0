"""Claims the index checker cannot read (a chain of definitions, a probability, a variance), checked
by code against symcnn: a :class:`Probe` yields the cases of the document's setting, smallest first,
and at each gives what symcnn derives (or measures); the first case where the claim differs is the
smallest counter-example, as the index checker's (:func:`search` returns its
:class:`~symcnn.checking.result.CheckResult`).

A probe's claim is written in SymPy syntax (the checker's, :mod:`symcnn.checking.parse_sympy`), one
definition a line, as the document writes its chain: every line defines its left side (a name, or
a tensor's element ``t[i]`` for every ``i`` of its shape, or a recurrence over several lines), which
later lines read; a line whose left side symcnn derives is compared with it, exactly, or within the
stated tolerance of a measured (or floating-point) value.

Example:
    >>> values = evaluate_claim("s = Sum(x[k], (k, 0, m - 1))\\nt[i] = x[i]/s", {"m": 2, "x": Array([1, 3])},
    ...                         {"t": (2,)})
    >>> values["s"], values["t"].tolist()
    (4, [1/4, 3/4])
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Optional, Union

import sympy
from sympy import Array, Indexed, Symbol

from symcnn.checking.claims import Claim
from symcnn.checking.parse_sympy import parse_sympy_claim
from symcnn.checking.result import CheckResult, Difference, equal, show
from symcnn.symbolic.expand import unroll

__all__ = ["Case", "Evidence", "Probe", "evaluate_claim", "search", "rationals"]


@dataclass(frozen=True)
class Case:
    """One configuration of a document's setting: in words (``label``, a counter-example's "at ...")
    and as the values the probe and a condition's ``constraint`` read."""

    label: str
    values: Mapping[str, Any] = field(default_factory=dict)


class Evidence(NamedTuple):
    """What a probe gives at one case: the values a claim may read (``given``: sizes as ints,
    scalars, tensors as arrays), what symcnn derives or measures (``derived``, by the claim's names),
    the shapes of the tensors a claim defines, and for a measured value (or one computed in floating
    point) the agreement it allows (``tolerances``, absolute) and how it was obtained (``origin``)."""

    given: Mapping[str, Any]
    derived: Mapping[str, Any]
    shapes: Mapping[str, tuple] = {}
    tolerances: Mapping[str, float] = {}
    origin: str = "measured"


@dataclass(frozen=True)
class Probe:
    """``cases(options)``: the document's setting, smallest first; ``evidence(case, options)``: the
    :class:`Evidence` there; ``against``: what the claim is compared with, for the detail (``{op}``
    filled from the options)."""

    against: str
    cases: Callable[[Mapping], Iterable[Case]]
    evidence: Callable[[Case, Mapping], Evidence]


Value = Union[sympy.Expr, Array, int]


class _Partial:
    """A tensor whose elements the lines have defined only in part so far: a recurrence's initial
    terms (``RF[0] = 1``), then its terms in index order, each reading the earlier ones."""

    def __init__(self, name: str, shape: tuple[int, ...]):
        self.name, self.shape, self.elements = name, tuple(shape), {}

    def __getitem__(self, index: tuple[int, ...]):
        if index not in self.elements:
            raise ValueError(f"formula: {self.name}[{', '.join(map(str, index))}] is read before a line defines it")
        return self.elements[index]

    def complete(self) -> bool:
        return len(self.elements) == math.prod(self.shape)

    def array(self) -> Array:
        return Array([self.elements[index] for index in _positions(self.shape)], self.shape)


def _positions(shape: tuple[int, ...]):
    return itertools.product(*(range(size) for size in shape))


def _name(base) -> str:
    return str(base.label if hasattr(base, "label") else base)


def _value(expression: sympy.Expr, values: Mapping[str, Value]) -> sympy.Expr:
    """``expression`` with every name read from ``values``: the scalars (sizes among them) first, so
    that its sums have concrete ranges to unroll, then each tensor element it reads."""
    expression = sympy.sympify(expression)
    tensors = (Array, _Partial)
    scalars = {symbol: sympy.sympify(values[symbol.name]) for symbol in expression.free_symbols
               if isinstance(symbol, Symbol) and symbol.name in values and not isinstance(values[symbol.name], tensors)}
    expression = unroll(expression.xreplace(scalars))
    reads = {}
    for node in expression.atoms(Indexed):
        name, array = _name(node.base), values.get(_name(node.base))
        if not isinstance(array, tensors):
            raise ValueError(f"formula: {name} is not a tensor of this claim (known: {', '.join(sorted(values))})")
        if not all(index.is_Integer for index in node.indices):
            raise ValueError(f"formula: {node}: an index that no sum or left side sets")
        index = tuple(int(i) for i in node.indices)
        if len(index) != len(array.shape) or not all(0 <= i < size for i, size in zip(index, array.shape)):
            raise ValueError(f"formula: {node} reads outside {name}'s shape {tuple(array.shape)}")
        reads[node] = array[index]
    return expression.xreplace(reads)


def parse(formula: str) -> Claim:
    """A probe's claim: definitions in SymPy syntax, one a line."""
    return parse_sympy_claim(formula, set(), elements=False)


def _define_elements(lhs: Indexed, rhs: sympy.Expr, values: dict, shapes: Mapping[str, tuple],
                     defined: Mapping[str, Value]) -> _Partial:
    """The elements a line ``t[i, 0] = ...`` defines (every position its integer indices allow that no
    earlier line has defined), in index order, each reading the elements defined before it. A given
    value of the same name (symcnn's, for the lines after) is replaced."""
    name = _name(lhs.base)
    if name not in shapes:
        raise ValueError(f"formula: {name} is not a tensor this claim may define")
    tensor = values.get(name)
    if not isinstance(tensor, _Partial):
        if name in defined:
            raise ValueError(f"formula: {name} is defined twice")
        tensor = _Partial(name, shapes[name])
    if len(lhs.indices) != len(tensor.shape):
        raise ValueError(f"formula: {lhs} has {len(lhs.indices)} indices, {name} has {len(tensor.shape)} axes")
    values[name] = tensor
    fixed = [int(index) if index.is_Integer else None for index in lhs.indices]
    positions = [position for position in _positions(tensor.shape)
                 if all(given is None or given == at for given, at in zip(fixed, position))]
    if not positions:
        raise ValueError(f"formula: {lhs} lies outside {name}'s shape {tensor.shape}")
    for position in positions:
        if position in tensor.elements:
            if None not in fixed:
                raise ValueError(f"formula: {lhs} is defined twice")
            continue  # an earlier line set it: a recurrence's initial term
        variables = {index: at for index, at in zip(lhs.indices, position) if not index.is_Integer}
        tensor.elements[position] = _value(rhs.xreplace(variables), values)
    return tensor


def evaluate_claim(formula: Union[str, Claim], given: Mapping[str, Value],
                   shapes: Mapping[str, tuple] = {}) -> dict[str, Value]:
    """Every name the claim defines, line by line, reading ``given`` and the earlier lines; a tensor
    defined element-wise (``t[i] = ...``) takes its shape from ``shapes``, and may be defined over
    several lines, a recurrence: ``RF[0] = 1`` then ``RF[l] = RF[l - 1] + ...`` for the other ``l``.

    >>> evaluate_claim("J[0] = 1\\nJ[l] = 2*J[l - 1]", {}, {"J": (4,)})["J"].tolist()
    [1, 2, 4, 8]
    """
    claim = parse(formula) if isinstance(formula, str) else formula
    values: dict[str, Value] = dict(given)
    defined: dict[str, Value] = {}
    for equation in claim.equations:
        lhs = equation.lhs
        if isinstance(lhs, Indexed):
            tensor = _define_elements(lhs, equation.rhs, values, shapes, defined)
            if not tensor.complete():
                continue
            name, value = tensor.name, tensor.array()
        elif isinstance(lhs, Symbol):
            name, value = lhs.name, _value(equation.rhs, values)
        else:
            raise ValueError(f"formula: the left side {lhs} must be a name or a tensor's element")
        values[name] = defined[name] = value
    unfinished = [value for value in values.values() if isinstance(value, _Partial)]
    if unfinished:
        tensor = unfinished[0]
        raise ValueError(f"formula: the lines define {len(tensor.elements)} of {tensor.name}'s "
                         f"{math.prod(tensor.shape)} elements")
    return defined


def _entries(name: str, value: Value) -> list[tuple[str, Any]]:
    if isinstance(value, Array):
        return [(f"{name}[{', '.join(map(str, index))}]", value[index])
                for index in itertools.product(*(range(size) for size in value.shape))]
    return [(name, value)]


def _real(value) -> Optional[float]:
    """A claimed value as a float, or ``None`` if it is no finite real number (a symbol, nan, ``sqrt(-1)``)."""
    value = sympy.sympify(value)
    if not (value.is_number and value.is_finite):
        return None
    try:
        return float(value)
    except TypeError:  # a complex number
        return None


def _agree(claimed, derived, tolerance) -> bool:
    if tolerance is None:
        return equal(claimed, derived)
    claimed = _real(claimed)
    return claimed is not None and abs(claimed - float(derived)) <= tolerance


def _shown(value) -> str:
    """A value as a difference shows it; SymPy's ``nan`` (``0/0``) as undefined."""
    return "undefined (nan)" if value is sympy.nan else show(value)


def _approximate(claimed, derived) -> tuple[str, str]:
    """A claimed value and a measured (or floating-point) one, the measured one as a decimal with the
    digits that tell them apart, the claimed one as written if it is a short number, else likewise:
    ``('3/4', '0.7502')``."""
    value, derived = _real(claimed), float(derived)
    if value is None:
        return _shown(sympy.sympify(claimed)), f"{derived:.4g}"
    digits = 4
    while f"{value:.{digits}g}" == f"{derived:.{digits}g}" and digits < 17:
        digits += 1
    short = sympy.sympify(claimed).is_Rational and len(str(claimed)) <= 12
    return _shown(claimed) if short else f"{value:.{digits}g}", f"{derived:.{digits}g}"


def differences(defined: Mapping[str, Value], evidence: Evidence) -> list[Difference]:
    """Where the claim's values differ from symcnn's, entry by entry."""
    found = []
    for name, value in defined.items():
        if name not in evidence.derived:
            continue
        tolerance = evidence.tolerances.get(name)
        for (entry, claimed), (_, derived) in zip(_entries(name, value), _entries(name, evidence.derived[name])):
            if _agree(claimed, derived, tolerance):
                continue
            if tolerance is None:
                found.append(Difference(entry, _shown(claimed), _shown(derived)))
            else:
                as_claimed, as_derived = _approximate(claimed, derived)
                found.append(Difference(entry, as_claimed, f"{as_derived} ({evidence.origin}, ± {tolerance:.2g})"))
    return found


def search(probe: Probe, formula: str, options: Mapping) -> CheckResult:
    """The claim at every case of the probe's setting that meets ``options["constraint"]`` (if any),
    smallest first: correct, or wrong at the first case where it differs."""
    claim = parse(formula)
    against = probe.against.format(**{key: value for key, value in options.items() if isinstance(value, str)})
    compared = {_name(equation.lhs.base) if isinstance(equation.lhs, Indexed) else str(equation.lhs)
                for equation in claim.equations}
    constraint = options.get("constraint")
    checked = 0
    for case in probe.cases(options):
        if constraint is not None and not constraint(case.values):
            continue
        evidence = probe.evidence(case, options)
        if not compared & set(evidence.derived):
            raise ValueError(f"formula: defines none of {', '.join(sorted(evidence.derived))}")
        checked += 1
        found = differences(evaluate_claim(claim, evidence.given, evidence.shapes), evidence)
        if found:
            return CheckResult(formula, against, "index", False, checked, case.label, tuple(found))
    if not checked:
        raise ValueError("constraint: no case of the document's setting meets it")
    return CheckResult(formula, against, "index", True, checked)


def rationals(seed: int, count: int, low: int = -4, high: int = 4, denominator: int = 4) -> list[sympy.Rational]:
    """``count`` exact numbers drawn from ``seed`` (a probe's values: reproducible, and exact, so
    that a claim is compared with symcnn exactly), none zero.

    >>> rationals(0, 3)
    [2, 5/2, -7/2]
    """
    generator = random.Random(seed)
    values = []
    while len(values) < count:
        numerator = generator.randint(low * denominator, high * denominator)
        if numerator:
            values.append(sympy.Rational(numerator, denominator))
    return values
