"""The ``symcnn`` command, run in-process (``symcnn.cli.main.main``) and once as ``python -m symcnn``.

Output is checked for content, not only for success: the JSON of ``derive`` is evaluated at
random numbers through its ``symbols`` table and compared with the NumPy reference, and the
text of document 002's examples is parsed back and compared with the document. Every bad
input gets exit status 2, exactly one line on stderr naming the option, nothing on stdout.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy

from tests import numpy_reference as ref
from symcnn.checking import examples as examples_module
from symcnn.cli.main import main
from symcnn.checking.documents import REFERENCE_DOCUMENTS, reference
from symcnn.checking.examples import EXAMPLE_LIST, EXAMPLES

REPO = Path(__file__).resolve().parents[2]
DOCUMENT_POOL_INPUT = "1,5,4;9,2,1;6,3,2"


def run(argv, capsys):
    """``(exit status, stdout, stderr)`` of ``symcnn argv``, whether main returns or exits."""
    try:
        status = main(list(argv))
    except SystemExit as exit_:
        status = exit_.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def text_equations(text: str) -> dict[str, sympy.Expr]:
    """``{"y00": expr, "dL/dx01": expr, ...}`` from the text format's ``  name = expr`` lines."""
    equations = {}
    for line in text.splitlines():
        if line.startswith("  ") and " = " in line:
            name, expr = line.strip().split(" = ", 1)
            equations[name] = sympy.sympify(expr)
    return equations


def nested_shape(value) -> tuple[int, ...]:
    """The shape of a rectangular nested list of strings (asserting it is rectangular)."""
    if not isinstance(value, list):
        assert isinstance(value, str), value
        return ()
    shapes = {nested_shape(item) for item in value}
    assert len(shapes) == 1, f"ragged nesting: {shapes}"
    return (len(value), *shapes.pop())


def leaves(value):
    if isinstance(value, list):
        for item in value:
            yield from leaves(item)
    else:
        yield value


def parsed(nested) -> np.ndarray:
    """A nested list of strings as a NumPy object array of SymPy expressions."""
    array = np.empty(nested_shape(nested), dtype=object)
    flat = [sympy.sympify(text) for text in leaves(nested)]
    for position, index in enumerate(np.ndindex(array.shape)):
        array[index] = flat[position]
    return array


# --- examples -----------------------------------------------------------------------------------


def test_examples_lists_every_name(capsys):
    status, out, err = run(["examples"], capsys)
    assert status == 0 and err == ""
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == [example.name for example in EXAMPLE_LIST]
    headings = [line for line in out.splitlines() if not line.startswith("  ")]
    # Each document by number and title, with its file name: nothing to open elsewhere.
    assert headings == [reference(name).heading for name in dict.fromkeys(e.document for e in EXAMPLE_LIST)]
    assert headings[0].startswith("Document 002: Convolution and pooling")


def test_examples_json_lists_every_name_with_its_document(capsys):
    status, out, _ = run(["examples", "--json"], capsys)
    assert status == 0
    entries = json.loads(out)
    assert [entry["name"] for entry in entries] == [example.name for example in EXAMPLE_LIST]
    assert all(entry["document"] == EXAMPLES[entry["name"]].document for entry in entries)


def test_examples_check_prints_the_table_and_exits_0(capsys):
    status, out, err = run(["examples", "--check"], capsys)
    assert status == 0 and err == ""
    lines = out.splitlines()
    assert lines[0] == REFERENCE_DOCUMENTS[2].heading
    for example in EXAMPLE_LIST:
        row = next(line for line in lines if line.split()[0] == example.name)
        count = len(example.expected)
        assert f"ok ({count} value{'s' if count != 1 else ''})" in row
    assert lines[-1] == f"{len(EXAMPLE_LIST)} of {len(EXAMPLE_LIST)} examples reproduce their documents"


