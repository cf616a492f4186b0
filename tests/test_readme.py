"""The README's code runs as a reader would run it, block by block.

- every ``python`` block is executed on its own, in a fresh namespace (a block that needs a name from
  another block fails here, as it would for a reader who pastes one);
- every ``symcnn`` command of a ``bash`` block is parsed by the CLI's own parser, and run (in a
  temporary directory) unless it takes minutes (:data:`SLOW`); it must exit 0, or 1 where its
  comment says the formula is ``wrong``;
- every ``toml`` block is a spec that validates;
- the table of reference documents is :data:`symcnn.checking.documents.REFERENCE_DOCUMENTS`.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from symcnn.checking.documents import REFERENCE_DOCUMENTS

README = Path(__file__).resolve().parent.parent / "README.md"
_BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)

#: Commands that take minutes (numba compiling, training, timing, every report): parsed, not run.
SLOW = ("demo", "train", "bench", "generate", "errata")


def blocks(language: str) -> list[str]:
    return [body for kind, body in _BLOCK.findall(README.read_text(encoding="utf-8")) if kind == language]


def symcnn_commands() -> list[tuple[list[str], str]]:
    """``(argv after "symcnn", its comment)`` for each symcnn command of the bash blocks."""
    commands = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            code, _, comment = line.partition("  #") if "  #" in line else (line, "", "")
            for part in code.split("&&"):
                words = shlex.split(part)
                if words[:1] == ["symcnn"]:
                    commands.append((words[1:], comment.strip()))
    return commands


# a block that runs a network compiles its kernels (about a minute on 2 cores): heavy (pyproject.toml)
@pytest.mark.parametrize("source", [pytest.param(source, marks=pytest.mark.heavy if "Network" in source else ())
                                    for source in blocks("python")],
                         ids=lambda source: source.strip().splitlines()[0][:40])
def test_each_python_block_runs_on_its_own(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(source, "README.md", "exec"), {"__name__": "readme"})  # noqa: S102 (the repository's README)


def _is_slow(argv: list[str]) -> bool:
    return argv[0] in SLOW or (argv[0] == "report" and ("--all" in argv or "--network" in argv))


@pytest.mark.parametrize("argv, comment", symcnn_commands(), ids=lambda value: " ".join(value)[:60]
                         if isinstance(value, list) else None)
def test_each_symcnn_command_parses_and_the_fast_ones_run(argv, comment, tmp_path, monkeypatch):
    from symcnn.cli.main import _build_parser, main

    _build_parser().parse_args(argv)  # every option it shows exists
    if _is_slow(argv):
        return
    monkeypatch.chdir(tmp_path)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = main(argv)
    assert status == (1 if "wrong" in comment else 0), (argv, stdout.getvalue()[-1000:])


def test_the_commands_of_every_bash_block_are_found():
    found = [" ".join(argv[:1]) for argv, _ in symcnn_commands()]
    assert {"demo", "examples", "derive", "formula", "report", "check", "errata"} <= set(found)


def test_each_toml_block_is_a_valid_spec():
    from symcnn.spec import parse_spec

    specs = blocks("toml")
    assert specs
    for text in specs:
        assert parse_spec(text).layers


def test_the_reference_documents_table_is_the_one_in_the_code():
    text = README.read_text(encoding="utf-8")
    for document in REFERENCE_DOCUMENTS:
        row = f"| {document.number} | {document.title} | {document.covers} | `{document.file_name}` |"
        assert row in text, row
    assert "shared/" not in text  # no path a clone does not have
