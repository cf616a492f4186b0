"""A sheet as Moodle XML (Moodle's question import format), each exercise one question with its answer:

- a number: a ``numerical`` question (exact: tolerance 0, or 0.001 for a fraction's decimals);
- a matrix or a shape: a ``cloze`` question (Moodle's embedded answers), one ``NUMERICAL`` field per entry;
- an expression: a ``shortanswer`` question whose answer is the key's SymPy syntax (Moodle compares
  text; ``symcnn grade`` compares mathematics, and is the better grader for these);
- a choice: a ``multichoice`` question, one right letter.

Question text is HTML with MathJax's ``\\( \\)`` delimiters, escaped by the XML writer.

Example:
    >>> from symcnn.teaching.sheet import Recipe, make_sheet
    >>> import xml.etree.ElementTree as ET
    >>> quiz = ET.fromstring(moodle_xml(make_sheet(Recipe(seed=1, count=1, topics=("dense",)))))
    >>> [question.get("type") for question in quiz.findall("question")]
    ['category', 'cloze']
"""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET

import sympy

from symcnn.teaching.documents import _letter
from symcnn.teaching.model import Exercise
from symcnn.teaching.sheet import Sheet

__all__ = ["moodle_xml"]

_MATH = re.compile(r"\$([^$]+)\$")
_CODE = re.compile(r"`([^`]+)`")


def _html(markup: str) -> str:
    """Prose markup as HTML: ``$x$`` as ``\\(x\\)``, ```code``` as ``<code>``."""
    escaped = html.escape(markup, quote=False)
    return _CODE.sub(r"<code>\1</code>", _MATH.sub(r"\\(\1\\)", escaped))


def _number(value) -> str:
    value = sympy.sympify(value)
    return str(int(value)) if value.is_Integer else repr(float(value))


def _tolerance(value) -> str:
    return "0" if sympy.sympify(value).is_Integer else "0.001"


def _question_html(exercise: Exercise) -> str:
    parts = [f"<p>{_html(exercise.statement)}</p>"]
    if exercise.givens:
        parts.append(r"<p>\[" + html.escape(r",\qquad ".join(given.latex() for given in exercise.givens)) + r"\]</p>")
    if exercise.choices:
        parts += [f"<p>{_letter(number)}: \\({html.escape(choice)}\\)</p>"
                  for number, choice in enumerate(exercise.choices)]
    parts.append(f"<p>{_html(exercise.question)}</p>")
    return "\n".join(parts)


def _text(parent: ET.Element, tag: str, value: str, **attributes) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    ET.SubElement(element, "text").text = value
    return element


def _cloze_fields(values) -> str:
    return " ".join("{1:NUMERICAL:=%s:%s}" % (_number(value), _tolerance(value)) for value in values)


def _question(quiz: ET.Element, exercise: Exercise) -> None:
    answer = exercise.answer
    kind = {"number": "numerical", "matrix": "cloze", "shape": "cloze", "expression": "shortanswer",
            "choice": "multichoice"}[answer.kind]
    question = ET.SubElement(quiz, "question", type=kind)
    _text(question, "name", f"Exercise {exercise.number}: {exercise.title}")
    body = _question_html(exercise)
    if answer.kind == "matrix":
        rows = "".join(f"<tr><td>{_cloze_fields(row)}</td></tr>" for row in answer.value)
        body += f"\n<table>{rows}</table>"
    elif answer.kind == "shape":
        body += "\n<p>" + " × ".join(_cloze_fields((size,)) for size in answer.value) + "</p>"
    _text(question, "questiontext", body, format="html")
    _text(question, "generalfeedback", f"<p>Answer: \\({html.escape(answer.latex())}\\)</p>", format="html")
    ET.SubElement(question, "defaultgrade").text = "1"
    if answer.kind == "number":
        element = _text(question, "answer", _number(answer.value), fraction="100")
        ET.SubElement(element, "tolerance").text = _tolerance(answer.value)
    elif answer.kind == "expression":
        _text(question, "answer", answer.text(), fraction="100")
    elif answer.kind == "choice":
        ET.SubElement(question, "single").text = "true"
        for number in range(len(exercise.choices)):
            letter = _letter(number)
            _text(question, "answer", letter, fraction="100" if letter == answer.value else "0", format="html")


def moodle_xml(sheet: Sheet) -> str:
    """The sheet as a Moodle XML quiz: a category named by its recipe, then one question per exercise."""
    quiz = ET.Element("quiz")
    category = ET.SubElement(quiz, "question", type="category")
    _text(category, "category", f"$course$/symcnn/{sheet.recipe.command()}")
    for exercise in sheet.exercises:
        _question(quiz, exercise)
    ET.indent(quiz)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(quiz, encoding="unicode") + "\n"