def test_examples_check_json_is_all_ok(capsys):
    status, out, _ = run(["examples", "--check", "--json"], capsys)
    assert status == 0
    results = json.loads(out)
    assert [r["name"] for r in results] == [example.name for example in EXAMPLE_LIST]
    assert all(r["status"] == "ok" and r["mismatches"] == [] for r in results)
    assert all(r["checked"] == len(EXAMPLES[r["name"]].expected) for r in results)


def test_examples_check_exits_1_on_a_mismatch(capsys, monkeypatch):
    example = EXAMPLES["dense_weight_count"]
    broken = dataclasses.replace(example, expected={"weights": 1})
    monkeypatch.setattr(examples_module, "EXAMPLE_LIST", [EXAMPLES["conv_output_size_6x6"], broken])
    status, out, _ = run(["examples", "--check"], capsys)
    assert status == 1
    assert "mismatch" in out and "weights: document 1" in out
    assert out.splitlines()[-1] == "1 of 2 examples reproduce their documents"
    status, out, _ = run(["examples", "--check", "--json"], capsys)
    assert status == 1
    assert [r["status"] for r in json.loads(out)] == ["ok", "mismatch"]


# --- derive: document 002 -----------------------------------------------------------------------

DOCUMENT_CONV = {
    "y00": "x00*w00 + x01*w01 + x10*w10 + x11*w11",
    "y11": "x11*w00 + x12*w01 + x21*w10 + x22*w11",
    "dL/dw00": "a*x00 + b*x01 + c*x10 + d*x11",
    "dL/dw11": "a*x11 + b*x12 + c*x21 + d*x22",
    "dL/dx00": "a*w00",
    "dL/dx01": "a*w01 + b*w00",
    "dL/dx10": "a*w10 + c*w00",
    "dL/dx11": "a*w11 + b*w10 + c*w01 + d*w00",
    "dL/dx22": "d*w11",
}


def test_derive_conv2d_json_names_symbols_as_document_002(capsys):
    status, out, _ = run(["derive", "conv2d", "--input", "3x3", "--kernel", "2", "--no-bias", "--format", "json"],
                         capsys)
    assert status == 0
    symbols = json.loads(out)["symbols"]
    expected = {f"x{i}{j}": ["input", [0, 0, i, j]] for i in range(3) for j in range(3)}
    expected.update({f"w{i}{j}": ["weight", [0, 0, i, j]] for i in range(2) for j in range(2)})
    expected.update({name: ["grad_output", [0, 0, i, j]]
                     for name, (i, j) in zip("abcd", [(0, 0), (0, 1), (1, 0), (1, 1)])})
    assert symbols == expected


def test_derive_conv2d_text_reproduces_document_002(capsys):
    status, out, err = run(["derive", "conv2d", "--input", "3x3", "--kernel", "2", "--no-bias"], capsys)
    assert status == 0 and err == ""
    equations = text_equations(out)
    assert len(equations) == 4 + 4 + 9
    assert not any(name.startswith("dL/db") for name in equations)
    for name, expected in DOCUMENT_CONV.items():
        assert sympy.expand(equations[name] - sympy.sympify(expected)) == 0, name


def test_derive_maxpool2d_text_reproduces_document_002(capsys):
    argv = ["derive", "maxpool2d", "--input", "3x3", "--kernel", "2", "--stride", "1", "--values", DOCUMENT_POOL_INPUT]
    status, out, err = run(argv, capsys)
    assert status == 0 and err == ""
    equations = text_equations(out)
    assert {name: equations[name] for name in ("y00", "y01", "y10", "y11")} == {"y00": 9, "y01": 5, "y10": 9, "y11": 3}
    a, b, c, d = sympy.symbols("a b c d")
    expected = {"dL/dx00": 0, "dL/dx01": b, "dL/dx02": 0, "dL/dx10": a + c, "dL/dx11": 0,
                "dL/dx12": 0, "dL/dx20": 0, "dL/dx21": d, "dL/dx22": 0}
    assert {name: value for name, value in equations.items() if name.startswith("dL/dx")} == expected


