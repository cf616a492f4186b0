"""``symcnn report``: derivation reports as LaTeX, PDF or GitHub Markdown.

Usage:
    symcnn report --example conv_3x3_2x2 -o conv.pdf
    symcnn report --op conv2d --stride 2 --padding 1 -o conv2d.tex
    symcnn report --network seed004-text --format markdown
    symcnn report --all --format markdown -o docs/derivations/          (one page each, and an index)
    symcnn report --all --format markdown -o docs/derivations/ --check  (exit 1 when a page is stale)

Without ``-o`` the report goes to standard output. Errors are one line naming the option, exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Optional

__all__ = ["add_arguments", "run", "Selection", "OUTPUT_SUFFIXES"]

OUTPUT_SUFFIXES = {".tex": "latex", ".pdf": "latex", ".md": "markdown"}
_SPECIALIZATIONS = ("kernel", "stride", "padding", "dilation")


def add_arguments(parser: argparse.ArgumentParser, size: Callable[[str], object]) -> None:
    """The options of ``symcnn report``; ``size`` parses ``3`` or ``3x4`` (the CLI's own parser)."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--example", metavar="NAME", help="a worked example of the documents (see --list)")
    what.add_argument("--op", metavar="OP", help="an op's general formulas, conditions and a small instance")
    what.add_argument("--network", metavar="SPEC", help="a network's walk-through: a shipped spec name or a .toml path")
    what.add_argument("--all", action="store_true", help="every example, op and shipped network")
    what.add_argument("--list", action="store_true", help="list the examples, ops and shipped networks")
    for option, meta in (("kernel", "K|KhxKw"), ("stride", "S|SHxSW"), ("padding", "P|PHxPW"),
                         ("dilation", "D|DHxDW")):
        parser.add_argument(f"--{option}", type=size, default=None, metavar=meta,
                            help=f"with --op: specialize the {option} (default: general)")
    parser.add_argument("--format", choices=("latex", "markdown"), default=None,
                        help="latex (default) or markdown (GitHub math); -o's suffix chooses it when omitted")
    parser.add_argument("-o", "--output", default=None, metavar="PATH",
                        help="FILE.tex, FILE.pdf (compiled with latexmk or pdflatex), FILE.md, or a directory "
                             "(one file per report; Markdown adds an index, README.md); default: standard output")
    parser.add_argument("--check", action="store_true",
                        help="with -o: write nothing; exit 1 and name the files that differ from a fresh report")


class Selection:
    """What the arguments ask for: the reports, and the command that regenerates them."""

    def __init__(self, args):
        self.args = args
        specialized = {key: getattr(args, key) for key in _SPECIALIZATIONS if getattr(args, key) is not None}
        if specialized and not args.op:
            raise ValueError(f"--{next(iter(specialized))}: only --op takes it")
        self.specialized = specialized

    def command(self, output_format: str) -> str:
        """``symcnn report --op conv2d --stride 2 --format markdown``: how a generated file is made
        (its first line says so). Without ``-o``: the same for every output path."""
        args, parts = self.args, ["symcnn report"]
        if args.all:
            parts.append("--all")
        for option in ("example", "op", "network"):
            if getattr(args, option):
                parts.append(f"--{option} {getattr(args, option)}")
        for key, value in self.specialized.items():
            parts.append(f"--{key} {value if isinstance(value, int) else 'x'.join(map(str, value))}")
        return " ".join(parts + [f"--format {output_format}"])

    def build(self):
        """A :class:`~symcnn.report.document.Report`, or a collection for ``--all``."""
        from symcnn import report

        args = self.args
        try:
            if args.all:
                return report.collection()
            if args.example:
                return report.example_report(args.example)
            if args.op:
                return report.op_report(args.op, **self.specialized)
            return report.network_report(args.network)
        except ValueError as error:  # the library names its field; the CLI names the option
            raise ValueError(_as_option(str(error))) from None


def _as_option(message: str) -> str:
    field, separator, rest = message.partition(": ")
    options = {"example": "--example", "op": "--op", "spec": "--network", "kernel": "--kernel",
               "stride": "--stride", "padding": "--padding", "dilation": "--dilation", "output": "-o"}
    return f"{options[field]}: {rest}" if separator and field in options else message


def _format(args) -> tuple[str, Optional[Path], bool]:
    """``(format, output path or None, directory?)`` from ``--format`` and ``-o``, validated."""
    if args.output is None:
        if args.check:
            raise ValueError("--check: needs -o, the file or directory to compare with")
        return args.format or "latex", None, False
    output = Path(args.output)
    directory = args.output.endswith(("/", os.sep)) or output.is_dir()
    if directory:
        return args.format or "latex", output, True
    suffix = output.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"-o: expected a file ending in .tex, .pdf or .md, or a directory (ending in /), "
                         f"got {args.output!r}")
    implied = OUTPUT_SUFFIXES[suffix]
    if args.format and args.format != implied:
        raise ValueError(f"-o: a {suffix} file holds {implied}, but --format is {args.format}")
    if suffix == ".pdf" and args.check:
        raise ValueError("--check: compares text (.tex, .md or a directory of them), not a PDF")
    if not output.parent.is_dir():
        raise ValueError(f"-o: the directory {str(output.parent)!r} does not exist")
    return implied, output, False


