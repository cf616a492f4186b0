"""The op page's section on document 003's compact backward pass of a normalization (batch and layer norm).

Document 003 writes batch normalization's backward in four lines through the forward pass's mean,
variance and normalized value. The section prints those lines as symcnn derives them
(:mod:`symcnn.symbolic.normalization_backward`), the two the document omits (the scale's and the
shift's gradients), and the proof that the document's ``−2/m Σ(x_i − μ)`` term is zero. Before it
returns, the section checks the lines at the page's instance against the op's derived gradients:
a page never shows a line that its own check contradicts.

Example:
    >>> from symcnn.report.mathtex import ReportPrinter
    >>> from symcnn.symbolic.normalization_backward import compact_backward
    >>> from symcnn.symbolic import normalization
    >>> line = compact_backward(normalization.batchnorm2d()).line("Xhat")
    >>> print(*line_rows(line, ReportPrinter(NAMES)))
    \\frac{\\partial L}{\\partial \\hat{X}_{n, c, i, j}} &= \\frac{\\partial L}{\\partial Y_{n, c, i, j}} \\cdot \\gamma_{c}
"""  # noqa: E501  (a doctest's output, as printed)

from __future__ import annotations

from typing import Mapping, Optional

import sympy
from sympy import Array, Expr

from symcnn.report.document import Display, Prose, Section
from symcnn.report.mathtex import ReportPrinter, chunk_rows
from symcnn.symbolic.adjoint import GradientFormula
from symcnn.symbolic.normalization_backward import (COUNT, MEAN, ChainLine, ChainTerm, CompactBackward,
                                                    check_compact_backward, compact_backward, deviations_vanish)
from symcnn.symbolic.ops import IndexFormula

__all__ = ["NAMES", "line_rows", "compact_section"]

DOCUMENT_LINES = "document 003's four lines"

#: Document 003's letters for the statistics and the affine parameters.
NAMES = {"mu": r"\mu", "sigma2": r"\sigma^{2}", "Xhat": r"\hat{X}", "gamma": r"\gamma", "beta": r"\beta"}


def _factor(expr: Expr, printer: ReportPrinter) -> str:
    """A factor after ``\\cdot``: in parentheses when it is a sum or negative."""
    printed = printer.doprint(expr)
    return r"\left(%s\right)" % printed if isinstance(expr, sympy.Add) or expr.could_extract_minus_sign() else printed


def _sums(term: ChainTerm, printer: ReportPrinter) -> str:
    return "".join(r"\sum_{%s=%s}^{%s} " % tuple(printer.doprint(part) for part in limit) for limit in term.limits)


def _term_latex(term: ChainTerm, printer: ReportPrinter) -> str:
    """``upstream · local`` as document 003 writes a term: the upstream gradient first, then what the
    reader's derivative multiplies it by; an upstream constant over the sum stands before it."""
    upstream = printer.doprint(term.upstream)
    if term.limits and term.upstream_outside:  # dL/dsigma2[c] * (-2/m) * sum (X - mu)
        constant, varying = term.local.as_independent(*[limit[0] for limit in term.limits], as_Add=False)
        shown = f"{upstream} \\cdot {_factor(constant, printer)} " if constant != 1 else f"{upstream} \\cdot "
        return shown + _sums(term, printer) + _factor(varying, printer)
    if term.local == 1:
        return _sums(term, printer) + upstream
    return _sums(term, printer) + f"{upstream} \\cdot {_factor(term.local, printer)}"


def line_rows(line: ChainLine, printer: ReportPrinter) -> list[str]:
    """A line as aligned rows, its terms joined by ``+`` (a sign stays inside its factor, as document 003 writes)."""
    return chunk_rows(printer.doprint(line.gradient), [("+", _term_latex(term, printer)) for term in line.terms])


def _per_count(expr: Expr, count: Expr) -> Expr:
    """``expr`` with ``1/(N H_in W_in)`` written ``1/m`` (the limits of its sums untouched)."""
    return expr.subs(1 / count, 1 / COUNT)


def _node_rows(compact: CompactBackward, printer: ReportPrinter) -> list[str]:
    statistics = compact.statistics
    rows = [f"{printer.doprint(COUNT)} &= {printer.doprint(statistics.count)}"]
    averages = printer.with_settings(long_frac_ratio=1)  # \frac{1}{m} \sum ..., as document 003 writes a mean
    for node in statistics.nodes:
        lhs = printer.doprint(node.output.base[node.indices])
        rows.append(f"{lhs} &= {averages.doprint(_per_count(node.rhs, statistics.count))}")
    return rows