def test_derive_maxpool2d_json_reproduces_document_002(capsys):
    argv = ["derive", "maxpool2d", "--input", "3x3", "--kernel", "2", "--stride", "1",
            "--values", DOCUMENT_POOL_INPUT, "--format", "json"]
    status, out, _ = run(argv, capsys)
    assert status == 0
    result = json.loads(out)
    assert "grad_weight" not in result and "grad_bias" not in result
    assert parsed(result["output"]).tolist() == [[[[9, 5], [9, 3]]]]
    a, b, c, d = sympy.symbols("a b c d")
    assert parsed(result["grad_input"]).tolist() == [[[[0, b, 0], [a + c, 0, 0], [0, d, 0]]]]
    assert parsed(result["input_values"]).tolist() == [[[[1, 5, 4], [9, 2, 1], [6, 3, 2]]]]
    assert result["symbols"] == {name: ["grad_output", [0, 0, i, j]]
                                 for name, (i, j) in zip("abcd", [(0, 0), (0, 1), (1, 0), (1, 1)])}


def test_derive_avgpool2d_text_gives_exact_quarter(capsys):
    argv = ["derive", "avgpool2d", "--input", "3x3", "--kernel", "2", "--stride", "1", "--values", DOCUMENT_POOL_INPUT]
    status, out, _ = run(argv, capsys)
    assert status == 0
    equations = text_equations(out)
    assert equations["y00"] == sympy.Rational(17, 4)
    assert sympy.expand(equations["dL/dx11"] - sympy.sympify("(a + b + c + d)/4")) == 0


def test_derive_latex_writes_partial_derivatives(capsys):
    status, out, _ = run(["derive", "conv2d", "--input", "3x3", "--kernel", "2", "--no-bias", "--format", "latex"],
                         capsys)
    assert status == 0
    assert r"\frac{\partial L}{\partial w_{00}}" in out
    assert r"\frac{\partial L}{\partial x_{22}}" in out
    assert r"\begin{aligned}" in out and r"\end{aligned}" in out
    assert r"\partial b" not in out  # --no-bias


# --- derive: JSON evaluated through its symbol table --------------------------------------------

JSON_CASES = {
    "document 002 conv": (["conv2d", "--input", "3x3", "--kernel", "2", "--no-bias"],
                          dict(stride=1, padding=0, dilation=1)),
    "README conv": (["conv2d", "--input", "5x4", "--kernel", "3x2", "--channels-in", "2", "--channels-out", "2",
                     "--stride", "2", "--padding", "1", "--dilation", "2", "--batch", "2"],
                    dict(stride=2, padding=1, dilation=2)),
    "asymmetric conv": (["conv2d", "--input", "4x5", "--kernel", "2x3", "--stride", "1x2", "--padding", "0x1",
                         "--dilation", "2x1", "--channels-out", "2"],
                        dict(stride=(1, 2), padding=(0, 1), dilation=(2, 1))),
}


