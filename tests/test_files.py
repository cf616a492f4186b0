"""symcnn.files, the one atomic write: modes from the umask, kept modes, no leftovers, concurrent
writers, stale leftovers of killed writers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from symcnn import files
from symcnn.files import atomic_open, remove_stale_leftovers, replace_directory, write_bytes, write_text

ROOT = Path(__file__).resolve().parents[1]


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.startswith("."))


@pytest.mark.parametrize("mask, file_mode, directory_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700),
                                                             (0o027, 0o640, 0o750)])
def test_new_files_and_directories_get_the_umasks_mode(tmp_path, umask, mask, file_mode, directory_mode):
    umask(mask)
    write_text(tmp_path / "a.txt", "text\n")
    write_bytes(tmp_path / "deep" / "er" / "b.bin", b"\x00", parents=True)
    with atomic_open(tmp_path / "c.npz") as stream:
        stream.write(b"data")
    replace_directory(tmp_path / "package", {"__init__.py": "", "sub/module.py": "x = 1\n"})
    for name in ("a.txt", "deep/er/b.bin", "c.npz", "package/__init__.py", "package/sub/module.py"):
        assert mode(tmp_path / name) == file_mode, name
    for name in ("deep", "deep/er", "package", "package/sub"):
        assert mode(tmp_path / name) == directory_mode, name
    assert (tmp_path / "a.txt").read_text() == "text\n"
    assert (tmp_path / "package/sub/module.py").read_text() == "x = 1\n"


def test_an_existing_file_or_directory_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    write_text(tmp_path / "private.txt", "old\n")
    os.chmod(tmp_path / "private.txt", 0o600)
    write_text(tmp_path / "private.txt", "new\n")
    assert mode(tmp_path / "private.txt") == 0o600 and (tmp_path / "private.txt").read_text() == "new\n"

    replace_directory(tmp_path / "package", {"kept.py": "", "other.py": ""})
    os.chmod(tmp_path / "package", 0o750)
    os.chmod(tmp_path / "package" / "kept.py", 0o640)
    replace_directory(tmp_path / "package", {"kept.py": "1\n", "other.py": "1\n", "new.py": ""})
    assert mode(tmp_path / "package") == 0o750
    assert mode(tmp_path / "package" / "kept.py") == 0o640
    assert mode(tmp_path / "package" / "other.py") == mode(tmp_path / "package" / "new.py") == 0o644


def test_an_exception_mid_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "checkpoint.npz"
    write_bytes(target, b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_open(target) as stream:
            stream.write(b"half of the ne")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []
    with pytest.raises(ValueError, match="mode: must be 'w' or 'wb'"):
        with atomic_open(target, "a"):
            pass


def test_an_exception_mid_package_leaves_the_old_package_and_no_staging(tmp_path, interrupt_third_write):
    package = tmp_path / "package"
    replace_directory(package, {f"m{number}.py": "old\n" for number in range(5)})
    interrupt_third_write()
    with pytest.raises(KeyboardInterrupt):
        replace_directory(package, {f"m{number}.py": "new\n" for number in range(5)})
    assert {path.name: path.read_text() for path in package.iterdir()} == {f"m{n}.py": "old\n" for n in range(5)}
    assert leftovers(tmp_path) == []


def test_an_interruption_between_the_two_renames_puts_the_old_package_back(tmp_path, monkeypatch):
    package = tmp_path / "package"
    replace_directory(package, {"m.py": "old\n"})
    rename = os.rename

    def interrupted(source, destination):
        if Path(source).name.endswith(".tmp") and not package.exists():  # the old one is set aside
            raise KeyboardInterrupt
        rename(source, destination)

    monkeypatch.setattr(os, "rename", interrupted)
    with pytest.raises(KeyboardInterrupt):
        replace_directory(package, {"m.py": "new\n"})
    assert (package / "m.py").read_text() == "old\n" and leftovers(tmp_path) == []


def test_a_file_path_outside_the_directory_is_refused(tmp_path):
    for relative in ("../escape.py", "/etc/passwd", ""):
        with pytest.raises(ValueError, match="files: .* must be a relative path inside the directory"):
            replace_directory(tmp_path / "package", {relative: ""})
    assert list(tmp_path.iterdir()) == []


# Each writer waits for the start signal, then replaces the target many times with its own version.
WRITER = textwrap.dedent("""
    import json, os, sys, time
    from symcnn.files import replace_directory, write_text
    directory, number, rounds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    package = json.loads(open(os.path.join(directory, "package.json")).read())
    package["__init__.py"] += f"WRITER = {number}\\n"
    while not os.path.exists(os.path.join(directory, "go")):
        time.sleep(0.001)
    for _ in range(rounds):
        replace_directory(os.path.join(directory, "out", "digits"), package)
        write_text(os.path.join(directory, "out", "note.txt"), f"{number}\\n" * 1000)
""")


def test_concurrent_writers_all_succeed_and_leave_one_complete_version(tmp_path):
    """Several processes generate one package into one --out at once (as 100 concurrent `symcnn
    generate` runs did, 3 of them failing): every one succeeds, and the package is one writer's,
    whole."""
    from symcnn.codegen.package import render_package
    from symcnn.spec import load_spec

    package = render_package(load_spec("digits"))
    write_text(tmp_path / "package.json", json.dumps(package))
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(number), "25"], cwd=ROOT,
                                stderr=subprocess.PIPE, text=True) for number in range(6)]
    (tmp_path / "go").touch()
    errors = [writer.communicate()[1] for writer in writers]
    assert [writer.returncode for writer in writers] == [0] * 6, "\n".join(errors)
    out = tmp_path / "out"
    written = {path.name: path.read_text() for path in (out / "digits").iterdir()}
    assert set(written) == set(package)
    number = int(written["__init__.py"].rsplit("WRITER = ", 1)[1])
    assert written == {**package, "__init__.py": package["__init__.py"] + f"WRITER = {number}\n"}
    assert len(set((out / "note.txt").read_text().splitlines())) == 1
    assert leftovers(out) == []


def test_stale_leftovers_of_killed_writers_are_removed_by_the_next_write(tmp_path, monkeypatch):
    """What a kill -9 leaves (a temporary, a staging directory, a set-aside package) goes at the
    next successful write of the same target once it is an hour old; younger ones and other
    targets' are kept."""
    (tmp_path / ".note.txt.a1b2c3d4.tmp").write_text("half")
    (tmp_path / ".package.00ff00ff.tmp").mkdir()
    (tmp_path / ".package.00ff00ff.tmp" / "m.py").write_text("")
    (tmp_path / ".package.1234abcd.previous").mkdir()
    others = [".note.txt.x.a1b2c3d4.tmp", ".note.txt.a1b2c3d4.tmp.keep", "note.txt.a1b2c3d4.tmp"]
    for name in others:
        (tmp_path / name).write_text("not a leftover of note.txt")

    write_text(tmp_path / "note.txt", "new\n")
    replace_directory(tmp_path / "package", {"m.py": ""})
    assert len(leftovers(tmp_path)) == 5  # under an hour old: maybe a writer still at work

    now = files._clock()
    monkeypatch.setattr(files, "_clock", lambda: now + files.STALE_AFTER_SECONDS + 1)
    write_text(tmp_path / "note.txt", "newer\n")
    replace_directory(tmp_path / "package", {"m.py": "1\n"})
    assert leftovers(tmp_path) == sorted(name for name in others if name.startswith("."))
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(others + ["note.txt", "package"])
    assert remove_stale_leftovers(tmp_path / "missing" / "target") == []  # no directory: nothing to do
