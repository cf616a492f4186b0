"""docs/adding-an-op.md runs as it stands: its Python blocks, in order, in one namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from symcnn import registry

PAGE = Path(__file__).resolve().parents[1] / "docs" / "adding-an-op.md"


@pytest.mark.heavy
def test_the_adding_an_op_page_runs(capsys):
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 4, "the page lost its code blocks"
    namespace: dict = {}
    try:
        for number, block in enumerate(blocks, start=1):
            exec(compile(block, f"{PAGE.name} block {number}", "exec"), namespace)  # noqa: S102
    finally:
        registry.unregister("channel_scale")
    assert "dL/dW[c]" in capsys.readouterr().out
