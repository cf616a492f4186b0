"""General index formulas as display rows: document 000's form, with every condition stated.

A derived gradient (:class:`~symcnn.symbolic.adjoint.GradientFormula`) is shown as its sums, its body and an
Iverson bracket of its conditions. Two display rewrites make it read like document 000, and
change nothing of its value:

- an output index that the derivation solved for (``i = (k + p_h - d_h u)/s_h``) gets its own
  name back, and the formula reads ``dL/dY[n, c_out, i, j]`` with "where ``i = ...``";
- a lower and an upper bound of the same index are written as one range, ``0 <= i <= H_out - 1``.

Example:
    >>> from symcnn.symbolic import ops
    >>> from symcnn.symbolic.adjoint import derive_gradient
    >>> shown = gradient_display(derive_gradient(ops.conv2d(), "input").substitute({ops.s_h: 1, ops.s_w: 1}))
    >>> [definition.name for definition in shown.definitions]
    ['i', 'j']
    >>> [condition.kind for condition in shown.conditions]
    ['range', 'range']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import sympy
from sympy import Eq, Expr, Indexed, Mod

from symcnn.symbolic.adjoint import GatherTerm, GradientFormula, lift_conditions
from symcnn.symbolic.functions import Bracket
from symcnn.symbolic.ops import IndexFormula
from symcnn.printing.nodes import is_lower_bound
from symcnn.printing.text import OUT_SIZE_NAMES, readable
from symcnn.report.mathtex import WIDTH, ReportPrinter, chunk_rows, visible_width

__all__ = ["Definition", "Condition", "FormulaDisplay", "forward_display", "gradient_display", "size_rows"]


@dataclass(frozen=True)
class Definition:
    """A solved index given its name back: ``name = value`` (printed)."""

    name: str
    latex: str


@dataclass(frozen=True)
class Condition:
    """One condition of a gradient term: ``kind`` is ``divisibility`` or ``range``."""

    kind: str
    latex: str


@dataclass(frozen=True)
class FormulaDisplay:
    """A formula laid out: the aligned ``rows`` of its equation, the solved indices it names, its
    conditions (for a list beside it) and the rows of the output sizes it mentions (``H_out``)."""

    rows: tuple[str, ...]
    definitions: tuple[Definition, ...] = ()
    conditions: tuple[Condition, ...] = ()
    sizes: tuple[str, ...] = ()


def _is_divisibility(condition) -> bool:
    return isinstance(condition, Eq) and isinstance(condition.lhs, Mod) and condition.rhs == 0


def _name_solved_indices(term: GatherTerm, gradient: GradientFormula) -> tuple[GatherTerm, list]:
    """Give each solved output index of ``dL/dY`` its forward name where that name is free."""
    if gradient.grad_output is None:
        return term, []
    taken = {limit[0] for limit in term.limits} | set(gradient.indices)
    reads = [node for node in sympy.preorder_traversal(term.body)
             if isinstance(node, Indexed) and node.base == gradient.grad_output.base]
    replacements, definitions = {}, []
    for read in reads[:1]:  # a gather term reads the upstream gradient once
        for value, name in zip(read.indices, gradient.forward.indices):
            if value.is_Symbol or value.is_Integer or name in taken or value in replacements:
                continue
            replacements[value] = name
            definitions.append((name, value))
            taken.add(name)
    if not replacements:
        return term, []
    # Rebuilt unevaluated: "0 <= i" is a condition on the value i names, not on the symbol i.
    conditions = tuple(c.func(c.lhs.xreplace(replacements), c.rhs.xreplace(replacements), evaluate=False)
                       if isinstance(c, sympy.Rel) else c.xreplace(replacements) for c in term.conditions)
    renamed = GatherTerm(term.limits, conditions, term.body.xreplace(replacements))
    return renamed, definitions


def _condition_rows(conditions, printer: ReportPrinter) -> list[Condition]:
    """Divisibility first, then one range per index (``0 <= i <= H_out - 1``), in derivation order."""
    divisible = [Condition("divisibility", printer.doprint(c)) for c in conditions if _is_divisibility(c)]
    lower, upper, other = {}, {}, []
    for condition in conditions:
        if _is_divisibility(condition):
            continue
        if not isinstance(condition, (sympy.LessThan, sympy.StrictLessThan)):
            other.append(condition)
        elif condition.lhs.is_number or is_lower_bound(condition):  # 0 <= i, floor(H_in*i/H_out) <= k
            lower.setdefault(condition.rhs, condition)
        else:  # i <= H_out - 1
            upper.setdefault(condition.lhs, condition)
    ranges = []
    for middle in list(lower) + [m for m in upper if m not in lower]:
        low, high = lower.get(middle), upper.get(middle)
        parts = []
        if low is not None:
            parts += [printer.doprint(low.lhs), r"\leq" if isinstance(low, sympy.LessThan) else "<"]
        parts.append(printer.doprint(middle))
        if high is not None:
            parts += [r"\leq" if isinstance(high, sympy.LessThan) else "<", printer.doprint(high.rhs)]
        ranges.append(Condition("range", " ".join(parts)))
    return divisible + ranges + [Condition("range", printer.doprint(c)) for c in other]


def _sums(limits, printer: ReportPrinter) -> str:
    return "".join(r"\sum_{%s=%s}^{%s} " % tuple(printer.doprint(part) for part in limit) for limit in limits)


def _term_rows(lhs: str, first: bool, sign: str, term: str, conditions: list[Condition], width: int) -> list[str]:
    """``lhs &= term [c1 and c2 ...]``, the bracket continued on further rows when long."""
    shown = term if sign == "+" else f"- {term}"
    rows = [f"{lhs} &= {shown}" if first else rf"&\quad {sign} {term}"]
    if not conditions:
        return rows
    pieces = [r"\bigl[\," + conditions[0].latex] + [r"\land " + c.latex for c in conditions[1:]]
    pieces[-1] += r"\,\bigr]"
    used = visible_width(rows[0])
    for piece in pieces:
        size = visible_width(piece) + 1
        if used + size > width:  # a new row, indented under the right-hand side
            rows.append(r"&\qquad " + piece)
            used = 8 + size
        else:
            rows[-1] += " " + piece
            used += size
    return rows


def size_rows(formula: IndexFormula, display: Expr, printer: ReportPrinter) -> tuple[str, ...]:
    """``H_out &= ...`` for each named output size that ``display`` mentions (and that is not a setting)."""
    rows = []
    for role, name in OUT_SIZE_NAMES.items():
        size = formula.parameters.get(role)
        if size is not None and size != name and display.has(name):
            rows.append(f"{printer.doprint(name)} &= {printer.doprint(size)}")
    return tuple(rows)


def gradient_display(gradient: GradientFormula, printer: Optional[ReportPrinter] = None,
                     width: int = WIDTH) -> FormulaDisplay:
    """The gradient's equation rows, its named indices and its conditions."""
    printer = printer or ReportPrinter()
    body_printer = printer.with_settings(long_frac_ratio=2)  # a long numerator: (1/(K_h K_w)) dL/dY
    parameters = gradient.forward.parameters
    lhs = printer.doprint(gradient.gradient.base[gradient.indices])
    pieces, definitions, conditions, shown = [], [], [], []
    for term in gradient.terms or (GatherTerm((), (), sympy.S.Zero),):
        term, solved = _name_solved_indices(term, gradient)
        body = readable(term.body, parameters)
        term_conditions = [readable(c, parameters) for c in term.conditions]
        limits = [(v, readable(lo, parameters), readable(hi, parameters)) for v, lo, hi in term.limits]
        listed = _condition_rows(term_conditions, printer)
        sign = "+"
        if not limits and body.could_extract_minus_sign():
            sign, body = "-", -body
        printed_body = body_printer.doprint(body)
        if isinstance(body, sympy.Add) and (limits or listed):
            printed_body = r"\left(%s\right)" % printed_body
        pieces.append((sign, _sums(limits, printer) + printed_body, listed))
        definitions += [Definition(printer.doprint(name), printer.doprint(sympy.together(readable(value, parameters))))
                        for name, value in solved]
        conditions += [c for c in listed if c not in conditions]
        shown += [body, *term_conditions, *(hi for _, _, hi in limits)]
    if any(listed for _, _, listed in pieces):  # each term its own rows, its bracket continued
        rows = []
        for position, (sign, printed, listed) in enumerate(pieces):
            rows += _term_rows(lhs, position == 0, sign, printed, listed, width)
    else:  # terms without conditions: as many to a row as fit
        rows = chunk_rows(lhs, [(sign, printed) for sign, printed, _ in pieces], width)
    everything = sympy.Tuple(*shown)
    return FormulaDisplay(tuple(rows), tuple(definitions), tuple(conditions),
                          size_rows(gradient.forward, everything, printer))


