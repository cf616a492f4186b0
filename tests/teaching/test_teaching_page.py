"""docs/teaching.md cannot go stale: its Python blocks run, its console lines parse, its example sheet and key
are what ``symcnn exercise`` writes for them today."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from symcnn.cli.main import _build_parser
from symcnn.teaching.documents import render
from symcnn.teaching.sheet import Recipe, make_sheet

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGE = (DOCS / "teaching.md").read_text(encoding="utf-8")


def test_python_blocks_run_in_order():
    namespace: dict = {}
    blocks = re.findall(r"```python\n(.*?)```", PAGE, re.S)
    assert len(blocks) == 2
    for block in blocks:
        exec(compile(block, "docs/teaching.md", "exec"), namespace)  # noqa: S102 (the page's own code)


def test_console_lines_are_valid_commands():
    parser = _build_parser()
    lines = [line.split("#")[0] for block in re.findall(r"```console\n(.*?)```", PAGE, re.S)
             for line in block.splitlines() if line.strip()]
    assert lines
    for line in lines:
        parser.parse_args(shlex.split(line)[1:])


def test_the_example_sheet_and_key_are_current():
    sheet = make_sheet(Recipe(2026, 6, ("all",), 1))
    assert (DOCS / "teaching" / "example-sheet.md").read_text(encoding="utf-8") == render(sheet, False, "markdown")
    assert (DOCS / "teaching" / "example-sheet-key.md").read_text(encoding="utf-8") == render(sheet, True, "markdown")
