"""The errata checked and shown: each transcribed claim (:mod:`symcnn.checking.errata.transcriptions`)
run through the checker or its probe (:mod:`symcnn.checking.errata.probes`) now, and the entries as
text, Markdown (docs/errata.md) or, through :meth:`~symcnn.checking.errata.model.Erratum.as_dict`,
JSON. Nothing is hard-coded:

- ``verified``: the claim holds in symcnn's conventions;
- ``convention``: it is wrong in symcnn's conventions but holds in the document's notation, named in
  ``detail``;
- ``conditional``: it holds only under a condition the document does not state (``detail``: "holds
  only if ..."), and fails in a case the document's own setting allows: the smallest counter-example;
- ``wrong``: it fails even so; ``detail`` is the smallest counter-example.

Example:
    >>> entry = run(TRANSCRIPTIONS[0])
    >>> entry.document, entry.status
    ('000_0ff4e6a12fbebc4a.txt', 'verified')
"""

from __future__ import annotations

import textwrap
from typing import Mapping

from symcnn.checking import limits
from symcnn.checking.checker import check
from symcnn.checking.documents import reference
from symcnn.checking.errata import probes
from symcnn.checking.errata.model import STATUSES, Erratum, Transcription, merge
from symcnn.checking.errata.transcriptions import NOT_CHECKED, TRANSCRIPTIONS
from symcnn.checking.examples import EXAMPLES
from symcnn.checking.examples import check as check_example
from symcnn.checking.result import CheckOptions, CheckResult, count

__all__ = ["run", "collect", "summary", "errata_text", "errata_markdown"]


def _merged(base: Mapping, *extras: Mapping) -> dict:
    """Options merged: mappings and sets joined, two constraints both required, anything else replaced."""
    merged = dict(base)
    for extra in extras:
        for key, value in extra.items():
            current = merged.get(key)
            if isinstance(value, frozenset):
                merged[key] = (current or frozenset()) | value
            elif isinstance(value, Mapping):
                merged[key] = {**(current or {}), **value}
            elif key == "constraint" and current is not None:
                merged[key] = lambda config, first=current, second=value: first(config) and second(config)
            else:
                merged[key] = value
    return merged


def _verdict(transcription: Transcription, *extras: Mapping) -> CheckResult:
    """The claim checked with the transcription's options and ``extras`` (a convention's, a condition's)."""
    options = _merged(transcription.options, *extras)
    if transcription.probe is not None:
        return probes.check(transcription.probe, transcription.formula, options)
    return check(transcription.formula, transcription.against, CheckOptions().merged(**options))


