"""docs/summary.md is current: its Python blocks run (in order, in a scratch directory), each console
block is what ``symcnn summary`` prints there (the whole table; the footnotes may be cut), and the
comparison table's symcnn columns are the summary's, its tool columns in the relations that
tests/interop/test_summary_references.py checks against the tools themselves."""

from __future__ import annotations

import math
import re
import shlex
from pathlib import Path

from symcnn.network_summary import summary
from symcnn.spec import ARCHITECTURE_SPECS, SHIPPED_SPECS, load_spec

PAGE = Path(__file__).resolve().parent.parent / "docs" / "summary.md"
BLOCK = re.compile(r"```(python|console)\n(.*?)```", re.S)


def _number(cell: str) -> int:
    return int(cell.replace(",", ""))


def test_the_page_shows_what_symcnn_summary_prints(cli, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = BLOCK.findall(PAGE.read_text(encoding="utf-8"))
    assert sum(kind == "console" for kind, _ in blocks) >= 7, "the page lost its summaries"
    namespace: dict = {}
    for kind, body in blocks:
        if kind == "python":  # what a print prints is the comment beside it
            exec(compile(body, str(PAGE), "exec"), namespace)
            comments = [line.split("  # ", 1)[1].strip() for line in body.splitlines()
                        if line.startswith("print(") and "  # " in line]
            assert [line.strip() for line in capsys.readouterr().out.splitlines()] == comments
            continue
        command, *shown = body.rstrip("\n").splitlines()
        assert command.startswith("$ symcnn summary "), command
        status, out, _ = cli(*shlex.split(command)[2:])
        printed = out.rstrip("\n").splitlines()
        table = next(number for number, line in enumerate(printed) if line.startswith("parameters: ")) + 1
        assert shown[:table] == printed[:table], command
        rest = shown[table:]  # footnotes: none, or a run of the printed ones
        assert not rest or any(printed[start:start + len(rest)] == rest for start in range(table, len(printed)))


def test_the_comparison_table_is_the_summaries():
    rows = [line.split("|")[1:-1] for line in PAGE.read_text(encoding="utf-8").splitlines()
            if line.startswith("| `")]
    assert {row[0].strip().strip('`') for row in rows} == set(SHIPPED_SPECS + ARCHITECTURE_SPECS)
    for row in rows:
        name, parameters, torchinfo_parameters, macs, torchinfo_macs, fvcore, ptflops_like = (
            [row[0].strip().strip("`")] + [_number(cell) for cell in row[1:7]])
        spec, result = load_spec(name), summary(name)
        assert parameters == torchinfo_parameters == result.totals.parameters, name
        assert macs == ptflops_like == result.totals.macs, name
        by_kind: dict[str, int] = {}
        for layer in result.layers:
            by_kind[layer.kind] = by_kind.get(layer.kind, 0) + layer.macs
        # torchinfo: document 003's count for convolutions and dense layers, and a batch norm's
        # parameters times the batch; fvcore: no bias adds, batch norm and global pooling as symcnn.
        batch_norms = sum(2 * layer.input_shape[0] for layer in spec.layers if layer.kind == "batchnorm2d")
        assert torchinfo_macs == by_kind.get("conv2d", 0) + by_kind.get("dense", 0) + batch_norms, name
        bias_adds = sum(math.prod(layer.output_shape) for layer in spec.layers if layer.settings.get("bias"))
        assert fvcore == (by_kind.get("conv2d", 0) + by_kind.get("dense", 0) - bias_adds
                          + by_kind.get("batchnorm2d", 0) + by_kind.get("global_avgpool", 0)), name
