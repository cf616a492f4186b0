"""``symcnn compile SPEC``: every kernel of a spec compiled into numba's cache, and what it did, in one line."""

from __future__ import annotations

import re
import textwrap

SPEC = textwrap.dedent("""
    name = "compile_cli_tiny"
    input = [1, 2, 2]

    [[layers]]
    type = "flatten"

    [[layers]]
    type = "dense"
    name = "fc"
    out_features = 3
""")


def test_compile_compiles_a_new_specs_kernels_and_says_what_it_did(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("SYMCNN_CACHE_DIR", str(tmp_path / "cache"))  # nothing generated or compiled yet
    monkeypatch.setenv("SYMCNN_COMPILE_WORKERS", "0")
    path = tmp_path / "compile_cli_tiny.toml"
    path.write_text(SPEC, encoding="utf-8")
    status, out, _ = cli("compile", path)
    assert status == 0
    # fc's forward and three gradients, the loss and its gradient (the flatten's are views: never called)
    assert re.fullmatch(r"compile_cli_tiny \(float32\): 6 kernels ready in [0-9.]+ s: 0 loaded from numba's cache, "
                        r"6 compiled in this process\n", out), out


def test_compile_refuses_an_unknown_spec_in_one_line(cli):
    status, out, err = cli("compile", "no-such-spec")
    assert status == 2 and out == "" and len(err.splitlines()) == 1 and err.startswith("symcnn compile: error: ")