def _joined(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def run(transcription: Transcription) -> Erratum:
    """Check one transcription: the status and detail are whatever the checker (or the probe) finds now."""
    def entry(status: str, detail: str, condition=None, counterexample=None) -> Erratum:
        return Erratum(transcription.document, transcription.section, transcription.claim, status, detail,
                       condition, counterexample)

    if transcription.example is not None:
        result = check_example(EXAMPLES[transcription.example])
        if result.status == "ok":
            values = "1 value" if result.checked == 1 else f"{result.checked} values"
            return entry("verified", f"worked example {transcription.example}: {values} reproduced")
        return entry("wrong", "; ".join(result.mismatches), counterexample="; ".join(result.mismatches))
    sizes = transcription.options.get("sizes", {})
    # The document's network sizes in sum bounds are read as parameters, and said so.
    as_parameters = "; ".join(f"{number} read as {name}" for number, name in sizes.items())
    notes = _joined(as_parameters, transcription.note)
    result = _verdict(transcription)
    if result.correct:
        return entry("verified", _joined(_verified_detail(result), notes))
    reading = merge(transcription.conventions) if transcription.conventions else None
    readings = (reading.options,) if reading else ()
    if reading:
        result = _verdict(transcription, *readings)
        if result.correct:
            return entry("convention", _joined(reading.name, notes))
    condition = merge(transcription.conditions, " and ") if transcription.conditions else None
    if condition:
        conditioned = _verdict(transcription, *readings, condition.options)
        if conditioned.correct:  # the counter-example: the first case of the document's setting that fails
            counterexample = result.counterexample(limit=2)
            return entry("conditional", _joined(reading.name if reading else "", f"holds only if {condition.name}",
                                                counterexample, notes), condition.name, counterexample)
        result = conditioned
    assumed = " and ".join(part for part in (reading and f"with {reading.name}", condition and f"if {condition.name}")
                           if part)
    counterexample = result.counterexample(limit=2)
    return entry("wrong", f"even {assumed}: {counterexample}" if assumed else counterexample,
                 counterexample=counterexample)


def _verified_detail(result) -> str:
    return f"checked against {result.against} at {count(result.checked, result.kind)}"


def collect() -> list[Erratum]:
    """Every transcribed claim of the five documents, checked now, in document order."""
    return [run(transcription) for transcription in TRANSCRIPTIONS]


def summary(entries) -> str:
    """The counts per status: ``70 claims: 39 verified, 26 verified under the document's convention, 3
    conditional, 2 wrong``."""
    counts = {status: sum(entry.status == status for entry in entries) for status in STATUSES}
    return (f"{len(entries)} claims: {counts['verified']} verified, {counts['convention']} verified under the "
            f"document's convention, {counts['conditional']} conditional, {counts['wrong']} wrong")


def errata_text(entries) -> str:
    """The entries as plain text, grouped by document."""
    lines, document = [], None
    for entry in entries:
        if entry.document != document:
            document = entry.document
            heading = reference(document).heading
            lines.append(f"\n{heading}" if lines else heading)
        lines.append(f"  [{entry.status}] {entry.section}: {entry.claim}")
        lines.append(f"      {entry.detail}")
    lines.append("")
    lines.append(summary(entries))
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def errata_markdown(entries=None) -> str:
    """docs/errata.md: every entry of :func:`collect` as a table per document, and what is not checked."""
    entries = collect() if entries is None else entries
    lines = [
        "# Errata of the reference documents",
        "",
        "Generated by `symcnn errata` (`symcnn.checking.errata.errata_markdown`); do not edit by hand. "
        "Each claim of the",
        "five reference documents (tutorials on the mathematics of CNNs, not distributed with symcnn: each claim is",
        "quoted below as its document writes it) is transcribed in `symcnn/checking/errata/transcriptions.py` (and,",
        "for document 003, `symcnn/checking/errata/document003/`) with its section, and checked when the command runs:",
        "by `symcnn check` against the derivation of its op (index notation, at small configurations of increasing",
        "size) or of a worked example (exactly, entry by entry), or, where the checker cannot read it (a chain of",
        "definitions, a probability, a variance, an optimizer's step), by a probe (`symcnn/checking/errata/probes/`)",
        "against what symcnn derives, computes or measures, case by case in increasing size.",
        "",
        "- **verified**: the claim holds in symcnn's conventions (docs/conventions.md);",
        "- **convention**: it holds only in the document's own notation (channels last, indices from 1, a flipped",
        "  kernel, a tensor read as zero outside its shape), named in the detail;",
        "- **conditional**: it holds only under a condition on the setting that the document does not state, while",
        "  its own setting allows the case where it fails: the detail says \"holds only if …\" and gives the",
        "  smallest counter-example inside the document's setting;",
        "- **wrong**: it fails; the detail is the smallest counter-example found.",
        "",
        summary(entries) + ".",
    ]
    document = None
    for entry in entries:
        if entry.document != document:
            document = entry.document
            cited = reference(document)
            lines += ["", f"## Document {cited.number}: {cited.title}", "",
                      f"File `{cited.file_name}`: {cited.covers}.",
                      "", "| Section | Claim | Status | Detail |", "|---|---|---|---|"]
        lines.append(f"| {_cell(entry.section)} | `{_cell(entry.claim)}` | {entry.status} | {_cell(entry.detail)} |")
    lines += ["", "## Not checked", "", "| Document | Section | Why |", "|---|---|---|"]
    for document, section, reason in NOT_CHECKED:
        cited = reference(document)
        lines.append(f"| {cited.number}: {cited.title} | {_cell(section)} | {_cell(reason)} |")
    lines += ["", "## How claims are read", "", *_VOCABULARY, *_LIMITS]
    return "\n".join(lines) + "\n"


_VOCABULARY = [
    "The checker (`symcnn check FORMULA --against NAME`) reads LaTeX as the documents write it, or SymPy syntax.",
    "",
    "- **Element-wise claims** name entries as document 002 does (`y_{01}`, `\\frac{\\partial L}{\\partial w_{00}}`,",
    "  a whole `\\frac{\\partial L}{\\partial X}` as a `bmatrix`; commas between indices too: `y_{0,1}` is `y_{01}`,",
    "  and `y_{10,2}` names an entry of a map of 10 or more rows, where the symbols read `x_10_2`), with the",
    "  symbols `x00`, `w01`, `a b c d`, and are compared exactly with a worked example's entries (`--against",
    "  conv_3x3_2x2`) or an op's at one configuration (`--against maxpool2d --input 3x3 --kernel 2 --stride 1",
    "  --values '1,5,4;9,2,1;6,3,2'`).",
    "- **Index-notation claims** are compared with an op's derivation at small configurations in increasing",
    "  size; the first that differs is the counter-example. Tensors: `X` `I` (input), `W` `K` (weight), `b`",
    "  (bias), `Y` `S` (output), per op the documents' names (`A`, `P`, `h`, `z`, `p`, `y`, `\\hat{y}`), or any",
    "  name with `--tensor NAME=ROLE`; read as `X_{n,c,i,j}`, `X(i, j)`, `X_c(i, j)`, `X[i, j, c]`,",
    "  `Y^{(k)}(i, j)`, `W^{[1]}_{c,c',u,v}`, `W_{\\mathrm{fc},i,k}`. "
    "Gradients: `\\frac{\\partial L}{\\partial X_{k,l}}`,",
    "  `\\delta^{[X]}_{k,l}`, and a bare `\\delta_{i,j}` for the upstream `dL/dY`. A tensor read with fewer",
    "  indices than its rank drops its leading axes (batch, then channels), which are then 1; `--layout NHWC`",
    "  or `--layout X=HWC` reorders them.",
    "- **Parameters**: `s` `S` (stride), `p` `P` (padding), `d` `r` (dilation), `K` `F` `K_h` `K_w` (kernel),",
    "  `N` `B` (batch), `C` `C_in` `C_out`, `H` `H_in` `W_in` `N_in` `I` (input size), `H_out` `W_out` `N_out` `O`,",
    "  `F_in` `F_out`. One the claim does not mention keeps its neutral value (stride 1, padding 0,",
    "  dilation 1; a pool's stride is its window): a formula without it claims nothing about it.",
    "- **Sums** `\\sum_{m=0}^{K_h-1}`, or without bounds `\\sum_{m}` / `\\sum_{u,v}`: then the index runs over",
    "  the axis it indexes on its own. `\\max_{u=0}^{K-1}` and `\\max_{u,v \\in \\{0,1\\}}` are window maxima;",
    "  `\\mathbf{1}(cond)` an indicator, with `s \\mid a` for divisibility; `\\text{where}` adds definitions",
    "  (`i = \\lfloor (k+p-m)/s \\rfloor`), parameter conditions (`p = (K-1)/2`) or ranges (`u, v \\in \\{0, 1\\}`).",
    "- **Reads outside a tensor are errors**: the claim is wrong there, as a formula must keep its reads in",
    "  range (symcnn's derived formulas carry their range conditions). Exceptions: the convolution's input,",
    "  zero-padded by definition, and tensors named with `--zero-outside` (\"pad the output gradient\").",
    "  `--one-based NAME` counts NAME's indices from 1. Max pooling is checked at inputs with distinct values.",
    "- **Probes** (`symcnn/checking/errata/probes/`, for what the checker cannot read) take a claim in SymPy syntax",
    "  as a chain of definitions, one a line (`mu = Sum(x[k], (k, 0, m - 1))/m`): each line defines its left side",
    "  for the lines after it (a recurrence over several lines: `RF[0] = 1`, then `RF[l] = RF[l - 1] + ...` for the",
    "  other `l`), and a line whose left side symcnn derives (batch normalization's `dL/dx`, an",
    "  adaptive pool's `Y`), computes (an optimizer's state after a step from the state before it, exactly or,",
    "  in float64, within 1e-12 of its size) or measures (the fraction of a dropout mask kept, the variance of",
    "  the weights a Network draws, within six standard deviations) is compared with it, case by case in",
    "  increasing size.",
]
# The limits, from symcnn/checking/limits.py itself: the page cannot fall behind them.
_LIMITS = textwrap.wrap(
    "- **Limits**, each checked before the work it bounds (`symcnn/checking/limits.py`); a formula or an "
    f"option beyond one is refused in one line naming it (exit status 2): {limits.summary()}.",
    width=110, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False)
