"""docs/torch.md runs as it stands, in order, in one directory: its Python blocks in one namespace, its
script blocks written to their files, its shell blocks run (torchrun as `python -m torch.distributed.run`)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "torch.md"
BLOCK = re.compile(r'```(python|bash|text)(?: title="([^"]+)")?\n(.*?)```', re.S)


def _command(line: str) -> list[str]:
    words = shlex.split(line)
    if words[0] == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", *words[1:]]
    if words[0] == "symcnn":
        return [sys.executable, "-m", "symcnn", *words[1:]]
    raise AssertionError(f"a shell block of {PAGE.name} runs {words[0]!r}, which this test does not know")


def test_the_torch_page_runs(tmp_path, monkeypatch, capsys):
    blocks = BLOCK.findall(PAGE.read_text(encoding="utf-8"))
    assert sum(kind == "python" and not title for kind, title, _ in blocks) >= 6, "the page lost its code blocks"
    monkeypatch.chdir(tmp_path)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    namespace: dict = {}
    printed = []
    for number, (kind, title, code) in enumerate(blocks, start=1):
        if kind == "python" and title:
            (tmp_path / title).write_text(code, encoding="utf-8")
        elif kind == "python":
            exec(compile(code, f"{PAGE.name} block {number}", "exec"), namespace)  # noqa: S102
        elif kind == "bash":
            for line in code.strip().splitlines():
                if line.startswith("pip "):  # the install line: this environment has the extras
                    continue
                result = subprocess.run(_command(line), capture_output=True, text=True, env=environment,
                                        timeout=600)
                assert result.returncode == 0, f"{line}\n{result.stderr[-3000:]}"
                printed.append(result.stdout + result.stderr)
    out = capsys.readouterr().out + "".join(printed)
    assert "['conv1.weight', 'conv1.bias', 'fc1.weight', 'fc1.bias']" in out
    assert "layer: x: expected a tensor of shape (N, 3, 32, 32), got (8, 3, 28, 28)" in out
    accuracy = float(re.search(r"test accuracy (\d\.\d+)", out).group(1))
    assert accuracy > 0.8  # three epochs of SGD on the digits, in two processes
    assert "symcnn import: mine: 5 layers" in out
