"""`symcnn report`: derivation reports built from the derivation objects, as LaTeX, PDF and Markdown.

Everything shipped is built once (``everything``) and compiled in one latexmk run, with two extra
reports (a specialized op and a user's network spec) so that every template path and layer kind is
compiled. Without latexmk the PDF tests skip with the reason; CI installs TeX (.ci/run). Building everything
takes about two and a half minutes on 2 cores (every page's derivations), so the tests that read it are
heavy (pyproject.toml): CI runs them; the default run checks single pages and the CLI.
"""

from __future__ import annotations

import re
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import sympy

from symcnn.symbolic import ops
from symcnn import files, report
from symcnn.symbolic.adjoint import derive_gradient
from symcnn.symbolic.derive import LayerConfig, derive
from symcnn.checking.examples import EXAMPLE_LIST, EXAMPLES
from symcnn.report import writer
from symcnn.report.document import Collection, Part
from symcnn.report.indexform import gradient_display
from symcnn.report.mathtex import ReportPrinter, fitted_rows, indicators
from symcnn.report.opformulas import instance, op_report
from symcnn.report.walkthrough import network_report
from symcnn.report.worked import derive_command, example_report
from symcnn.views.steps import latex_entries
from symcnn.symbolic.tensors import indices_of
from symcnn.symbolic.verify import exactly_equal

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "derivations"
NEEDS_TEX = pytest.mark.skipif(shutil.which("latexmk") is None or shutil.which("pdftoppm") is None,
                               reason="latexmk and pdftoppm are not installed (CI installs them: .ci/run)")

CUSTOM_SPEC = """
name = "custom"
description = "every other layer kind: leaky ReLU, ELU, average and global pooling, two dense layers"
input = [2, 6, 6]

[[layers]]
type = "conv2d"
name = "conv"
out_channels = 2
kernel = [3, 2]
stride = 2
padding = 1
dilation = 1
bias = false

[[layers]]
type = "leaky_relu"

[[layers]]
type = "avgpool2d"
kernel = 2
stride = 1

[[layers]]
type = "elu"

[[layers]]
type = "global_avgpool"

[[layers]]
type = "flatten"

[[layers]]
type = "dense"
name = "hidden"
out_features = 3

[[layers]]
type = "dense"
name = "out"
out_features = 4
"""


@pytest.fixture(scope="module")
def everything():
    return report.collection()


