"""`symcnn generate`: specs validated before rendering, output deterministic, atomic and checked."""

from __future__ import annotations

import ast
import dataclasses
import re
import stat
from pathlib import Path

import pytest
import sympy

from tests.kernels_helpers import toml_of
from symcnn.codegen import package as generate_module
from symcnn.codegen.network import network_kernels
from symcnn.codegen.package import render_package, stale_files
from symcnn.symbolic import ops
from symcnn.spec import (ARCHITECTURE_SPECS, RESERVED_LABELS, SHIPPED_SPECS, load_spec, parse_spec, shipped_kernels_dir,
                         spec_from_dict)

_RENDERED: dict = {}


def rendered(spec):
    """``render_package(spec)``, rendered once for this module's tests that read it unchanged (rendering
    every shipped spec takes minutes; three tests compare them)."""
    if spec.digest() not in _RENDERED:
        _RENDERED[spec.digest()] = render_package(spec)
    return _RENDERED[spec.digest()]


# document 003's two networks render in about 20 s each: heavy (pyproject.toml), CI runs them
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.heavy if name.endswith("-mini") else ())
                                  for name in SHIPPED_SPECS])
def test_committed_kernels_are_up_to_date(name):
    spec = load_spec(name)
    assert stale_files(rendered(spec), shipped_kernels_dir() / spec.module_name) == []


@pytest.mark.heavy
def test_generate_check_passes_on_the_checkout(cli, monkeypatch):
    monkeypatch.setattr(generate_module, "render_package", rendered)  # the same renders as the test above
    status, out, _ = cli("generate", "--check")
    assert status == 0 and "up to date" in out


def test_regeneration_is_byte_identical(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        generate_module.generate(["digits"], out)
    files = sorted(p.relative_to(first) for p in first.rglob("*.py"))
    assert files and files == sorted(p.relative_to(second) for p in second.rglob("*.py"))
    assert all((first / f).read_bytes() == (second / f).read_bytes() for f in files)


def test_check_names_stale_missing_and_extra_files(tmp_path, cli):
    generate_module.generate(["digits"], tmp_path)
    package = tmp_path / "digits"
    (package / "conv1.py").write_text((package / "conv1.py").read_text() + "# edited by hand\n")
    (package / "relu1.py").unlink()
    (package / "extra.py").write_text("")
    status, out, err = cli("generate", "digits", "--out", str(tmp_path), "--check")
    assert status == 1
    stale = {line.removeprefix("stale: ") for line in out.splitlines()}
    assert stale == {str(package / name) for name in ("conv1.py", "relu1.py", "extra.py")}
    assert "run `symcnn generate`" in err
    assert cli("generate", "digits", "--out", str(tmp_path))[0] == 0
    assert cli("generate", "digits", "--out", str(tmp_path), "--check")[0] == 0


def test_an_interrupted_write_leaves_the_previous_package(tmp_path, interrupt_third_write):
    from symcnn import files

    generate_module.generate(["digits"], tmp_path)
    package = tmp_path / "digits"
    before = {p.name: p.read_bytes() for p in package.glob("*.py")}
    interrupt_third_write()
    with pytest.raises(KeyboardInterrupt):
        files.replace_directory(package, {name: "broken\n" for name in before})
    assert {p.name: p.read_bytes() for p in package.glob("*.py")} == before
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]  # no staging left behind


def test_a_swap_killed_midway_is_repaired_by_the_next_run(tmp_path, monkeypatch):
    """kill -9 between the two renames leaves no package and the old one set aside: the next run
    writes the package, and removes the set-aside copy once it is an hour old."""
    from symcnn import files

    generate_module.generate(["digits"], tmp_path)
    package = tmp_path / "digits"
    package.rename(tmp_path / ".digits.0badcafe.previous")
    generate_module.generate(["digits"], tmp_path)
    assert generate_module.stale_files(render_package(load_spec("digits")), package) == []
    now = files._clock()
    monkeypatch.setattr(files, "_clock", lambda: now + files.STALE_AFTER_SECONDS + 1)
    generate_module.generate(["digits"], tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]


def test_generated_files_get_the_umasks_mode(tmp_path, umask):
    umask(0o022)
    (target,) = generate_module.generate(["digits"], tmp_path)
    assert stat.S_IMODE(Path(target).stat().st_mode) == 0o755
    assert {stat.S_IMODE(path.stat().st_mode) for path in Path(target).iterdir()} == {0o644}


