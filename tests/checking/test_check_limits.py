"""Hostile formulas and options for ``symcnn check``: each refused in one line naming the field and
the limit (symcnn/checking/limits.py) before any runaway work, and at the CLI with exit status 2.

A table of hand-written cases (each a finding of the reliability review: a hang, runaway memory or
a traceback before the limits), the limits at their boundaries, the CLI's handling of the cases,
then hypothesis-generated formula text: the checker never raises anything but ``ValueError``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symcnn.checking import limits
from symcnn.checking.checker import check
from symcnn.checking.claims import ClaimSyntaxError
from symcnn.checking.parse import parse_claim
from symcnn.checking.result import CheckOptions, CheckResult
from symcnn.cli.main import main
from tests.checking.test_checker import FORWARD_000

ROOT = Path(__file__).resolve().parents[2]
CONV = r"Y_{i,j} = \sum_{m}\sum_{n} X_{i+m,j+n} W_{m,n}"
SUM_TO_A_BILLION = r"Y_{i,j} = \sum_{k=0}^{10^9} X_{i,j}"
POWER_TOWER = r"Y_{i,j} = 9^{9^{9^9}} X_{i,j}"
FACTORIAL = r"Y_{i,j} = (10^{10})! X_{i,j}"
NESTED_FRACTIONS = "y_{00} = " + r"\frac{1}{" * 200 + "x_{00}" + "}" * 200
LONG_SUM = "y_{00} = " + " + ".join(["x_{00}"] * 20_000)
INPUT_SUMS = (r"Y_{i,j} = X_{i,j} \sum_{a=0}^{H_{in}-1}\sum_{b=0}^{H_{in}-1}\sum_{c=0}^{H_{in}-1}"
              r"\sum_{d=0}^{H_{in}-1} 1")

# name: (formula, against, options, the start of the message)
CASES = {
    "a sum to 10^9": (SUM_TO_A_BILLION, "conv2d", {}, "formula: k runs to 1,000,000,000"),
    "a sum to 10^9 in SymPy syntax": ("Y[i, j] = Sum(X[i, j], (k, 0, 10**9))", "conv2d", {}, "formula: k runs to"),
    "an element-wise sum to 10^9": (r"y_{00} = \sum_{k=0}^{10^9} x_{00}", "conv_3x3_2x2", {}, "formula: k runs to"),
    "a range to 10^9": (r"Y_{i,j} = X_{i+u,j} \text{ where } u \in \{0, \dots, 1000000000\}", "conv2d", {},
                        "formula: u runs to"),
    "a sum of e^k to 20000": (r"y_{00} = \lfloor \sum_{k=1}^{20000} e^{k} \rfloor", "conv_3x3_2x2", {},
                              "formula: an exponent of"),
    "a sum over the input, 4 deep": (INPUT_SUMS, "conv2d", {"input_size": 30, "kernel": 2},
                                     "formula: at N=1, C_in=1, C_out=1, input 30x30"),
    "a power tower": (POWER_TOWER, "conv2d", {}, "formula: an exponent of 387,420,489"),
    "a power tower in SymPy syntax": ("Y[i, j] = 9**9**9**9 * X[i, j]", "conv2d", {}, "formula: an exponent of"),
    "a power tower of the stride": (r"Y_{i,j} = s^{s^{s^{s}}} X_{i,j}", "conv2d", {"stride": 3},
                                    "formula: an exponent of 7,625,597,484,987"),
    "e^(e^99)": (r"y_{00} = e^{e^{99}}", "conv_3x3_2x2", {}, "formula: an exponent of"),
    "floor(exp(exp(100)))": ("y00 = floor(exp(exp(100)))", "conv_3x3_2x2", {}, "formula: an exponent of"),
    "the factorial of 10^10": (FACTORIAL, "conv2d", {}, "formula: the factorial of 10,000,000,000"),
    "9!!": (r"y_{00} = 9!!", "conv_3x3_2x2", {}, "formula: the factorial of 362,880"),
    "a 1501-digit number": ("y00 = 1" + "0" * 1500, "conv_3x3_2x2", {}, "formula: a number of 1,501 digits"),
    "1e999999": ("y00 = 1e999999", "conv_3x3_2x2", {}, "formula: the number '1e999999'"),
    "a 90th power of a sum": (r"y_{00} = (x_{00} + x_{01} + x_{02} + x_{10} + x_{11})^{90}", "conv_3x3_2x2", {},
                              "formula: an expression that expands to more than 20,000 terms"),
    "200 nested fractions": (NESTED_FRACTIONS, "conv_3x3_2x2", {}, "formula: longer than 2,000 characters"),
    "30 nested fractions": ("y_{00} = " + r"\frac{1}{" * 30 + "x_{00}" + "}" * 30, "conv_3x3_2x2", {},
                            "formula: brackets, sums or powers nested 31 deep"),  # x_{00} is one more
    "a 20,000-term sum": (LONG_SUM, "conv_3x3_2x2", {}, "formula: longer than 2,000 characters"),
    "100 nested parentheses": ("y00 = " + "(" * 100 + "x00" + ")" * 100, "conv_3x3_2x2", {},
                               "formula: brackets, sums or powers nested 100 deep"),
    "a tower of 200 powers in SymPy syntax": ("y00 = " + "**".join(["a"] * 200), "conv_3x3_2x2", {},
                                              "formula: brackets, sums or powers nested"),
    "700 minus signs": ("y_{00} = " + "-" * 700 + "x_{00}", "conv_3x3_2x2", {}, "formula: 711 tokens"),
    "--input 100000x100000": (CONV, "conv2d", {"input_size": (100000, 100000)},
                              "input_size: at most 64 per side (the checker's limit), got 100000x100000"),
    "--input 100000x100000, element-wise": ("y_{00} = x_{00}", "conv2d", {"input_size": (100000, 100000)},
                                            "input_size: at most 64 per side"),
    "--input 10^6 features": ("Y_{b,j} = X_{b,j}", "dense", {"input_size": 10**6}, "input_size: at most 4,096"),
    "--kernel 1000": (CONV, "conv2d", {"kernel": 1000}, "kernel: at most 16 per side"),
    "--dilation 2^64": (CONV, "conv2d", {"dilation": 2**64}, "dilation: at most 16 per side"),
    "--channels-in 10^6": (CONV, "conv2d", {"channels_in": 10**6}, "channels_in: at most 64"),
    "--batch 10^30": (CONV, "conv2d", {"batch": 10**30}, "batch: at most 16"),
    "--values a million numbers": ("y_{00} = x_{00}", "relu", {"values": [1] * 10**6}, "values: at most 20,000"),
    "a configuration too large": (CONV, "conv2d", {"input_size": 64, "kernel": 3},
                                  "configuration: N=1, C_in=1, C_out=1, input 64x64, kernel 3x3"),
    "a search too large": (FORWARD_000, "conv2d", dict(input_size=20, kernel=3, channels_in=2, channels_out=2,
                                                       batch=1), "configuration: the 9 configurations to search"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_a_hostile_formula_or_option_is_refused_in_one_line(case):
    formula, against, options, start = case
    began = time.perf_counter()
    with pytest.raises(ValueError) as error:
        check(formula, against, CheckOptions(**options))
    message = str(error.value)
    assert "\n" not in message and len(message) < 300, message
    assert message.startswith(start), message
    assert "limit" in message, message
    assert time.perf_counter() - began < 20  # a bound on runaway work, not a speed test


# --- the limits at their boundaries ----------------------------------------------------------------------------


def parses(formula: str) -> bool:
    try:
        parse_claim(formula, elements=True)
    except ClaimSyntaxError as error:
        assert "limit" in str(error)
        return False
    return True


def test_length_tokens_and_nesting_are_refused_one_past_their_limits():
    spaced = "y00 = x" + " " * (limits.MAX_FORMULA_CHARACTERS - 7)
    assert parses(spaced) and not parses(spaced + " ")
    chain = "y00 = x" + " + x" * ((limits.MAX_FORMULA_TOKENS - 4) // 2)  # y, 00, =, x, then + x
    assert parses(chain) and not parses(chain + " + x")
    depth = limits.MAX_NESTING_DEPTH
    assert parses("y_{00} = " + r"\frac{1}{" * depth + "x" + "}" * depth)
    assert not parses("y_{00} = " + r"\frac{1}{" * (depth + 1) + "x" + "}" * (depth + 1))


def test_numbers_exponents_factorials_and_sums_are_refused_one_past_their_limits():
    assert parses("y00 = " + "9" * limits.MAX_NUMBER_DIGITS) and not parses("y00 = " + "9" * 101)
    assert parses(f"y00 = x00**{limits.MAX_EXPONENT}") and not parses(f"y00 = x00**{limits.MAX_EXPONENT + 1}")
    assert parses(r"y_{00} = 10^{99}") and not parses(r"y_{00} = 10^{100} \cdot 10")
    assert parses(f"y_{{00}} = {limits.MAX_FACTORIAL_ARGUMENT}!") and not parses("y_{00} = 51!")
    assert parses(r"y_{00} = \sum_{k=1}^{20000} x_{00}") and not parses(r"y_{00} = \sum_{k=0}^{20000} x_{00}")


def test_options_are_refused_one_past_their_limits():
    side = limits.MAX_INPUT_SIDE
    limits.check_options(CheckOptions(input_size=(side, side), kernel=16, channels_in=64, batch=16), False)
    limits.check_options(CheckOptions(input_size=limits.MAX_INPUT_FEATURES), flat_input=True)
    for options, flat in ((CheckOptions(input_size=(side, side + 1)), False),
                          (CheckOptions(input_size=side + 1), False),
                          (CheckOptions(input_size=limits.MAX_INPUT_FEATURES + 1), True),
                          (CheckOptions(stride=(1, 17)), False), (CheckOptions(channels_out=65), False),
                          (CheckOptions(batch=17), False), (CheckOptions(values=[0] * 20_001), False)):
        with pytest.raises(ValueError, match="the checker's limit"):
            limits.check_options(options, flat)


def test_a_claim_near_the_limits_is_still_checked():
    result = check(CONV, "conv2d", CheckOptions(input_size=8, kernel=3))
    assert result.correct and result.checked == 1
    nested = r"Y_{i,j} = \sum_{m}\sum_{n} " + r"\frac{" * 10 + "X_{i+m,j+n} W_{m,n}" + "}{1}" * 10
    assert check(nested, "conv2d").correct


# --- the CLI ----------------------------------------------------------------------------------------------------

CLI_CASES = {
    "a sum to 10^9": ([SUM_TO_A_BILLION, "--against", "conv2d"], "FORMULA: k runs to 1,000,000,000"),
    "a power tower": ([POWER_TOWER, "--against", "conv2d"], "FORMULA: an exponent of 387,420,489"),
    "the factorial of 10^10": ([FACTORIAL, "--against", "conv2d"], "FORMULA: the factorial of"),
    "200 nested fractions": ([NESTED_FRACTIONS, "--against", "conv_3x3_2x2"], "FORMULA: longer than"),
    "a 20,000-term sum": ([LONG_SUM, "--against", "conv_3x3_2x2"], "FORMULA: longer than"),
    "--input 100000x100000": ([CONV, "--against", "conv2d", "--input", "100000x100000"],
                              "--input: at most 64 per side (the checker's limit), got 100000x100000"),
    "--kernel 1000": ([CONV, "--against", "conv2d", "--kernel", "1000"], "--kernel: at most 16"),
    "--channels-in 10^6": ([CONV, "--against", "conv2d", "--channels-in", "1000000"], "--channels-in: at most 64"),
    "--values 20,001 numbers": (["y_{00} = x_{00}", "--against", "relu", "--values", ",".join(["1"] * 20_001)],
                                "--values: at most 20,000 numbers"),
}


@pytest.mark.parametrize("case", CLI_CASES.values(), ids=list(CLI_CASES))
def test_the_cli_refuses_in_one_line_with_exit_status_2(case, capsys):
    arguments, start = case
    status = main(["check", *arguments])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"symcnn check: error: {start}"), err


@pytest.mark.parametrize("formula", [NESTED_FRACTIONS, LONG_SUM], ids=["200 nested fractions", "a 20,000-term sum"])
def test_python_m_symcnn_check_refuses_in_one_line(formula):
    completed = subprocess.run([sys.executable, "-m", "symcnn", "check", "-", "--against", "conv_3x3_2x2"],
                               input=formula, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert completed.returncode == 2 and completed.stdout == ""
    assert completed.stderr.startswith("symcnn check: error: FORMULA: longer than 2,000 characters")
    assert completed.stderr.count("\n") == 1 and "Traceback" not in completed.stderr


# --- random formula text -------------------------------------------------------------------------------------------

TOKENS = ["0", "1", "2", "9", "10", "99999", "x", "i", "j", "k", "m", "s", "p", "K", "e", "a", "X_{i,j}", "W_{m,n}",
          "x_{00}", "w_{00}", "X[i, j]", "dL/dX[i]", "=", "+", "-", "*", "**", "/", "^", "!", "{", "}", "(", ")", "[",
          "]", "_", ",", ";", "|", "'", ".", " ", "\\", "$", r"\frac", r"\frac{", r"\sum", r"\sum_{k=0}^{",
          r"\sum_{m}", r"\cdot", r"\left(", r"\right)", r"\sqrt", r"\lfloor", r"\rfloor", r"\max", r"\max_{u=0}^{",
          r"\mathbf{1}(", r"\text{ where }", r"\in", r"\{", r"\}", r"\dots", r"\begin{bmatrix}", r"\end{bmatrix}",
          "&", r"\\", r"\frac{\partial L}{\partial ", r"\delta^{[X]}_{", r"\le", "<", r"\mid", r"\exp", r"\log",
          r"\hat{y}", "c_{in}", "H_{out}", "Sum(", "exp(", "Max(", "floor(", "Rational(", "1e5", "0.5", "9^{9^{9}}"]


@settings(max_examples=40)
@given(st.sampled_from(["y_{00} = ", "Y_{i,j} = ", "Y[i, j] = ", ""]),
       st.lists(st.sampled_from(TOKENS), min_size=1, max_size=30),
       st.sampled_from(["conv_3x3_2x2", "conv2d", "relu", "dense", "maxpool2d"]))
def test_random_formula_text_gives_a_result_or_a_one_line_value_error(prefix, tokens, against):
    try:
        result = check(prefix + "".join(tokens), against)
    except ValueError as error:
        assert "\n" not in str(error)
    else:
        assert isinstance(result, CheckResult)