@pytest.fixture(scope="module")
def custom_spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "custom.toml"
    path.write_text(CUSTOM_SPEC, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def extras(custom_spec):
    return (op_report("conv2d", kernel=3, stride=2, padding=1), op_report("maxpool2d", kernel=(3, 2), stride=1),
            network_report(str(custom_spec)))


@pytest.fixture(scope="module")
def all_latex(everything, extras):
    extended = Collection(everything.name, everything.title, everything.intro,
                          everything.parts + (Part("Extra", "A specialized op and a user's network.", extras),))
    return writer.render_latex(extended)


@pytest.fixture(scope="module")
def all_pdf(all_latex, tmp_path_factory):
    if shutil.which("latexmk") is None:
        pytest.skip("latexmk is not installed (CI installs it: .ci/run)")
    target = tmp_path_factory.mktemp("pdf") / "all.pdf"
    log = writer.compile_pdf(all_latex, target)
    return target, log


# --- the committed pages ------------------------------------------------------------------------


@pytest.mark.heavy
def test_committed_derivation_pages_are_up_to_date(everything):
    pages = writer.render_pages(everything, "symcnn report --all --format markdown")
    stale = writer.stale_pages(pages, DOCS)
    assert stale == [], f"run `symcnn report --all --format markdown -o docs/derivations/`; stale: {stale}"
    names = {f"{r.name}.md" for r in everything.reports}
    assert {f"example-{e.name}.md" for e in EXAMPLE_LIST} <= names
    assert {"op-conv2d.md", "network-seed004-text.md", "network-seed004.md", "network-digits.md"} <= names


@pytest.mark.heavy
def test_index_links_every_page(everything):
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for page in everything.reports:
        assert f"]({page.name}.md)" in index
        assert (DOCS / f"{page.name}.md").is_file()


@pytest.mark.heavy
def test_markdown_uses_github_math(everything):
    page = writer.render_markdown(example_report("conv_3x3_2x2"))
    assert "\n$$\n\\begin{aligned}\n" in page and "\n\\end{aligned}\n$$\n" in page
    assert "$\\partial L/\\partial X$" in page  # inline math
    assert "\\begin{align*}" not in page


def test_generation_is_deterministic():
    first = writer.render_latex(op_report("maxpool2d")), writer.render_markdown(network_report("digits"))
    second = writer.render_latex(op_report("maxpool2d")), writer.render_markdown(network_report("digits"))
    assert first == second


# --- the math comes from the derivation objects ---------------------------------------------------


@pytest.mark.heavy
def test_worked_examples_show_every_derived_entry(all_latex):
    printers = ReportPrinter(), ReportPrinter().with_settings(fold_short_frac=True)  # equations, matrix cells
    for example in EXAMPLE_LIST:
        derived = example.derive()
        for key, value in derived.items():
            if isinstance(value, sympy.NDimArray) and example.name != "softmax_ce_gradient":
                for index in indices_of(value.shape):
                    shown = {printer.doprint(indicators(value[index])) for printer in printers}
                    assert any(form in all_latex for form in shown), (example.name, key, index)


def test_conv_example_has_its_matrices_and_the_complete_input_gradient():
    derivation = derive(LayerConfig("conv2d", input_size=(3, 3), kernel=(2, 2), bias=False))
    text = writer.render_latex(example_report("conv_3x3_2x2"))
    assert r"X = \begin{bmatrix} x_{00} & x_{01} & x_{02} \\" in text
    assert r"\frac{\partial L}{\partial Y} = \begin{bmatrix} a & b \\ c & d \end{bmatrix}" in text
    grad_input = derivation.gradients["grad_input"]
    for index in indices_of(grad_input.shape):  # all nine, as derived
        name = f"x_{{{index[2]}{index[3]}}}"
        assert rf"\frac{{\partial L}}{{\partial {name}}} &= {sympy.latex(grad_input[index])}" in text


def test_softmax_example_display_form_is_exact():
    # The display rewrites each entry as r/D + q with D the shared denominator: check it names D
    # and that substituting D back gives the derived entries.
    text = writer.render_markdown(example_report("softmax_ce_gradient"))
    assert "D &= e^{z_{00}} + e^{z_{01}}" in text
    assert r"\frac{e^{z_{00}}}{D}" in text and "y_{00}" in text


@pytest.mark.heavy
def test_example_statuses_follow_the_comparison(everything, monkeypatch):
    examples = everything.parts[0]
    assert [r.name for r in examples.reports] == [f"example-{e.name}" for e in EXAMPLE_LIST]
    for page in examples.reports:
        text = writer.render_markdown(page)
        assert "Differs from the document" not in text and "Equal, exactly, to the document's." in text, page.name
    example = EXAMPLES["dense_weight_count"]
    broken = type(example)(**{**example.__dict__, "expected": {"weights": 1}})
    monkeypatch.setitem(EXAMPLES, "dense_weight_count", broken)
    assert "Differs from the document, which states 1." in writer.render_markdown(example_report("dense_weight_count"))


def test_a_worked_example_is_titled_for_a_reader_and_names_its_document_without_a_path():
    report = example_report("conv_3x3_2x2")
    assert report.title == "Document 002: backpropagation through a 3×3 convolution with a 2×2 kernel"
    intro = " ".join(block.text for block in report.intro)
    assert "“Convolution and pooling, worked by hand”" in intro and "`002_51c52be4557c38c6.txt`" in intro
    assert "shared/" not in writer.render_latex(report)


def _gradient_letters(example) -> set:
    """``{"w", "x"}``: the tensors whose gradient the example's report shows (``dL/dW``, ``dL/dX``)."""
    return {key[4:].lower() for key, value in example.derive().items()
            if key.startswith("dL/d") and key not in example.given and isinstance(value, sympy.NDimArray)}


@pytest.mark.parametrize("example", [e for e in EXAMPLE_LIST if e.chain_rule], ids=lambda e: e.name)
def test_the_chain_rule_of_an_entry_of_each_gradient_is_shown_as_derive_steps_prints_it(cli, example):
    rule = example.chain_rule
    # an entry of each gradient (the softmax example's steps name softmax's input x, the document's z)
    assert len({entry[0] for entry in rule.entries}) == len(_gradient_letters(example))
    text = writer.render_latex(example_report(example.name))
    assert r"\section{The chain rule, step by step}" in text
    status, printed, err = cli(*shlex.split(derive_command(rule))[1:], "--format", "latex")
    assert status == 0, err
    for entry, rows in latex_entries(rule.steps()):
        assert all(row in printed for row in rows), entry  # the command the report names prints the same rows
        assert all(row in text for row in fitted_rows(rows)), entry


def test_every_example_with_a_symbolic_gradient_shows_a_chain_rule():
    without = [e.name for e in EXAMPLE_LIST if _gradient_letters(e) and e.chain_rule is None]
    assert without == []


def test_every_heading_keeps_space_for_what_follows_it():
    text = writer.render_latex(example_report("conv_3x3_2x2"))
    lines = text.splitlines()
    headings = [number for number, line in enumerate(lines) if line.startswith(("\\section", "\\subsection"))]
    assert headings and all(lines[number - 1].startswith("\\keepwithnext") for number in headings)


@pytest.mark.parametrize("op, config", [
    ("conv2d", dict(input_size=(3, 3), kernel=(2, 2))),
    ("maxpool2d", dict(input_size=(4, 4), kernel=(2, 2))),
    ("avgpool2d", dict(input_size=(3, 3), kernel=(2, 2), stride=1)),
    ("dense", dict(input_size=3, channels_out=2)),
])
def test_op_instance_equals_derive(op, config):
    """The op report's instance (the general formula, expanded) against symcnn derive (the VJP)."""
    settings = {"stride": 1} if op == "avgpool2d" else {}
    shown = instance(op, **settings)
    derivation = derive(LayerConfig(op, **config))
    assert sympy.Array(shown.output) == derivation.output
    for role, array in shown.gradients.items():
        expected = derivation.gradients[f"grad_{role}"]
        assert all(exactly_equal(array[i], expected[i]) for i in indices_of(array.shape)), role


def test_an_instance_that_contradicts_its_expansion_is_refused(monkeypatch):
    from symcnn.report import opformulas as module

    real = module.expand_gradient
    monkeypatch.setattr(module, "expand_gradient", lambda *args: real(*args).applyfunc(lambda e: 2 * e))
    with pytest.raises(AssertionError, match="disagrees with the element-wise derivative"):
        instance("avgpool2d")


def test_op_report_shows_the_derived_formula_and_its_conditions():
    specialized = op_report("conv2d", stride=2, padding=1)
    text = writer.render_latex(specialized)
    gradient = derive_gradient(ops.conv2d(), "input").substitute({ops.s_h: 2, ops.s_w: 2, ops.p_h: 1, ops.p_w: 1})
    for row in gradient_display(gradient, ReportPrinter()).rows:
        assert row in text
    assert r"2 \mid" in text  # divisibility (document 000)
    assert r"0 \leq i \leq H_{out} - 1" in text  # the range condition
    assert r"i &= \frac{- d_{h} u + k + 1}{2}" in text
    assert specialized.name == "op-conv2d-stride2-padding1"


@pytest.mark.heavy
def test_op_report_of_every_op_without_python_names(everything):
    text = writer.render_latex(Collection("ops", "ops", "", (everything.parts[1],)))
    for raw in ("MaxOver", "FirstArgmax", "Piecewise", "Iverson(", "KroneckerDelta", "None", "**", "mathbb{1}"):
        assert raw not in text, raw


def test_large_kernel_instance_is_described_not_expanded():
    text = writer.render_markdown(op_report("conv2d", kernel=4))
    assert "The kernel is larger than 9 elements" in text


def test_network_walk_through_is_document_004():
    seed = network_report("seed004-text")
    text = writer.render_latex(seed)
    # Forward: document 004's names and shapes.
    for name in (r"S^{[1]}_{n,c_{out},i,j}", r"A^{[1]}_{n,c,i,j}", r"P^{[1]}_{n,c,i,j}", r"h_{n,k}", r"z_{n,i}"):
        assert name in text, name
    assert r"S^{[1]} \in \mathbb{R}^{N \times 16 \times 32 \times 32}" in text
    assert r"h \in \mathbb{R}^{N \times 4096}" in text
    # Backward: p - y, flatten's inverse, routing, the ReLU mask, the conv's range condition.
    assert r"\frac{\partial L}{\partial z_{n,i}} &= \frac{p_{n,i} - y_{n,i}}{N}" in text \
        or r"\frac{1}{N} \left(p_{n,i} - y_{n,i}\right)" in text
    assert r"\frac{\partial L}{\partial h_{n, 256 c + 16 k + l}}" in text
    assert r"\mathbf{1}\left[(u, v) = \operatorname{argmax}_{u', v'} A^{[1]}_{n,c,k - u + u',l - v + v'}\right]" in text
    assert r"\left[0 < S^{[1]}_{n,c,i,j}\right]" in text
    assert r"\bigl[\,0 \leq i \leq 31 \land 0 \leq j \leq 31\,\bigr]" in text
    titles = [section.title for section in seed.sections[3].sections]
    assert titles == ["Loss to $z$", "`fc1` to $h$", "`flatten3` to $P^{[1]}$", "`maxpool2d2` to $A^{[1]}$",
                      "`relu1` to $S^{[1]}$", "`conv1` to $X$"]


def test_network_of_a_users_spec(extras):
    text = writer.render_markdown(extras[2])
    assert r"z^{[1]}_{n,i}" in text and r"z^{[2]}_{n,i}" in text  # two dense layers, numbered
    assert r"W^{\mathrm{hidden}}" in text and r"b^{\mathrm{conv}}" not in text  # conv without bias
    assert "stride 2" in text and r"2 \mid" in text


# --- PDF ------------------------------------------------------------------------------------------


@pytest.mark.heavy
@NEEDS_TEX
def test_every_shipped_report_compiles_to_pdf(all_pdf, everything):
    path, log = all_pdf
    assert path.read_bytes().startswith(b"%PDF")
    pages = int(re.search(r"Output written on report\.pdf \((\d+) pages", log).group(1))
    assert pages > 3 * len(everything.reports) // 2
    overfull = [float(width) for width in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]
    assert max(overfull, default=0) < 10, "a line runs off the page"


@pytest.mark.heavy
@NEEDS_TEX
def test_no_page_ends_with_a_heading(all_pdf, everything):
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext is not installed (poppler-utils)")
    path, _ = all_pdf
    pages = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True,
                           timeout=120).stdout.split("\f")
    titles = {section.title for report in everything.reports for section in report.sections}
    titles |= {report.title for report in everything.reports}
    plain = {title for title in titles if not set(title) & set("$`")}  # as pdftotext writes them
    for number, page in enumerate(pages, start=1):
        lines = [line.strip() for line in page.splitlines() if line.strip()]
        body = lines[:-1] if lines and lines[-1].isdigit() else lines  # without the page number
        if body:
            heading = re.fullmatch(r"\d+(?:\.\d+)*\s+(.*)", body[-1])
            assert not (heading and heading.group(1) in plain), f"page {number} ends with the heading {body[-1]!r}"


