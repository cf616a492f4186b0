"""`symcnn formula`: general formulas on the command line, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from symcnn import registry
import sympy

from symcnn.views.formula import FORMULA_OPS, from_srepr, general_formula




def test_text_shows_the_formula_its_conditions_and_the_output_size(cli):
    status, out, err = cli("formula", "conv2d", "--wrt", "input")
    assert status == 0 and err == ""
    assert out.startswith("conv2d: gradient with respect to the input\n")
    assert "dL/dX[n, c_in, k, l] = sum_{c_out=0..C_out - 1, u=0..K_h - 1, v=0..K_w - 1}" in out
    assert "s_h | -d_h*u + k + p_h" in out  # divisibility (document 000)
    assert "(-d_h*u + k + p_h)/s_h <= H_out - 1" in out  # range (omitted by document 000)
    assert "where H_out = floor((H_in - d_h*(K_h - 1) + 2*p_h - 1)/s_h) + 1" in out


def test_specializing_stride_one_simplifies(cli):
    status, out, _ = cli("formula", "conv2d", "--stride", "1", "--padding", "0", "--dilation", "1")
    assert status == 0
    assert "|" not in out and "dL/dY[n, c_out, k - u, l - v]" in out
    assert "(stride 1, padding 0, dilation 1)" in out


@pytest.mark.parametrize("wrt", ["weight", "bias", "forward"])
@pytest.mark.parametrize("as_given", [lambda wrt: ["--wrt", wrt], lambda wrt: [wrt]], ids=["--wrt", "positional"])
def test_every_role_of_conv2d(cli, wrt, as_given):
    status, out, _ = cli("formula", "conv2d", *as_given(wrt))
    assert status == 0
    first_line = out.splitlines()[1]
    assert first_line.split(" = ")[0] == {"weight": "dL/dW[c_out, c_in, u, v]", "bias": "dL/db[c_out]",
                                          "forward": "Y[n, c_out, i, j]"}[wrt]


def test_the_operand_given_both_ways_must_agree(cli):
    assert cli("formula", "conv2d", "weight", "--wrt", "weight")[0] == 0
    status, out, err = cli("formula", "conv2d", "weight", "--wrt", "bias")
    assert (status, out) == (2, "")
    assert err.strip() == ("symcnn formula: error: --wrt: the operand is given twice: 'weight' (OPERAND) and "
                           "'bias' (--wrt)")


@pytest.mark.parametrize("op", list(FORMULA_OPS))
def test_every_op_prints_in_every_format(cli, op):
    for output_format in ("text", "latex", "json"):
        status, out, err = cli("formula", op, "--format", output_format)
        assert status == 0 and err == "" and out.strip()
    data = json.loads(cli("formula", op, "--format", "json")[1])
    assert from_srepr(data["srepr"]) == general_formula(op, "input").equation
    # the input's gradient is dL/dX; an add's or concat's inputs are X1, X2, ...: dL/dX1
    assert data["tensors"]["grad_input"]["name"] == ("dL/dX1" if registry.get(op).merges else "dL/dX")


def test_each_input_of_a_join_has_its_gradient(cli):
    status, out, _ = cli("formula", "concat", "--wrt", "input2")
    assert status == 0 and "dL/dX2[n, c, i, j] = " in out and "dL/dY[n, C_1 + c, i, j]" in out
    status, _, err = cli("formula", "conv2d", "--wrt", "input2")
    assert status == 2 and "wrt" in err and "input2" in err


def test_latex_uses_the_documents_notation(cli):
    _, out, _ = cli("formula", "conv2d", "--format", "latex")
    assert out.startswith(r"\frac{\partial L}{\partial X_{n, c_{in}, k, l}} = \sum")
    assert r"s_{h} \mid" in out and r"H_{out} - 1" in out


def test_json_parameters_name_every_role(cli):
    data = json.loads(cli("formula", "conv2d", "--format", "json")[1])
    roles = {"batch", "in_channels", "out_channels", "in_height", "in_width", "kernel_height", "kernel_width",
             "stride_h", "stride_w", "padding_h", "padding_w", "dilation_h", "dilation_w", "out_height", "out_width"}
    assert roles <= set(data["parameters"])
    assert data["parameters"]["batch"] == "N"
    assert sympy.sympify(data["parameters"]["out_height"]).has(sympy.floor)
    assert set(data["tensors"]) >= {"input", "weight", "bias", "output", "grad_output", "grad_input"}


@pytest.mark.parametrize("argv, option", [
    (["formula", "relu", "--wrt", "weight"], "--wrt"),
    (["formula", "relu", "weight"], "--wrt"),
    (["formula", "conv2d", "kernel"], "OPERAND"),
    (["formula", "relu", "--stride", "2"], "--stride"),
    (["formula", "conv2d", "--stride", "0"], "--stride"),
    (["formula", "conv2d", "--padding", "-1"], "--padding"),
    (["formula", "conv2d", "--dilation", "2x"], "--dilation"),
    (["formula", "nonsense"], "OP"),
])
def test_bad_input_is_one_line_and_exit_2(cli, argv, option):
    status, out, err = cli(*argv)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and option in err and "Traceback" not in err


def test_subprocess_error_has_no_traceback():
    result = subprocess.run([sys.executable, "-m", "symcnn", "formula", "maxpool2d", "--wrt", "bias"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "symcnn formula: error: --wrt: maxpool2d has no bias; choose from forward, input"


def test_the_console_examples_in_docs_are_current(cli):
    """docs/formulas.md shows real output: each `$ symcnn ...` block equals what the command prints."""
    from pathlib import Path
    import shlex

    text = (Path(__file__).resolve().parents[2] / "docs" / "formulas.md").read_text()
    block = text.split("```console\n", 1)[1].split("```", 1)[0]
    commands = block.split("$ ")[1:]
    assert len(commands) == 2
    for command in commands:
        line, _, expected = command.partition("\n")
        argv = shlex.split(line)[1:]
        status, out, _ = cli(*argv)
        assert status == 0
        assert out.strip() == expected.strip(), line


def test_max_pooling_prints_as_a_max_over_its_window_in_latex(cli):
    """The forward formula's window maximum is LaTeX's max with its ranges, not an operator name."""
    status, out, _ = cli("formula", "maxpool2d", "--wrt", "forward", "--format", "latex")
    assert status == 0
    assert r"\max_{\substack{0 \leq u \leq K_{h} - 1\\0 \leq v \leq K_{w} - 1}}" in out
    assert "MaxOver" not in out


@pytest.mark.parametrize("op, settings", [
    ("conv2d", []), ("conv2d", ["--stride", "1", "--padding", "0", "--dilation", "1"]),
    ("conv2d", ["--stride", "2", "--padding", "1", "--dilation", "1"]), ("maxpool2d", []), ("avgpool2d", []),
])
def test_the_height_and_width_rules_print_their_terms_in_one_order(cli, op, settings):
    """``W_out = W_in - K_w + 1`` beside ``H_out = H_in - K_h + 1``: the same rule, written alike."""
    for output_format in ("text", "latex"):
        _, out, _ = cli("formula", op, *settings, "--format", output_format)
        height = next(line for line in out.splitlines() if "H_out =" in line or "H_{out} =" in line)
        width = next(line for line in out.splitlines() if "W_out =" in line or "W_{out} =" in line)
        as_height = width
        for name, twin in (("W_", "H_"), ("W_{", "H_{"), ("K_w", "K_h"), ("K_{w}", "K_{h}"), ("_w", "_h"),
                           ("_{w}", "_{h}")):
            as_height = as_height.replace(name, twin)
        assert as_height.removesuffix(",\\qquad") == height.removesuffix(",\\qquad"), (height, width)


@pytest.mark.parametrize("wrt", ["forward", "weight"])
def test_a_padded_convolution_says_it_reads_x_as_zero_outside_its_shape(cli, wrt):
    """The forward pass and the weight gradient read X at the padded border: each format says X is 0 there."""
    statement = "  X[n, c, h, w] is read as 0 outside 0 <= h <= H_in - 1, 0 <= w <= W_in - 1 (zero padding)"
    assert cli("formula", "conv2d", "--wrt", wrt)[1].splitlines()[-1] == statement
    latex = cli("formula", "conv2d", "--wrt", wrt, "--format", "latex")[1].splitlines()[-1]
    assert latex == (r"{X}_{n,c,h,w} \text{ is read as } 0 \text{ outside } 0 \leq h \leq H_{in} - 1,\ "
                     r"0 \leq w \leq W_{in} - 1 \text{ (zero padding)}")
    data = json.loads(cli("formula", "conv2d", "--wrt", wrt, "--format", "json")[1])
    assert data["zero_outside"] == ["X"] and "zero padding" in data["latex"]
    # padding 0: every read lies inside X, and nothing is declared
    _, out, _ = cli("formula", "conv2d", "--wrt", wrt, "--padding", "0", "--format", "json")
    assert json.loads(out)["zero_outside"] == [] and "zero padding" not in json.loads(out)["latex"]


def test_a_formula_that_reads_inside_its_tensors_declares_nothing(cli):
    data = json.loads(cli("formula", "conv2d", "--wrt", "input", "--format", "json")[1])
    assert data["zero_outside"] == [] and "zero padding" not in cli("formula", "conv2d")[1]