def _sum_first(expr: Expr, printer: ReportPrinter) -> str:
    r"""A sum of terms printed with its ``Sum`` terms first (``\sum X - m \mu``)."""
    terms = sorted(sympy.Add.make_args(expr), key=lambda term: not term.has(sympy.Sum))
    printed = printer.doprint(terms[0])
    for term in terms[1:]:
        printed += f" - {printer.doprint(-term)}" if term.could_extract_minus_sign() else f" + {printer.doprint(term)}"
    return printed


def _over(compact: CompactBackward, printer: ReportPrinter) -> str:
    """What a statistic is taken over, in words: ``per channel $c$ over its $m = N H_{in} W_{in}$ values``."""
    statistics = compact.statistics
    indices = ", ".join(printer.doprint(index) for index in statistics.statistic_indices)
    kind = "channel" if statistics.forward.op == "batchnorm2d" else "sample"
    return (f"per {kind} ${indices}$, over its ${printer.doprint(COUNT)} = {printer.doprint(statistics.count)}$ "
            "values")


def compact_section(forward: IndexFormula, arrays: Mapping[str, Array], upstream: Array, instance_text: str,
                    derived: Mapping[str, GradientFormula], printer: Optional[ReportPrinter] = None) -> Section:
    """The section for a normalization's page: its lines, checked at ``arrays`` (the page's instance,
    ``instance_text``) against ``derived`` (the op's derived gradients by role); AssertionError if not equal."""
    printer = ReportPrinter({**(printer.names if printer else {}), **NAMES})
    compact = compact_backward(forward)
    problems = check_compact_backward(compact, arrays, upstream, derived)
    if problems:
        raise AssertionError(f"{forward.op}: the compact backward disagrees with the derived gradients at "
                             f"{instance_text}: {'; '.join(problems)}")
    split, _ = deviations_vanish(compact)
    statistics = compact.statistics
    mean = MEAN[statistics.statistic_indices]
    lines = {str(line.gradient.base)[4:]: line for line in compact.lines}
    if forward.op == "batchnorm2d":
        opening = "Document 003 writes batch normalization's backward pass in four lines,"
    else:
        opening = ("Document 003 gives layer normalization's forward pass only ($\\mathrm{LN}(x) = \\gamma \\odot "
                   "(x - \\mu)/\\sigma + \\beta$); its backward pass has the four lines of batch normalization's, "
                   "written")
    blocks = [
        Prose(f"{opening} through the quantities of the forward pass: the mean $\\mu$ and the biased variance "
              f"$\\sigma^{{2}}$, {_over(compact, printer)}, and the normalized input $\\hat{{X}}$. symcnn cuts the "
              "forward formula above at these quantities (`symcnn/symbolic/normalization_backward.py`): each sum "
              "becomes a tensor, and the pieces compose back to the formula:"),
        Display(tuple(_node_rows(compact, printer))),
        Prose("Each piece is derived with respect to each tensor it reads, as every gradient on this page is, and "
              "each tensor gathers what its readers send back (the chain rule along the formula). This gives "
              f"{DOCUMENT_LINES if forward.op == 'batchnorm2d' else 'the same four lines'}:"),
    ]
    for name in ("Xhat", "sigma2", "mu", "X"):
        blocks.append(Display(tuple(line_rows(lines[name], printer))))
    blocks += [
        Prose("and the two that it omits, the gradients of the scale $\\gamma$ and the shift $\\beta$ (those with "
              "respect to the weight and the bias above):"),
        Display(tuple(line_rows(lines["gamma"], printer) + line_rows(lines["beta"], printer))),
        Prose("The second term of $\\frac{\\partial L}{\\partial " + printer.doprint(mean) + "}$ is the document's "
              "$\\frac{\\partial L}{\\partial \\sigma^{2}} \\cdot (-2/m) \\sum (x_i - \\mu)$. It is zero: the "
              "deviations from the mean sum to zero, since $m " + printer.doprint(mean) + "$ is the sum of the "
              "same values,"),
        Display((f"{printer.doprint(COUNT * mean)} &= {printer.doprint(statistics.mean_sum)}",
                 f"{printer.doprint(compact.deviations)} &= {_sum_first(split, printer)} = 0",)),
        Prose("so that the gradient of the mean is its first term alone:"),
        Display(tuple(line_rows(compact.mean_without_zero, printer))),
        Prose(f"symcnn checked, when this page was generated, that these lines, evaluated one after the other at "
              f"{instance_text} (the instance below), give there the gradients with respect to the input, the "
              "weight and the bias above, entry by entry, with and without the zero term; and that the deviations "
              "sum to zero for every shape (SymPy, with the mean's own sum for $m " + printer.doprint(mean) + "$)."),
    ]
    return Section("Document 003's backward pass", tuple(blocks))
