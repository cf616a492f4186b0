"""The ``symcnn check`` and ``symcnn errata`` commands: arguments in, the library's verdicts out.

``symcnn check FORMULA --against NAME`` exits 0 when the formula is correct, 1 when it is wrong
(with the smallest counter-example), 2 when it cannot be read. ``symcnn errata`` exits 0 when it
ran: a wrong claim of a document is a finding, not a failure.

Example:
    $ symcnn check '\\frac{\\partial L}{\\partial w_{00}} = a x_{00} + b x_{01} + c x_{10} + d x_{11}' --against conv_3x3_2x2
    correct: checked against conv_3x3_2x2 (1 entry)
"""  # noqa: E501  (a command line, as typed)

from __future__ import annotations

import argparse
import json
import re
import sys

__all__ = ["add_check", "add_errata", "run_check", "run_errata"]

_ROLES = ("input", "weight", "bias", "output", "target", "grad_output", "grad_input", "grad_weight", "grad_bias")


def _assignment(text: str) -> tuple[str, str]:
    match = re.fullmatch(r"\s*([^=\s]+)\s*=\s*([A-Za-z_]+)\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected NAME=ROLE like S=output, got {text!r}")
    if match.group(2) not in _ROLES:
        raise argparse.ArgumentTypeError(f"the role must be one of {', '.join(_ROLES)}, got {match.group(2)!r}")
    return match.group(1), match.group(2)


def _layout(text: str) -> tuple[str, str]:
    match = re.fullmatch(r"\s*(?:([^=\s]+)\s*=\s*)?([A-Za-z]+)\s*", text)
    if not match or not set(match.group(2).upper()) <= set("NCHWOIF"):
        raise argparse.ArgumentTypeError(
            f"expected a layout like NHWC or NAME=HWC (letters N C H W O I F), got {text!r}")
    return match.group(1) or "*", match.group(2).upper()


def add_check(commands, size_type, values_type) -> None:
    check = commands.add_parser(
        "check",
        help="check a formula (LaTeX or SymPy syntax) against a worked example or an op's derivation",
        description="Check FORMULA, as a document writes it, against symcnn's derivations. Element-wise claims "
                    "(y_{01}, \\frac{\\partial L}{\\partial w_{00}}, a bmatrix) are compared exactly with a worked "
                    "example's entries, or an op's at one configuration; index-notation claims with an op's, at "
                    "small configurations in increasing size. Exit 0: correct; 1: wrong, with the smallest "
                    "counter-example; 2: the formula cannot be read.",
    )
    check.add_argument("formula", metavar="FORMULA",
                       help="the claim, e.g. 'y_{00} = x_{00} w_{00} + ...'; '-' reads stdin")
    check.add_argument("--against", required=True, metavar="NAME|OP",
                       help="a worked example (symcnn examples) or an op (symcnn formula's ops)")
    for option, meta in (("kernel", "K|KhxKw"), ("stride", "S|SHxSW"), ("padding", "P|PHxPW"), ("dilation", "D|DHxDW")):
        check.add_argument(f"--{option}", type=size_type, default=None, metavar=meta,
                           help=f"fix the {option} (default: searched, or the op's default)")
    check.add_argument("--input", type=size_type, default=None, metavar="HxW",
                       help="fix the input size (default: searched)")
    for option, what in (("channels-in", "input channels"), ("channels-out", "output channels"),
                         ("batch", "batch size")):
        check.add_argument(f"--{option}", type=int, default=None, metavar="N" if option == "batch" else "C",
                           help=f"fix the {what} (default: searched)")
    check.add_argument("--values", type=values_type, default=None, metavar="ROWS",
                       help="numeric input for an element-wise claim against an op, rows separated by ';' "
                            "(default: symbolic entries)")
    check.add_argument("--tensor", type=_assignment, action="append", default=[], metavar="NAME=ROLE",
                       help=f"name a tensor of the formula ({', '.join(_ROLES)}); repeatable (default: the "
                            "documents' names, like X, W, Y)")
    check.add_argument("--layout", type=_layout, action="append", default=[], metavar="[NAME=]AXES",
                       help="the order of the formula's indices, for every tensor (NHWC) or one (X=HWC); "
                            "repeatable (default: NCHW)")
    check.add_argument("--zero-outside", action="append", default=[], metavar="NAME",
                       help="read NAME as zero outside its shape (default: such a read makes the claim wrong)")
    check.add_argument("--one-based", action="append", default=[], metavar="NAME",
                       help="NAME's indices count from 1; repeatable (default: every index counts from 0)")
    check.add_argument("--json", action="store_true", help="machine-readable verdict")


def add_errata(commands) -> None:
    errata = commands.add_parser(
        "errata",
        help="the documents' formulas and claims, each checked: verified, verified under a convention, "
             "conditional (holds only if ...), or wrong",
        description="Every general formula and worked example of the five reference documents, transcribed with "
                    "its document and section, run through the checker and the derivations.",
    )
    output = errata.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true",
                        help="a list of entries: document, section, claim, status, detail, condition, "
                             "counterexample")
    output.add_argument("--markdown", action="store_true", help="the Markdown of docs/errata.md")
    errata.add_argument("--out", default=None, metavar="PATH",
                        help="write to PATH (atomically; default: standard output)")


def run_check(args) -> int:
    from symcnn.checking.checker import check
    from symcnn.checking.result import CheckOptions

    formula = sys.stdin.read() if args.formula == "-" else args.formula
    for option, value in (("--channels-in", args.channels_in), ("--channels-out", args.channels_out),
                          ("--batch", args.batch)):
        if value is not None and value < 1:
            raise ValueError(f"{option}: must be an integer >= 1, got {value}")
    values = None
    if args.values is not None:
        values = [item for row in args.values for item in row]
    options = CheckOptions(
        kernel=args.kernel, stride=args.stride, padding=args.padding, dilation=args.dilation,
        input_size=args.input, channels_in=args.channels_in, channels_out=args.channels_out, batch=args.batch,
        values=values, tensors=dict(args.tensor), layouts=dict(args.layout),
        zero_outside=frozenset(args.zero_outside), one_based=frozenset(args.one_based),
    )
    result = check(formula, args.against, options)
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.text())
    return 0 if result.correct else 1


def run_errata(args) -> int:
    from symcnn.checking.errata import collect, errata_markdown, errata_text
    from symcnn.files import write_text

    entries = collect()
    if args.json:
        text = json.dumps([entry.as_dict() for entry in entries], indent=2, ensure_ascii=False) + "\n"
    elif args.markdown:
        text = errata_markdown(entries)
    else:
        text = errata_text(entries) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        write_text(args.out, text)
        print(f"wrote {args.out}")
    return 0
