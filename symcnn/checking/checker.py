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

The vocabulary of index-notation claims (:mod:`symcnn.checking.index`; docs/errata.md lists it):

- tensors by role: ``X`` (input), ``W``/``K`` (weight), ``b`` (bias), ``Y`` (output), their
  gradients ``\\frac{\\partial L}{\\partial X_{...}}`` / ``\\delta^{[X]}_{...}``, and per op the
  documents' names (``S``, ``A``, ``P``, ``h``, ``z``, ``p``, ``y``); ``tensors={"S1": "output"}``
  names others. A tensor read with fewer indices than its rank drops the leading axes (batch,
  then channels), which are then 1; ``layouts={"X": "HWC"}`` reorders them.
- shape parameters: ``s``, ``p``, ``d``/``r``, ``K``, ``K_h``, ``C_in``, ``H_out``, ``N``, ...
  (:data:`symcnn.checking.index.vocabulary.PARAMETER_NAMES`). A parameter the claim does not
  mention stays at its neutral value (stride 1, padding 0, dilation 1; a pool's stride is its
  window), because a formula without it claims nothing about it.
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
from dataclasses import dataclass
from typing import Mapping, Optional

import sympy
from sympy import Array, Symbol

from symcnn.checking.claims import Claim, ClaimSyntaxError, MatrixValue
from symcnn.checking.examples import EXAMPLES
from symcnn.checking.index.evaluate import check_claim
from symcnn import registry
from symcnn.checking.index.vocabulary import OpKind, default_tensors
from symcnn.checking.limits import check_options, check_text
from symcnn.checking.parse import parse_claim
from symcnn.checking.result import CheckOptions, CheckResult, Difference, equal, show
from symcnn.symbolic.derive import LayerConfig, derive, parse_values
from symcnn.symbolic.tensors import element_name, indices_of
from symcnn.views.formula import FORMULA_OPS

__all__ = ["check", "ELEMENT_OPS"]

#: Ops whose element-wise claims can be checked at one configuration (``symcnn derive``'s ops: the
#: registry's layer ops, read when asked).
ELEMENT_OPS = OpKind(lambda entry: entry.layer)


# --- entry point --------------------------------------------------------------------------------------


def check(formula: str, against: str, options: Optional[CheckOptions] = None) -> CheckResult:
    """Check ``formula`` (LaTeX or SymPy syntax) against a worked example or an op.

    Raises ``ValueError`` (one line, naming ``formula``, ``against`` or the option) for an
    unparseable formula, an unknown ``against``, a claim that names something the op does not
    have, or a formula or option beyond the checker's limits (:mod:`symcnn.checking.limits`).
    """
    options = options or CheckOptions()
    if against not in EXAMPLES and against not in FORMULA_OPS:
        names = ", ".join(sorted(EXAMPLES)) + "; ops: " + ", ".join(FORMULA_OPS)
        raise ValueError(f"against: not a worked example or an op; examples: {names}")
    try:
        return _check(formula, against, options)
    except RecursionError:  # the last line of defence: the limits bound a formula's nesting
        raise ValueError("formula: nested too deeply") from None


def _check(formula: str, against: str, options: CheckOptions) -> CheckResult:
    try:
        check_text(formula)
    except ClaimSyntaxError as error:
        raise ClaimSyntaxError(f"formula: {error}") from None
    if against in FORMULA_OPS:
        check_options(options, flat_input=3 not in registry.get(against).inputs)
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
        vocabulary = {**default_tensors(against), **options.tensors}
        claim = parse_claim(formula, tensors=set(vocabulary))
    except ClaimSyntaxError as error:
        raise ClaimSyntaxError(f"formula: {error}") from None
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
    config = LayerConfig(
        op,
        input_size=options.input_size if options.input_size is not None else (
            (3, 3) if 3 in registry.get(op).inputs else 3),
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
    letters = {"input": "X", "weight": "W", "bias": "b"}
    for gradient, array in result.gradients.items():
        role = gradient.removeprefix("grad_")
        derived[f"dL/d{letters.get(role, role)}"] = _Derived(array, role[0] if role != "input" else "x")
    windowed = "kernel" in config.settings
    notes = [f"derived at {op} " + ", ".join(f"{name} {value}" for name, value in (
        ("input", "x".join(map(str, config.input_shape))),
        ("kernel", "x".join(map(str, config.kernel)) if windowed else None),
        ("stride", "x".join(map(str, config.stride)) if windowed else None)) if value)]
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
                                              f"shape {'x'.join(map(str, squeezed.shape))}: {show(squeezed.tolist())}"))
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
                if not equal(claimed, actual):
                    name = f"{_lhs_text(equation.lhs)}[{row}, {column}]"
                    differences.append(Difference(name, show(claimed), show(actual)))
            continue
        if isinstance(equation.rhs, MatrixValue):
            raise ValueError(f"formula: {_lhs_text(equation.lhs)} is one entry, not a matrix")
        checked += 1
        if not equal(equation.rhs, array[index]):
            differences.append(Difference(_lhs_text(equation.lhs), show(equation.rhs), show(array[index])))
    return CheckResult(claim.text, against, "elements", not differences, checked, None, tuple(differences),
                       tuple(notes))


def _lhs_text(lhs) -> str:
    return str(lhs)


def _symbol_summary(known: set) -> str:
    names = sorted(known, key=lambda name: (len(name), name))
    return ", ".join(names[:24]) + (", ..." if len(names) > 24 else "")


def _element_target(lhs, derived: Mapping[str, _Derived]) -> tuple[str, Optional[tuple[int, ...]]]:
    """Which derived array and entry a left side names: ``y01``, ``dL/dw00``, ``Y``, ``dL/dX``."""
    if not isinstance(lhs, Symbol):
        raise ValueError("formula: the left side must name an entry "
                         f"(y_{{01}}, \\frac{{\\partial L}}{{\\partial w_{{00}}}}) "
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
    raise ValueError(f"formula: no derived entry {name} (derived: {available}; entries like y00, dL/dw00, or "
                     "y_{10,2} where an index has two digits)")
