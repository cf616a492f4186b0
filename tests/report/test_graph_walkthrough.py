"""`symcnn report --network` on graph specs: each layer reads the tensors its ``inputs`` name, an add passes
its gradient to each input, a concat gives each input its block of channels, and a tensor that several
layers read gets the sum of their parts (the multivariable chain rule), before its own layer's step."""

from __future__ import annotations

import copy
import shutil

import pytest
from hypothesis import HealthCheck, given, settings

from symcnn.report import writer
from symcnn.report.walkthrough import fan_outs, layer_names, network_report
from symcnn.spec import load_spec, spec_toml
from tests.graphs.graph_specs import GRAPH, INPUT_FANOUT, graph_specs


def _spec_file(tmp_path, spec: dict):
    path = tmp_path / f"{spec['name']}.toml"
    path.write_text(spec_toml(spec), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def graph_report(tmp_path_factory):
    return network_report(_spec_file(tmp_path_factory.mktemp("spec"), GRAPH))


def _part(tensor: str, reader: str, indices: str = "n, c, i, j") -> str:
    return r"\left(\frac{\partial L}{\partial %s_{%s}}\right)_{\mathrm{%s}}" % (tensor, indices, reader)


def test_the_backward_steps_of_a_graph_with_a_sum_at_each_fan_out(graph_report):
    titles = [section.title for section in graph_report.sections[3].sections]
    assert titles == ["Loss to $z$", "`fc` to $h$", "`flatten5` to $S^{[4]}$",
                      "`concat4` to $S^{[3]}$ and $S^{[1]}$ and $A^{[1]}$", "`sum` to $S^{[2]}$ and $A^{[1]}$",
                      "`c2` to $A^{[1]}$", "Fan-out of $A^{[1]}$: the sum of its readers' gradients",
                      "`a` to $S^{[1]}$", "Fan-out of $S^{[1]}$: the sum of its readers' gradients", "`stem` to $X$"]


def test_add_concat_and_the_fan_out_sums_as_written(graph_report):
    text = writer.render_latex(graph_report)
    # the forward pass reads the named inputs
    assert r"S^{[3]}_{n,c,i,j} &= A^{[1]}_{n,c,i,j} + S^{[2]}_{n,c,i,j}" in text
    assert r"+ A^{[1]}_{n,c - 8,i,j} \bigl[\,8 \leq c \leq 11\,\bigr]" in text
    assert r"`sum`: add, reads $S^{[2]}$ and $A^{[1]}$, output" in writer.render_markdown(graph_report)
    # add: each input's gradient is the upstream one; concat: each input its block of channels
    upstream = r"\frac{\partial L}{\partial S^{[3]}_{n, c, i, j}}"
    assert r"\frac{\partial L}{\partial S^{[2]}_{n, c, i, j}} &= " + upstream in text
    assert _part("A^{[1]}", "sum") + " &= " + upstream in text
    assert _part("S^{[1]}", "concat4") + r" &= \frac{\partial L}{\partial S^{[4]}_{n, c + 4, i, j}}" in text
    assert _part("A^{[1]}", "concat4") + r" &= \frac{\partial L}{\partial S^{[4]}_{n, c + 8, i, j}}" in text
    assert _part("A^{[1]}", "c2", r"n, c_{in}, k, l") + r" &= \sum_{c_{out}=0}^{3}" in text
    # the fan-outs: the whole gradient is the sum of the parts, and the layers below read the whole
    assert (r"\frac{\partial L}{\partial A^{[1]}_{n, c, i, j}} &= " + _part("A^{[1]}", "c2") + " + "
            + _part("A^{[1]}", "concat4") + " + " + _part("A^{[1]}", "sum")) in text
    assert (r"\frac{\partial L}{\partial S^{[1]}_{n, c, i, j}} &= " + _part("S^{[1]}", "a") + " + "
            + _part("S^{[1]}", "concat4")) in text
    assert r"\frac{\partial L}{\partial S^{[1]}_{n, c, i, j}} &= \frac{\partial L}{\partial A^{[1]}_{n, c, i, j}}" \
        not in text  # relu a sends back only its part of S1's gradient
    assert _part("S^{[1]}", "a") + r" &= \frac{\partial L}{\partial A^{[1]}_{n, c, i, j}} \left[0 < S" in text
    prose = writer.render_markdown(graph_report)
    assert "$A^{[1]}$ (the output of `a`) is read by `c2`, `sum` and `concat4`" in prose
    assert "multivariable chain rule" in prose and "`fanout_a`" in prose and "`fanout_stem`" in prose


def test_the_network_input_fanning_out(tmp_path):
    report = network_report(_spec_file(tmp_path, INPUT_FANOUT))
    titles = [section.title for section in report.sections[3].sections]
    assert titles[-3:] == ["`relu1` to $S^{[1]}$", "`left` to $X$", "Fan-out of $X$: the sum of its readers' gradients"]
    assert "`join` to $d$ and $S^{[2]}$" in titles
    text = writer.render_markdown(report)
    assert "$X$ (the network's input) is read by `left` and `right`" in text
    whole = r"\frac{\partial L}{\partial X_{n, c, i, j}}"
    assert f"{whole} &= {_part('X', 'left')} + {_part('X', 'right')}" in text


def test_a_layer_reading_one_tensor_twice_sends_two_parts(tmp_path):
    spec = copy.deepcopy(GRAPH)
    spec["layers"][3]["inputs"] = ["a", "a"]
    spec["layers"][4]["inputs"] = ["sum", "stem", "c2"]
    loaded = load_spec(_spec_file(tmp_path, spec))
    found = fan_outs(loaded, layer_names(loaded))
    assert found["a"].reads == (("c2", 1), ("sum", 1), ("sum", 2))
    assert found["a"].parts == ("dL/dA1|c2", "dL/dA1|sum.1", "dL/dA1|sum.2")
    assert _part("A^{[1]}", "sum.2") in writer.render_latex(network_report(_spec_file(tmp_path, spec)))


def test_a_sequential_spec_has_no_fan_out():
    spec = load_spec("seed004")
    assert fan_outs(spec, layer_names(spec)) == {}
    text = writer.render_markdown(network_report("seed004"))
    assert "Fan-out" not in text and ", reads " not in text and "several layers read" not in text


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(graph=graph_specs())
def test_random_graphs_sum_each_fan_out_after_its_readers_and_before_its_layer(tmp_path, graph):
    path = _spec_file(tmp_path, graph.spec)
    spec, report = load_spec(path), network_report(path)
    names = layer_names(spec)
    titles = [section.title for section in report.sections[3].sections]
    steps = {title.split("`")[1]: position for position, title in enumerate(titles) if title.startswith("`")}
    assert list(steps) == [layer.label for layer in reversed(spec.layers)]
    for label, readers in spec.consumers().items():
        title = f"Fan-out of ${names.latex[names.tensors[label]]}$: the sum of its readers' gradients"
        if len(readers) < 2:
            assert title not in titles
            continue
        at = titles.index(title)
        assert all(steps[reader] < at for reader in readers)
        assert at == len(titles) - 1 if label == "input" else steps[label] == at + 1


@pytest.mark.skipif(shutil.which("latexmk") is None, reason="latexmk is not installed (CI installs it: .ci/run)")
def test_the_graph_report_compiles(graph_report, tmp_path):
    target = tmp_path / "graph.pdf"
    writer.compile_pdf(writer.render_latex(graph_report), target)
    assert target.read_bytes().startswith(b"%PDF")