@pytest.mark.heavy
@NEEDS_TEX
def test_pdf_pages_render_to_png(all_pdf, tmp_path):
    path, _ = all_pdf
    subprocess.run(["pdftoppm", "-r", "30", "-png", "-f", "1", "-l", "3", str(path), str(tmp_path / "page")],
                   check=True, timeout=120)
    images = sorted(tmp_path.glob("page-*.png"))
    assert len(images) == 3
    assert all(image.read_bytes().startswith(b"\x89PNG") and image.stat().st_size > 2000 for image in images)


@NEEDS_TEX
def test_cli_writes_a_pdf(cli, tmp_path, umask):
    umask(0o022)
    status, out, err = cli("report", "--example", "maxpool_3x3_k2s1", "-o", tmp_path / "pool.pdf")
    assert (status, err) == (0, "") and out == f"wrote {tmp_path / 'pool.pdf'}\n"
    assert (tmp_path / "pool.pdf").read_bytes().startswith(b"%PDF")
    assert stat.S_IMODE((tmp_path / "pool.pdf").stat().st_mode) == 0o644  # the umask's, not mkstemp's 0600
    assert list(tmp_path.iterdir()) == [tmp_path / "pool.pdf"]  # no LaTeX by-products left behind


@NEEDS_TEX
def test_pdflatex_when_latexmk_is_missing(monkeypatch, tmp_path):
    real_which = shutil.which
    monkeypatch.setattr(writer.shutil, "which", lambda name: None if name == "latexmk" else real_which(name))
    writer.compile_pdf(writer.render_latex(example_report("relu_derivative")), tmp_path / "relu.pdf")
    assert (tmp_path / "relu.pdf").read_bytes().startswith(b"%PDF")