def test_without_out_generate_writes_into_the_source_checkout(tmp_path, monkeypatch, cli):
    monkeypatch.setattr(generate_module, "source_checkout", lambda: tmp_path)
    status, out, _ = cli("generate", "digits")
    assert status == 0 and out == f"wrote {tmp_path / 'generated' / 'digits'}\n"
    assert (tmp_path / "generated" / "digits" / "__init__.py").is_file()


def test_an_installed_symcnn_is_never_rewritten(tmp_path, monkeypatch, cli):
    """Installed (no checkout): generate asks for --out; --check reads the installed kernels."""
    installed = tmp_path / "site-packages" / "symcnn" / "_generated"
    generate_module.generate(["digits"], installed)
    before = {path: path.read_bytes() for path in installed.rglob("*") if path.is_file()}
    monkeypatch.setattr(generate_module, "source_checkout", lambda: None)
    monkeypatch.setattr(generate_module, "shipped_kernels_dir", lambda: installed)
    status, out, err = cli("generate", "digits")
    assert (status, out) == (2, "")
    assert err == ("symcnn generate: error: --out is needed: symcnn is installed (not a source checkout); "
                   "give a directory for the kernels\n")
    with pytest.raises(ValueError, match="^--out is needed: symcnn is installed"):
        generate_module.generate(["digits"])
    assert cli("generate", "digits", "--check")[:2] == (0, "generated kernels are up to date (digits)\n")
    (installed / "digits" / "relu1.py").write_text("# edited\n")
    status, out, _ = cli("generate", "digits", "--check")
    assert status == 1 and out == f"stale: {installed / 'digits' / 'relu1.py'}\n"
    assert {path for path in installed.rglob("*") if path.is_file()} == set(before)


def test_a_source_checkout_is_recognized_by_its_pyproject_and_generated_directory(tmp_path, monkeypatch):
    assert generate_module.source_checkout() == Path(generate_module.__file__).resolve().parents[2]
    root = tmp_path / "root"
    monkeypatch.setattr(generate_module, "PACKAGE_ROOT", root / "symcnn")
    (root / "symcnn").mkdir(parents=True)
    assert generate_module.source_checkout() is None  # site-packages: no pyproject.toml
    (root / "pyproject.toml").write_text('[project]\nname = "other"\n')
    (root / "generated").mkdir()
    assert generate_module.source_checkout() is None
    (root / "pyproject.toml").write_text('[project]\nname = "symcnn"\n')
    assert generate_module.source_checkout() == root
    (root / "generated").rmdir()
    assert generate_module.source_checkout() is None
    (root / "generated").mkdir()
    (root / "pyproject.toml").write_text("not = [toml")
    assert generate_module.source_checkout() is None


def _spec(**overrides):
    spec = {"name": "tiny", "input": [1, 4, 4],
            "layers": [{"type": "conv2d", "name": "conv", "out_channels": 2, "kernel": 3},
                       {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 3}]}
    spec.update(overrides)
    return spec


INJECTIONS = ["conv; import os", "conv\nimport os", "__import__('os')", "a b", "1conv", "class", "conv.weight", "",
              "x" * 0 + "é", 'conv"""']


@pytest.mark.parametrize("name", INJECTIONS)
def test_a_name_that_is_not_a_plain_identifier_is_refused_and_nothing_is_written(name, tmp_path, cli):
    spec = _spec()
    spec["layers"][0]["name"] = name
    path = tmp_path / "evil.toml"
    path.write_text(toml_of(spec))
    status, out, err = cli("generate", str(path), "--out", str(tmp_path / "out"))
    assert status == 2 and out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and "[[layers]] table 1 (conv2d): name: must be a plain Python identifier" in err
    assert not (tmp_path / "out").exists()