@pytest.mark.parametrize("name", list(JSON_CASES))
def test_derive_conv2d_json_matches_numpy_reference_at_random_values(capsys, name):
    argv, arguments = JSON_CASES[name]
    status, out, err = run(["derive", *argv, "--format", "json"], capsys)
    assert status == 0 and err == ""
    result = json.loads(out)
    config = result["config"]
    has_bias = "--no-bias" not in argv
    expected_keys = {"output", "grad_input", "grad_weight"} | ({"grad_bias"} if has_bias else set())
    assert expected_keys <= set(result)
    assert ("grad_bias" in result) == has_bias

    output, grad_input, grad_weight = (parsed(result[key]) for key in ("output", "grad_input", "grad_weight"))
    assert output.shape == tuple(config["output_shape"]) and len(output.shape) == 4
    assert grad_input.shape == tuple(config["input_shape"])
    assert grad_weight.shape == tuple(config["weight_shape"])

    # Random numbers for every symbol, placed by the position the table gives.
    shapes = {"input": tuple(config["input_shape"]), "weight": tuple(config["weight_shape"]),
              "grad_output": tuple(config["output_shape"])}
    if has_bias:
        shapes["bias"] = (config["weight_shape"][0],)
        grad_bias = parsed(result["grad_bias"])
        assert grad_bias.shape == shapes["bias"]
    rng = np.random.default_rng(2024)
    values = {role: rng.uniform(-2, 2, shape) for role, shape in shapes.items()}
    substitution = {}
    seen_positions = set()
    for symbol_name, (role, index) in result["symbols"].items():
        assert role in shapes and len(index) == len(shapes[role]), symbol_name
        assert (role, tuple(index)) not in seen_positions
        seen_positions.add((role, tuple(index)))
        substitution[sympy.Symbol(symbol_name)] = sympy.Float(values[role][tuple(index)])
    assert len(seen_positions) == sum(int(np.prod(shape)) for shape in shapes.values())  # every element named

    def numeric(array):
        for expr in array.flat:
            assert expr.free_symbols <= set(substitution), expr.free_symbols - set(substitution)
        return np.vectorize(lambda expr: float(expr.xreplace(substitution)), otypes=[float])(array)

    bias = values.get("bias")
    np.testing.assert_allclose(numeric(output), ref.conv2d(values["input"], values["weight"], bias, **arguments),
                               rtol=1e-9, atol=1e-12)
    gx, gw, gb = ref.conv2d_backward(values["input"], values["weight"], values["grad_output"], **arguments)
    np.testing.assert_allclose(numeric(grad_input), gx, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(numeric(grad_weight), gw, rtol=1e-9, atol=1e-12)
    if has_bias:
        np.testing.assert_allclose(numeric(grad_bias), gb, rtol=1e-9, atol=1e-12)


def test_derive_dense_json_has_rank_2_tensors(capsys):
    status, out, _ = run(["derive", "dense", "--input", "3", "--channels-out", "2", "--batch", "2",
                          "--format", "json"], capsys)
    assert status == 0
    result = json.loads(out)
    assert parsed(result["output"]).shape == (2, 2)
    assert parsed(result["grad_input"]).shape == (2, 3)
    assert parsed(result["grad_weight"]).shape == (2, 3)
    assert parsed(result["grad_bias"]).shape == (2,)
    # dL/db[o] = sum over the batch of the upstream gradient of output o.
    g = {name: tuple(index) for name, (role, index) in result["symbols"].items() if role == "grad_output"}
    expected_b0 = sum(sympy.Symbol(name) for name, index in g.items() if index[1] == 0)
    assert sympy.expand(parsed(result["grad_bias"])[0] - expected_b0) == 0


# --- bad input ----------------------------------------------------------------------------------

BAD_DERIVE_ARGUMENTS = [
    pytest.param(["conv2d", "--input", "3x"], "--input", id="input-3x"),
    pytest.param(["conv2d", "--input", "axb"], "--input", id="input-axb"),
    pytest.param(["conv2d", "--input", "0"], "--input", id="input-0"),
    pytest.param(["conv2d", "--input", "3x3", "--kernel", "4"], "--kernel", id="kernel-too-large"),
    pytest.param(["conv2d", "--kernel", "2", "--dilation", "3"], "--kernel", id="dilated-kernel-too-large"),
    pytest.param(["conv2d", "--kernel", "0"], "--kernel", id="kernel-0"),
    pytest.param(["conv2d", "--stride", "0"], "--stride", id="stride-0"),
    pytest.param(["conv2d", "--stride", "1x0"], "--stride", id="stride-1x0"),
    pytest.param(["conv2d", "--dilation", "0"], "--dilation", id="dilation-0"),
    pytest.param(["conv2d", "--padding", "-1"], "--padding", id="padding-negative"),
    pytest.param(["conv2d", "--channels-in", "0"], "--channels-in", id="channels-in-0"),
    pytest.param(["conv2d", "--channels-out", "0"], "--channels-out", id="channels-out-0"),
    pytest.param(["conv2d", "--channels-in", "-2"], "--channels-in", id="channels-in-negative"),
    pytest.param(["conv2d", "--batch", "0"], "--batch", id="batch-0"),
    pytest.param(["maxpool2d", "--padding", "1"], "--padding", id="pool-padding"),
    pytest.param(["dense", "--input", "3x3"], "--input", id="dense-input-pair"),
    pytest.param(["conv2d", "--values", "1,2"], "--values", id="values-short"),
    pytest.param(["conv2d", "--values", "1,2,3,4,5,6,7,8,9,10"], "--values", id="values-long"),
    pytest.param(["conv2d", "--values", "1,2,3;4,5,6;7,8"], "--values", id="values-ragged"),
    pytest.param(["conv2d", "--values", "1,x,3;4,5,6;7,8,9"], "--values", id="values-not-a-number"),
    pytest.param(["conv2d", "--values", "nan,2,3;4,5,6;7,8,9"], "--values", id="values-nan"),
    pytest.param(["conv2d", "--values", ";;"], "--values", id="values-empty"),
    pytest.param(["conv2d", "--format", "yaml"], "--format", id="format-unknown"),
    pytest.param(["pool3d"], "OP", id="unknown-op"),
    pytest.param(["conv2d", "--values", "1/0,2,3;4,5,6;7,8,9"], "--values", id="values-division-by-zero"),
]


def assert_one_line_error(status, out, err, option):
    assert status == 2, (status, err)
    assert out == ""
    assert "Traceback" not in err
    assert err.endswith("\n") and len(err.splitlines()) == 1, err
    assert option in err, err


@pytest.mark.parametrize("argv, option", BAD_DERIVE_ARGUMENTS)
def test_derive_bad_input_is_one_line_exit_2(capsys, argv, option):
    assert_one_line_error(*run(["derive", *argv], capsys), option)


def test_derive_too_large_configuration_names_the_limit(capsys):
    status, out, err = run(["derive", "conv2d", "--input", "64x64", "--kernel", "3", "--channels-in", "4"], capsys)
    assert_one_line_error(status, out, err, "too large")
    assert "20,000" in err


def test_derive_unknown_op_lists_the_choices(capsys):
    status, out, err = run(["derive", "pool3d"], capsys)
    assert_one_line_error(status, out, err, "pool3d")
    assert all(op in err for op in ("conv2d", "maxpool2d", "avgpool2d", "dense"))


def test_bad_option_raises_system_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["derive", "conv2d", "--input", "3x"])
    assert exit_.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.splitlines()) == 1


