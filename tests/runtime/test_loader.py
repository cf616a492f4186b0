"""symcnn.runtime.loader: a kernel package is used only for the spec it was generated from.

Numba does not bounds-check, so kernels of other shapes than the spec's would corrupt memory: a
cached package that does not match is regenerated, a shipped one refused, and generation reads
the text that was validated, never the user's file again.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from symcnn.bench.numpy_network import NumpyNetwork
from symcnn.codegen.package import generate
from symcnn.runtime import loader
from symcnn.runtime.network import Network
from symcnn.spec import load_spec, parse_spec, spec_from_dict
from tests.kernels_helpers import toml_of


@pytest.fixture(autouse=True)
def kernel_cache(tmp_path, monkeypatch):
    """An empty cache of its own for each test."""
    monkeypatch.setenv("SYMCNN_CACHE_DIR", str(tmp_path / "cache"))


def spec_text(name: str, size: int) -> str:
    """A small network on ``size``x``size`` images: a different size is different kernels."""
    return toml_of({"name": name, "input": [1, size, size],
                    "layers": [{"type": "conv2d", "name": "conv", "out_channels": 2, "kernel": 3},
                               {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 3}]})


@pytest.mark.parametrize("forge_digest", [False, True])
def test_a_cached_package_of_another_spec_is_regenerated_not_run(tmp_path, forge_digest):
    """The cache entry of a 4x4 spec holds a 9x9 spec's kernels (as a generator that re-read a
    changed file left it): not used, regenerated, whether or not its SPEC_DIGEST was forged."""
    name = f"tiny-forged-{forge_digest}".lower()
    wanted, other = parse_spec(spec_text(name, 4)), tmp_path / "other.toml"
    other.write_text(spec_text(name, 9))
    entry = loader.cache_entry(wanted)
    generate([str(other)], entry)
    if forge_digest:
        init = entry / wanted.module_name / "__init__.py"
        init.write_text(init.read_text().replace(load_spec(other).digest(), wanted.digest()))
    kernels = loader.load_kernels(wanted)
    assert kernels.SPEC_DIGEST == wanted.digest() and kernels.SPEC_TOML == wanted.source
    assert loader.package_matches(kernels, wanted)


def test_generation_reads_the_text_it_was_given_not_the_file(tmp_path, monkeypatch):
    """The spec file changes while Network.from_spec generates its kernels: the kernels are the
    ones of the text that was read and validated, and they run (equal to NumPy's network)."""
    path = tmp_path / "changing.toml"
    path.write_text(spec_text("changing", 4))
    generate_into = loader.generate_into

    def file_changes_meanwhile(spec, out):
        path.write_text(spec_text("changing", 9))
        generate_into(spec, out)

    monkeypatch.setattr(loader, "generate_into", file_changes_meanwhile)
    net = Network.from_spec(path, dtype="float64")
    assert net.kernels.SPEC_TOML == spec_text("changing", 4) and net.spec.input_shape == (1, 4, 4)
    x = np.random.default_rng(0).standard_normal((2, 1, 4, 4))
    np.testing.assert_allclose(net.forward(x), NumpyNetwork(net.spec, net.params).forward(x), atol=1e-12)


def test_a_shipped_package_that_is_not_its_spec_is_refused(tmp_path, monkeypatch):
    """Shipped kernels carrying digits' digest but made from another spec: one line, not run."""
    digits = load_spec("digits")
    impostor = tmp_path / "digits.toml"
    impostor.write_text(spec_text("digits", 9))
    generate([str(impostor)], tmp_path / "shipped")
    init = tmp_path / "shipped" / "digits" / "__init__.py"
    init.write_text(init.read_text().replace(load_spec(impostor).digest(), digits.digest()))
    monkeypatch.setattr(loader, "shipped_kernels_dir", lambda: tmp_path / "shipped")
    monkeypatch.delitem(sys.modules, "symcnn_kernels_digits", raising=False)
    with pytest.raises(ValueError) as error:
        loader.load_kernels(digits)
    assert str(error.value) == (f"spec 'digits': the shipped kernels in {tmp_path / 'shipped' / 'digits'} carry "
                                "this spec's digest but were generated from another spec; run `symcnn generate` "
                                "(or reinstall symcnn)")
    assert "symcnn_kernels_digits" not in sys.modules


def test_a_spec_without_toml_text_cannot_be_generated():
    spec = spec_from_dict({"name": "from-python", "input": [1, 4, 4],
                           "layers": [{"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]})
    with pytest.raises(ValueError, match="^spec 'from-python': no generated kernels, and no TOML text"):
        loader.load_kernels(spec)


def test_a_changed_generator_gets_its_own_cache_entry(monkeypatch, tmp_path):
    """Kernels cached by another version of the generator are never found: the entry's name carries a
    digest of the generator's source, which changes with any file of it."""
    spec = parse_spec(spec_text("tiny-generator", 4))
    before = loader.cache_entry(spec)
    assert before.name.startswith(f"{spec.module_name}_{spec.digest()}_")
    package_root = tmp_path / "symcnn"
    for part in loader.GENERATOR_SOURCES:  # a copy of the generator's sources, one template changed
        source = Path(loader.__file__).resolve().parents[1] / part
        if source.is_dir():
            shutil.copytree(source, package_root / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (package_root / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, package_root / part)
    (package_root / "runtime").mkdir(exist_ok=True)
    monkeypatch.setattr(loader, "__file__", str(package_root / "runtime" / "loader.py"))
    loader.generator_digest.cache_clear()
    try:
        assert loader.cache_entry(spec) == before
        template = next((package_root / "codegen").rglob("*.jinja"))
        template.write_text(template.read_text() + "\n")
        loader.generator_digest.cache_clear()
        assert loader.cache_entry(spec) != before
    finally:
        loader.generator_digest.cache_clear()
