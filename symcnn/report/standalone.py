"""Complete LaTeX documents for ``symcnn derive ... --format latex --standalone`` (and ``formula``).

``--format latex`` prints math-mode fragments (``aligned`` blocks) to paste into a document of one's
own; ``--standalone`` lays the same rows out as a report (:mod:`symcnn.report.document`), through
the report's own template, so that the output compiles as it is (``pdflatex file.tex``).

Example:
    >>> from symcnn.symbolic.derive import LayerConfig, derive
    >>> from symcnn.views.derivation import latex_parts
    >>> report = derivation_report(latex_parts(derive(LayerConfig("relu", input_size=(1, 2)))))
    >>> [section.title for section in report.sections]
    ['Output', 'dL/dX']
"""

from __future__ import annotations

import re

from symcnn.report.document import Display, Prose, Report, Section
from symcnn.report.mathtex import WIDTH, chunk_rows, visible_width
from symcnn.views.derivation import LatexParts

__all__ = ["derivation_report", "fitted_rows"]


def derivation_report(parts: LatexParts, steps: bool = False) -> Report:
    """A derivation (or its chain-rule ``steps``) as a report: the header lines, then a section per block."""
    op = parts.header[0].partition(":")[0]
    title = f"`{op}`: " + ("the chain rule of each gradient entry" if steps else "output and gradients, derived")
    intro = tuple(Prose(f"`{line}`") for line in parts.header)
    sections = tuple(Section(name, (Display(fitted_rows(rows)),)) for name, rows in parts.blocks)
    return Report(f"derive-{op}", title, parts.header[0], sections, intro)


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
