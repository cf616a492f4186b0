"""`symcnn demo`, the README's main job: every section runs and reports success (exit status 0), and a
new user can read it: the documents named by title, every name explained before it is used, lines one
screen wide, and throughput timed as `symcnn bench` times it."""

import pytest

from symcnn.checking.documents import REFERENCE_DOCUMENTS


@pytest.mark.heavy
def test_demo_runs_every_section_and_succeeds(cli):
    status, out, err = cli("demo")
    assert status == 0, err[-2000:]
    assert "14 of 14 examples reproduce their documents exactly" in out
    assert "Next:" in out and "symcnn examples --check" in out
    assert all(document.title in out for document in REFERENCE_DOCUMENTS)  # each on a line of its own
    assert "shared/" not in out and ".txt" not in out
    words = " ".join(out.split())  # the tour's paragraphs are wrapped
    assert words.index("x011: channel 0, row 1") < words.index("dL/dx011 =")  # explained before it appears
    assert words.index("g00..g21") < words.index("g00*w011")
    assert "back-to-back steps" in words and "as `symcnn bench seed004` times it" in words
    code = "        "  # the generated kernel's lines, printed as they are
    assert [line for line in out.splitlines() if len(line) > 100 and not line.startswith(code)] == []
