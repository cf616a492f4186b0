"""Find a network spec's generated kernel package, check it against the spec, import it.

This module never imports SymPy. A spec's kernels come from the shipped packages (the checkout's
``generated/``, or ``symcnn/_generated`` in an installed wheel) or from a cache keyed by the
spec's content and by the generator's own source, ``<cache>/<module>_<digest>_<generator>/<module>/``
(:func:`cache_entry`), generated there on first use by ``symcnn generate`` in a subprocess (code
generation needs SymPy, the runtime does not). Keying by the generator too means that a symcnn whose
code generation changed (an upgrade, a checkout) never runs kernels an older one left in the cache.

Numba does not bounds-check: kernels of other shapes than the spec's would corrupt memory, not
fail. So a package is used only when it says it was generated from this very spec: its
``SPEC_DIGEST`` equals the spec's digest and its ``SPEC_TOML``, parsed, equals the spec. A cached
package that does not is regenerated. A shipped package of another digest belongs to another spec
of the same name (the cache serves this one); one that carries the spec's digest but not its text
is refused. And the generator is handed the exact text that was validated (a private copy),
never the user's file, which may have changed in between.

Example:
    >>> from symcnn.spec import load_spec
    >>> spec = load_spec("digits")
    >>> kernels = load_kernels(spec)
    >>> kernels.SPEC_DIGEST == spec.digest(), kernels.MODULES[0]
    (True, 'conv1')
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from symcnn.files import write_text
from symcnn.spec import NetworkSpec, parse_spec, shipped_kernels_dir

__all__ = ["cache_dir", "cache_entry", "generator_digest", "import_package", "package_matches", "generate_into",
           "load_kernels"]

#: What a generated package is made from besides its spec: every file of these parts of symcnn (the
#: formulas, printers, lowering, schedules and templates, and the spec's own reading and shapes), and the
#: ``exp`` that the kernels call, which numba compiles into each kernel (its cache does not track it).
GENERATOR_SOURCES = ("codegen", "symbolic", "printing", "registry", "spec.py", "shapes.py", "validation.py",
                     "runtime/vector_math.py", "runtime/vector_width.py", "runtime/transpose.py")


def cache_dir() -> Path:
    """Where kernels of specs that are not shipped are generated: ``$SYMCNN_CACHE_DIR`` or
    ``$XDG_CACHE_HOME/symcnn`` (default ``~/.cache/symcnn``)."""
    if os.environ.get("SYMCNN_CACHE_DIR"):
        return Path(os.environ["SYMCNN_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "symcnn"


@functools.cache
def generator_digest() -> str:
    """A digest of the code generator's source files (:data:`GENERATOR_SOURCES`), read, not imported
    (the runtime never imports SymPy): it changes whenever the generator might generate other kernels.

    Example:
        >>> len(generator_digest())
        12
    """
    root = Path(__file__).resolve().parents[1]
    files = []
    for part in GENERATOR_SOURCES:
        path = root / part
        files += sorted(path.rglob("*")) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for path in files:
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def cache_entry(spec: NetworkSpec) -> Path:
    """The cache directory of ``spec``'s generated package: ``<cache>/<module>_<spec digest>_<generator
    digest>``, the package itself in its ``<module>`` subdirectory."""
    return cache_dir() / f"{spec.module_name}_{spec.digest()}_{generator_digest()}"


def import_package(directory: Path, name: str) -> ModuleType:
    """Import the generated package in ``directory`` under the module name ``name`` (once: a name
    already imported is returned as it is). Not checked: see :func:`package_matches`."""
    if name in sys.modules:
        return sys.modules[name]
    location = importlib.util.spec_from_file_location(
        name, Path(directory) / "__init__.py", submodule_search_locations=[str(directory)])
    if location is None or location.loader is None:
        raise ImportError(f"cannot import generated kernels from {directory}")
    module = importlib.util.module_from_spec(location)
    sys.modules[name] = module
    try:
        location.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def _forget(name: str) -> None:
    """Drop an imported package and its kernel modules, so that the name can be imported afresh."""
    for module_name in [key for key in sys.modules if key == name or key.startswith(f"{name}.")]:
        del sys.modules[module_name]
    importlib.invalidate_caches()  # a directory swapped in under the same path: list it again


def _same_spec(text, spec: NetworkSpec) -> bool:
    """Whether ``text`` is TOML that parses to ``spec``."""
    if not isinstance(text, str):
        return False
    try:
        return parse_spec(text) == spec
    except ValueError:
        return False


def package_matches(package: ModuleType, spec: NetworkSpec) -> bool:
    """Whether ``package`` was generated from ``spec``: its ``SPEC_DIGEST`` is the spec's digest and
    its ``SPEC_TOML``, parsed, equals the spec."""
    return getattr(package, "SPEC_DIGEST", None) == spec.digest() and _same_spec(getattr(package, "SPEC_TOML", None),
                                                                                 spec)


def generate_into(spec: NetworkSpec, out: Path) -> None:
    """Run ``symcnn generate`` in a subprocess to write ``spec``'s package into ``out``.

    The subprocess reads the spec's own text (``spec.source``, the text that was validated),
    copied into a private temporary directory: never the user's file, which may have changed since.
    """
    if not _same_spec(spec.source, spec):
        raise ValueError(f"spec {spec.name!r}: no generated kernels, and no TOML text to generate them from "
                         "(read the spec with load_spec or parse_spec)")
    print(f"symcnn: generating kernels for spec {spec.name!r} into {out} (once; cached)", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="symcnn-spec-") as private:
        spec_file = Path(private) / f"{spec.module_name}.toml"
        write_text(spec_file, spec.source)
        result = subprocess.run([sys.executable, "-m", "symcnn", "generate", str(spec_file), "--out", str(out)],
                                capture_output=True, text=True)
    if result.returncode != 0:
        raise ValueError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "generation failed")


def _shipped_package(spec: NetworkSpec):
    """The shipped package of ``spec``, or ``None`` when none is shipped under its name for its digest."""
    directory = shipped_kernels_dir() / spec.module_name
    if not (directory / "__init__.py").is_file():
        return None
    name = f"symcnn_kernels_{spec.module_name}"
    package = import_package(directory, name)
    if getattr(package, "SPEC_DIGEST", None) != spec.digest():
        _forget(name)  # another spec of the same name: its kernels come from the cache
        return None
    if not _same_spec(getattr(package, "SPEC_TOML", None), spec):
        _forget(name)
        raise ValueError(f"spec {spec.name!r}: the shipped kernels in {directory} carry this spec's digest but "
                         "were generated from another spec; run `symcnn generate` (or reinstall symcnn)")
    return package


def load_kernels(spec: NetworkSpec) -> ModuleType:
    """The kernel package of ``spec``: the shipped one when it matches, else a cached one,
    generated (again) when it is missing or does not match the spec."""
    package = _shipped_package(spec)
    if package is not None:
        return package
    directory = cache_entry(spec)
    name = f"symcnn_kernels_{directory.name}"
    if (directory / spec.module_name / "__init__.py").is_file():
        package = import_package(directory / spec.module_name, name)
        if package_matches(package, spec):
            return package
        _forget(name)  # e.g. made by an older symcnn from a file that changed meanwhile
    generate_into(spec, directory)
    package = import_package(directory / spec.module_name, name)
    if not package_matches(package, spec):
        _forget(name)
        raise ValueError(f"spec {spec.name!r}: the kernels generated into {directory} do not match the spec")
    return package
