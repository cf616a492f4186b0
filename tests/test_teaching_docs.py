"""The teaching material cannot go stale.

- docs/tutorial.md and docs/conventions.md: every ``$ symcnn ...`` line of a ``console`` block is
  run, and its output must equal the text below it (``| head -n N`` / ``| tail -n N`` keep part);
- docs/notebook.ipynb: its code cells are executed in a plain Python namespace (no Jupyter), and
  each saved ``text/latex`` output must equal what the object displays now.

After an intended change of output, rewrite the console blocks with
``python tests/test_teaching_docs.py --update`` and re-execute the notebook with
``python docs/execute_notebook.py``; review the diff.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
CONSOLE_DOCS = ("tutorial.md", "conventions.md")
_BLOCK = re.compile(r"```console\n(.*?)```", re.S)
_PIPE = re.compile(r"\s*\|\s*(head|tail) -n (\d+)\s*$")


@dataclass(frozen=True)
class ConsoleCommand:
    line: str  # as written after "$ "
    expected: str  # the output shown below it

    @property
    def argv(self) -> list[str]:
        words = shlex.split(_PIPE.sub("", self.line))
        assert words[0] == "symcnn", self.line
        return words[1:]

    def shown(self, output: str) -> str:
        """The part of ``output`` the line's ``| head`` or ``| tail`` keeps."""
        lines = output.rstrip("\n").splitlines()
        pipe = _PIPE.search(self.line)
        if pipe:
            count = int(pipe.group(2))
            lines = lines[:count] if pipe.group(1) == "head" else lines[-count:]
        return "\n".join(lines)


def console_commands(text: str) -> list[ConsoleCommand]:
    commands = []
    for block in _BLOCK.findall(text):
        for chunk in ("\n" + block).split("\n$ ")[1:]:
            line, _, expected = chunk.partition("\n")
            commands.append(ConsoleCommand(line.strip(), expected.strip("\n")))
    return commands


def _run(argv: list[str]) -> tuple[int, str]:
    from symcnn.cli.main import main

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        try:
            status = main(argv)
        except SystemExit as exit_:
            status = exit_.code
    return status, stdout.getvalue()


@pytest.mark.parametrize("name", CONSOLE_DOCS)
def test_console_blocks_show_what_the_commands_print(name):
    commands = console_commands((DOCS / name).read_text())
    assert commands, f"{name} has no console examples"
    for command in commands:
        status, output = _run(command.argv)
        assert status == 0, command.line
        assert command.shown(output) == command.expected, command.line


def test_tutorial_follows_the_documents_in_order():
    text = (DOCS / "tutorial.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    documents = [re.search(r"[Dd]ocument (\d{3})", heading) for heading in headings]
    numbers = [match.group(1) for match in documents if match]
    assert numbers == ["000", "001", "002", "003", "004"]
    for command in ("symcnn examples", "symcnn derive", "--steps", "symcnn formula"):
        assert command in text


# --- the notebook ------------------------------------------------------------------------------


def _notebook() -> dict:
    return json.loads((DOCS / "notebook.ipynb").read_text())


def test_notebook_outputs_are_what_the_objects_display_now(monkeypatch):
    notebook = _notebook()
    assert notebook["nbformat"] == 4
    monkeypatch.chdir(DOCS)
    namespace: dict = {}
    checked = 0
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        outputs = cell.get("outputs", [])
        saved = ["".join(output["data"]["text/latex"]) for output in outputs if "text/latex" in output.get("data", {})]
        saved_text = "".join("".join(output["text"]) for output in outputs if output["output_type"] == "stream")
        assert not [output for output in outputs if output["output_type"] == "error"], source
        # The cell's last expression is what Jupyter displays (and display() calls, in order).
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            shown = _execute(source, namespace)
        produced = [value._repr_latex_() for value in shown if hasattr(value, "_repr_latex_")]
        assert saved == produced, source
        assert saved_text == stdout.getvalue(), source
        checked += len(produced) + bool(saved_text)
    assert checked >= 8


def _execute(source: str, namespace: dict) -> list:
    """Run a cell like Jupyter: statements, then the value of a final expression; collect display()."""
    import ast

    shown: list = []
    namespace["display"] = lambda *values: shown.extend(values)
    tree = ast.parse(source)
    last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    body = ast.Module(body=tree.body[:-1] if last else tree.body, type_ignores=[])
    exec(compile(body, "<cell>", "exec"), namespace)  # noqa: S102 (the repository's own notebook)
    if last is not None:
        value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)  # noqa: S307
        if value is not None:
            shown.append(value)
    return shown


def test_notebook_was_executed_in_order():
    counts = [cell.get("execution_count") for cell in _notebook()["cells"] if cell["cell_type"] == "code"]
    assert counts == list(range(1, len(counts) + 1))


# --- maintenance -------------------------------------------------------------------------------


def update_console_blocks(path: Path) -> None:
    """Rewrite each console block of ``path`` with what its commands print now (atomically)."""

    def rewrite(match: re.Match) -> str:
        parts = []
        for command in console_commands(f"```console\n{match.group(1)}```"):
            status, output = _run(command.argv)
            if status != 0:
                raise SystemExit(f"{path.name}: `{command.line}` exited with {status}")
            parts.append(f"$ {command.line}\n{command.shown(output)}\n")
        return "```console\n" + "\n".join(parts) + "```"

    text = _BLOCK.sub(rewrite, path.read_text())
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    os.chmod(temporary, path.stat().st_mode & 0o777)  # mkstemp makes it private
    os.replace(temporary, path)


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        raise SystemExit("usage: python tests/test_teaching_docs.py --update")
    sys.path.insert(0, str(DOCS.parent))
    for name in CONSOLE_DOCS:
        update_console_blocks(DOCS / name)
        print(f"updated docs/{name}")
