"""The formula checker's limits: the largest formula and configuration ``symcnn check`` accepts.

A short text can ask for unbounded work: ``9^{9^{9^9}}`` is a number of 10^(3.7*10^8) digits,
``\\sum_{k=0}^{10^9}`` a billion terms, ``--input 100000x100000`` ten billion symbols, and 200 nested
``\\frac`` recurse past Python's stack in SymPy's LaTeX parser. Each limit below is checked before the
work it bounds starts; a formula or an option beyond one is refused with a one-line ``ValueError``
naming the field (``formula: ...``, ``input_size: ...``) and the limit, which the CLI prints before
exiting with status 2. The limits are generous for what the documents write (their longest claim
has 454 characters, 154 tokens, 4 nested brackets and numbers up to 4096) and small enough that a
formula at every limit is read and checked in seconds. docs/errata.md lists them (:func:`summary`).

Where each is checked:

- the text, before either reader (:func:`check_text`): length, tokens, nesting, the size of literals;
- the constants, before SymPy evaluates a power, an exponential or a factorial, and the parsed
  claim's sum ranges and expansion: :mod:`symcnn.checking.sizes`;
- the options (:func:`check_options`) and the configurations the index checker evaluates at
  (:func:`check_search_size`);
- while a claim is evaluated: the terms it sums (:class:`Budget`), and the powers and expansions
  it computes (:mod:`symcnn.checking.sizes`).

Example:
    >>> check_text(r"\\sum_{k=0}^{K_h-1} W_{k} X_{i+k}")
    >>> check_text("x" * 3000)
    Traceback (most recent call last):
    ...
    symcnn.checking.claims.ClaimSyntaxError: longer than 2,000 characters (3,000): the checker's limit
"""

from __future__ import annotations

import re

from symcnn.checking.claims import reject
from symcnn.symbolic.derive import MAX_EXPANSION_TERMS

__all__ = ["MAX_FORMULA_CHARACTERS", "MAX_FORMULA_TOKENS", "MAX_NESTING_DEPTH", "MAX_NUMBER_DIGITS", "MAX_EXPONENT",
           "MAX_FACTORIAL_ARGUMENT", "MAX_SUM_RANGE", "MAX_EXPANSION_TERMS", "MAX_SEARCH_TERMS", "MAX_EVALUATED_TERMS",
           "MAX_INPUT_SIDE", "MAX_INPUT_FEATURES", "MAX_WINDOW", "MAX_CHANNELS", "MAX_BATCH", "MAX_VALUES",
           "check_text", "check_options", "check_search_size", "Budget", "summary"]

# --- the limits ---------------------------------------------------------------------------------------------

#: Characters in a formula (4x the documents' longest claim).
MAX_FORMULA_CHARACTERS = 2_000
#: Tokens in a formula: names, numbers, commands, operators and brackets. SymPy's LaTeX parser takes
#: about 5 ms a token and recurses once per operator of a chain (``- - - x``).
MAX_FORMULA_TOKENS = 600
#: Brackets (``{`` ``(`` ``[`` ``\\lfloor`` ``\\begin``) and sums (``\\sum`` nests what follows it)
#: open at once. SymPy's LaTeX parser recurses about 15 frames a level; Python's stack holds 1000.
MAX_NESTING_DEPTH = 24
#: Digits of a number: a literal, or a constant the formula computes (a power, a product).
MAX_NUMBER_DIGITS = 100
#: The size of an exponent (``x^{100}``; ``(a + b)^{100}`` also counts against the expansion).
MAX_EXPONENT = 100
#: The largest factorial (``50!`` has 65 digits).
MAX_FACTORIAL_ARGUMENT = 50
#: Values one index of a sum, a max or a where-range takes (``\\sum_{k=1}^{4096}`` is document 004's).
MAX_SUM_RANGE = MAX_EXPANSION_TERMS
# MAX_EXPANSION_TERMS (symcnn.symbolic.derive, 20,000): the terms of a claim's expansion, and of a
# configuration's (symcnn derive refuses larger; the index checker derives at each configuration).
#: The index checker's search: the expansions of all the configurations it evaluates at, in terms
#: (each at most MAX_EXPANSION_TERMS), and the terms the claim sums there, all entries together (a
#: claim has about as many terms as the derivation it is compared with). The documents' claims
#: need at most 2,200 and 4,000; document 000's at one configuration of 17,000 terms, 17,000 and 18,000.
MAX_SEARCH_TERMS = 2 * MAX_EXPANSION_TERMS
MAX_EVALUATED_TERMS = 2 * MAX_EXPANSION_TERMS
#: ``--input``: the height and width of a spatial input, and the features of a flat one.
MAX_INPUT_SIDE = 64
MAX_INPUT_FEATURES = MAX_INPUT_SIDE * MAX_INPUT_SIDE
#: ``--kernel``, ``--stride``, ``--padding``, ``--dilation``: each side.
MAX_WINDOW = 16
#: ``--channels-in``, ``--channels-out``.
MAX_CHANNELS = 64
#: ``--batch``.
MAX_BATCH = 16
#: ``--values``: numbers given (one per input element; the expansion limit bounds the input anyway).
MAX_VALUES = MAX_EXPANSION_TERMS


