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

from symcnn.report.document import Display, Prose, Report, Section
from symcnn.report.mathtex import fitted_rows
from symcnn.views.derivation import LatexParts

__all__ = ["derivation_report"]


def derivation_report(parts: LatexParts, steps: bool = False) -> Report:
    """A derivation (or its chain-rule ``steps``) as a report: the header lines, then a section per block."""
    op = parts.header[0].partition(":")[0]
    title = f"`{op}`: " + ("the chain rule of each gradient entry" if steps else "output and gradients, derived")
    intro = tuple(Prose(f"`{line}`") for line in parts.header)
    sections = tuple(Section(name, (Display(fitted_rows(rows)),)) for name, rows in parts.blocks)
    return Report(f"derive-{op}", title, parts.header[0], sections, intro)