def test_text_fields_reach_generated_code_only_as_literals(tmp_path):
    """A description full of quotes and code lands in SPEC_TOML as a string, nothing else."""
    payload = '\\"\\"\\"; import os; os.system(\\"echo pwned\\") #'
    text = toml_of(_spec(name="quoted")).replace('name = "quoted"', f'name = "quoted"\ndescription = "{payload}"')
    spec = parse_spec(text)
    files = render_package(spec)
    tree = ast.parse(files["__init__.py"])
    for node in tree.body:
        assert isinstance(node, ast.Assign) and isinstance(node.value, (ast.Constant, ast.Tuple, ast.Dict))
    namespace: dict = {}
    exec(compile(tree, "__init__.py", "exec"), namespace)  # noqa: S102 (asserted inert above)
    assert namespace["SPEC_TOML"] == text
    for source in files.values():
        ast.parse(source)  # every module is valid Python


def test_every_name_the_package_defines_is_reserved():
    """A layer's module is an attribute of the package (its label): one named like a table (``FOLDS``)
    would replace that table when imported. So every name the package template assigns is reserved."""
    template = (Path(generate_module.__file__).parent / "backends" / "numba_cpu" / "templates"
                / "package.py.jinja").read_text()
    assigned = set(re.findall(r"^([A-Z_]+) = ", template, re.MULTILINE))
    assert {"FUSED", "FANOUT_FUSED", "FOLDS", "TRAINING_FORWARD_FUSED"} <= assigned
    assert {name.casefold() for name in assigned} <= set(RESERVED_LABELS)
    spec = {"name": "shadow", "input": [1, 4, 4], "layers": [{"type": "relu", "name": "Fanout_Fused"},
                                                              {"type": "flatten"},
                                                              {"type": "dense", "name": "fc", "out_features": 2}]}
    with pytest.raises(ValueError, match="'Fanout_Fused' is reserved"):
        parse_spec(toml_of(spec))


@pytest.mark.parametrize("change, message", [
    (lambda s: s["layers"].insert(0, {"type": "conv3d"}), "[[layers]] table 1 (conv3d): type: must be one of conv2d"),
    (lambda s: s["layers"][0].update(kernal=3),
     "[[layers]] table 1 (conv2d): kernal: unknown key (allowed: bias, dilation"),
    (lambda s: s["layers"][0].pop("out_channels"), "[[layers]] table 1 (conv2d): out_channels: missing (required)"),
    (lambda s: s["layers"][0].update(kernel=5),
     "[[layers]] table 1 (conv2d 'conv'): kernel: the kernel (5x5) is larger than the input (4x4)"),
    (lambda s: s["layers"][0].update(stride=0),
     "[[layers]] table 1 (conv2d 'conv'): stride: must be an integer >= 1, got 0"),
    (lambda s: s["layers"][0].update(padding=-1), "padding: must be an integer >= 0, got -1"),
    (lambda s: s["layers"][0].update(out_channels=0), "out_channels: must be an integer >= 1, got 0"),
    (lambda s: s["layers"][0].update(kernel=[3, 3, 3]), "kernel: must be an integer or a pair"),
    (lambda s: s["layers"][0].update(bias="yes"), "bias: must be true or false"),
    (lambda s: s["layers"].pop(1),
     "[[layers]] table 2 (dense 'fc'): type: needs a flat input, got shape (2, 2, 2): put a flatten"),
    (lambda s: s["layers"][2].update(name="conv"),
     "[[layers]] table 3 (dense): name: 'conv' is used by another layer"),
    (lambda s: s["layers"][2].update(name="loss"), "name: 'loss' is reserved"),
    (lambda s: s["layers"].append({"type": "relu"}), "the last layer must be a dense layer"),
    (lambda s: s.update(input=[1, 4]), "input: must be [channels, height, width]"),
    (lambda s: s.update(input=[1, 0, 4]), "input: must be an integer >= 1, got 0"),
    (lambda s: s.update(loss="mse"), "loss: must be one of softmax_cross_entropy"),
    (lambda s: s.update(name="../escape"), "spec: name: must start with a letter"),
    (lambda s: s.update(extra=1), "spec: extra: unknown key"),
    (lambda s: s["layers"].insert(1, {"type": "leaky_relu", "alpha": -1}), "alpha: must be a positive number"),
])
def test_spec_errors_name_the_layer_and_field(change, message):
    spec = _spec()
    change(spec)
    with pytest.raises(ValueError) as error:
        spec_from_dict(spec)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_malformed_toml_and_missing_files(tmp_path, cli):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    status, _, err = cli("generate", str(bad), "--out", str(tmp_path))
    assert status == 2 and "spec: not valid TOML" in err
    status, _, err = cli("generate", str(tmp_path / "missing.toml"))
    assert status == 2 and "no such file" in err


