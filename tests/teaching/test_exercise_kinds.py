"""The exercises of adaptive pooling, the transposed convolution and the normalizations (batch and layer).

Each kind's keys are checked independently (:mod:`tests.teaching.oracles`: PyTorch's
``adaptive_avg_pool2d``, ``adaptive_max_pool2d``, ``conv_transpose2d``, ``batch_norm`` and ``layer_norm`` in
float64, and SymPy's derivative of the expanded forward), at every level; then their givens (small, no
max ties, exact statistics), grading right and wrong answers of each kind, the Moodle export, and the same
sheet from the same seed in another process.
"""

from __future__ import annotations

import math
import random
import subprocess
import sys
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import pytest
import sympy

from symcnn import registry
from symcnn.checking.checker import check
from symcnn.checking.result import CheckOptions
from symcnn.symbolic.derive import LayerConfig, derive
from symcnn.symbolic.tensors import indices_of
from symcnn.teaching.documents import render
from symcnn.teaching.grading import grade
from symcnn.teaching.layer import configure, layer_exercise
from symcnn.teaching.moodle import moodle_xml
from symcnn.teaching.more import spot_exercise
from symcnn.teaching.normalization import statistics_exercise
from symcnn.teaching.sheet import Recipe, Sheet, make_sheet
from symcnn.teaching.statistics import compact_gradient, named_chain
from symcnn.teaching.topics import TOPICS, has_statistics
from tests.teaching.oracles import check_numeric_key, check_symbolic_key

ROOT = Path(__file__).resolve().parents[2]
NEW_OPS = ("adaptive_avgpool2d", "adaptive_maxpool2d", "conv_transpose2d", "batchnorm2d", "layernorm")
SEEDS = (0, 1)


def _exercise(op: str, level: int, seed: int, number: int = 1):
    topic = next(name for name in ("convolution", "pooling", "normalization") if op in TOPICS[name].ops())
    maker = statistics_exercise if has_statistics(registry.get(op)) else layer_exercise
    return maker(number, topic, op, level, random.Random(f"kinds/{op}/{level}/{seed}"))


@pytest.fixture(scope="module")
def exercises():
    return {(op, level, seed): _exercise(op, level, seed) for op in NEW_OPS for level in (1, 2, 3) for seed in SEEDS}


def test_each_new_op_is_in_its_topic_and_out_of_those_it_cannot_serve():
    assert {"adaptive_avgpool2d", "adaptive_maxpool2d"} <= set(TOPICS["pooling"].ops())
    assert "conv_transpose2d" in TOPICS["convolution"].ops()
    assert TOPICS["normalization"].ops() == ("batchnorm2d", "layernorm")
    assert "conv_transpose2d" not in TOPICS["network"].ops()  # the network pools a 2x2 map to one value
    assert not {"adaptive_avgpool2d", "batchnorm2d", "layernorm"} & set(TOPICS["spot"].ops())


@pytest.mark.parametrize("op", NEW_OPS)
def test_keys_equal_pytorch_and_sympy_at_every_level(exercises, torch, op):
    kinds = set()
    for level in (1, 2, 3):
        for seed in SEEDS:
            exercise = exercises[op, level, seed]
            if exercise.setup.values:
                check_numeric_key(torch, exercise)
                kinds.add("numbers")
            else:
                check_symbolic_key(torch, exercise)
                kinds.add("symbols")
    # a max pool's symbolic answer has cases (its routing): asked in numbers only
    assert kinds == ({"numbers"} if op == "adaptive_maxpool2d" else {"numbers", "symbols"})