def test_python_m_symcnn_bad_stride_in_a_subprocess():
    completed = subprocess.run(
        [sys.executable, "-m", "symcnn", "derive", "conv2d", "--stride", "0"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stdout == ""
    assert "Traceback" not in completed.stderr
    assert len(completed.stderr.splitlines()) == 1
    assert "--stride" in completed.stderr


@pytest.mark.parametrize("argv, message", [
    (["flatten", "--input", "2", "--stride", "0"], "--stride: flatten takes no stride"),
    (["global_avgpool", "--kernel", "9"], "--kernel: global_avgpool takes no kernel"),
    (["relu", "--no-bias"], "--no-bias: relu takes no bias"),
    (["maxpool2d", "--channels-out", "3"], "--channels-out: maxpool2d takes no channels out"),
    (["global_avgpool", "--kernel", "2x2"], "--kernel: global_avgpool takes no kernel"),  # the default, given
    (["relu", "--padding", "0"], "--padding: relu takes no padding"),
    (["maxpool2d", "--kernel", "2", "--dilation", "1"], "--dilation: maxpool2d takes no dilation"),
    (["dense", "--input", "4", "--channels-in", "3"], "--channels-in: --input 4 is a vector of features"),
    (["relu", "--input", "4", "--channels-in", "2"], "--channels-in: --input 4 is a vector of features"),
])
def test_derive_refuses_an_option_the_op_does_not_take(cli, argv, message):
    status, out, err = cli("derive", *argv)
    assert status == 2 and out == "" and message in err and len(err.strip().splitlines()) == 1
