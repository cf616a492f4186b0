"""Check a claimed formula against symcnn's derivations: correct, or wrong with a counter-example.

Two kinds of claim (:func:`check`):

- **Element-wise**, against a worked example (``--against conv_3x3_2x2``) or an op at one small
  configuration (``--against conv2d --input 3x3 --kernel 2``): entries named as the documents
  name them (``y_{01}``, ``\\frac{\\partial L}{\\partial w_{00}}``, a whole ``\\frac{\\partial L}
  {\\partial X}`` as a ``bmatrix``), compared exactly with the derivation's entries.
- **Index notation**, against an op (``--against conv2d``): the claim is evaluated at a series of
  small configurations in increasing size (stride, padding, dilation, kernel, input size,
  channels, batch) and compared exactly, entry by entry, with the element-wise derivative of the
  expanded forward pass (:func:`symcnn.symbolic.verify.elementwise_gradients`) or with the forward pass
  itself (:func:`symcnn.symbolic.expand.evaluate`). The first configuration where they differ is the
  smallest counter-example.

The vocabulary of index-notation claims (:mod:`symcnn.checking.index_checker`; docs/errata.md lists it):

- tensors by role: ``X`` (input), ``W``/``K`` (weight), ``b`` (bias), ``Y`` (output), their
  gradients ``\\frac{\\partial L}{\\partial X_{...}}`` / ``\\delta^{[X]}_{...}``, and per op the
  documents' names (``S``, ``A``, ``P``, ``h``, ``z``, ``p``, ``y``); ``tensors={"S1": "output"}``
  names others. A tensor read with fewer indices than its rank drops the leading axes (batch,
  then channels), which are then 1; ``layouts={"X": "HWC"}`` reorders them.
- shape parameters: ``s``, ``p``, ``d``/``r``, ``K``, ``K_h``, ``C_in``, ``H_out``, ``N``, ...
  (:data:`symcnn.checking.index_checker.PARAMETER_NAMES`). A parameter the claim does not mention stays at its neutral value
  (stride 1, padding 0, dilation 1; a pool's stride is its window), because a formula without
  it claims nothing about it.
- a sum without bounds runs over the axis its variable indexes on its own (``\\sum_m K(m, n)``:
  ``0..K_h-1``).
- **a read outside a tensor is an error**, so the claim is wrong there: a formula must keep its
  reads in range, as the derived formulas do with their range conditions. The exceptions are the
  convolution's input, which is zero-padded by definition, and the tensors named in
  ``zero_outside`` (a convention some documents use: "pad the output gradient").

Example:
    >>> result = check(r"\\frac{\\partial L}{\\partial w_{00}} = a x_{00} + b x_{01} + c x_{10} + d x_{11}",
    ...                "conv_3x3_2x2")
    >>> result.correct
    True
    >>> result = check(r"Y_{i,j} = \\sum_{m}\\sum_{n} X_{i-m,j-n} W_{m,n}", "conv2d")
    >>> result.correct, result.configuration
    (False, 'N=1, C_in=1, C_out=1, input 2x3, kernel 2x2, stride 1, padding 0, dilation 1')
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Optional, Sequence

import sympy
from sympy import Array, Symbol

from symcnn.checking.claims import Claim, ClaimSyntaxError, MatrixValue, parse_claim
from symcnn.views.formula import FORMULA_OPS
from symcnn.symbolic.tensors import element_name, indices_of
from symcnn.symbolic.verify import exactly_equal

__all__ = ["CheckOptions", "Difference", "CheckResult", "check", "ELEMENT_OPS"]

#: Ops whose element-wise claims can be checked at one configuration (``symcnn derive``'s ops).
ELEMENT_OPS = ("conv2d", "maxpool2d", "avgpool2d", "dense")
@dataclass(frozen=True)
class CheckOptions:
    """How to read and where to check a claim.

    Configuration: ``kernel``, ``stride``, ``padding``, ``dilation``, ``input_size`` (ints or
    ``(h, w)`` pairs), ``channels_in``, ``channels_out``, ``batch``: fixed where given, else searched
    (index claims) or defaulted as ``symcnn derive`` does (element-wise claims against an op).
    ``values`` are numeric inputs for an element-wise claim (row-major).

    Reading: ``tensors`` maps a claim's tensor names to roles (``input``, ``weight``, ``bias``,
    ``output``, ``target``, ``grad_output``, ``grad_input``, ...); ``layouts`` maps a name (or
    ``*``, every tensor) to its axis letters (``NHWC``; ``N`` batch, ``C`` channels, ``H W``
    spatial, ``O I`` a weight's output and input channels, ``F`` features); ``zero_outside``
    names tensors read as zero outside their shape; ``one_based`` names tensors whose every index
    counts from 1; ``index_maps`` maps a name to, per axis,
    ``(sign, offset)``: symcnn's index is ``sign * claim's index + offset`` (``(1, "-1")`` for an
    index counted from 1; ``(-1, "K_h - 1")`` for a flipped kernel axis); ``sizes`` replaces
    numbers of the claim's sum bounds by parameters (``{4096: "F_in"}``).
    """

    kernel: object = None
    stride: object = None
    padding: object = None
    dilation: object = None
    input_size: object = None
    channels_in: Optional[int] = None
    channels_out: Optional[int] = None
    batch: Optional[int] = None
    values: Optional[Sequence] = None
    tensors: Mapping[str, str] = field(default_factory=dict)
    layouts: Mapping[str, str] = field(default_factory=dict)
    zero_outside: frozenset = frozenset()
    one_based: frozenset = frozenset()
    index_maps: Mapping[str, tuple] = field(default_factory=dict)
    sizes: Mapping[int, str] = field(default_factory=dict)
    constraint: Optional[Callable[[Mapping[str, int]], bool]] = None

    def merged(self, **changes) -> "CheckOptions":
        """These options with ``changes``; mappings and sets are merged, not replaced."""
        values = {}
        for name, change in changes.items():
            current = getattr(self, name)
            if isinstance(current, frozenset):
                values[name] = current | frozenset(change)
            elif isinstance(current, Mapping):
                values[name] = {**current, **change}
            elif name == "constraint" and current is not None and change is not None:
                values[name] = lambda config, first=current, second=change: first(config) and second(config)
            else:
                values[name] = change
        return replace(self, **values)


@dataclass(frozen=True)
class Difference:
    """One entry where the claim and the derivation differ."""

    entry: str
    claimed: str
    derived: str


@dataclass(frozen=True)
class CheckResult:
    """The verdict: ``correct``, or the first ``configuration`` where the claim fails and the
    entries that differ there. ``checked`` counts the configurations (or entries) compared."""

    claim: str
    against: str
    kind: str  # "elements" or "index"
    correct: bool
    checked: int
    configuration: Optional[str] = None
    differences: tuple[Difference, ...] = ()
    notes: tuple[str, ...] = ()

    def counterexample(self, limit: int = 4) -> str:
        """The counter-example in one line (empty when correct)."""
        if self.correct:
            return ""
        shown = "; ".join(f"{d.entry}: claimed {d.claimed}, derived {d.derived}" for d in self.differences[:limit])
        more = len(self.differences) - limit
        where = f"at {self.configuration}: " if self.configuration else ""
        return where + shown + (f"; and {more} more" if more > 0 else "")

    def text(self) -> str:
        if self.correct:
            lines = [f"correct: checked against {self.against} ({_count(self.checked, self.kind)})"]
        else:
            lines = [f"wrong: differs from {self.against}" + (f" at {self.configuration}" if self.configuration else "")]
            lines += [f"  {d.entry}: claimed {d.claimed}" + "\n" + f"  {' ' * len(d.entry)}  derived {d.derived}"
                      for d in self.differences[:12]]
            if len(self.differences) > 12:
                lines.append(f"  ... and {len(self.differences) - 12} more entries differ")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {
            "claim": self.claim, "against": self.against, "kind": self.kind,
            "status": "correct" if self.correct else "wrong", "checked": self.checked,
            "configuration": self.configuration,
            "differences": [{"entry": d.entry, "claimed": d.claimed, "derived": d.derived} for d in self.differences],
            "notes": list(self.notes),
        }


def _count(number: int, kind: str) -> str:
    """``3 configurations``, ``1 entry``."""
    unit = ("configuration" if kind == "index" else "entry") if number == 1 else (
        "configurations" if kind == "index" else "entries")
    return f"{number} {unit}"


def _show(value) -> str:
    return str(value)


def _equal(claimed, derived) -> bool:
    """Exact equality (:func:`symcnn.symbolic.verify.exactly_equal`); a ``max(0, x)`` against the derivation's
    ``Piecewise`` is compared with both written as ``Piecewise``."""
    if exactly_equal(claimed, derived):
        return True
    claimed, derived = sympy.sympify(claimed), sympy.sympify(derived)
    if claimed.has(sympy.Max, sympy.Min) or derived.has(sympy.Max, sympy.Min):
        difference = claimed.rewrite(sympy.Piecewise) - derived.rewrite(sympy.Piecewise)
        return sympy.piecewise_fold(difference) == 0 or sympy.simplify(difference) == 0
    return False


# --- entry point --------------------------------------------------------------------------------------


def check(formula: str, against: str, options: Optional[CheckOptions] = None) -> CheckResult:
    """Check ``formula`` (LaTeX or SymPy syntax) against a worked example or an op.

    Raises ``ValueError`` (one line, naming ``formula`` or ``against``) for an unparseable formula,
    an unknown ``against``, or a claim that names something the op does not have.
    """
    from symcnn.checking.examples import EXAMPLES

    options = options or CheckOptions()
    if against not in EXAMPLES and against not in FORMULA_OPS:
        names = ", ".join(sorted(EXAMPLES)) + "; ops: " + ", ".join(FORMULA_OPS)
        raise ValueError(f"against: not a worked example or an op; examples: {names}")
    try:
        if against in EXAMPLES:
            return _check_elements(parse_claim(formula, elements=True), against,
                                   _example_values(EXAMPLES[against]), [])
        if _looks_elementwise(formula):
            if against not in ELEMENT_OPS:
                raise ValueError(f"against: element-wise claims are checked against a worked example or one of "
                                 f"{', '.join(ELEMENT_OPS)}, not {against}")
            values, notes = _op_values(against, options)
            return _check_elements(parse_claim(formula, elements=True), against, values, notes)
        from symcnn.checking.index_checker import DEFAULT_TENSORS

        vocabulary = {**DEFAULT_TENSORS[against], **options.tensors}
        claim = parse_claim(formula, tensors=set(vocabulary))
    except ClaimSyntaxError as error:
        raise ClaimSyntaxError(f"formula: {error}") from None
    from symcnn.checking.index_checker import check_claim

    return check_claim(claim, against, options)


def _looks_elementwise(formula: str) -> bool:
    """Entry names (``x_{00}``, ``w01``, ``y_{11}``) or a matrix: a claim about one example's entries."""
    return bool(re.search(r"matrix\}|(?<![A-Za-z\\])[a-z]_\{?\d+\}?|(?<![\w/])[a-z]\d{2,}\b", formula))


# --- element-wise claims ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Derived:
    """A derived array and how its entries are named: ``prefix`` + indices (``x00``)."""

    array: Array
    prefix: str


def _example_values(example) -> dict[str, _Derived]:
    derived = example.derive()
    values = {}
    for key, value in derived.items():
        if not isinstance(value, sympy.NDimArray):
            continue
        if key == "Y":
            values[key] = _Derived(value, "y")
        elif key.startswith("dL/d"):
            values[key] = _Derived(value, key[4:].lower())
    return values


def _op_values(op: str, options: CheckOptions) -> tuple[dict[str, _Derived], list[str]]:
    from symcnn.symbolic.derive import LayerConfig, derive, parse_values

    config = LayerConfig(
        op,
        input_size=options.input_size if options.input_size is not None else (3 if op == "dense" else (3, 3)),
        kernel=options.kernel if options.kernel is not None else (2, 2),
        channels_in=options.channels_in or 1, channels_out=options.channels_out or 1,
        stride=options.stride, padding=options.padding or 0, dilation=options.dilation or 1,
        batch=options.batch or 1, bias=False,
    )
    values = None
    if options.values is not None:
        values = parse_values([str(value) for value in options.values], config.input_shape)
    result = derive(config, values)
    derived = {"Y": _Derived(result.output, "y")}
    names = {"grad_input": "dL/dX", "grad_weight": "dL/dW", "grad_bias": "dL/db"}
    for role, array in result.gradients.items():
        derived[names[role]] = _Derived(array, {"grad_input": "x", "grad_weight": "w", "grad_bias": "b"}[role])
    notes = [f"derived at {op} " + ", ".join(f"{name} {value}" for name, value in (
        ("input", "x".join(map(str, config.input_shape))),
        ("kernel", "x".join(map(str, config.kernel)) if op != "dense" else None),
        ("stride", "x".join(map(str, config.stride)) if op != "dense" else None)) if value)]
    return derived, notes


def _entry_names(derived: _Derived) -> dict[str, tuple[int, ...]]:
    shape = tuple(derived.array.shape)
    return {element_name(derived.prefix, index, shape): tuple(index) for index in indices_of(shape)}


def _squeezed(array: Array) -> Array:
    """``array`` without its leading axes of size 1, down to a matrix: ``(1, 1, 3, 3)`` -> ``(3, 3)``."""
    shape = list(array.shape)
    while len(shape) > 2 and shape[0] == 1:
        shape.pop(0)
    return array.reshape(*shape)


def _check_elements(claim: Claim, against: str, derived: Mapping[str, _Derived], notes: list) -> CheckResult:
    known = set()
    for value in derived.values():
        known |= {symbol.name for element in value.array for symbol in sympy.sympify(element).free_symbols}
        known |= set(_entry_names(value))
    differences, checked = [], 0
    for equation in claim.equations:
        target_key, index = _element_target(equation.lhs, derived)
        values = equation.rhs.rows if isinstance(equation.rhs, MatrixValue) else [[equation.rhs]]
        array = derived[target_key].array
        if index is None:  # a whole tensor: a matrix of entries
            if not isinstance(equation.rhs, MatrixValue):
                raise ValueError(f"formula: {_lhs_text(equation.lhs)} is a whole tensor; write its entries as a "
                                 r"\begin{bmatrix}...\end{bmatrix}")
            squeezed = _squeezed(array)
            if tuple(squeezed.shape) != equation.rhs.shape:
                checked += 1
                rows, columns = equation.rhs.shape
                differences.append(Difference(_lhs_text(equation.lhs), f"a {rows}x{columns} matrix",
                                              f"shape {'x'.join(map(str, squeezed.shape))}: {_show(squeezed.tolist())}"))
                continue
        unknown = {s.name for row in values for v in row for s in sympy.sympify(v).free_symbols} - known
        if unknown:  # not an error: the claim speaks of entries this derivation does not have
            checked += 1
            differences.append(Difference(_lhs_text(equation.lhs), f"uses {', '.join(sorted(unknown))}",
                                          f"no such symbol (its symbols: {_symbol_summary(known)})"))
            continue
        if index is None:
            for row, column in itertools.product(*(range(size) for size in equation.rhs.shape)):
                claimed, actual = equation.rhs.rows[row][column], squeezed[row, column]
                checked += 1
                if not _equal(claimed, actual):
                    name = f"{_lhs_text(equation.lhs)}[{row}, {column}]"
                    differences.append(Difference(name, _show(claimed), _show(actual)))
            continue
        if isinstance(equation.rhs, MatrixValue):
            raise ValueError(f"formula: {_lhs_text(equation.lhs)} is one entry, not a matrix")
        checked += 1
        if not _equal(equation.rhs, array[index]):
            differences.append(Difference(_lhs_text(equation.lhs), _show(equation.rhs), _show(array[index])))
    return CheckResult(claim.text, against, "elements", not differences, checked, None, tuple(differences), tuple(notes))


def _lhs_text(lhs) -> str:
    return str(lhs)


def _symbol_summary(known: set) -> str:
    names = sorted(known, key=lambda name: (len(name), name))
    return ", ".join(names[:24]) + (", ..." if len(names) > 24 else "")


def _element_target(lhs, derived: Mapping[str, _Derived]) -> tuple[str, Optional[tuple[int, ...]]]:
    """Which derived array and entry a left side names: ``y01``, ``dL/dw00``, ``Y``, ``dL/dX``."""
    if not isinstance(lhs, Symbol):
        raise ValueError(f"formula: the left side must name an entry (y_{{01}}, \\frac{{\\partial L}}{{\\partial w_{{00}}}}) "
                         f"or a whole tensor (Y, \\frac{{\\partial L}}{{\\partial X}}), got {lhs}")
    name = lhs.name
    if name in derived:
        return name, None
    gradient = name.startswith("dL/d")
    entry = name[4:] if gradient else name
    for key, value in derived.items():
        if key.startswith("dL/d") != gradient:
            continue
        index = _entry_names(value).get(entry)
        if index is not None:
            return key, index
    available = ", ".join(sorted(derived))
    raise ValueError(f"formula: no derived entry {name} (derived: {available}; entries like y00, dL/dw00)")