@NEEDS_TEX
def test_a_latex_error_is_one_line_and_leaves_the_old_pdf(tmp_path):
    target = tmp_path / "old.pdf"
    target.write_bytes(b"old")
    with pytest.raises(ValueError, match=r"^output: latexmk failed: .*Undefined control sequence"):
        writer.compile_pdf("\\documentclass{article}\\begin{document}\\undefinedmacro\\end{document}\n", target)
    assert target.read_bytes() == b"old"


# --- the command line -----------------------------------------------------------------------------


def test_cli_prints_latex_by_default(cli):
    status, out, err = cli("report", "--op", "relu")
    assert status == 0 and err == ""
    assert out == writer.render_latex(op_report("relu"), "symcnn report --op relu --format latex")
    assert out.startswith("% Generated by symcnn: symcnn report --op relu --format latex.")


def test_cli_writes_tex_and_markdown_files_and_checks_them(cli, tmp_path):
    status, out, _ = cli("report", "--op", "conv2d", "--stride", "2", "-o", tmp_path / "conv.tex")
    assert status == 0 and (tmp_path / "conv.tex").read_text().endswith("\\end{document}\n")
    assert cli("report", "--op", "conv2d", "--stride", "2", "-o", tmp_path / "conv.tex", "--check")[0] == 0
    assert cli("report", "--op", "conv2d", "--stride", "1", "-o", tmp_path / "conv.tex", "--check")[0] == 1
    status, _, _ = cli("report", "--network", "digits", "-o", tmp_path / "digits.md")
    assert status == 0 and (tmp_path / "digits.md").read_text().startswith("<!-- Generated by symcnn report")


