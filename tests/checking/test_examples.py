"""The reference documents' worked examples: every one passes ``check``, the key results are
asserted again here exactly as the documents write them (independently of the ``expected``
values transcribed in ``symcnn.checking.examples``), and the checker is shown to be able to fail.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest
import sympy
from sympy import Array, Rational

from symcnn.symbolic import layers
from symcnn.symbolic.derive import LayerConfig, derive, vjp
from symcnn.checking.examples import EXAMPLE_LIST, EXAMPLES, check, check_all
from symcnn.symbolic.tensors import symbol_array, upstream_array

POOL_INPUT = [[1, 5, 4], [9, 2, 1], [6, 3, 2]]  # document 002's pooling input


def plain(expr) -> sympy.Expr:
    """``expr`` with every symbol replaced by an assumption-free symbol of the same name.

    The documents' formulas parse to plain symbols; symcnn's symbols are real. Comparing by
    name checks the symbol names as well as the algebra.
    """
    expr = sympy.sympify(expr)
    return expr.xreplace({s: sympy.Symbol(s.name) for s in expr.free_symbols})


def assert_matrix_equals(actual: Array, expected_rows: list[list[str]]) -> None:
    """``actual`` is a ``(1, 1, H, W)`` array equal, entry by entry, to the document's matrix."""
    height, width = len(expected_rows), len(expected_rows[0])
    assert tuple(actual.shape) == (1, 1, height, width)
    for i, row in enumerate(expected_rows):
        for j, text in enumerate(row):
            difference = sympy.expand(plain(actual[0, 0, i, j]) - sympy.sympify(text))
            assert difference == 0, f"entry ({i}, {j}): derived {actual[0, 0, i, j]}, document {text}"


# --- every example passes its check ---------------------------------------------------------------


def test_example_names_are_unique_and_indexed():
    names = [example.name for example in EXAMPLE_LIST]
    assert len(names) == len(set(names))
    assert set(EXAMPLES) == set(names)
    assert len(names) >= 14


@pytest.mark.parametrize("example", EXAMPLE_LIST, ids=[example.name for example in EXAMPLE_LIST])
def test_worked_example_reproduces_its_document(example):
    result = check(example)
    assert result.status == "ok", result.mismatches
    assert result.mismatches == ()
    assert result.checked == len(example.expected) > 0
    assert result.name == example.name and result.document == example.document


def test_completed_keys_are_expected_keys():
    for example in EXAMPLE_LIST:
        assert set(example.completed) <= set(example.expected), example.name


def test_check_all_is_all_ok():
    results = check_all()
    assert [r.name for r in results] == [e.name for e in EXAMPLE_LIST]
    assert all(r.status == "ok" for r in results)


# --- document 002, asserted as the document writes it -------------------------------------------


@pytest.fixture(scope="module")
def conv_3x3_2x2():
    return derive(LayerConfig("conv2d", input_size=(3, 3), kernel=(2, 2), bias=False))


def test_conv_3x3_2x2_output_as_document_002(conv_3x3_2x2):
    assert_matrix_equals(conv_3x3_2x2.output, [
        ["x00*w00 + x01*w01 + x10*w10 + x11*w11", "x01*w00 + x02*w01 + x11*w10 + x12*w11"],
        ["x10*w00 + x11*w01 + x20*w10 + x21*w11", "x11*w00 + x12*w01 + x21*w10 + x22*w11"],
    ])


def test_conv_3x3_2x2_weight_gradient_as_document_002(conv_3x3_2x2):
    assert_matrix_equals(conv_3x3_2x2.gradients["grad_weight"], [
        ["a*x00 + b*x01 + c*x10 + d*x11", "a*x01 + b*x02 + c*x11 + d*x12"],
        ["a*x10 + b*x11 + c*x20 + d*x21", "a*x11 + b*x12 + c*x21 + d*x22"],
    ])


def test_conv_3x3_2x2_full_input_gradient(conv_3x3_2x2):
    """All nine entries of dL/dX (the document lists four; the rest follow the same pattern)."""
    assert_matrix_equals(conv_3x3_2x2.gradients["grad_input"], [
        ["a*w00", "a*w01 + b*w00", "b*w01"],
        ["a*w10 + c*w00", "a*w11 + b*w10 + c*w01 + d*w00", "b*w11 + d*w01"],
        ["c*w10", "c*w11 + d*w10", "d*w11"],
    ])


def test_conv_3x3_2x2_has_no_bias_gradient(conv_3x3_2x2):
    assert set(conv_3x3_2x2.gradients) == {"grad_input", "grad_weight"}