def _files(document, output_format: str, command: str) -> dict[str, str]:
    """One file per report (and a Markdown index) for a directory: name -> text."""
    from symcnn.report import Collection, render_latex, render_markdown, render_pages

    if output_format == "markdown":
        if isinstance(document, Collection):
            return render_pages(document, command)
        return {f"{document.name}.md": render_markdown(document, command)}
    reports = document.reports if isinstance(document, Collection) else (document,)
    return {f"{report.name}.tex": render_latex(report, command) for report in reports}


def _list() -> int:
    from symcnn.checking.examples import EXAMPLE_LIST
    from symcnn.views.formula import FORMULA_OPS
    from symcnn.spec import ARCHITECTURE_SPECS, SHIPPED_SPECS

    print("examples:  " + " ".join(example.name for example in EXAMPLE_LIST))
    print("ops:       " + " ".join(FORMULA_OPS))
    print("networks:  " + " ".join(SHIPPED_SPECS + ARCHITECTURE_SPECS) + " (or a path to a .toml spec)")
    return 0


def run(args) -> int:
    """Run ``symcnn report``: 0 on success, 1 when ``--check`` finds stale files."""
    from symcnn.files import write_text
    from symcnn.report.writer import compile_pdf, render_latex, render_markdown, stale_pages, write_pages

    if args.list:
        return _list()
    selection = Selection(args)
    output_format, output, directory = _format(args)
    command = selection.command(output_format)
    document = selection.build()
    try:
        if directory:
            files = _files(document, output_format, command)
            if args.check:
                return _report_stale(stale_pages(files, output), command + f" -o {args.output}")
            for path in write_pages(files, output):
                print(f"wrote {path}")
            return 0
        render = render_markdown if output_format == "markdown" else render_latex
        text = render(document, command)
        if output is None:
            sys.stdout.write(text)
            return 0
        if args.check:
            current = output.read_text(encoding="utf-8") if output.is_file() else None
            return _report_stale([] if current == text else [str(output)], command + f" -o {args.output}")
        if output.suffix.lower() == ".pdf":
            compile_pdf(text, output)
        else:
            write_text(output, text)
        print(f"wrote {output}")
        return 0
    except PermissionError as error:
        raise ValueError(f"-o: cannot write {args.output}: {error.strerror}") from None
    except ValueError as error:  # compile_pdf names its field "output"
        raise ValueError(_as_option(str(error))) from None


def _report_stale(stale: list, command: str) -> int:
    for name in stale:
        print(f"stale: {name}")
    if stale:
        print(f"{len(stale)} file(s) differ from a fresh report; regenerate with `{command}`", file=sys.stderr)
        return 1
    print("reports are up to date")
    return 0