def test_cli_directory_of_pages_check_and_stale_pages(cli, tmp_path):
    pages = tmp_path / "pages"
    status, out, _ = cli("report", "--example", "relu_derivative", "--format", "markdown", "-o", f"{pages}/")
    assert status == 0 and out == f"wrote {pages / 'example-relu_derivative.md'}\n"
    assert cli("report", "--example", "relu_derivative", "--format", "markdown", "-o", pages, "--check")[0] == 0
    leftover = pages / "example-gone.md"
    leftover.write_text(writer.GENERATED_MARK.format(command="x") + "\n")
    (pages / "notes.md").write_text("mine\n")  # not generated: never touched
    status, out, err = cli("report", "--example", "relu_derivative", "--format", "markdown", "-o", pages, "--check")
    assert status == 1 and "stale: example-gone.md" in out and "regenerate with" in err
    assert cli("report", "--example", "relu_derivative", "--format", "markdown", "-o", pages)[0] == 0
    assert not leftover.exists() and (pages / "notes.md").read_text() == "mine\n"


@pytest.mark.parametrize("argv, message", [
    (["--example", "nope"], "--example: unknown example 'nope'; choose from conv_3x3_2x2, "),
    (["--op", "nope"], "--op: must be one of conv2d, "),
    (["--network", "nope"], "--network: 'nope' is neither a shipped spec"),
    (["--op", "maxpool2d", "--padding", "1"], "--padding: maxpool2d has no padding"),
    (["--op", "conv2d", "--stride", "0"], "--stride: "),
    (["--example", "conv_3x3_2x2", "--stride", "2"], "--stride: only --op takes it"),
    (["--example", "conv_3x3_2x2", "-o", "report.txt"], "-o: expected a file ending in .tex, .pdf or .md"),
    (["--example", "conv_3x3_2x2", "--format", "markdown", "-o", "x.pdf"], "-o: a .pdf file holds latex"),
    (["--example", "conv_3x3_2x2", "--check"], "--check: needs -o"),
    (["--example", "conv_3x3_2x2", "-o", "x.pdf", "--check"], "--check: compares text"),
    (["--example", "conv_3x3_2x2", "-o", "/no/such/dir/x.tex"], "-o: the directory '/no/such/dir' does not exist"),
])
def test_errors_are_one_line_with_exit_status_2(cli, argv, message):
    status, out, err = cli("report", *argv)
    assert status == 2 and out == ""
    assert err.startswith(f"symcnn report: error: {message}"), err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_missing_tex_names_the_program(cli, monkeypatch, tmp_path):
    monkeypatch.setattr(writer.shutil, "which", lambda name: None)
    status, out, err = cli("report", "--example", "relu_derivative", "-o", tmp_path / "relu.pdf")
    assert status == 2 and out == "" and err.count("\n") == 1
    assert "-o: a PDF needs latexmk (or pdflatex), and neither is installed" in err
    assert not (tmp_path / "relu.pdf").exists()