def _seeds_directory() -> Path | None:
    candidates = [os.environ.get("SYMCNN_SEEDS", "")]
    here = Path(__file__).resolve()
    candidates += [str(parent / "shared" / "seeds") for parent in here.parents]
    for candidate in candidates:
        if candidate and Path(candidate, "002_51c52be4557c38c6.txt").is_file():
            return Path(candidate)
    return None


def _document_equations(text: str) -> dict[str, str]:
    """``{"y00": "...", "dL/dw00": "...", "dL/dx00": "..."}`` parsed from document 002's LaTeX."""
    equations = {}
    pattern = re.compile(r"^(?:\\frac\{\\partial L\}\{\\partial ([wx])_\{(\d\d)\}\}|y_\{(\d\d)\})"
                         r"\s*&=\s*(.*?)\s*(?:\\\\)?$")
    for line in text.splitlines():
        match = pattern.match(line.strip())
        if not match:
            continue
        letter, digits, y_digits, rhs = match.groups()
        name = f"dL/d{letter}{digits}" if letter else f"y{y_digits}"
        rhs = re.sub(r"([a-z])_\{(\d+)\}", r"\1\2", rhs.replace(r"\cdot", "*"))
        equations[name] = rhs
    return equations


def test_conv_equations_parsed_from_document_002_text(conv_3x3_2x2):
    """Read document 002 itself (where available) and compare every equation it writes."""
    seeds = _seeds_directory()
    if seeds is None:
        pytest.skip("the reference documents (shared/seeds) are not available")
    equations = _document_equations((seeds / "002_51c52be4557c38c6.txt").read_text(encoding="utf-8"))
    assert len(equations) == 12  # four y, four dL/dw, four dL/dx
    derived = {}
    for index in [(i, j) for i in range(3) for j in range(3)]:
        derived[f"dL/dx{index[0]}{index[1]}"] = conv_3x3_2x2.gradients["grad_input"][(0, 0) + index]
    for i in range(2):
        for j in range(2):
            derived[f"y{i}{j}"] = conv_3x3_2x2.output[0, 0, i, j]
            derived[f"dL/dw{i}{j}"] = conv_3x3_2x2.gradients["grad_weight"][0, 0, i, j]
    for name, rhs in equations.items():
        assert sympy.expand(plain(derived[name]) - sympy.sympify(rhs)) == 0, (name, rhs, derived[name])


def test_maxpool_3x3_k2s1_as_document_002():
    result = derive(LayerConfig("maxpool2d", input_size=(3, 3), kernel=(2, 2), stride=(1, 1)),
                    values=Array([[POOL_INPUT]]))
    assert result.output.tolist() == [[[[9, 5], [9, 3]]]]
    assert_matrix_equals(result.gradients["grad_input"], [["0", "b", "0"], ["a + c", "0", "0"], ["0", "d", "0"]])


def test_avgpool_3x3_k2s1_as_document_002():
    result = derive(LayerConfig("avgpool2d", input_size=(3, 3), kernel=(2, 2), stride=(1, 1)),
                    values=Array([[POOL_INPUT]]))
    output = result.output.tolist()[0][0]
    assert output == [[Rational(17, 4), 3], [5, 2]]
    assert all(isinstance(value, (sympy.Rational, sympy.Integer)) for row in output for value in row)  # exact
    assert_matrix_equals(result.gradients["grad_input"], [
        ["a/4", "a/4 + b/4", "b/4"],
        ["a/4 + c/4", "a/4 + b/4 + c/4 + d/4", "b/4 + d/4"],
        ["c/4", "c/4 + d/4", "d/4"],
    ])


def test_global_avgpool_as_document_002():
    x = symbol_array("x", (1, 1, 3, 3))
    y = layers.global_avgpool(x)
    assert tuple(y.shape) == (1, 1, 1, 1)
    total = " + ".join(f"x{i}{j}" for i in range(3) for j in range(3))
    assert sympy.expand(plain(y[0, 0, 0, 0]) - sympy.sympify(f"({total})/9")) == 0
    grad = vjp(y, upstream_array(y.shape), {"x": x})["x"]
    assert_matrix_equals(grad, [["g00/9"] * 3] * 3)
    numeric = layers.global_avgpool(Array([[POOL_INPUT]]))
    assert numeric[0, 0, 0, 0] == Rational(33, 9)


# --- the other documents' key results -----------------------------------------------------------


def test_document_001_output_sizes():
    assert tuple(layers.conv2d(symbol_array("x", (1, 1, 6, 6)), symbol_array("w", (1, 1, 3, 3))).shape) == (1, 1, 4, 4)
    assert tuple(layers.maxpool2d(symbol_array("x", (1, 1, 4, 4)), kernel=2, stride=2).shape) == (1, 1, 2, 2)
    assert LayerConfig("conv2d", input_size=6, kernel=3).output_shape == (1, 1, 4, 4)


