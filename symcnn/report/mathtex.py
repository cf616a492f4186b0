"""LaTeX for reports: symcnn's printer with tensor display names, and display rows that fit a page.

:class:`ReportPrinter` extends :class:`~symcnn.printing.latex.SymcnnLatexPrinter` (``_print_<Class>``
methods only) with display names for tensors (``S1`` printed ``S^{[1]}``, its gradient
``\\frac{\\partial L}{\\partial S^{[1]}_{...}}``), nested sums written one per index as document
000 writes them, and an indicator ``[c]`` without a factor 1. The layout helpers split what is
printed into rows of an ``aligned`` block: a long sum term by term, a condition list condition by
condition, a small array as a matrix. They lay out printed strings; the math comes in as SymPy
objects from :mod:`symcnn.symbolic.derive`, :mod:`symcnn.symbolic.adjoint` and :mod:`symcnn.symbolic.ops`.

Example:
    >>> from sympy import IndexedBase, symbols
    >>> i, j = symbols("i j", integer=True)
    >>> ReportPrinter({"A1": "A^{[1]}"}).doprint(IndexedBase("dL/dA1")[i, j])
    '\\\\frac{\\\\partial L}{\\\\partial A^{[1]}_{i, j}}'
    >>> for row in sum_rows("y", sum(symbols("a0:9")), width=20):
    ...     print(row)
    y &= a_{0} + a_{1} + a_{2}
    &\\quad + a_{3} + a_{4} + a_{5}
    &\\quad + a_{6} + a_{7} + a_{8}
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping, Optional, Sequence

import sympy
from sympy import Array, Expr, Piecewise

from symcnn.printing.latex import SymcnnLatexPrinter
from symcnn.printing.nodes import Iverson
from symcnn.symbolic.tensors import element_name, indices_of

__all__ = ["ReportPrinter", "reader_tex", "WIDTH", "visible_width", "indicators", "sum_rows", "chunk_rows", "matrix",
           "tensor_matrices", "tensor_cells", "matrix_width", "matrix_rows", "entry_rows", "entry_name",
           "gradient_entry_name", "scalar", "fitted_rows"]

#: Visible characters per display row: about the text width of the PDF (11pt, 2.5 cm margins)
#: and of a GitHub page.
WIDTH = 64


def reader_tex(label: str) -> str:
    """A layer label inside ``\\mathrm{}``: its underscores escaped.

    >>> reader_tex("block_1")
    'block\\\\_1'
    """
    return label.replace("_", r"\_")


class ReportPrinter(SymcnnLatexPrinter):
    """symcnn's LaTeX printer with display names for tensors (``IndexedBase`` label -> LaTeX); a gradient
    labelled ``dL/dA1|c2`` is the part that the layer ``c2``, one of several readers of ``A1``, sends back:
    ``(\\partial L/\\partial A^{[1]})_{\\mathrm{c2}}``.
    """

    def __init__(self, names: Optional[Mapping[str, str]] = None, settings: Optional[dict] = None):
        super().__init__(settings or {})
        self.names = dict(names or {})
        self.custom = dict(settings or {})

    def with_settings(self, **settings) -> "ReportPrinter":
        """The same names, more settings (``long_frac_ratio=2``: ``\\frac{1}{K_h K_w} \\sum ...``)."""
        return ReportPrinter(self.names, {**self.custom, **settings})

    def _indices(self, expr, separator: str) -> str:
        return separator.join(self._print(index) for index in expr.indices)

    def _print_IndexedBase(self, expr):
        return self.names.get(str(expr.label)) or super()._print_IndexedBase(expr)

    def _print_Indexed(self, expr):
        label = str(expr.base.label)
        tensor, _, reader = label[4:].partition("|")
        if label.startswith("dL/d") and reader and tensor in self.names:  # the part one reader of a fan-out sends
            return r"\left(\frac{\partial L}{\partial %s_{%s}}\right)_{\mathrm{%s}}" % (
                self.names[tensor], self._indices(expr, ", "), reader_tex(reader))
        if label.startswith("dL/d") and label[4:] in self.names:
            return r"\frac{\partial L}{\partial %s_{%s}}" % (self.names[label[4:]], self._indices(expr, ", "))
        if label in self.names:  # S^{[1]}_{n,c}: the subscript under the superscript
            return r"%s_{%s}" % (self.names[label], self._indices(expr, ","))
        return super()._print_Indexed(expr)

    def _print_Sum(self, expr):
        # One sigma per index, outermost first: document 000's notation.
        sums = "".join(r"\sum_{%s=%s}^{%s} " % tuple(self._print(part) for part in limit) for limit in expr.limits)
        function = self._print(expr.function)
        if isinstance(expr.function, sympy.Add):
            function = r"\left(%s\right)" % function
        return sums + function

    def _print_Piecewise(self, expr):
        if len(expr.args) == 2 and expr.args[1].cond == sympy.true and expr.args[1].expr == 0:
            return super()._print_Piecewise(expr)  # an Iverson bracket
        # Cases in display style, so that a derivative in a branch is not set small.
        branches = []
        for value, condition in expr.args:
            when = r"\text{otherwise}" if condition == sympy.true else r"\text{if } %s" % self._print(condition)
            branches.append(r"\displaystyle %s & %s" % (self._print(value), when))
        return r"\begin{cases} %s \end{cases}" % r" \\ ".join(branches)

    def _print_Iverson(self, expr):
        if expr.term == 1:  # an indicator: [c], not 1 [c]
            return r"\left[%s\right]" % r" \,\land\, ".join(self._print(c) for c in expr.conditions)
        return super()._print_Iverson(expr)


def _greater_form(condition):
    """``a < b`` as ``b > a`` (unevaluated): a routing condition then reads "x11 > x00"."""
    if isinstance(condition, sympy.StrictLessThan):
        return sympy.StrictGreaterThan(condition.rhs, condition.lhs, evaluate=False)
    if isinstance(condition, sympy.LessThan):
        return sympy.GreaterThan(condition.rhs, condition.lhs, evaluate=False)
    return condition


def indicators(expr):
    """``Piecewise((t, c), (0, True))`` rewritten as ``Iverson(t, c)`` for display, each comparison
    in its greater-than form.

    (SymPy's ``And`` stores ``x01 > x00`` as ``x00 < x01``; the routing condition of an expanded
    max pooling reads better the other way round: every comparison then names the winner first.)
    """
    if isinstance(expr, Piecewise) and len(expr.args) == 2 and expr.args[1].cond == sympy.true \
            and expr.args[1].expr == 0:
        term, condition = expr.args[0]
        conditions = condition.args if isinstance(condition, sympy.And) else (condition,)
        return Iverson(indicators(term), [_greater_form(c) for c in conditions])
    if not getattr(expr, "args", None) or isinstance(expr, (sympy.Symbol, sympy.Number)):
        return expr
    args = [indicators(arg) for arg in expr.args]
    if all(new is old for new, old in zip(args, expr.args)):
        return expr
    return expr.func(*args)


_COMMAND = re.compile(r"\\(?:left|right|bigl|bigr|Bigl|Bigr|quad|qquad|,|;|!|:|mathrm|mathbf|operatorname|"
                      r"begin\{[a-z]*\}|end\{[a-z]*\}|substack|text|mathbb|limits)")


def _group(text: str, start: int) -> tuple[str, int]:
    """The brace group (or single character) at ``start``: its content and the index after it."""
    if start >= len(text):
        return "", start
    if text[start] != "{":
        return text[start], start + 1
    depth = 0
    for position in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[position], 0)
        if depth == 0:
            return text[start + 1:position], position + 1
    return text[start + 1:], len(text)


_OPERATORS = re.compile(r"\\(?:leq|geq|land|lor|mid|cdot|times|in|to|neq)(?![A-Za-z])|[=+<>-]")


def visible_width(latex: str) -> float:
    """A rough width of printed LaTeX, in characters of body text, for line breaking.

    Subscripts and superscripts count 0.6 a character, an operator 2 (with its spacing); a
    fraction and a sum's limits count their wider part.

    >>> visible_width(r"\\frac{\\partial L}{\\partial x_{00}}"), visible_width(r"\\sum_{u=0}^{K_{h} - 1} a + b")
    (3.2, 6.8)
    """
    width, position = 0.0, 0
    while position < len(latex):
        char = latex[position]
        if latex.startswith(r"\frac", position):
            numerator, after = _group(latex, position + 5)
            denominator, position = _group(latex, after)
            width += max(visible_width(numerator), visible_width(denominator))
            continue
        if latex.startswith((r"\sum", r"\max", r"\prod"), position):
            position += 4 if latex.startswith(r"\sum", position) or latex.startswith(r"\max", position) else 5
            limits = []
            while position < len(latex) and latex[position] in "_^":
                limit, position = _group(latex, position + 1)
                limits.append(0.6 * visible_width(limit))
            width += max([1.5] + limits)
            continue
        if char in "_^":
            script, position = _group(latex, position + 1)
            width += 0.6 * visible_width(script)
            continue
        operator = _OPERATORS.match(latex, position)
        if operator:
            width += 2
            position = operator.end()
            continue
        command = _COMMAND.match(latex, position)
        if command:
            position = command.end()
            continue
        if char == "\\":
            name = re.match(r"\\[A-Za-z]+|\\.", latex[position:]).group(0)
            width += 1  # any other command: one symbol
            position += len(name)
            continue
        if not char.isspace() and char not in "{}&":
            width += 1
        position += 1
    return round(width, 1)


def _signed_terms(printer: ReportPrinter, expr: Expr) -> list[tuple[str, str]]:
    """``(sign, printed term)`` of a sum in the printer's order (``_print_Add``'s rule)."""
    terms = []
    for position, term in enumerate(printer._as_ordered_terms(expr)):
        sign = "+"
        if position and term.could_extract_minus_sign():
            sign, term = "-", -term
        printed = printer._print(term)
        if isinstance(term, sympy.Add):
            printed = r"\left(%s\right)" % printed
        terms.append((sign, printed))
    return terms


def chunk_rows(lhs: str, pieces: Sequence[tuple[str, str]], width: int = WIDTH, relation: str = "=") -> list[str]:
    """Rows ``lhs &= p1 + p2`` / ``&\\quad + p3 ...`` from ``(joiner, piece)`` pairs, each row under ``width``.

    The first joiner is dropped (``-`` is kept as a sign); a row holds at least one piece.
    """
    rows, current, used = [], [], visible_width(lhs) + 2
    for position, (joiner, piece) in enumerate(pieces):
        shown = piece if position == 0 and joiner == "+" else f"{joiner} {piece}"
        if current and used + visible_width(shown) > width:
            rows.append(" ".join(current))
            current, used = [], visible_width(lhs) // 2 + 4
        current.append(shown)
        used += visible_width(shown) + 2
    rows.append(" ".join(current))
    head = f"{lhs} &{relation} {rows[0]}" if lhs else f"&{relation} {rows[0]}"
    return [head] + [r"&\quad " + row for row in rows[1:]]


def sum_rows(lhs: str, expr, printer: Optional[ReportPrinter] = None, width: int = WIDTH) -> list[str]:
    """``lhs = expr`` as aligned rows, a long sum broken between its terms."""
    printer = printer or ReportPrinter()
    expr = indicators(sympy.sympify(expr))
    if isinstance(expr, sympy.Add):
        return chunk_rows(lhs, _signed_terms(printer, expr), width)
    return [f"{lhs} &= {printer.doprint(expr)}"]


def entry_rows(entries: Sequence[tuple[str, Expr]], printer: Optional[ReportPrinter] = None, columns: int = 1,
               width: int = WIDTH) -> list[str]:
    """Rows for ``lhs = value`` entries; short ones side by side, up to ``columns`` a row (an array's
    last axis, so that the rows mirror its matrix), long ones broken between terms."""
    printer = printer or ReportPrinter()
    each = [sum_rows(lhs, value, printer, width) for lhs, value in entries]
    if columns > 1 and all(len(rows) == 1 for rows in each):
        widest = max(visible_width(rows[0]) for rows in each) + 4
        fit = max(1, min(columns, int((width + 4) // widest)))
        if fit > 1:
            cells = [rows[0] for rows in each]
            return [r" & \qquad ".join(cells[start:start + fit]) for start in range(0, len(cells), fit)]
    return [row for rows in each for row in rows]


def scalar(value, printer: Optional[ReportPrinter] = None) -> str:
    """A value of a worked example (a number, an expression, a shape tuple) as LaTeX."""
    printer = printer or ReportPrinter()
    if isinstance(value, tuple):  # a shape
        return r" \times ".join(scalar(item, printer) for item in value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}".replace(",", r"\,")  # 120\,000\,000
    return printer.doprint(indicators(sympy.sympify(value)))


def matrix(rows: Iterable[Iterable[str]]) -> str:
    """A ``bmatrix`` of printed entries."""
    return r"\begin{bmatrix} " + r" \\ ".join(" & ".join(row) for row in rows) + r" \end{bmatrix}"


def matrix_width(rows: Sequence[Sequence[str]]) -> float:
    """The width of a matrix of printed entries: its widest column per column, with the spacing."""
    columns = max(len(row) for row in rows)
    widest = [max(visible_width(row[c]) for row in rows if c < len(row)) for c in range(columns)]
    return sum(widest) + 2 * columns + 1


def matrix_rows(named: Sequence[tuple[str, Array]], printer: Optional[ReportPrinter] = None,
                width: int = WIDTH) -> list[str]:
    """``X = [..], W = [..]`` display rows (centred), as many matrices to a row as fit."""
    printer = printer or ReportPrinter()
    pieces = []
    for name, array in named:
        for label, cells in tensor_cells(name, array, printer):
            pieces.append((f"{label} = {matrix(cells)}", visible_width(label) + 2 + matrix_width(cells)))
    rows, current, used = [], [], 0.0
    for text, size in pieces:
        if current and used + size + 3 > width:
            rows.append(r",\qquad ".join(current))
            current, used = [], 0.0
        current.append(text)
        used += size + 3
    rows.append(r",\qquad ".join(current))
    return rows


def tensor_matrices(name: str, array: Array, printer: Optional[ReportPrinter] = None) -> list[tuple[str, str]]:
    """``(label, bmatrix)`` for each matrix of :func:`tensor_cells`."""
    return [(label, matrix(cells)) for label, cells in tensor_cells(name, array, printer)]


def tensor_cells(name: str, array: Array, printer: Optional[ReportPrinter] = None) -> list[tuple[str, list]]:
    """``(label, printed rows)`` for each 2-D slice of ``array``: one matrix for a ``(1, 1, H, W)``
    map, one per image and channel otherwise (``X_{0,1}``), a matrix for ``(N, F)`` or ``(out, in)``,
    a row vector for ``(F,)``. Fractions in a cell are written ``a/4`` (a stacked fraction in a
    matrix cell is set in a small size)."""
    printer = (printer or ReportPrinter()).with_settings(fold_short_frac=True)
    array = Array(array)
    shape = tuple(array.shape)
    if len(shape) == 1:
        return [(name, [[scalar(array[k], printer) for k in range(shape[0])]])]
    if len(shape) == 2:
        return [(name, [[scalar(array[n, k], printer) for k in range(shape[1])] for n in range(shape[0])])]
    slices = []
    for outer in indices_of(shape[:-2]):
        label = name if all(size == 1 for size in shape[:-2]) else f"{name}_{{{','.join(map(str, outer))}}}"
        rows = [[scalar(array[outer + (i, j)], printer) for j in range(shape[-1])] for i in range(shape[-2])]
        slices.append((label, rows))
    return slices


def entry_name(prefix: str, index: Sequence[int], shape: Sequence[int]) -> str:
    """An element's name as LaTeX, in the documents' naming (``y_{00}``)."""
    return sympy.latex(sympy.Symbol(element_name(prefix, index, shape)))


def gradient_entry_name(element_latex: str) -> str:
    """``\\frac{\\partial L}{\\partial x_{00}}`` for an element's printed name."""
    return r"\frac{\partial L}{\partial %s}" % element_latex