def _windows(size: int, out: int) -> list[range]:
    """PyTorch's adaptive windows, from its documented rule: start floor(i*in/out), end ceil((i+1)*in/out)."""
    return [range(index * size // out, -(-(index + 1) * size // out)) for index in range(out)]


@pytest.mark.parametrize("op", ["adaptive_avgpool2d", "adaptive_maxpool2d"])
def test_adaptive_windows_are_small_at_level_1_and_overlap_at_level_3(exercises, op):
    for level in (1, 3):
        for seed in SEEDS:
            exercise = exercises[op, level, seed]
            (_, fields), = exercise.setup.layers
            windows = [_windows(size, out) for size, out in zip(fields["input_size"], fields["settings"]["output"])]
            overlaps = [any(set(first) & set(second) for first, second in zip(axis, axis[1:])) for axis in windows]
            if level == 1:
                assert all(len(window) == 2 for axis in windows for window in axis) and not any(overlaps)
            else:
                assert all(overlaps)
            spans = [", ".join(f"{window[0]}–{window[-1]}" for window in axis) for axis in windows]
            assert f"rows {spans[0]} and columns {spans[1]}" in exercise.statement
            if op == "adaptive_maxpool2d":
                values = exercise.setup.values["input"]
                flat = [values[index] for index in indices_of(values.shape)]
                assert len(set(flat)) == len(flat)  # no ties: one answer


def test_transposed_convolution_givens_are_small_and_output_padding_comes_at_level_3(exercises):
    paddings = set()
    for level in (1, 3):
        configs = [configure("conv_transpose2d", level, random.Random(seed)) for seed in range(8)]
        configs += [LayerConfig("conv_transpose2d", **exercises["conv_transpose2d", level, seed].setup.layers[0][1])
                    for seed in SEEDS]
        for config in configs:
            assert max(config.input_size) <= 3 and max(config.kernel) <= 3 and max(config.stride) <= 2
            assert math.prod(config.output_shape) <= 25  # the upstream gradient, a given
            if level == 1:
                assert config.settings["output_padding"] == (0, 0) and config.stride == (1, 1)
            else:
                paddings.add(config.settings["output_padding"])
    assert (1, 1) in paddings


def test_a_transposed_convolution_asks_its_output_too(torch):
    """Each input entry spreads over a window of the output: the forward is an exercise of its own, its key
    checked against PyTorch (numbers) and the convolution's adjoint written out here (symbols)."""
    found = set()
    for seed in range(12):
        for level in (1, 2):
            exercise = layer_exercise(1, "convolution", "conv_transpose2d", level, random.Random(seed))
            if exercise.setup.asked != "output" or level in found:
                continue
            assert [given.name for given in exercise.givens] in (["X", "W", "b"], ["X", "W"])  # no upstream
            (check_numeric_key if level == 1 else check_symbolic_key)(torch, exercise)
            found.add(level)
    assert found == {1, 2}


def test_spot_the_wrong_transposed_convolution_entry_at_level_3():
    """symcnn check is told the stride, padding and dilation (an output padding it cannot be told stays 0)."""
    for seed in (0, 3):
        exercise = spot_exercise(1, "conv_transpose2d", 3, random.Random(seed))
        (op, fields), = exercise.setup.layers
        assert fields["settings"]["output_padding"] == (0, 0)
        options = CheckOptions(**{key: fields[key] for key in ("input_size", "kernel", "stride", "padding", "dilation",
                                                               "channels_out")})
        verdicts = [check(choice, op, options).correct for choice in exercise.choices]
        assert verdicts.count(False) == 1 and "ABC"[verdicts.index(False)] == exercise.answer.value


@pytest.mark.parametrize("op", ["batchnorm2d", "layernorm"])
def test_normalization_numbers_are_exact_with_epsilon_zero(exercises, op):
    for level in (1, 3):
        for seed in SEEDS:
            exercise = exercises[op, level, seed]
            assert exercise.setup.constants == {"epsilon": 0} and "Take $\\epsilon = 0$" in exercise.statement
            values = exercise.setup.values["input"]
            flat = [Fraction(int(values[index])) for index in indices_of(values.shape)]
            mean = sum(flat) / len(flat)
            variance = sum((value - mean) ** 2 for value in flat) / len(flat)
            assert variance > 0 and all(math.isqrt(part) ** 2 == part
                                        for part in (variance.numerator, variance.denominator))
            rows = exercise.answer.value if exercise.answer.kind == "matrix" else ((exercise.answer.value,),)
            assert all(sympy.sympify(value).is_Rational for row in rows for value in row)
    (_, fields), = exercises[op, 1, 0].setup.layers
    assert (fields["batch"] == 2) == (op == "batchnorm2d")  # batch norm over a batch of two samples


@pytest.mark.parametrize("config", [LayerConfig("batchnorm2d", input_size=(1, 2), batch=2),
                                    LayerConfig("layernorm", input_size=(2, 2))], ids=["batchnorm2d", "layernorm"])
def test_the_named_statistics_give_derive_s_gradients(config):
    """Document 003's chain through mu and sigma2, with their definitions put in, is derive's gradient."""
    chain, derived = named_chain(config), derive(config)
    for role in ("input", "weight", "bias"):
        tensor = chain.tensors[role]
        for index in list(indices_of(tensor.shape))[:2]:
            short = compact_gradient(chain, role, tuple(index)).xreplace(chain.definitions)
            assert sympy.simplify(short - derived.gradients[f"grad_{role}"][index]) == 0
    assert len(str(compact_gradient(chain, "input", (0,) * 4))) < 300  # within the grader's 2,000 characters


def _sheet(exercises):
    numbered = [type(exercise)(**{**exercise.__dict__, "number": number})
                for number, exercise in enumerate(exercises, start=1)]
    return Sheet(Recipe(0, len(numbered), ("normalization",), 1), tuple(numbered))


def test_grading_right_and_wrong_answers_of_each_new_kind(exercises):
    chosen = [exercises[op, level, 0] for op in NEW_OPS for level in (1, 2)]
    sheet = _sheet(chosen)
    right = {exercise.number: exercise.answer.text() for exercise in sheet.exercises}
    assert grade(sheet, right).score == len(sheet.exercises)
    wrong = {}
    for exercise in sheet.exercises:
        if exercise.answer.kind == "matrix":
            rows = [row.split(", ") for row in right[exercise.number].split("; ")]
            rows[-1][-1] = f"({rows[-1][-1]}) + 1"
            wrong[exercise.number] = "; ".join(", ".join(row) for row in rows)
        else:
            wrong[exercise.number] = f"({right[exercise.number]}) + 1"
    verdicts = grade(sheet, wrong).verdicts
    assert all(verdict.status == "wrong" for verdict in verdicts)
    assert all(verdict.differences for verdict, exercise in zip(verdicts, sheet.exercises)
               if exercise.answer.kind == "matrix")


def test_a_normalization_gradient_in_symbols_is_right_in_any_correct_form():
    exercise = next(candidate for seed in range(20)
                    if (candidate := _exercise("batchnorm2d", 2, seed)).setup.asked == "grad_input")
    sheet = _sheet([exercise])
    text = exercise.answer.text()
    mean = "(x000 + x001 + x100 + x101)/4"
    variance = " + ".join(f"(x{index} - {mean})**2/4" for index in ("000", "001", "100", "101"))
    forms = {
        "compact": text,
        "gamma for w0": text.replace("w0", "gamma"),
        "expanded": text.replace("sigma2", f"({variance})").replace("mu", mean),
        "latex": sympy.latex(exercise.answer.value).replace(r"\sigma^2", r"\sigma^{2}"),
    }
    for name, form in forms.items():
        assert grade(sheet, {1: form}).verdicts[0].status == "correct", name
    # document 003's dL/dmu keeps a term that is 0 at the mean: right too
    with_zero_term = f"{text} + (mu - {mean})*g000*w0"
    assert grade(sheet, {1: with_zero_term}).verdicts[0].status == "correct"
    verdict = grade(sheet, {1: text.replace("4*sqrt", "2*sqrt")}).verdicts[0]
    assert verdict.status == "wrong" and verdict.counterexample


def test_moodle_export_of_the_new_kinds_parses_back(exercises):
    sheet = _sheet([exercises[op, level, 0] for op in NEW_OPS for level in (1, 2, 3)])
    questions = ET.fromstring(moodle_xml(sheet)).findall("question")[1:]
    assert len(questions) == len(sheet.exercises)
    for exercise, question in zip(sheet.exercises, questions):
        kind = {"number": "numerical", "matrix": "cloze", "expression": "shortanswer"}[exercise.answer.kind]
        assert question.get("type") == kind
        if kind == "numerical":
            assert float(question.find("answer/text").text) == pytest.approx(float(exercise.answer.value), abs=1e-3)
        elif kind == "cloze":
            text = question.find("questiontext/text").text
            fields = [float(field.split(":")[0]) for field in text.split("{1:NUMERICAL:=")[1:]]
            assert fields == pytest.approx([float(value) for row in exercise.answer.value for value in row], abs=1e-3)
        else:
            assert question.find("answer/text").text == exercise.answer.text()


def test_the_same_seed_gives_the_same_sheet_of_the_new_kinds_in_another_process():
    """In symbols (the named statistics' forms); test_exercises checks a sheet of numbers with every topic."""
    recipe = Recipe(5, 3, ("pooling", "convolution", "normalization"), 2)
    here = render(make_sheet(recipe), key=True, output_format="latex")
    there = subprocess.run([sys.executable, "-m", "symcnn", "exercise", "--seed", "5", "--count", "3", "--topic",
                            "pooling,convolution,normalization", "--level", "2", "--key", "--format", "latex"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert here == there
    assert "\\sigma^2" in here and "adaptive" in here and "transposed" in here
