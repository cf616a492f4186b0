"""The architecture, enforced: the import contracts (import-linter), the lint (ruff), small modules.

The contracts live in pyproject.toml: the layers of DESIGN.md, each importing only from those below
it, and a runtime and training that never import SymPy. The linters are the ``test`` extra's; where
one is not installed its test skips (CI installs them: .ci/run).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Most lines a module of symcnn/ may have.
MAX_MODULE_LINES = 500

def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is not installed (the test extra)")
def test_the_import_contracts_are_kept():
    result = _run(["lint-imports", "--no-cache"])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (the test extra)")
def test_ruff_finds_nothing():
    result = _run(["ruff", "check", "--no-cache", "."])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_no_module_is_over_the_line_budget():
    package = ROOT / "symcnn"
    sizes = {path.relative_to(package).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
             for path in package.rglob("*.py")}
    over = {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES}
    assert over == {}, f"modules over {MAX_MODULE_LINES} lines: split them"