_NESTING = re.compile(r"\\left\b|\\right\b|[{}]")


def _split(latex: str, separators: tuple[str, ...]) -> list[tuple[str, str]]:
    r"""``(separator, piece)`` of printed LaTeX split at ``separators`` (like `` + ``) outside braces and
    ``\left``...``\right``; the first piece's separator is ``+``."""
    pieces, depth, start, joiner, position = [], 0, 0, "+", 0
    while position < len(latex):
        nesting = _NESTING.match(latex, position)
        if nesting:
            depth += 1 if nesting.group(0) in ("{", r"\left") else -1
            position = nesting.end()
            continue
        separator = next((s for s in separators if latex.startswith(s, position)), None)
        if depth == 0 and separator and position > start:
            pieces.append((joiner, latex[start:position].strip()))
            joiner, start = separator.strip(), position + len(separator)
            position = start
            continue
        position += 1
    pieces.append((joiner, latex[start:].strip()))
    return pieces


def fitted_rows(rows) -> tuple[str, ...]:
    r"""Aligned rows, each too wide for the page broken so that nothing runs off it: ``lhs &= a + b + ...
    [&& \text{note}]`` between its terms (``&\quad + ...`` continuation rows), else at its ``=`` signs;
    ``lhs &: a, b, ...`` (a list) between its items.

    >>> rows = fitted_rows(["y &= " + " + ".join(f"a_{{{i}}}" for i in range(40))])
    >>> len(rows), rows[1][:24]
    (5, '&\\quad + a_{11} + a_{12}')
    """
    fitted = []
    for row in rows:
        if visible_width(row) <= WIDTH:
            fitted.append(row)
            continue
        relation = "=" if " &= " in row else ":" if " &: " in row else None
        lhs, _, rest = row.partition(f" &{relation} ") if relation else (row, "", "")
        rhs, note, tag = rest.partition(" && ")
        note = note + tag if note else ""
        if relation == ":":
            items = _split(rhs, (", ",))
            fitted += chunk_rows(lhs, [("", piece + ",") for _, piece in items[:-1]] + [("", items[-1][1])],
                                 relation=":")
            fitted[-1] += note
            continue
        terms = _split(rhs, (" + ", " - ")) if relation else []
        if len(terms) > 1:
            broken = chunk_rows(lhs, terms)
        elif relation and len(_split(rhs, (" = ",))) > 1:
            parts = [piece for _, piece in _split(rhs, (" = ",))]
            broken = [f"{lhs} &= {parts[0]}"] + [f"&= {piece}" for piece in parts[1:]]
        else:
            broken = [row.removesuffix(note)]
        fitted += [broken[0] + note] + broken[1:]
    return tuple(fitted)
