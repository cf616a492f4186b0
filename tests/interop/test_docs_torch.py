"""docs/torch.md runs as it stands, in order, in one directory: its Python blocks in one namespace, its
script blocks written to their files, its shell blocks run (torchrun as `python -m torch.distributed.run`);
the lines of its "across machines" block run at once, as machines would, on this one (loopback, a free port
in place of the page's address)."""

from __future__ import annotations

import os
import re
import shlex
import socket
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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_at_once(lines: list[str], environment: dict) -> list[str]:
    """The commands of several machines, started together on this one: the page's endpoint made loopback."""
    endpoint = f"127.0.0.1:{_free_port()}"
    runs = [subprocess.Popen(_command(line.replace("10.0.0.1:29500", endpoint)), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=environment) for line in lines]
    outputs = []
    for line, run in zip(lines, runs):
        out, err = run.communicate(timeout=600)
        assert run.returncode == 0, f"{line}\n{err[-3000:]}"
        outputs.append(out + err)
    return outputs


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
        elif kind == "bash" and title == "across machines":
            lines = [line for line in code.strip().splitlines() if not line.startswith("#")]
            assert len(lines) == 2 and "10.0.0.1:29500" in lines[0]
            printed.extend(_run_at_once(lines, environment))
        elif kind == "bash":
            for line in code.strip().splitlines():
                if line.startswith(("pip ", "#")):  # the install line: this environment has the extras
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
    assert "{'seed': 0, 'step': 1}" in out  # a dropout layer's generator after one training pass
    assert "['conv2d', 'batchnorm2d', 'relu', 'dropout', 'flatten', 'dense']" in out  # imported from ONNX
    assert out.count("data-parallel in 2 processes") == 2  # symcnn train --distributed: one machine, and two
    assert out.count("digits: held-out accuracy") == 2 and (tmp_path / "digits-run.npz").is_file()


# Several processes (torchrun, three times) and kernels compiled for new specs: `pytest -m slow` (pyproject.toml).
pytestmark = pytest.mark.slow