def test_unwritable_output_is_one_line(cli, monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(files, "_create_temporary", refuse)
    status, _, err = cli("report", "--op", "relu", "-o", tmp_path / "relu.tex")
    assert status == 2 and err == f"symcnn report: error: -o: cannot write {tmp_path / 'relu.tex'}: Permission denied\n"
    status, _, err = cli("report", "--op", "relu", "-o", tmp_path / "file" / "x.tex")
    assert status == 2 and "does not exist" in err


def test_writes_are_atomic(monkeypatch, tmp_path):
    target = tmp_path / "page.md"
    target.write_text("old\n")

    def interrupted(source, destination):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        writer.write_pages({"page.md": "new\n"}, tmp_path)
    assert target.read_text() == "old\n"
    assert [path.name for path in tmp_path.iterdir()] == ["page.md"]  # the temporary file is gone
    monkeypatch.undo()
    writer.write_pages({"page.md": "new\n"}, tmp_path)
    assert target.read_text() == "new\n"


def test_pages_get_the_umasks_mode(tmp_path, umask):
    umask(0o027)
    (page,) = writer.write_pages({"page.md": "text\n"}, tmp_path / "derivations")
    assert stat.S_IMODE(page.stat().st_mode) == 0o640
    assert stat.S_IMODE(page.parent.stat().st_mode) == 0o750


def test_list(cli):
    status, out, _ = cli("report", "--list")
    assert status == 0 and "conv_3x3_2x2" in out and "softmax_cross_entropy" in out and "seed004-text" in out
    assert "vgg16" in out


def test_document_003s_architectures_have_walk_throughs(cli, tmp_path):
    """The architecture specs (not shipped with kernels) are reported like the others: a network report
    needs only the formulas."""
    status, _, err = cli("report", "--network", "lenet5", "--format", "markdown", "-o", tmp_path / "lenet5.md")
    assert status == 0, err
    text = (tmp_path / "lenet5.md").read_text()
    assert "# Network `lenet5`" in text and "6 kernels of size 5" in text
