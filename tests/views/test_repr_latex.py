"""Notebook display: every derivation object renders itself as one ``$$...$$`` LaTeX display.

Each display is checked for content (the same rows as the ``--format latex`` output, built by
the project's printers) and, where a TeX engine is installed, compiled: Jupyter's MathJax and
LaTeX accept the same subset used here (``gathered``, ``aligned``, ``\\text``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sympy import Array

from symcnn.symbolic import ops
from symcnn.views import derivation as render
from symcnn.symbolic.adjoint import derive_gradient
from symcnn.symbolic.derive import LayerConfig, derive
from symcnn.symbolic.display import LatexDisplay, registered_latex_view
from symcnn.checking.examples import EXAMPLE_LIST, EXAMPLES, POOL_INPUT, check
from symcnn.views.formula import general_formula
from symcnn.printing.latex import latex
from symcnn.printing.text import readable
from symcnn.symbolic.steps import steps
from symcnn.views.steps import as_latex
from symcnn.symbolic.tensors import indices_of

POOL = LayerConfig("maxpool2d", input_size=(3, 3), kernel=(2, 2), stride=(1, 1))
CONV = LayerConfig("conv2d", input_size=(3, 3), kernel=(2, 2), bias=False)


def _aligned_bodies(text: str) -> list[str]:
    return re.findall(r"\\begin\{aligned\}\n(.*?)\n\\end\{aligned\}", text, flags=re.S)


def _is_display(text: str) -> bool:
    return text.startswith("$$\n\\begin{gathered}") and text.endswith("\\end{gathered}\n$$")


@pytest.mark.parametrize("values", [None, Array([[POOL_INPUT]])])
def test_derivation_shows_every_entry_as_derive_latex_does(values):
    derivation = derive(POOL, values)
    display = derivation._repr_latex_()
    assert _is_display(display)
    assert _aligned_bodies(display) == _aligned_bodies(render.as_latex(derivation))
    for index in indices_of(derivation.gradients["grad_input"].shape):
        assert latex(readable(derivation.gradients["grad_input"][index], {})) in display
    assert ("at input values x00=1" in display) == (values is not None)


def test_steps_show_the_same_blocks_as_the_latex_format():
    walk = steps(POOL, Array([[POOL_INPUT]]), entries=["x10", "x11"])
    display = walk._repr_latex_()
    assert _is_display(display)
    assert _aligned_bodies(display) == _aligned_bodies(as_latex(walk))
    assert r"\text{dL/dx10 by the chain rule}" in display
    assert r"a \cdot 1 + c \cdot 1 = a + c" in display


@pytest.mark.parametrize("op, wrt", [("conv2d", "input"), ("maxpool2d", "input"), ("dense", "weight"),
                                     ("relu", "forward"), ("softmax_cross_entropy", "input")])
def test_formula_view_shows_its_header_and_formula(op, wrt):
    view = general_formula(op, wrt)
    display = view._repr_latex_()
    assert _is_display(display)
    assert view.latex() in display
    assert render.latex_text(view.text().splitlines()[0]) in display


@pytest.mark.parametrize("op", ["conv2d", "maxpool2d", "flatten"])
def test_gradient_formula_displays_as_symcnn_formula_prints_it(op):
    formula = derive_gradient(ops.__dict__[op](), "input")
    assert formula._repr_latex_() == general_formula(op, "input")._repr_latex_()


def test_worked_examples_show_their_derived_values_and_the_verdict():
    for example in EXAMPLE_LIST:
        display = example._repr_latex_()
        assert _is_display(display), example.name
        assert "differs from the document" not in display and "not derived" not in display
        rows = _aligned_bodies(display)[0].split(" \\\\\n")
        assert len(rows) == len(example.expected)
    pooling = EXAMPLES["maxpool_3x3_k2s1"]._repr_latex_()
    assert r"\left[\begin{matrix}0 & b & 0\\a + c & 0 & 0\\0 & d & 0\end{matrix}\right]" in pooling
    assert r"\text{completed by symcnn}" in EXAMPLES["conv_3x3_2x2"]._repr_latex_()


def test_a_mismatch_says_so():
    example = EXAMPLES["maxpool_3x3_k2s1"]
    wrong = type(example)(**{**example.__dict__, "expected": {**example.expected, "Y": Array([[[[9, 5], [9, 4]]]])}})
    assert r"\text{differs from the document}" in wrong._repr_latex_()
    result = check(wrong)
    display = result._repr_latex_()
    assert result.status == "mismatch" and "mismatch" in display and _is_display(display)



def _subclasses(cls: type) -> list[type]:
    return [sub for direct in cls.__subclasses__() for sub in [direct, *_subclasses(direct)]]


def test_every_displayed_class_has_a_registered_view():
    displayed = [cls for cls in _subclasses(LatexDisplay) if cls.__module__.startswith("symcnn.")]
    assert {cls.__name__ for cls in displayed} >= {"Derivation", "GradientFormula", "Steps", "FormulaView",
                                                   "WorkedExample", "ExampleResult"}
    assert [cls.__name__ for cls in displayed if registered_latex_view(cls) is None] == []


def test_a_class_without_a_view_says_so():
    class Unviewed(LatexDisplay):
        pass

    with pytest.raises(LookupError, match="no LaTeX view is registered for Unviewed"):
        Unviewed()._repr_latex_()


def test_a_symbolic_object_finds_its_view_without_importing_the_views_itself():
    # A fresh interpreter: importing the symbolic layer loads no view; displaying loads them by name.
    program = ("import sys\n"
               "from symcnn.symbolic.derive import LayerConfig, derive\n"
               "assert not any(name.startswith('symcnn.views') for name in sys.modules)\n"
               "config = LayerConfig('maxpool2d', input_size=(3, 3), kernel=(2, 2), stride=(1, 1))\n"
               "print(derive(config)._repr_latex_(), end='')\n")
    result = subprocess.run([sys.executable, "-c", program], cwd=Path(__file__).parents[2], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == render.as_latex_display(derive(POOL))

@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="no TeX engine installed")
def test_every_display_compiles(tmp_path):
    displays = [derive(POOL)._repr_latex_(), derive(POOL, Array([[POOL_INPUT]]))._repr_latex_(),
                steps(POOL, Array([[POOL_INPUT]]))._repr_latex_(), steps(CONV)._repr_latex_(),
                steps(LayerConfig("conv2d", input_size=(5, 5), kernel=2), entries=["x22"])._repr_latex_(),
                general_formula("conv2d", "input")._repr_latex_(), check(EXAMPLE_LIST[0])._repr_latex_()]
    displays += [example._repr_latex_() for example in EXAMPLE_LIST]
    body = "\n\n".join("\\[" + display.strip().strip("$") + "\\]" for display in displays)
    source = tmp_path / "displays.tex"
    source.write_text("\\documentclass{article}\n\\usepackage[a3paper,landscape,margin=1cm]{geometry}\n"
                      "\\usepackage{amsmath,amssymb}\n\\begin{document}\n" + body + "\n\\end{document}\n")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", source.name],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    errors = [line for line in result.stdout.splitlines() if line.startswith("!")]
    assert result.returncode == 0, errors or result.stdout[-2000:]