def test_document_003_activation_derivatives_at_their_cases():
    x = symbol_array("x", (1, 3))
    point = {x[0, 0]: Rational(3, 2), x[0, 1]: 0, x[0, 2]: Rational(-2)}
    alpha = Rational(1, 5)
    g = Array([[1, 1, 1]])
    relu = vjp(layers.relu(x), g, {"x": x})["x"].applyfunc(lambda e: e.xreplace(point))
    leaky = vjp(layers.leaky_relu(x, alpha), g, {"x": x})["x"].applyfunc(lambda e: e.xreplace(point))
    elu = vjp(layers.elu(x, alpha), g, {"x": x})["x"].applyfunc(lambda e: e.xreplace(point))
    assert relu.tolist() == [[1, 0, 0]]
    assert leaky.tolist() == [[1, alpha, alpha]]
    # ELU: f'(x) = f(x) + alpha for x <= 0, with f(x) = alpha*(e^x - 1).
    assert sympy.simplify(elu[0, 1] - alpha) == 0
    assert sympy.simplify(elu[0, 2] - (alpha * (sympy.exp(-2) - 1) + alpha)) == 0
    assert elu[0, 0] == 1


# --- the checker can fail -----------------------------------------------------------------------


def _with_expected(name: str, key: str, value):
    example = EXAMPLES[name]
    return dataclasses.replace(example, expected={**example.expected, key: value})


def _mismatched_keys(result) -> list[str]:
    return [mismatch.split(":", 1)[0] for mismatch in result.mismatches]


def test_check_reports_wrong_conv_input_gradient():
    rows = [["a", "b", "c"], ["d", "a", "b"], ["c", "d", "a"]]
    wrong = Array([[[[sympy.Symbol(n, real=True) for n in row] for row in rows]]])
    result = check(_with_expected("conv_3x3_2x2", "dL/dX", wrong))
    assert result.status == "mismatch"
    assert _mismatched_keys(result) == ["dL/dX"]


def test_check_reports_one_wrong_entry_in_conv_output():
    example = EXAMPLES["conv_3x3_2x2"]
    rows = example.expected["Y"].tolist()
    rows[0][0][1][1] = rows[0][0][1][1] + sympy.Symbol("w00", real=True)  # one extra term
    result = check(_with_expected("conv_3x3_2x2", "Y", Array(rows)))
    assert result.status == "mismatch"
    assert _mismatched_keys(result) == ["Y"]


def test_check_reports_maxpool_routed_to_the_wrong_maximum():
    a, b, c, d = (sympy.Symbol(n, real=True) for n in "abcd")
    routed_wrong = Array([[[[0, b, 0], [a, 0, 0], [c, d, 0]]]])
    result = check(_with_expected("maxpool_3x3_k2s1", "dL/dX", routed_wrong))
    assert result.status == "mismatch"
    assert _mismatched_keys(result) == ["dL/dX"]


def test_check_reports_avgpool_decimal_off_by_a_little():
    result = check(_with_expected("avgpool_3x3_k2s1", "Y", Array([[[[Rational(42, 10), 3], [5, 2]]]])))
    assert result.status == "mismatch"
    assert "Y" in _mismatched_keys(result)


def test_check_reports_wrong_count_and_wrong_shape():
    count = check(_with_expected("dense_weight_count", "weights", 120_000_001))
    assert count.status == "mismatch" and _mismatched_keys(count) == ["weights"]
    shape = check(_with_expected("seed004_shapes", "diagram flatten", (4096,)))
    assert shape.status == "mismatch" and _mismatched_keys(shape) == ["diagram flatten"]


def test_check_reports_relu_derivative_one_at_zero():
    result = check(_with_expected("relu_derivative", "x = 0", 1))
    assert result.status == "mismatch" and _mismatched_keys(result) == ["x = 0"]


def test_check_reports_a_key_that_is_not_derived():
    result = check(_with_expected("conv_output_size_6x6", "no such value", 4))
    assert result.status == "mismatch"
    assert any("not derived" in mismatch for mismatch in result.mismatches)
    assert _mismatched_keys(result) == ["no such value"]


def test_check_reports_softmax_gradient_without_the_label():
    example = EXAMPLES["softmax_ce_gradient"]
    p_only = example.expected["dL/dz"].applyfunc(
        lambda e: e.xreplace({s: 0 for s in e.free_symbols if s.name.startswith("y")}))
    result = check(_with_expected("softmax_ce_gradient", "dL/dz", p_only))
    assert result.status == "mismatch" and _mismatched_keys(result) == ["dL/dz"]
