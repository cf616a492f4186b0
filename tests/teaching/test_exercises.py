"""Exercise sheets, keys, grading and the Moodle export.

Every key is checked independently of the derivation that made it (:mod:`tests.teaching.oracles`): numbers by
PyTorch on the same tensors, symbols by SymPy's ``diff`` of ``sum(G * Y)`` and by PyTorch at random values,
sizes by PyTorch modules' output shapes and parameter counts.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import sympy

from symcnn.checking.index.vocabulary import DISTINCT_INPUT_OPS
from symcnn.report.writer import tex_engine
from symcnn.symbolic.tensors import indices_of
from symcnn.teaching.documents import render
from symcnn.teaching.grading import counterexample, grade, read_answers
from symcnn.teaching.moodle import moodle_xml
from symcnn.teaching.sheet import Recipe, make_sheet
from tests.teaching.oracles import check_numeric_key, check_symbolic_key

ROOT = Path(__file__).resolve().parents[2]
SHEETS = [Recipe(seed, 8, ("all",), level) for level in (1, 2, 3) for seed in (1, 2)]


@pytest.fixture(scope="module")
def sheets():
    return [make_sheet(recipe) for recipe in SHEETS]


def test_numeric_keys_equal_pytorch(sheets, torch):
    checked = 0
    for sheet in sheets:
        for exercise in sheet.exercises:
            if exercise.topic in ("sizes", "spot") or not exercise.setup.values:
                continue
            check_numeric_key(torch, exercise)
            checked += 1
    assert checked >= 20


def test_symbolic_keys_equal_sympy_diff_and_pytorch(sheets, torch):
    checked = 0
    for sheet in sheets:
        for exercise in sheet.exercises:
            if exercise.topic in ("sizes", "spot", "network") or exercise.setup.values:
                continue
            check_symbolic_key(torch, exercise)
            checked += 1
    assert checked >= 3


def test_sizes_equal_pytorch_modules(torch):
    sheet = make_sheet(Recipe(4, 10, ("sizes",), 3))
    for exercise in sheet.exercises:
        (op, settings), = exercise.setup.layers
        shape = exercise.setup.values["input_shape"]
        if op == "conv2d":
            module = torch.nn.Conv2d(shape[0], settings["out_channels"], settings["kernel"], settings["stride"],
                                     settings["padding"], settings["dilation"], groups=settings.get("groups", 1),
                                     bias=settings["bias"])
        elif op == "conv_transpose2d":
            module = torch.nn.ConvTranspose2d(shape[0], settings["out_channels"], settings["kernel"],
                                              settings["stride"], settings["padding"], settings["output_padding"],
                                              bias=settings["bias"], dilation=settings["dilation"])
        else:
            module = (torch.nn.MaxPool2d if op == "maxpool2d" else torch.nn.AvgPool2d)(settings["kernel"],
                                                                                       settings["stride"])
        if exercise.answer.kind == "shape":
            assert tuple(module(torch.zeros(1, *shape)).shape[1:]) == exercise.answer.value
        else:
            assert sum(parameter.numel() for parameter in module.parameters()) == exercise.answer.value


def test_spot_the_wrong_formula_has_exactly_one_wrong_choice():
    from symcnn.checking.checker import check
    from symcnn.checking.result import CheckOptions

    for exercise in make_sheet(Recipe(5, 6, ("spot",), 1)).exercises:
        (op, fields), = exercise.setup.layers
        input_values = exercise.setup.values.get("input")
        options = CheckOptions(input_size=fields["input_size"], kernel=fields["kernel"], stride=fields["stride"],
                               values=[str(input_values[index]) for index in indices_of(input_values.shape)]
                               if input_values is not None else None, channels_out=fields["channels_out"])
        verdicts = [check(choice, op, options).correct for choice in exercise.choices]
        assert verdicts.count(False) == 1 and "ABC"[verdicts.index(False)] == exercise.answer.value


def test_the_same_seed_gives_the_same_sheet_byte_for_byte_in_another_process():
    recipe = Recipe(11, 5, ("all",), 1)
    here = render(make_sheet(recipe), key=True, output_format="markdown")
    there = subprocess.run([sys.executable, "-m", "symcnn", "exercise", "--seed", "11", "--count", "5", "--key"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert here == there
    assert render(make_sheet(Recipe(12, 5, ("all",), 1)), key=True, output_format="markdown") != here


def test_max_pool_inputs_have_no_ties(sheets):
    for sheet in sheets:
        for exercise in sheet.exercises:
            if exercise.setup.layers[0][0] in DISTINCT_INPUT_OPS and "input" in exercise.setup.values:
                array = exercise.setup.values["input"]
                flat = [array[index] for index in indices_of(array.shape)]
                assert len(set(flat)) == len(flat)


def test_grading_right_wrong_partly_right_unreadable_and_missing():
    sheet = make_sheet(Recipe(3, 8, ("all",), 1))
    answers = {exercise.number: exercise.answer.text() for exercise in sheet.exercises}
    by_kind = {exercise.answer.kind: exercise for exercise in reversed(sheet.exercises)}
    matrix, number = by_kind["matrix"], by_kind["number"]
    rows = [row.split(", ") for row in answers[matrix.number].split("; ")]
    rows[0][0] = str(sympy.sympify(rows[0][0]) + 1)  # partly right: one entry off
    answers[matrix.number] = "; ".join(", ".join(row) for row in rows)
    answers[number.number] = "\\frac{1}{"  # unreadable
    del answers[sheet.exercises[-1].number]
    expression = by_kind["expression"]
    answers[expression.number] = f"({answers[expression.number]}) + x00"  # wrong
    result = grade(sheet, answers)
    status = {verdict.exercise: verdict for verdict in result.verdicts}
    assert status[matrix.number].status == "wrong" and len(status[matrix.number].differences) == 1
    assert status[number.number].status == "unreadable"
    assert status[expression.number].status == "wrong"
    assert "x00 = 1" in status[expression.number].counterexample
    assert status[sheet.exercises[-1].number].status == "missing"
    assert result.score == len(sheet.exercises) - 4
    assert all(status[n].status == "correct" for n in status if n not in
               (matrix.number, number.number, expression.number, sheet.exercises[-1].number))


def test_answers_in_latex_and_sympy_syntax_are_read_as_check_reads_them():
    sheet = make_sheet(Recipe(2, 4, ("convolution",), 2))
    exercise = sheet.exercises[0]
    latex_answer = sympy.latex(exercise.answer.value).replace("_", "").replace("x", "x_").replace("w", "w_")
    for text in (exercise.answer.text(), latex_answer, f"dL/d = {exercise.answer.text()}"):
        assert grade(sheet, {exercise.number: text}).verdicts[0].status == "correct", text
    assert counterexample(sympy.Symbol("a") + 1, sympy.Symbol("a")) == "at every symbol 0: yours 1, the key 0"


def test_answers_file_format_errors_name_the_line():
    with pytest.raises(ValueError, match="answers: line 2: expected 'NUMBER: ANSWER'"):
        read_answers("1: 3\nthree\n")
    with pytest.raises(ValueError, match="line 2: a second answer to exercise 1"):
        read_answers("1: 3\n1: 4\n")


def test_moodle_export_parses_back_with_its_answers():
    sheet = make_sheet(Recipe(1, 8, ("all",), 1))
    quiz = ET.fromstring(moodle_xml(sheet))
    questions = quiz.findall("question")[1:]
    assert len(questions) == len(sheet.exercises)
    for exercise, question in zip(sheet.exercises, questions):
        if exercise.answer.kind == "number":
            assert question.get("type") == "numerical"
            assert float(question.find("answer/text").text) == pytest.approx(float(exercise.answer.value), abs=1e-3)
        elif exercise.answer.kind in ("matrix", "shape"):
            text = question.find("questiontext/text").text
            fields = [float(field.split(":")[0]) for field in text.split("{1:NUMERICAL:=")[1:]]
            flat = ([float(value) for row in exercise.answer.value for value in row] if exercise.answer.kind == "matrix"
                    else [float(size) for size in exercise.answer.value])
            assert fields == pytest.approx(flat, abs=1e-3)
        elif exercise.answer.kind == "choice":
            right = [answer.find("text").text for answer in question.findall("answer")
                     if answer.get("fraction") == "100"]
            assert right == [exercise.answer.value]


def test_cli_grade_exit_codes_and_tampered_sheets(cli, tmp_path):
    assert cli(*["exercise", "--seed", "3", "--count", "3", "--topic", "pooling", "-o", str(tmp_path / "w.md")])[0] == 0
    sheet = make_sheet(Recipe(3, 3, ("pooling",), 1))
    right = tmp_path / "right.txt"
    right.write_text("".join(f"{e.number}: {e.answer.text()}\n" for e in sheet.exercises))
    status, out, _ = cli(*["grade", str(right), "--sheet", str(tmp_path / "w-key.md")])
    assert status == 0 and out.strip().endswith("score: 3 of 3")
    status, out, _ = cli(*["grade", str(right), "--sheet", str(tmp_path / "w.md"), "--json"])
    assert status == 0 and '"score": 3' in out
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("1: 1000\n2: \\frac{\n")
    status, out, _ = cli(*["grade", str(wrong), "--sheet", str(tmp_path / "w.md")])
    assert status == 1 and "exercise 2: unreadable" in out and "score: 0 of 3" in out
    tampered = tmp_path / "t.md"
    tampered.write_text((tmp_path / "w.md").read_text().replace("Exercise 1", "Exercise one"))
    status, _, err = cli(*["grade", str(right), "--sheet", str(tampered)])
    assert status == 2 and err.count("\n") == 1 and "--sheet:" in err and "differs" in err
    (tmp_path / "n.md").write_text("# not a sheet\n")
    status, _, err = cli(*["grade", str(right), "--sheet", str(tmp_path / "n.md")])
    assert status == 2 and "not a sheet written by symcnn exercise" in err
    status, _, err = cli(*["grade", str(tmp_path / "none.txt"), "--sheet", str(tmp_path / "w.md")])
    assert status == 2 and err.startswith("symcnn grade: error: ANSWERS:")


@pytest.mark.parametrize("argv, option", [
    (["--topic", "nope"], "--topic"), (["--level", "0"], "--level"), (["--count", "0"], "--count"),
    (["--count", "x"], "--count"), (["-o", "sheet.docx"], "-o"), (["--seed", "-1"], "--seed"),
])
def test_cli_bad_exercise_options_are_one_line_naming_the_option(cli, argv, option):
    status, _, err = cli("exercise", *argv)
    assert status == 2 and err.count("\n") == 1 and option in err and "Traceback" not in err


@pytest.mark.skipif(tex_engine() is None, reason="no TeX engine (latexmk or pdflatex)")
def test_sheet_and_key_compile_to_pdf(cli, tmp_path):
    status, out, _ = cli(*["exercise", "--seed", "2", "--count", "8", "--level", "3", "-o", str(tmp_path / "s.pdf")])
    assert status == 0
    for name in ("s.pdf", "s-key.pdf"):
        assert (tmp_path / name).read_bytes().startswith(b"%PDF")
