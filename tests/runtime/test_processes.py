"""Several processes at once, and processes killed at any moment: nothing is lost or half-written.

- Processes that load the same new spec at once each generate (or find) its kernels in the shared cache,
  and all of them run it, with the same result.
- ``kill -9`` at any moment of ``symcnn train --checkpoint`` leaves the previous checkpoint loadable (or a
  newer one), and a resume from it works; at any moment of ``symcnn generate --out`` it leaves the previous
  package whole (or the new one), and the next run repairs whatever the kill left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from symcnn.codegen import package as generate_module
from symcnn.codegen.package import render_package
from symcnn.spec import load_spec
from symcnn.training.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[2]

SPEC = textwrap.dedent("""
    name = "shared_new_spec"
    input = [1, 6, 6]

    [[layers]]
    type = "conv2d"
    name = "conv"
    out_channels = 2
    kernel = 3

    [[layers]]
    type = "relu"

    [[layers]]
    type = "flatten"

    [[layers]]
    type = "dense"
    name = "fc"
    out_features = 3
""")

LOADER = textwrap.dedent("""
    import sys
    import numpy as np
    from symcnn.runtime.network import Network
    net = Network.from_spec(sys.argv[1], seed=0)
    x = np.linspace(-1, 1, 2 * 36, dtype=np.float32).reshape(2, 1, 6, 6)
    np.save(sys.argv[2], net.forward(x))
""")


def _environment(cache: Path) -> dict:
    return {**os.environ, "SYMCNN_CACHE_DIR": str(cache), "NUMBA_NUM_THREADS": "1"}


def test_processes_loading_one_new_spec_at_once_all_run_it(tmp_path):
    spec = tmp_path / "shared.toml"
    spec.write_text(SPEC)
    environment = _environment(tmp_path / "cache")
    loaders = [subprocess.Popen([sys.executable, "-c", LOADER, str(spec), str(tmp_path / f"out{number}.npy")],
                                cwd=ROOT, env=environment, stderr=subprocess.PIPE, text=True) for number in range(3)]
    errors = [loader.communicate(timeout=600)[1] for loader in loaders]
    assert [loader.returncode for loader in loaders] == [0, 0, 0], "\n".join(errors)
    first, *others = [np.load(tmp_path / f"out{number}.npy") for number in range(3)]
    for other in others:
        np.testing.assert_array_equal(first, other)
    packages = [path for path in (tmp_path / "cache").iterdir() if not path.name.startswith(".")]
    assert len(packages) == 1  # one package, under the spec's digest


def _train(arguments: list[str], environment: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "symcnn", "train", "digits", "--no-progress", "--json",
                             *arguments], cwd=ROOT, env=environment, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("delay", [0.3, 2.2, 3.3])
def test_kill_9_while_training_leaves_a_checkpoint_that_resumes(tmp_path, delay):
    environment = _environment(tmp_path / "cache")
    checkpoint = tmp_path / "run.npz"
    first = _train(["--epochs", "1", "--checkpoint", str(checkpoint)], environment)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    before = checkpoint.read_bytes()
    second = _train(["--epochs", "400", "--resume", str(checkpoint), "--checkpoint", str(checkpoint)], environment)
    time.sleep(delay)  # start-up, the kernels' loading, then epochs each ending with a checkpoint write
    second.send_signal(signal.SIGKILL)
    second.wait(timeout=60)
    state = load_checkpoint(checkpoint)  # whole and checked (its digest): the first run's, or a newer epoch's
    epoch = state.metadata["epoch"]
    assert epoch > 1 or checkpoint.read_bytes() == before
    resumed = _train(["--epochs", str(epoch + 1), "--resume", str(checkpoint)], environment)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()


@pytest.mark.parametrize("delay", [0.3, 0.9, 1.6])
def test_kill_9_while_generating_leaves_the_previous_package_or_the_new_one(tmp_path, delay):
    out = tmp_path / "out"
    generate_module.generate(["digits"], out)
    package = out / "digits"
    expected = render_package(load_spec("digits"))
    (package / "__init__.py").write_text(expected["__init__.py"] + "# the previous version\n")
    previous = {path.name: path.read_text() for path in package.iterdir() if path.is_file()}
    run = subprocess.Popen([sys.executable, "-m", "symcnn", "generate", "digits", "--out", str(out)], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=60)
    if package.exists():  # the swap's two renames: before them the previous package, after them the new one
        files = {path.name: path.read_text() for path in package.iterdir() if path.is_file()}
        assert files in (previous, {name: text for name, text in expected.items()}), sorted(files)
    generate_module.generate(["digits"], out)  # the next run: the package, whole
    assert generate_module.stale_files(expected, package) == []


# Long runs (numba compiling several specs, or several processes): `pytest -m slow` (pyproject.toml).
pytestmark = pytest.mark.slow
