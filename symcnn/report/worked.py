"""``symcnn report --example NAME``: a worked example of the documents, as document 002 presents one.

The tensors the example starts from (input, kernel, upstream gradient) as matrices, then every
derived value: each output entry, each weight gradient, the complete input gradient (as entries
and, where it fits, as a matrix), then the chain rule of an entry of each gradient, as
``symcnn derive ... --steps`` shows it. Every value is symcnn's own derivation (``WorkedExample.derive``,
:mod:`symcnn.checking.examples`), compared exactly with the document (:func:`symcnn.checking.examples.same`) when the
report is built, and marked as reproduced, completed by symcnn, or different.

Example:
    >>> report = example_report("conv_3x3_2x2")
    >>> report.title
    'Document 002: backpropagation through a 3×3 convolution with a 2×2 kernel'
    >>> [section.title for section in report.sections]
    ['Given', 'Derived', 'The chain rule, step by step']
"""

from __future__ import annotations

import itertools
import shlex
from typing import Any

import sympy
from sympy import Array

from symcnn.checking.documents import reference
from symcnn.checking.examples import EXAMPLES, WorkedExample, same
from symcnn.report.document import Display, Items, Prose, Report, Section
from symcnn.report.mathtex import (WIDTH, ReportPrinter, entry_rows, fitted_rows, gradient_entry_name, matrix_rows,
                                   matrix_width, scalar, sum_rows, tensor_cells, visible_width)
from symcnn.views.steps import latex_entries
from symcnn.symbolic.steps import ChainRule
from symcnn.symbolic.tensors import element_name, indices_of
from symcnn.symbolic.verify import exactly_equal

__all__ = ["example_report", "key_latex", "derive_command"]


def key_latex(key: str, inline: bool = False) -> str:
    """A result's key as the documents write it: ``dL/dX`` is ``\\frac{\\partial L}{\\partial X}``
    (``\\partial L/\\partial X`` in running text)."""
    if key.startswith("dL/d"):
        return (r"\partial L/\partial %s" if inline else r"\frac{\partial L}{\partial %s}") % key[4:]
    return key


def _prefix(key: str) -> str:
    """The letter an array's elements are named with: ``y`` for ``Y``, ``x`` for ``dL/dX``."""
    return (key[4:] if key.startswith("dL/d") else key).lower()


def _entry_name(key: str, index, shape) -> str:
    name = sympy.latex(sympy.Symbol(element_name(_prefix(key), index, shape)))
    return gradient_entry_name(name) if key.startswith("dL/d") else name


def _status(example: WorkedExample, key: str, value: Any) -> str:
    if key in example.completed:
        return "Completed by symcnn: the document leaves it out."
    if same(example.expected[key], value):
        return "Equal, exactly, to the document's."
    return f"Differs from the document, which states {sympy.sstr(example.expected[key])}."


def _elements(array: Array) -> list:
    return [array[index] for index in indices_of(array.shape)]


def _common_denominator(array: Array):
    """The one multi-term denominator every entry of ``array`` shares (as written), or ``None``."""
    denominators = {sympy.fraction(entry)[1] for entry in _elements(array)}
    if len(denominators) == 1:
        (denominator,) = denominators
        if isinstance(denominator, sympy.Add):
            return denominator
    return None


def _quotient_form(entry, denominator, generators):
    """``entry`` as ``q + r/D`` (polynomial division by ``D``), the shortest over the orders of
    the generators (each last once); checked equal to ``entry``."""
    numerator = sympy.fraction(entry)[0]
    candidates = []
    for last in generators:
        order = [g for g in generators if g != last] + [last]
        quotient, remainder = sympy.div(numerator, denominator, *order)
        candidates.append((sympy.count_ops(quotient) + sympy.count_ops(remainder), quotient, remainder))
    _, quotient, remainder = min(candidates, key=lambda c: c[0])
    return quotient, remainder


def _compact(array: Array, printer: ReportPrinter):
    """Long rational entries over one shared denominator ``D`` as ``r/D + q``, with ``D`` named.

    Returns ``(entries, rows defining D)``; the entries unchanged (and no rows) otherwise.
    """
    if max(visible_width(printer.doprint(entry)) for entry in _elements(array)) <= WIDTH:
        return _elements(array), []
    denominator = _common_denominator(array)
    if denominator is None:
        return _elements(array), []
    name = sympy.Symbol("D")
    generators = sorted(denominator.atoms(sympy.exp), key=sympy.default_sort_key) or \
        sorted(denominator.free_symbols, key=sympy.default_sort_key)
    entries = []
    for entry in _elements(array):
        quotient, remainder = _quotient_form(entry, denominator, generators)
        if not exactly_equal(quotient + remainder / denominator, entry):
            raise AssertionError(f"the display form of {entry} is not equal to it")
        entries.append(sympy.Add(remainder / name, quotient))
    return entries, sum_rows("D", denominator, printer)