def forward_display(formula: IndexFormula, printer: Optional[ReportPrinter] = None,
                    width: int = WIDTH) -> FormulaDisplay:
    """The forward equation ``Y[indices] = rhs`` as rows (a long sum broken between terms)."""
    printer = (printer or ReportPrinter()).with_settings(long_frac_ratio=2)  # (1/(K_h K_w)) sum ...
    lhs = printer.doprint(formula.equation().lhs)
    if formula.rhs.has(Bracket):
        return _bracketed_display(formula, lhs, printer, width)
    rhs = readable(formula.rhs, formula.parameters)
    if isinstance(rhs, sympy.Add):
        # The reduction first and the bias after it, as the documents write a layer.
        ordered = sorted(printer._as_ordered_terms(rhs), key=lambda term: not term.has(sympy.Sum))
        terms = [("-", printer.doprint(-term)) if position and term.could_extract_minus_sign()
                 else ("+", printer.doprint(term)) for position, term in enumerate(ordered)]
        rows = chunk_rows(lhs, terms, width)
    else:
        rows = [f"{lhs} &= {printer.doprint(rhs)}"]
    return FormulaDisplay(tuple(rows), sizes=size_rows(formula, rhs, printer.with_settings(long_frac_ratio=None)))


def _bracketed_display(formula: IndexFormula, lhs: str, printer: ReportPrinter, width: int) -> FormulaDisplay:
    """A forward formula that states conditions where it reads (a transposed convolution's brackets):
    each term its sums, its body and its bracket, continued on further rows, as a gradient's terms."""
    parameters, rows, conditions, shown = formula.parameters, [], [], []
    terms = sorted(sympy.Add.make_args(formula.rhs), key=lambda term: not term.has(sympy.Sum))  # the bias after
    for position, term in enumerate(terms):
        limits, function = (term.limits, term.function) if isinstance(term, sympy.Sum) else ((), term)
        stated, body = lift_conditions(function)
        listed = _condition_rows([readable(c, parameters) for c in stated], printer.with_settings(long_frac_ratio=None))
        sums = _sums([(v, readable(lo, parameters), readable(hi, parameters)) for v, lo, hi in limits], printer)
        rows += _term_rows(lhs, position == 0, "+", sums + printer.doprint(readable(body, parameters)), listed, width)
        conditions += [c for c in listed if c not in conditions]
        shown.append(readable(term, parameters))
    sizes = size_rows(formula, sympy.Tuple(*shown), printer.with_settings(long_frac_ratio=None))
    return FormulaDisplay(tuple(rows), conditions=tuple(conditions), sizes=sizes)
