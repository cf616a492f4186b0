"""``symcnn exercise`` and ``symcnn grade``: exercise sheets with answer keys, and grading a student's answers.

Usage:
    symcnn exercise --seed 7 --count 6 --topic convolution,pooling --level 1 -o week3.pdf   (and week3-key.pdf)
    symcnn exercise --seed 7 --key --format latex           (the key on standard output)
    symcnn exercise --seed 7 -o week3.xml                   (Moodle XML)
    symcnn grade answers.txt --sheet week3.md [--json]

``grade`` exits 0 when every answer is correct, 1 when one is wrong, missing or unreadable, 2 when the
answers file or the sheet cannot be read (one line naming it), as ``symcnn check`` does.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["add_commands", "RUNNERS"]

_SUFFIXES = {".md": "markdown", ".tex": "latex", ".pdf": "latex", ".xml": "moodle"}
_OPTIONS = {"seed": "--seed", "count": "--count", "topic": "--topic", "level": "--level", "output": "-o"}


def add_commands(commands, number) -> None:
    """The ``exercise`` and ``grade`` parsers; ``number`` is main's integer argument type."""
    exercise = commands.add_parser(
        "exercise", help="a randomized exercise sheet and its answer key (Markdown, LaTeX, PDF or Moodle XML)",
        description="Make a sheet of exercises on the registered ops, reproducible from --seed, and its answer key "
                    "with the working (the chain rule step by step, as derive --steps shows it). With -o FILE the "
                    "sheet goes to FILE and the key beside it (FILE-key); .xml writes a Moodle XML quiz.")
    exercise.add_argument("--seed", type=number(int), default=0, help="the same seed gives the same sheet")
    exercise.add_argument("--count", type=number(int), default=6, help="number of exercises")
    exercise.add_argument("--topic", default="all", metavar="TOPIC[,TOPIC]",
                          help="convolution, pooling, dense, activations, normalization, sizes, network, spot, "
                               "or all (every topic with a registered op); see --list")
    exercise.add_argument("--level", type=number(int), default=1,
                          help="1 small integers, 2 symbols, 3 strides, padding, dilation and overlapping windows")
    exercise.add_argument("--key", action="store_true", help="print the answer key instead of the sheet")
    exercise.add_argument("--format", choices=("markdown", "latex", "moodle"), default=None,
                          help="markdown (default), latex or moodle; -o's suffix chooses it when omitted")
    exercise.add_argument("-o", "--output", default=None, metavar="FILE",
                          help="FILE.md, FILE.tex, FILE.pdf (with its key beside it, FILE-key.*) or FILE.xml "
                               "(Moodle); default: standard output")
    exercise.add_argument("--list", action="store_true", help="list the topics and the registered ops of each")
    grade = commands.add_parser(
        "grade", help="grade a student's answers against a sheet's key",
        description="Read ANSWERS (one line per exercise: 'NUMBER: ANSWER', in LaTeX or SymPy syntax as symcnn "
                    "check reads formulas, or numbers) and grade each against the key of SHEET (the .md or .tex "
                    "file symcnn exercise wrote): correct, or wrong with the entries that differ and the smallest "
                    "counter-example; then the score.")
    grade.add_argument("answers", metavar="ANSWERS", help="the student's answers file")
    grade.add_argument("--sheet", required=True, metavar="SHEET", help="the sheet (or key) as a .md or .tex file")
    grade.add_argument("--json", action="store_true", help="machine-readable verdicts")


def _named(error: ValueError) -> ValueError:
    field, separator, rest = str(error).partition(": ")
    return ValueError(f"{_OPTIONS[field]}: {rest}") if separator and field in _OPTIONS else error


def _list() -> int:
    from symcnn.teaching.topics import TOPICS

    width = max(len(name) for name in TOPICS)
    for name, topic in TOPICS.items():
        print(f"{name:<{width}}  {', '.join(topic.ops()) or '(no registered op yet)'}")
    return 0


def run_exercise(args) -> int:
    from symcnn.files import write_text
    from symcnn.teaching.documents import render
    from symcnn.teaching.moodle import moodle_xml
    from symcnn.teaching.sheet import Recipe, make_sheet

    if args.list:
        return _list()
    output = Path(args.output) if args.output else None
    output_format = args.format or "markdown"
    if output is not None:
        implied = _SUFFIXES.get(output.suffix.lower())
        if implied is None:
            raise ValueError(f"-o: expected a file ending in .md, .tex, .pdf or .xml, got {args.output!r}")
        if args.format and args.format != implied:
            raise ValueError(f"-o: a {output.suffix} file holds {implied}, but --format is {args.format}")
        if not output.parent.is_dir():
            raise ValueError(f"-o: the directory {str(output.parent)!r} does not exist")
        output_format = implied
    try:
        sheet = make_sheet(Recipe(args.seed, args.count, (args.topic,), args.level))
    except ValueError as error:
        raise _named(error) from None
    if output is None:
        sys.stdout.write(moodle_xml(sheet) if output_format == "moodle" else render(sheet, args.key, output_format))
        return 0
    if output_format == "moodle":
        write_text(output, moodle_xml(sheet))
        print(f"wrote {output}")
        return 0
    from symcnn.report.writer import compile_pdf

    for key, path in ((False, output), (True, output.with_name(f"{output.stem}-key{output.suffix}"))):
        text = render(sheet, key, output_format)
        try:
            compile_pdf(text, path) if path.suffix.lower() == ".pdf" else write_text(path, text)
        except ValueError as error:
            raise _named(error) from None
        print(f"wrote {path}")
    return 0


def _sheet_of(path_text: str):
    """The sheet a sheet (or key) file was made from, checked: it must be exactly what symcnn writes for it."""
    from symcnn.teaching.documents import render
    from symcnn.teaching.sheet import Recipe, make_sheet

    path = Path(path_text)
    if path.suffix.lower() not in (".md", ".tex"):
        raise ValueError(f"--sheet: give the sheet's .md or .tex file (symcnn exercise -o), got {path_text!r}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"--sheet: cannot read {path_text}: {getattr(error, 'strerror', None) or error}") from None
    first = text.partition("\n")[0]
    try:
        recipe = Recipe.from_command(first)
    except ValueError as error:
        raise ValueError(f"--sheet: {path_text} names a recipe symcnn cannot make ({error})") from None
    if recipe is None:
        raise ValueError(f"--sheet: {path_text} is not a sheet written by symcnn exercise (its first line names none)")
    sheet = make_sheet(recipe)
    output_format = "markdown" if path.suffix.lower() == ".md" else "latex"
    if text not in (render(sheet, False, output_format), render(sheet, True, output_format)):
        raise ValueError(f"--sheet: {path_text} differs from the sheet `{recipe.command()}` makes (edited, or "
                         "written by another symcnn version); regenerate it with that command")
    return sheet


def run_grade(args) -> int:
    from symcnn.teaching.grading import grade, read_answers

    try:
        answers_text = Path(args.answers).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"ANSWERS: cannot read {args.answers}: {getattr(error, 'strerror', None) or error}") from None
    sheet = _sheet_of(args.sheet)
    try:
        result = grade(sheet, read_answers(answers_text))
    except ValueError as error:
        raise ValueError(str(error).replace("answers: ", f"ANSWERS: {args.answers}: ", 1)) from None
    print(result.json() if args.json else result.text())
    return 0 if result.score == len(result.verdicts) else 1


RUNNERS = {"exercise": run_exercise, "grade": run_grade}
