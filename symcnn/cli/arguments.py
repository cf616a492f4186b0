"""The argument parser of every ``symcnn`` command: one-line errors, suggestions, defaults in the help.

- A usage error is one line (the option and the constraint), exit status 2.
- A mistyped choice (a command, an op, a format) names the closest one: ``symcnn derve`` says
  ``did you mean 'derive'?``.
- Every option's help names its default, unless its text already says what the default is
  (flags, which are off unless given, and repeatable options, empty unless given, need none).

Example:
    >>> parser = Parser(prog="demo")
    >>> _ = parser.add_argument("--batch", type=int, default=64, help="images per call")
    >>> "images per call (default: 64)" in " ".join(parser.format_help().split())
    True
    >>> suggestion("derve", ["demo", "derive", "formula"])
    "; did you mean 'derive'?"
"""

from __future__ import annotations

import argparse
import difflib
import re
import shlex
import sys
from typing import Iterable

__all__ = ["Parser", "HelpFormatter", "suggestion", "add_format_options", "chosen_format", "size", "count", "values",
           "print_document", "SETTING_OPTIONS", "OPTION_OF_SETTING",
           "add_setting_options", "derive_settings"]


def suggestion(value: str, choices: Iterable) -> str:
    """``"; did you mean 'derive'?"`` for the closest choice to ``value``, or ``""`` when none is close."""
    names = [str(choice) for choice in choices]
    close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, with ``(default: ...)`` after each option's help that does not state it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        states_it = "default" in text
        no_default = action.default in (None, argparse.SUPPRESS, []) or action.nargs == 0  # flags: off unless given
        if states_it or no_default or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the option and the constraint), exit status 2, and a
    mistyped choice suggests the closest one."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):  # argparse's API
        self.exit(2, f"{self.prog}: error: {message}\n")

    def _check_value(self, action: argparse.Action, value) -> None:
        if action.choices is not None and value not in action.choices:
            choices = ", ".join(map(repr, action.choices))
            raise argparse.ArgumentError(
                action, f"invalid choice: {value!r}{suggestion(value, action.choices)} (choose from {choices})")


def add_format_options(command: argparse.ArgumentParser) -> None:
    """``--format text|latex|json`` and ``--standalone``, as ``derive`` and ``formula`` take them."""
    command.add_argument("--format", choices=("text", "latex", "json"), default=None,
                         help="text (default), latex or json. latex is math-mode fragments (aligned blocks): paste "
                              "them inside \\[ \\] or an equation of your own document, or add --standalone")
    command.add_argument("--standalone", action="store_true",
                         help="a complete LaTeX document that compiles as it is (pdflatex FILE.tex); implies "
                              "--format latex")


def chosen_format(args: argparse.Namespace) -> str:
    """``--format`` as given, else latex for ``--standalone`` and text otherwise."""
    if args.standalone and args.format not in (None, "latex"):
        raise ValueError(f"--standalone: prints a LaTeX document; it does not combine with --format {args.format}")
    return args.format or ("latex" if args.standalone else "text")


#: ``symcnn derive``'s options for settings of a few ops, passed as the op's ``settings`` (LayerConfig's
#: fields cover the others): option -> (setting, metavar, help).
SETTING_OPTIONS = {
    "--groups": ("groups", "G", "conv2d: channel groups, dividing --channels-in and --channels-out "
                                "(--groups C_in: depthwise); default 1"),
    "--output-padding": ("output_padding", "A|AHxAW", "conv_transpose2d: rows and columns added at the end "
                                                      "of the output, below the stride or the dilation; default 0"),
    "--output": ("output", "H|HxW", "adaptive pooling: the output size (no default: required there)"),
}

#: The option of each of those settings, for error messages (``groups: ...`` as ``--groups: ...``).
OPTION_OF_SETTING = {setting: option for option, (setting, _, _) in SETTING_OPTIONS.items()}


def add_setting_options(command: argparse.ArgumentParser) -> None:
    """The :data:`SETTING_OPTIONS`: ``--groups`` a whole number, the others ``A`` or ``AHxAW``."""
    for option, (setting, metavar, text) in SETTING_OPTIONS.items():
        command.add_argument(option, type=count if setting == "groups" else size, default=None, metavar=metavar,
                             help=text)


def derive_settings(args) -> dict:
    """``symcnn derive``: the op's :data:`SETTING_OPTIONS` settings given, once every option the op has
    no setting for is refused, not silently ignored (flatten has no stride, global_avgpool no kernel
    even at 2x2, conv2d no output padding)."""
    from symcnn import registry

    entry = registry.get(args.op)
    if 3 not in entry.inputs and isinstance(args.input, tuple):
        raise ValueError(f"--input: {args.op} takes the number of input features, like --input 4")
    given = {option: getattr(args, setting) for option, (setting, _, _) in SETTING_OPTIONS.items()}
    for option, settings, used in (("--kernel", ("kernel",), args.kernel is not None),
                                   ("--stride", ("stride",), args.stride is not None),
                                   ("--padding", ("padding",), args.padding is not None),
                                   ("--dilation", ("dilation",), args.dilation is not None),
                                   ("--channels-out", ("out_channels", "out_features"), args.channels_out is not None),
                                   ("--no-bias", ("bias",), args.no_bias),
                                   *((option, (SETTING_OPTIONS[option][0],), value is not None)
                                     for option, value in given.items())):
        if used and not set(settings) & set(entry.keys()):
            what = option.removeprefix("--").removeprefix("no-").replace("-", " ")
            raise ValueError(f"{option}: {args.op} takes no {what}")
    if args.channels_in is not None and not isinstance(args.input, tuple):
        raise ValueError(f"--channels-in: --input {args.input} is a vector of features; it has no channels "
                         f"(give --input HxW for a map)")
    return {SETTING_OPTIONS[option][0]: value for option, value in given.items() if value is not None}


# --- argument types and output shared by commands -------------------------------------------------

def size(text: str) -> object:
    """``3`` or ``3x4`` as an int or an (int, int) pair."""
    match = re.fullmatch(r"\s*(-?\d+)\s*(?:[xX×]\s*(-?\d+)\s*)?", text)  # sign: the library names the bound
    if not match:
        raise argparse.ArgumentTypeError(f"expected an integer or HxW (like 3 or 3x4), got {text!r}")
    first, second = match.groups()
    return int(first) if second is None else (int(first), int(second))


def operand(text: str) -> str:
    """``--wrt``'s value: ``forward``, ``weight``, ``bias``, or an input, ``input`` or ``input2``, ... (of an
    add or concat); whether the op has it is checked with the op."""
    from symcnn.registry import is_input_role

    if text in ("forward", "weight", "bias") or is_input_role(text):
        return text
    raise argparse.ArgumentTypeError(f"expected forward, input, input2, ..., weight or bias, got {text!r}")


def count(text: str) -> int:
    if not re.fullmatch(r"\s*\d+\s*", text):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(text)


def values(text: str) -> list[list[str]]:
    """Rows separated by ``;``, numbers in a row by commas or spaces."""
    rows = [[item for item in re.split(r"[\s,]+", row.strip()) if item] for row in text.split(";")]
    rows = [row for row in rows if row]
    if not rows:
        raise argparse.ArgumentTypeError("expected numbers like '1,5,4; 9,2,1; 6,3,2'")
    return rows


def print_document(report, args) -> int:
    """``--standalone``: the report as a complete LaTeX document, headed by the command that made it."""
    from symcnn.report.writer import render_latex

    sys.stdout.write(render_latex(report, "symcnn " + shlex.join(args.argv)))
    return 0
