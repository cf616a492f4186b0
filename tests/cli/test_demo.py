"""`symcnn demo`, the README's main job: every section runs and reports success (exit status 0)."""


def test_demo_runs_every_section_and_succeeds(cli):
    status, out, err = cli("demo")
    assert status == 0, err[-2000:]
    assert "14 of 14 examples reproduce their documents exactly" in out
    assert "Next: symcnn examples --check" in out