def summary() -> str:
    """The limits in one paragraph, for the documentation (docs/errata.md, "How claims are read")."""
    return (f"a formula of at most {MAX_FORMULA_CHARACTERS:,} characters, {MAX_FORMULA_TOKENS:,} tokens and "
            f"{MAX_NESTING_DEPTH} brackets, sums or powers open at once; numbers of at most "
            f"{MAX_NUMBER_DIGITS} digits, written or computed; exponents up to {MAX_EXPONENT}; factorials up to "
            f"{MAX_FACTORIAL_ARGUMENT}!; "
            f"a sum's index over at most {MAX_SUM_RANGE:,} values; a claim that expands to at most "
            f"{MAX_EXPANSION_TERMS:,} terms. The index checker derives at configurations of at most "
            f"{MAX_EXPANSION_TERMS:,} terms each and {MAX_SEARCH_TERMS:,} together, where the claim sums at "
            f"most {MAX_EVALUATED_TERMS:,} terms. Options: `--input` up to {MAX_INPUT_SIDE}x{MAX_INPUT_SIDE} "
            f"({MAX_INPUT_FEATURES:,} features), `--kernel`, `--stride`, `--padding` and `--dilation` up to "
            f"{MAX_WINDOW}, `--channels-in` and `--channels-out` up to {MAX_CHANNELS}, `--batch` up to "
            f"{MAX_BATCH}, `--values` up to {MAX_VALUES:,} numbers")


# --- the text ------------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"\\[A-Za-z]+|\\.|[A-Za-z]+|\d+(?:\.\d*)?|\*\*|\S", re.S)
_LITERAL = re.compile(r"(?<![A-Za-z_])(\d+)(?:\.(\d*))?(?:[eE]([+-]?\d+))?")
_NESTING = re.compile(r"\\begin\b|\\end\b|\\l(?:floor|ceil|angle)\b|\\r(?:floor|ceil|angle)\b|\\[{}]|[{}()\[\]]"
                      r"|\\(?:sum|prod|max|min)\b|\*\*|\^(?!\s*\{)|(?:\|\s*)+|[-+*/=,;&]|\\\\")


def check_text(text: str) -> None:
    """Refuse a formula text beyond the limits on its length, tokens, nesting and literals.

    >>> check_text(r"\\frac{1}{" * 30 + "x" + "}" * 30)
    Traceback (most recent call last):
    ...
    symcnn.checking.claims.ClaimSyntaxError: brackets, sums or powers nested 30 deep: the checker's limit is 24
    """
    if not isinstance(text, str):
        return  # the reader refuses it
    if len(text) > MAX_FORMULA_CHARACTERS:
        reject(f"longer than {MAX_FORMULA_CHARACTERS:,} characters ({len(text):,}): the checker's limit")
    tokens = len(_TOKEN.findall(text))
    if tokens > MAX_FORMULA_TOKENS:
        reject(f"{tokens:,} tokens (names, numbers, operators, brackets): the checker's limit is "
               f"{MAX_FORMULA_TOKENS:,}")
    depth = _nesting(text)
    if depth > MAX_NESTING_DEPTH:
        reject(f"brackets, sums or powers nested {depth} deep: the checker's limit is {MAX_NESTING_DEPTH}")
    for match in _LITERAL.finditer(text):
        digits = len(match.group(1)) + len(match.group(2) or "")
        if digits > MAX_NUMBER_DIGITS:
            reject(f"a number of {digits:,} digits: the checker's limit is {MAX_NUMBER_DIGITS}")
        if match.group(3) and abs(int(match.group(3))) > MAX_NUMBER_DIGITS:
            reject(f"the number {match.group(0)!r}: exponents of at most {MAX_NUMBER_DIGITS} (the checker's limit)")


def _nesting(text: str) -> int:
    """The most brackets, sums and powers open at once. A sum nests what follows it up to the end
    of its group or the next ``=`` ``,`` ``;`` ``&`` ``\\\\`` (``\\sum_a \\sum_b x`` is 2 deep), a
    power without braces (SymPy syntax's ``a**b**c``) up to the next other operator, and a run of
    ``|`` is as deep as it is long (``||x||``)."""
    groups = [[0, 0]]  # per open group: the sums and the powers open in it
    deepest = 0
    for match in _NESTING.finditer(text):
        token = match.group(0)
        bars = token.count("|")
        if token in ("=", ",", ";", "&", "\\\\"):
            groups[-1] = [0, 0]
        elif token in ("+", "-", "*", "/"):
            groups[-1][1] = 0
        elif token.startswith(("\\sum", "\\prod", "\\max", "\\min")):
            groups[-1][0] += 1
        elif token in ("**", "^"):
            groups[-1][1] += 1
        elif token in ("{", "(", "[", "\\{", "\\begin") or token.startswith("\\l"):
            groups.append([0, 0])
        elif len(groups) > 1 and not bars:
            groups.pop()
        deepest = max(deepest, len(groups) - 1 + sum(map(sum, groups)) + bars)
    return deepest