def _array_blocks(example: WorkedExample, key: str, array: Array, printer: ReportPrinter) -> list:
    shape = tuple(array.shape)
    name = key_latex(key)
    blocks = []
    symbolic = any(not sympy.sympify(entry).is_number for entry in _elements(array))
    if symbolic:
        entries, definitions = _compact(array, printer)
        rows = entry_rows([(_entry_name(key, index, shape), entry)
                           for index, entry in zip(indices_of(shape), entries)], printer, shape[-1])
        blocks.append(Display(tuple(rows)))
        if definitions:
            blocks += [Prose("where $D$ is the shared denominator:"), Display(tuple(definitions))]
    cells = tensor_cells(name, array, printer)
    several = len(_elements(array)) > 1
    if not symbolic or (several and len(cells) == 1 and matrix_width(cells[0][1]) + visible_width(name) < WIDTH):
        if symbolic:
            blocks.append(Prose("As a matrix:"))
        blocks.append(Display(tuple(matrix_rows([(name, array)], printer)), aligned=False))
    return blocks


def example_report(name: str) -> Report:
    """The report of one worked example (a name of :data:`symcnn.checking.examples.EXAMPLES`)."""
    if name not in EXAMPLES:
        raise ValueError(f"example: unknown example {name!r}; choose from {', '.join(EXAMPLES)}")
    example = EXAMPLES[name]
    derived = example.derive()
    printer = ReportPrinter()
    document = reference(example.document)
    intro = [Prose(f"From {document.label}, section “{example.section}”: {example.title}."),
             Prose(f"The document's file: `{document.file_name}`. symcnn's name for the example: `{example.name}`.")]
    if example.note:
        intro.append(Prose(example.note))
    sections = []
    if example.given:
        given = [(key_latex(key), derived[key]) for key in example.given]
        sections.append(Section("Given", (Display(tuple(matrix_rows(given, printer)), aligned=False),)))
    blocks = []
    keys = [key for key in itertools.chain(example.expected, derived) if key not in example.given]
    scalars = []
    for key in dict.fromkeys(keys):  # expected order first, without repeats
        value = derived[key]
        if isinstance(value, sympy.NDimArray):
            blocks.append(Prose(f"${key_latex(key, inline=True)}$, each entry. {_status(example, key, value)}"))
            blocks += _array_blocks(example, key, value, printer)
        else:
            scalars.append(f"{key}: ${scalar(value, printer)}$. {_status(example, key, value)}")
    if scalars:
        blocks.append(Items(tuple(scalars)))
    sections.append(Section("Derived", tuple(blocks)))
    if example.chain_rule is not None:
        sections.append(_chain_rule_section(example.chain_rule))
    summary = f"`{example.name}`, section “{example.section}”: {example.title}"
    title = f"Document {document.number}: {example.heading or example.title}"
    return Report(f"example-{example.name}", title, summary, tuple(sections), tuple(intro))


def _chain_rule_section(rule: ChainRule) -> Section:
    """An entry of each gradient as its chain rule: every output's upstream gradient times its partial
    derivative (by SymPy, from the expanded forward expressions), the terms that survive and, at
    input values, the numbers."""
    blocks: list = []
    for number, (entry, rows) in enumerate(latex_entries(rule.steps())):
        lead = ("Each gradient entry is a sum over the outputs: the output's upstream gradient times its partial "
                "derivative with respect to the entry (SymPy's, of the expanded forward expressions; an output that "
                "does not contain the entry contributes 0). ") if number == 0 else ""
        blocks += [Prose(f"{lead}The entry $\\partial L/\\partial {sympy.latex(entry.symbol)}$:"),
                   Display(fitted_rows(rows))]
    blocks.append(Prose(f"`{derive_command(rule)}` prints the same steps (`--steps` shows every entry)."))
    return Section("The chain rule, step by step", tuple(blocks))


def _size(value) -> str:
    return str(value[0]) if value[0] == value[1] else f"{value[0]}x{value[1]}"


def derive_command(rule: ChainRule) -> str:
    """The ``symcnn derive`` command that prints ``rule``'s steps.

    >>> derive_command(EXAMPLES["conv_3x3_2x2"].chain_rule)
    'symcnn derive conv2d --input 3x3 --kernel 2 --no-bias --entry w00 --entry x11'
    """
    config = rule.config
    settings = config.settings
    size = config.input_size  # (H, W), or the number of features of a vector
    words = ["symcnn", "derive", config.op, "--input", str(size) if isinstance(size, int) else "x".join(map(str, size))]
    if "kernel" in settings:
        words += ["--kernel", _size(settings["kernel"])]
    default_stride = (1, 1) if "bias" in settings else settings.get("kernel")  # a pool's stride: its window
    for key, default in (("stride", default_stride), ("padding", (0, 0)), ("dilation", (1, 1))):
        if key in settings and tuple(settings[key]) != default:
            words += [f"--{key}", _size(settings[key])]
    if settings.get("bias") is False:
        words.append("--no-bias")
    if rule.values:
        words += ["--values", ";".join(",".join(map(str, row)) for row in rule.values)]
    for entry in rule.entries:
        words += ["--entry", entry]
    return shlex.join(words)