def test_every_kernel_docstring_carries_its_formula():
    files = rendered(load_spec("seed004"))
    tree = ast.parse(files["conv1.py"])
    docstrings = {node.name: ast.get_docstring(node) for node in tree.body if isinstance(node, ast.FunctionDef)}
    # the forward pass in a schedule for each vector width (symcnn/codegen/widths.py), each with its own blocks
    kernels = {"conv1_forward_wide", "conv1_forward_narrow", "conv1_grad_input", "conv1_grad_weight", "conv1_grad_bias"}
    blocks = {"conv1_forward_wide_block0", "conv1_forward_narrow_block0"}
    blocks |= {f"conv1_grad_input_block0_{width}" for width in ("wide", "narrow")}
    # the weight gradient's blocks: 3 x 16 values in either size (3 input channels, 3 x 3), one function, which
    # the kernel of the weight's and the bias's gradients calls too (symcnn/codegen/parameter_fusion.py)
    blocks.add("conv1_grad_weight_block0")
    kernels.add("conv1_grad_weight_and_bias")
    assert set(docstrings) == kernels | blocks
    assert all(docstrings.values())
    assert "dL/dX[n, c_in, k, l] = sum_{c_out=0..C_out - 1" in docstrings["conv1_grad_input"]
    assert "with C_in = 3, C_out = 16, H_in = 32" in docstrings["conv1_grad_input"]
    assert files["conv1.py"].startswith("# Generated by symcnn")
    assert "from spec 'seed004' with template 'layer.py.jinja'" in files["conv1.py"]
    assert "Do not edit" in files["conv1.py"]


def _opaque(value, names):
    """``value`` (a kernel IR object) with every printed string replaced by a fresh name, so that
    what remains of the rendered code is the template's own text. Empty strings stay empty, a
    kernel's kind and how many loops its phases share stay (the template branches and slices on them, printing
    neither), flags and unit steps stay."""
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value, **{field.name: getattr(value, field.name)
                                             if field.name in ("kind", "shared_loops")
                                             else _opaque(getattr(value, field.name), names)
                                             for field in dataclasses.fields(value)})
    if isinstance(value, tuple):
        return tuple(_opaque(item, names) for item in value)
    if isinstance(value, bool) or value is None or value == "" or value == 1 or value == 0:
        return value
    if isinstance(value, (str, int)):
        names.append(f"printed{len(names)}")
        return names[-1]
    return value  # imports: not the template's to render


#: What the template's own code may call: loops, the decorator, allocations, the LLVM option, the register
#: blocks' vector width (symcnn.runtime.vector_width).
LAYOUT_CALLS = {"range", "prange", "njit", "np.zeros", "np.empty", "llvmlite.binding.set_option", "wide_vectors",
                "for_this_cpu"}


