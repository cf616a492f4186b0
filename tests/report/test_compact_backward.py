"""The op page's section on document 003's compact backward of batch and layer normalization."""

from __future__ import annotations

import pytest

from symcnn.report.compactbackward import compact_section
from symcnn.report.document import Display, Prose
from symcnn.report.writer import render_markdown
from symcnn.report.document import Report
from symcnn.symbolic import normalization
from symcnn.symbolic.adjoint import derive_gradient
from symcnn.symbolic.tensors import symbol_array, upstream_array

SHAPE = (1, 1, 2, 2)


def _section(forward, parameter_shape, derived=None):
    arrays = {"input": symbol_array("x", SHAPE), "weight": symbol_array("w", parameter_shape),
              "bias": symbol_array("b", parameter_shape)}
    derived = derived or {role: derive_gradient(forward, role) for role in ("input", "weight", "bias")}
    return compact_section(forward, arrays, upstream_array(SHAPE), "input 1×1×2×2", derived)


@pytest.fixture(scope="module")
def batch_norm_section():
    return _section(normalization.batchnorm2d(), (1,))


def _rows(section):
    return [row for block in section.blocks if isinstance(block, Display) for row in block.rows]


def test_the_section_shows_the_four_lines_the_two_omitted_and_the_zero_term(batch_norm_section):
    rows = _rows(batch_norm_section)
    heads = [row.split(" &=")[0] for row in rows if " &=" in row]
    for name in (r"\hat{X}_{n, c, i, j}", r"\sigma^{2}_{c}", r"\mu_{c}", r"X_{n, c, i, j}", r"\gamma_{c}",
                 r"\beta_{c}"):
        assert rf"\frac{{\partial L}}{{\partial {name}}}" in heads
    # the document's −2/m Σ(x_i − μ) term, then its sum shown zero, then ∂L/∂μ without it
    (zero_term,) = [row for row in rows if r"\left(- \frac{2}{m}\right)" in row]
    assert zero_term.startswith(r"&\quad + \frac{\partial L}{\partial \sigma^{2}_{c}} \cdot")
    (vanishing,) = [row for row in rows if row.endswith("= 0")]
    assert r"- m \mu_{c} = 0" in vanishing
    mean_rows = [row for row in rows if row.startswith(r"\frac{\partial L}{\partial \mu_{c}}")]
    assert len(mean_rows) == 2 and r"\sigma^{2}_{c}} \cdot" not in mean_rows[1]
    prose = " ".join(block.text for block in batch_norm_section.blocks if isinstance(block, Prose))
    assert "document 003's four lines" in prose and "input 1×1×2×2" in prose


def test_the_section_renders_as_markdown(batch_norm_section):
    page = render_markdown(Report("op-demo", "Demo", "demo", (batch_norm_section,)))
    assert "## Document 003's backward pass" in page and r"\hat{X}_{n,c,i,j} &= \frac{" in page


def test_layer_norm_gets_the_same_lines_per_sample():
    section = _section(normalization.layernorm(rank=4), (1, 2, 2))
    rows = _rows(section)
    assert r"m &= C_{in} H_{in} W_{in}" in rows
    assert any(row.startswith(r"\frac{\partial L}{\partial \gamma_{c, i, j}} &= \sum_{n=0}^{N - 1}") for row in rows)
    assert "per sample $n$" in section.blocks[0].text


def test_a_section_that_contradicts_the_derived_gradients_is_refused():
    forward = normalization.batchnorm2d()
    derived = {role: derive_gradient(forward, role) for role in ("input", "weight", "bias")}
    derived["weight"], derived["bias"] = derived["bias"], derived["weight"]
    with pytest.raises(AssertionError, match="disagrees with the derived gradients"):
        _section(forward, (1,), derived)