# --- options and configurations --------------------------------------------------------------------------------

_WINDOW_OPTIONS = ("kernel", "stride", "padding", "dilation")
_COUNT_OPTIONS = {"channels_in": MAX_CHANNELS, "channels_out": MAX_CHANNELS, "batch": MAX_BATCH}


def check_options(options, flat_input: bool) -> None:
    """Refuse options (:class:`~symcnn.checking.result.CheckOptions`) above their limits, naming the
    option; ``flat_input``: the op's input is a number of features. Values of the wrong type or
    below their minimum are left to the checks that read them.

    >>> from symcnn.checking.result import CheckOptions
    >>> check_options(CheckOptions(input_size=(100000, 100000)), flat_input=False)
    Traceback (most recent call last):
    ...
    ValueError: input_size: at most 64 per side (the checker's limit), got 100000x100000
    """
    for name in _WINDOW_OPTIONS:
        _check_sides(name, getattr(options, name), MAX_WINDOW)
    if isinstance(options.input_size, int) and flat_input:
        _check_sides("input_size", options.input_size, MAX_INPUT_FEATURES, "features")
    else:
        _check_sides("input_size", options.input_size, MAX_INPUT_SIDE)
    for name, maximum in _COUNT_OPTIONS.items():
        _check_sides(name, getattr(options, name), maximum, "")
    if options.values is not None:
        try:
            count = len(options.values)
        except TypeError:
            raise ValueError(f"values: must be a sequence of numbers, got {type(options.values).__name__}") from None
        if count > MAX_VALUES:
            raise ValueError(f"values: at most {MAX_VALUES:,} numbers (the checker's limit), got {count:,}")


def _check_sides(name: str, value, maximum: int, unit: str = "per side") -> None:
    sides = value if isinstance(value, (tuple, list)) else (value,)
    if any(isinstance(side, int) and not isinstance(side, bool) and side > maximum for side in sides):
        shown = "x".join(str(side) if abs(side) < 10**12 else "(huge)" for side in sides
                         if isinstance(side, int))
        unit = f" {unit}" if unit else ""
        raise ValueError(f"{name}: at most {maximum:,}{unit} (the checker's limit), got {shown}")


def check_search_size(sizes: list[tuple[int, str]]) -> None:
    """Refuse a search whose configurations (``(terms, description)`` each: the size of its
    derivation's expansion) expand to more than :data:`MAX_EXPANSION_TERMS` terms one, or more than
    :data:`MAX_SEARCH_TERMS` all together.

    >>> check_search_size([(300, "input 2x3"), (24_000, "input 64x64")])
    Traceback (most recent call last):
    ...
    ValueError: configuration: input 64x64 expands to 24,000 terms; the checker's limit is 20,000 (give smaller sizes)
    """
    for terms, description in sizes:
        if terms > MAX_EXPANSION_TERMS:
            raise ValueError(f"configuration: {description} expands to {terms:,} terms; the checker's limit is "
                             f"{MAX_EXPANSION_TERMS:,} (give smaller sizes)")
    total = sum(terms for terms, _ in sizes)
    if total > MAX_SEARCH_TERMS:
        raise ValueError(f"configuration: the {len(sizes)} configurations to search expand to {total:,} terms; "
                         f"the checker's limit is {MAX_SEARCH_TERMS:,} (fix more of the sizes)")


class Budget:
    """The terms the index checker evaluates, over all the configurations of one check: at most
    :data:`MAX_EVALUATED_TERMS`. A sum asks before it makes its terms (:meth:`afford` for a
    sum's outer indices, :meth:`spend` for the terms themselves).

    >>> budget = Budget()
    >>> budget.spend(10, "input 2x2")
    >>> budget.afford(MAX_EVALUATED_TERMS, "input 2x2")
    Traceback (most recent call last):
    ...
    symcnn.checking.claims.ClaimSyntaxError: at input 2x2 the claim sums more than 40,000 terms (the checker's limit)
    """

    def __init__(self, limit: int = MAX_EVALUATED_TERMS):
        self.left = limit
        self.limit = limit

    def afford(self, terms: int, where: str) -> None:
        """Refuse unless ``terms`` more fit."""
        if terms > self.left:
            reject(f"at {where} the claim sums more than {self.limit:,} terms (the checker's limit)")

    def spend(self, terms: int, where: str) -> None:
        """Count ``terms`` more, refusing unless they fit."""
        self.afford(terms, where)
        self.left -= terms