def _template_math(tree: ast.AST) -> list[str]:
    """Arithmetic, comparisons, math calls and constants other than 0 and 1 in ``tree``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.BinOp, ast.AugAssign, ast.UnaryOp, ast.Compare, ast.BoolOp, ast.IfExp)):
            found.append(ast.unparse(node))
        elif isinstance(node, ast.Constant) and not isinstance(node.value, (str, bool)) and not (
                type(node.value) is int and node.value in (0, 1)):
            found.append(repr(node.value))
        elif isinstance(node, ast.Call) and ast.unparse(node.func) not in LAYOUT_CALLS and not re.fullmatch(
                r"\w+_block\d+", ast.unparse(node.func)):  # a kernel's call of its register blocks
            found.append(ast.unparse(node))
        elif isinstance(node, (ast.Name, ast.Attribute)) and (getattr(node, "id", None) or node.attr) in (
                "inf", "nan", "pi", "e"):
            found.append(ast.unparse(node))
    return found


@pytest.mark.heavy
def test_templates_hold_no_math(monkeypatch):
    """The templates lay out loops: rendered with every printed string made opaque, what is left
    (the templates' own code) holds no arithmetic, no comparison, no math function or constant,
    and no number but the loops' 0 and 1. The kernels of seed004, suite-lenet and mobilenet-mini take
    every branch of the template (mobilenet-mini's strided input gradient by phase, some phases in columns),
    and resnet-mini's strided input gradient runs by phase; its first batch norm fills its statistics inside its
    channel loop. A term with a test: no shipped spec keeps
    one (every linear range condition is folded into its loop's bounds), so mobilenet-mini's strided
    depthwise kernels are lowered once more with folding off, their padding tested per element."""
    kernels = [kernel for name in ("seed004", "suite-lenet", "mobilenet-mini")
               for module in network_kernels(load_spec(name)).values() for kernel in module]
    with monkeypatch.context() as patch:
        patch.setattr("symcnn.codegen.lower.fold_bound", lambda *args: False)
        kernels += network_kernels(load_spec("mobilenet-mini"))["dw2"]
    lanes = [kernel.lanes for kernel in kernels if kernel.kind == "lanes"]
    assert {kernel.kind for kernel in kernels} == {"lanes", "columns", "accumulate", "sum", "max", "phases"}
    resnet = network_kernels(load_spec("resnet-mini"))
    kernels += [kernel for kernel in resnet["b2_shortcut"] if kernel.phases] + resnet["stem_bn"]
    assert {phase.kind for kernel in kernels for phase in kernel.phases} == {"lanes", "columns", "accumulate", "sum"}
    assert {kernel.shared_loops for kernel in kernels if kernel.phases} == {0, 1, 2}  # scalar phases, statistics
    # batch norm's statistics in the loop its outputs share, in phases (its gradients) and not (its forward pass)
    assert {bool(kernel.phases) for kernel in kernels if kernel.invariants_inside} == {False, True}
    assert {(bool(k.lane_block), k.over_batch, bool(k.parts[0])) for k in lanes} >= {
        (False, False, True), (False, False, False), (False, True, False), (True, True, False)}
    columns = [kernel.lanes for kernel in kernels if kernel.kind == "columns"]
    assert {(k.over_batch, bool(k.stores)) for k in columns} == {(False, True), (True, False)}
    assert any(reduction for kernel in kernels for term in kernel.terms for reduction in term.reductions)
    assert any(term.condition for kernel in kernels for term in kernel.terms)
    assert any(term.loads for kernel in kernels for term in kernel.terms)
    names: list[str] = []
    opaque = [_opaque(kernel, names) for kernel in kernels]
    template = generate_module._environment().get_template("layer.py.jinja")
    tree = ast.parse(template.render(preamble="", kernels=opaque, imports=[]))
    assert _template_math(tree) == []
    # the check sees math: the kernels rendered as they are hold plenty
    assert {"-np.inf", "value > best", "max(peak1, x[n, j])", "min(8, N)"} <= set(
        _template_math(ast.parse(template.render(preamble="", kernels=kernels, imports=[]))))
    for path in Path(generate_module.template_dir()).glob("*.jinja"):  # nor in a branch not taken above
        text = _emitted_text(path.read_text())
        math = re.findall(r"\b(?:inf|nan)\b|\b(?:max|min|exp|log|sqrt|abs)\(|[<>]|[=!]=|[-+*/%]=|[+*/%]", text)
        numbers = [number for number in re.findall(r"\b\d+(?:\.\d*)?", text) if number not in ("0", "1")]
        assert (math, numbers) == ([], []), path.name


def _emitted_text(template: str) -> str:
    """The text a template writes itself: outside its tags, plus the string literals inside its
    expressions, without comments (jinja's and the generated code's)."""
    text = re.sub(r"{#.*?#}|{%.*?%}", "", template, flags=re.S)
    text = re.sub(r"{{(.*?)}}", lambda match: " ".join(re.findall(r"\"[^\"]*\"|'[^']*'", match.group(1))), text,
                  flags=re.S)
    return "\n".join(line.partition("#")[0] for line in text.splitlines())


def test_reductions_and_the_tie_rule_are_printed_from_the_formula(monkeypatch):
    """Max pooling's kernel scans for the formula's MaxOver: its identity, its tie rule. The same
    formula with a Sum in its place makes a sum kernel; reductions inside a term likewise follow
    their node, and the tie rule is the one symcnn.symbolic.functions states."""
    from symcnn.codegen import lower, window_max
    from symcnn.symbolic.adjoint import GatherTerm
    from symcnn.symbolic.functions import MaxOver

    layer = next(layer for layer in load_spec("seed004").layers if layer.kind == "maxpool2d")
    formula, values = lower.layer_formula(layer)
    maximum = lower.forward_kernel(layer, formula, values)
    assert (maximum.kind, maximum.initial, maximum.window_test) == ("max", "x.dtype.type(-np.inf)", "value > best")
    assert (maximum.window_value, maximum.window_offset, maximum.window_first_offset) == (
        "x[n, c, 2*i + u, 2*j + v]", "2*u + v", "0")
    summed = dataclasses.replace(formula, rhs=sympy.Sum(formula.rhs.function, *formula.rhs.limits))
    total = lower.forward_kernel(layer, summed, values)
    assert total.kind in ("sum", "accumulate") and total.initial == "0.0"
    assert [term.update for term in total.terms] == [f"{total.accumulator} += x[n, c, 2*i + u, 2*j + v]"]

    x, n, j = sympy.IndexedBase("X"), *sympy.symbols("n j", integer=True, nonnegative=True)
    tensor = ops.Tensor("input", x, (sympy.Symbol("N"), 10))
    for reduction, initial, update in ((sympy.Sum, "0.0", "sum0 += x[n, j]"),
                                       (MaxOver, "-np.inf", "max0 = max(max0, x[n, j])")):
        term = lower.Lowering([tensor], None).term(GatherTerm((), (), 1 / reduction(x[n, j], (j, 0, 9))),
                                                     lower.ACCUMULATOR)
        assert [(r.name, r.initial, r.update) for r in term.reductions] == [(f"{update[:4]}", initial, update)]
        assert term.update == f"acc += 1/{update[:4]}"

    monkeypatch.setattr(window_max, "replaces_first_max", lambda candidate, earlier: candidate >= earlier)
    assert lower.forward_kernel(layer, formula, values).window_test == "value >= best"


def test_a_float32_max_pooling_kernel_keeps_its_maximum_in_float32():
    """The window's maximum starts in the input's dtype, so numba types it float32 for a float32 input
    (a float64 start would widen every comparison); the result is the same as NumPy's."""
    import numba
    import numpy as np

    from generated.seed004 import maxpool2d2

    # Compiled afresh (parallel, as the module compiles it, without its cache), for numba's variable types.
    forward = numba.njit(parallel=True, error_model="numpy")(maxpool2d2.maxpool2d2_forward.py_func)
    x = np.random.default_rng(0).standard_normal((2, 16, 32, 32)).astype(np.float32)
    out, switch = np.empty((2, 16, 16, 16), np.float32), np.empty((2, 16, 16, 16), np.int64)
    forward(x, out, switch)
    types = forward.overloads[forward.signatures[0]].type_annotation.typemap
    maxima = {name: str(kind) for name, kind in types.items() if name.split(".")[0] in ("best", "lowest")}
    assert maxima and set(maxima.values()) == {"float32"}, maxima
    np.testing.assert_array_equal(out, x.reshape(2, 16, 16, 2, 16, 2).max(axis=(3, 5)))


@pytest.mark.slow  # builds the wheel, rendering every shipped spec (about 2 minutes on 2 cores)
def test_the_wheel_carries_kernels_regenerated_at_build_time(tmp_path):
    """The build hook renders the shipped specs' kernels (and ships the templates) into the wheel."""
    import subprocess
    import sys
    import zipfile

    pytest.importorskip("hatchling")
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                             "-w", str(tmp_path), str(root)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    (wheel,) = tmp_path.glob("symcnn-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert "symcnn/codegen/backends/numba_cpu/templates/layer.py.jinja" in names
        for name in SHIPPED_SPECS:
            spec = load_spec(name)
            for relative, text in rendered(spec).items():
                path = f"symcnn/_generated/{spec.module_name}/{relative}"
                assert path in names
                assert archive.read(path).decode() == text
        for name in ARCHITECTURE_SPECS:  # document 003's architectures: the spec, not its kernels
            assert f"symcnn/specs/{name}.toml" in names
            assert not any(path.startswith(f"symcnn/_generated/{name}/") for path in names)


def test_an_unwritable_output_directory_is_one_line(tmp_path, cli):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    status, out, err = cli("generate", "digits", "--out", str(blocked / "out"))
    assert status == 2 and out == "" and "Traceback" not in err and err.count("\n") == 1


def test_the_integer_output_size_rule_equals_the_symbolic_one():
    """spec and derive use validation.output_sizes (no SymPy); ops.output_size is the definition."""
    import itertools

    from symcnn.symbolic import ops
    from symcnn.validation import output_sizes

    for size, kernel, stride, padding, dilation in itertools.product(range(1, 9), range(1, 4), range(1, 4),
                                                                     range(0, 3), range(1, 3)):
        if size + 2 * padding < dilation * (kernel - 1) + 1:
            continue
        expected = ops.output_size(size, kernel, stride, padding, dilation)
        assert output_sizes((size,), (kernel,), (stride,), (padding,), (dilation,)) == (int(expected),)


def test_only_a_row_major_copy_is_marked_as_a_reshape():
    """flatten's kernels move nothing (the runtime passes views): every element's flat offset is
    its own. A transposing copy, a copy with a condition, or any other op is not marked."""
    from symcnn.symbolic import ops
    from symcnn.symbolic.adjoint import GatherTerm
    from symcnn.codegen.layout import reshape_of as _reshape_of
    from symcnn.codegen.lower import _forward_terms, Lowering
    from symcnn.codegen.network import network_kernels

    formula = ops.flatten().substitute({ops.C_in: 2, ops.H_in: 3, ops.W_in: 3})
    batch = formula.parameters["batch"]
    lowering = Lowering(formula.tensors, batch)
    (term,) = _forward_terms(formula)

    def marked(body, conditions=()):
        return _reshape_of(lowering, formula.tensors, formula.indices, formula.output.shape, batch,
                           [GatherTerm((), conditions, body)])

    n, c, i, j = term.body.indices
    assert marked(term.body) == "x"
    assert marked(term.body.base[n, c, j, i]) == ""  # the rows and columns swapped
    assert marked(term.body, (sympy.Le(1, formula.indices[1]),)) == ""
    assert marked(2 * term.body) == ""
    reshapes = {kernel.name for kernels in network_kernels(load_spec("seed004")).values()
                for kernel in kernels if kernel.reshape_of}
    assert reshapes == {"flatten4_forward", "flatten4_grad_input"}


@pytest.mark.parametrize("shape", [(32, 7, 7), (5, 7, 11), (2, 13, 3), (3, 1, 1)])
def test_a_flatten_of_any_map_is_a_reshape_both_ways(shape):
    """``floor(k/49)`` of a 7 x 7 map evaluated in floats (``(1/49)*k``) is 0 at k = 49: the check then
    missed the reshape, and suite-batchnorm's flatten copied its input in every forward pass (0.28 ms)."""
    from symcnn.codegen.network import layer_kernels

    spec = spec_from_dict({"name": "flat", "input": list(shape), "layers": [
        {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]})
    kernels = {kernel.name: kernel.reshape_of for kernel in layer_kernels(spec.layers[0])}
    assert kernels == {"flatten0_forward": "x", "flatten0_grad_input": "grad_output"}


def test_a_sum_over_whole_rows_and_columns_is_one_loop_over_a_view():
    """The bias gradient sums dL/dY over (n, i, j): its (i, j) loops become one loop of 1,024 over a
    reshaped view; reads that do not index (i, j) last, whole, keep their two loops."""
    from symcnn.symbolic import ops
    from symcnn.symbolic.adjoint import GatherTerm
    from symcnn.codegen.layout import collapse_rows as _collapse_rows
    from symcnn.codegen.lower import Lowering
    from symcnn.codegen.network import layer_kernels

    bias = next(kernel for kernel in layer_kernels(load_spec("seed004").layers[0]) if kernel.name == "conv1_grad_bias")
    assert bias.views == (("grad_output_rows", "grad_output.reshape((grad_output.shape[0], 16, 1024))"),)
    (term,) = bias.terms
    assert [(loop.variable, loop.stop) for loop in term.loops] == [("n", "N"), ("ij", "1024")]
    assert term.update == "acc += grad_output_rows[n, c_out, ij]"

    n, c, i, j = sympy.symbols("n c i j", integer=True, nonnegative=True)
    grad_output = sympy.IndexedBase("dY")
    tensor = ops.Tensor("grad_output", grad_output, (sympy.Symbol("N"), 4, 3, 3))
    lowering = Lowering([tensor], None)
    limits = ((n, 0, 1), (i, 0, 2), (j, 0, 2))
    for body, conditions in [(grad_output[n, c, j, i], ()), (grad_output[n, c, i, j] * i, ()),
                             (grad_output[n, c, i, j], (sympy.Le(1, i),))]:
        term = GatherTerm(limits, conditions, body)
        assert _collapse_rows(lowering, term, [tensor], {}) is term


def test_an_element_wise_kernel_runs_over_each_image_as_one_loop():
    """ReLU's kernels read and write only their own element: one loop over an image's 16,384
    elements, through views; kernels that sum or read other elements keep their loops."""
    from symcnn.codegen.network import layer_kernels

    layers = {layer.label: layer for layer in load_spec("seed004").layers}
    forward, gradient = layer_kernels(layers["relu1"])
    assert gradient.output == "grad_input_rows"
    assert [(loop.variable, loop.stop) for loop in gradient.output_loops] == [("n", "N"), ("cij", "16384")]
    assert dict(gradient.views) == {name + "_rows": f"{name}.reshape(({name}.shape[0], 16384))"
                                    for name in ("grad_output", "out", "grad_input")}  # [0 < Y]: the output
    assert forward.output == "out_rows" and gradient.arguments == ("grad_output", "out", "grad_input")
    for label in ("maxpool2d2", "flatten4"):
        assert all(not kernel.views and kernel.output in ("out", "grad_input")
                   for kernel in layer_kernels(layers[label]))


def test_no_kernel_assigns_a_whole_array_into_a_slice():
    """``tiles[chunk] = tile`` has numba compile its shape-mismatch message (string formatting, 4-5 s in
    every process that compiles one), so a kernel copies arrays element by element: no assignment in a
    shipped kernel stores an array it allocated into a subscript of another."""
    for name in SHIPPED_SPECS:
        for path in sorted((shipped_kernels_dir() / load_spec(name).module_name).glob("*.py")):
            for function in ast.parse(path.read_text()).body:
                if not isinstance(function, ast.FunctionDef):
                    continue
                arrays = {target.id for node in ast.walk(function) if isinstance(node, ast.Assign)
                          and isinstance(node.value, ast.Call)
                          and ast.unparse(node.value.func) in ("np.zeros", "np.empty")
                          for target in node.targets if isinstance(target, ast.Name)}
                copies = [ast.unparse(node) for node in ast.walk(function) if isinstance(node, ast.Assign)
                          and isinstance(node.targets[0], ast.Subscript) and isinstance(node.value, ast.Name)
                          and node.value.id in arrays]
                assert not copies, f"{path.name}: {function.name}: {copies}"


def _chunk_sums_out_of_order(source: str) -> list[str]:
    """The chunks' sums (``total += tiles[chunk, ...]``) of ``source`` whose loops around them, outermost
    first, do not follow the axes of ``tiles`` (loops of one element aside: they change no address)."""
    found = []

    def visit(node, loops):
        if isinstance(node, ast.For):
            extent = ast.unparse(node.iter)
            loops = loops + ([] if extent == "range(1)" else [node.target.id])
        if (isinstance(node, ast.AugAssign) and isinstance(node.value, ast.Subscript)
                and ast.unparse(node.value.value) == "tiles"):
            axes = [ast.unparse(index) for index in node.value.slice.elts]
            order = [var for var in loops if var in axes and var != "chunk"]
            if order != [var for var in axes if var in order]:
                found.append(f"{ast.unparse(node)} inside loops {loops}")
        for child in ast.iter_child_nodes(node):
            visit(child, loops)

    visit(ast.parse(source), [])
    return found


def test_the_chunks_of_a_weight_gradient_are_summed_along_their_rows():
    """The sum of a weight gradient's chunk tiles reads ``tiles`` in its own order: in the output's order
    it read one element of each cache line at a time (3 of 8 ms in a 128-channel weight gradient)."""
    sums = 0
    for name in SHIPPED_SPECS:
        for path in sorted((shipped_kernels_dir() / load_spec(name).module_name).glob("*.py")):
            source = path.read_text()
            sums += source.count("+= tiles[chunk")
            assert not _chunk_sums_out_of_order(source), f"{path}: {_chunk_sums_out_of_order(source)}"
    assert sums >= 10  # the shipped specs' weight gradients, in the lanes and the columns schedules
