"""Grade a student's answers against a sheet's key.

The answers file is plain text, one answer a line: the exercise's number, a colon, the answer. Blank
lines and lines starting with ``#`` are skipped. An answer is read as ``symcnn check`` reads a formula
(:func:`symcnn.checking.parse.parse_claim`: LaTeX when it holds a backslash or a brace, else SymPy
syntax), a matrix row by row (rows separated by ``;``, or a LaTeX ``bmatrix``), a shape ``16x30x30``,
or a choice's letter. Each is compared exactly with the key (:func:`symcnn.checking.result.equal`); a
wrong expression gets the smallest counter-example found: the fewest nonzero, smallest integer
values of its symbols at which it and the key differ.

Example:
    >>> read_answers("# Ana\\n1: 3\\n2: a*x00 + b*x01\\n")
    {1: '3', 2: 'a*x00 + b*x01'}
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import asdict, dataclass
from typing import Optional

import sympy

from symcnn.checking.claims import MatrixValue
from symcnn.checking.parse import parse_claim
from symcnn.checking.result import equal
from symcnn.printing.text import text as plain_text
from symcnn.teaching.model import Answer, Exercise
from symcnn.teaching.sheet import Sheet

__all__ = ["read_answers", "Verdict", "Grade", "grade", "counterexample", "MAX_ANSWER_CHARACTERS"]

MAX_ANSWER_CHARACTERS = 2000
_LINE = re.compile(r"\s*(\d+)\s*[:.)]\s*(.*)\Z")


def read_answers(text: str) -> dict[int, str]:
    """``{exercise number: answer text}``; a line that is not ``NUMBER: ANSWER`` is a ``ValueError`` naming it."""
    answers: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(f"answers: line {number}: expected 'NUMBER: ANSWER' (like '3: -7/4'), "
                             f"got {line.strip()[:40]!r}")
        exercise = int(match.group(1))
        if exercise in answers:
            raise ValueError(f"answers: line {number}: a second answer to exercise {exercise}")
        answers[exercise] = match.group(2).strip()
    return answers


@dataclass(frozen=True)
class Verdict:
    """One exercise graded: ``correct``, ``wrong``, ``unreadable`` or ``missing``."""

    exercise: int
    status: str
    answer: str
    expected: str
    differences: tuple[str, ...] = ()
    counterexample: Optional[str] = None

    def lines(self) -> list[str]:
        head = f"exercise {self.exercise}: {self.status}"
        if self.status == "unreadable":
            return [f"{head}: {self.differences[0]}"]
        lines = [head + ("" if self.status == "correct" else f" (expected {self.expected})")]
        lines += [f"    {difference}" for difference in self.differences]
        if self.counterexample:
            lines.append(f"    counter-example: {self.counterexample}")
        return lines


@dataclass(frozen=True)
class Grade:
    verdicts: tuple[Verdict, ...]

    @property
    def score(self) -> int:
        return sum(verdict.status == "correct" for verdict in self.verdicts)

    def text(self) -> str:
        lines = [line for verdict in self.verdicts for line in verdict.lines()]
        return "\n".join(lines + [f"score: {self.score} of {len(self.verdicts)}"])

    def json(self) -> str:
        return json.dumps({"score": self.score, "total": len(self.verdicts),
                           "exercises": [asdict(verdict) for verdict in self.verdicts]}, indent=2)


def _expression(text: str) -> sympy.Expr:
    value = _value(text)
    if isinstance(value, MatrixValue):
        raise ValueError("expected one value, got a matrix")
    return value


def _value(text: str):
    if not text:
        raise ValueError("the answer is empty")
    if len(text) > MAX_ANSWER_CHARACTERS:
        raise ValueError(f"the answer is longer than {MAX_ANSWER_CHARACTERS} characters")
    body = re.split(r"(?<![<>!=])=(?!=)", text)[-1]  # 'dL/dw00 = ...': the value after the last '='
    return parse_claim(f"t = {body}", elements=True).equations[-1].rhs


def _matrix(text: str) -> tuple[tuple[sympy.Expr, ...], ...]:
    if "matrix" in text:
        value = _value(text)
        if not isinstance(value, MatrixValue):
            raise ValueError("expected a matrix")
        return value.rows
    rows = [row for row in text.strip().strip("[]").split(";") if row.strip()]
    return tuple(tuple(_expression(entry.strip()) for entry in row.strip().strip("[]").split(",")) for row in rows)


def _shape(text: str) -> tuple[int, ...]:
    parts = [part for part in re.split(r"[x×,\s()\[\]]+", text.strip()) if part]
    if not parts or not all(part.isdigit() for part in parts):
        raise ValueError(f"expected a shape like 16x30x30, got {text!r}")
    return tuple(int(part) for part in parts)


def counterexample(claimed: sympy.Expr, expected: sympy.Expr, tries: int = 400) -> Optional[str]:
    """The smallest integer values (fewest nonzero, then smallest) of the symbols where two expressions differ;
    past ``tries`` such points, every symbol 1, then the symbols 1, 2, 3, ... in their order (an expression
    that needs many nonzero symbols to differ: a normalization's, with a variance and a scale).

    >>> a, x = sympy.symbols("a x00", real=True)
    >>> counterexample(a * x + 1, a * x)
    'at every symbol 0: yours 1, the key 0'
    >>> counterexample(a * x * (a + x) ** 3, a * x * (a + x) ** 3 * 2, tries=1)
    'at every symbol 1: yours 8, the key 16'
    """
    symbols = sorted(sympy.sympify(claimed).free_symbols | sympy.sympify(expected).free_symbols, key=str)
    tried = 0
    for nonzero in range(0, min(len(symbols), 3) + 1):
        for chosen in itertools.combinations(symbols, nonzero):
            for values in itertools.product((1, -1, 2), repeat=nonzero):
                tried += 1
                if tried > tries:
                    return _past_the_search(claimed, expected, symbols)
                point = {symbol: 0 for symbol in symbols}
                point.update(zip(chosen, values))
                found = _values_differ(claimed, expected, point)
                if found is None:
                    continue
                where = ", ".join(f"{symbol} = {value}" for symbol, value in zip(chosen, values))
                rest = "every symbol 0" if not chosen else where + (", every other symbol 0" if nonzero < len(symbols)
                                                                     else "")
                return f"at {rest}: {found}"
    return _past_the_search(claimed, expected, symbols)


def _past_the_search(claimed: sympy.Expr, expected: sympy.Expr, symbols: list) -> Optional[str]:
    for where, point in (("every symbol 1", {symbol: 1 for symbol in symbols}),
                         (", ".join(f"{symbol} = {number}" for number, symbol in enumerate(symbols, start=1)),
                          {symbol: number for number, symbol in enumerate(symbols, start=1)})):
        found = _values_differ(claimed, expected, point)
        if found is not None:
            return f"at {where}: {found}"
    return None


def _values_differ(claimed: sympy.Expr, expected: sympy.Expr, point: dict) -> Optional[str]:
    """``yours V, the key W`` where the two differ at ``point`` (both finite numbers there), else ``None``."""
    try:
        mine = sympy.sympify(sympy.sympify(claimed).xreplace(point))
        theirs = sympy.sympify(sympy.sympify(expected).xreplace(point))
        if not (mine.is_number and theirs.is_number) or not (mine.is_finite and theirs.is_finite):
            return None  # symbols left, or a division by zero there (a variance of 0 and epsilon 0)
        if sympy.simplify(mine - theirs) == 0:
            return None
    except (TypeError, ZeroDivisionError):
        return None
    return f"yours {plain_text(sympy.nsimplify(mine))}, the key {plain_text(theirs)}"


def _key_symbols(answer: Answer) -> dict[str, sympy.Symbol]:
    values = [value for row in answer.value for value in row] if answer.kind == "matrix" else [answer.value]
    values += [definition for _, definition in answer.definitions]
    return {symbol.name: symbol for value in values for symbol in sympy.sympify(value).free_symbols}


def _as_key_writes(value: sympy.Expr, answer: Answer) -> sympy.Expr:
    """A student's value in the key's terms: each symbol the key's of its name (the reader's are real, the
    key's ε positive), and each quantity the key defines (``mu``, ``sigma2``) replaced by its definition."""
    named = {**_key_symbols(answer), **{symbol.name: definition for symbol, definition in answer.definitions}}
    value = sympy.sympify(value)
    return value.xreplace({symbol: named[symbol.name] for symbol in value.free_symbols if symbol.name in named})


def _key_value(value: sympy.Expr, answer: Answer) -> sympy.Expr:
    return sympy.sympify(value).xreplace(dict(answer.definitions))


def _compare(answer: Answer, text: str) -> tuple[bool, list[str], Optional[str]]:
    """(correct, differing entries, counter-example) of ``text`` against ``answer``."""
    if answer.kind == "choice":
        chosen = text.strip().strip("()").upper()
        if len(chosen) != 1 or not chosen.isalpha():
            raise ValueError(f"expected a letter, got {text!r}")
        return chosen == answer.value, [], None
    if answer.kind == "shape":
        shape = _shape(text)
        return shape == tuple(answer.value), [], None
    if answer.kind == "matrix":
        rows = _matrix(text)
        expected = answer.value
        if len(rows) != len(expected) or any(len(row) != len(expected[0]) for row in rows):
            columns = {len(row) for row in rows}
            return False, [f"shape {len(rows)}x{'/'.join(map(str, sorted(columns)))}, the key's "
                           f"{len(expected)}x{len(expected[0])}"], None
        differences = [f"entry [{row}, {column}]: yours {plain_text(rows[row][column])}, the key "
                       f"{plain_text(expected[row][column])}"
                       for row in range(len(rows)) for column in range(len(rows[0]))
                       if not equal(_as_key_writes(rows[row][column], answer), expected[row][column])]
        return not differences, differences, None
    value, expected = _as_key_writes(_expression(text), answer), _key_value(answer.value, answer)
    if equal(value, expected):
        return True, [], None
    return False, [], counterexample(value, expected) if answer.kind == "expression" else None


def _grade_one(exercise: Exercise, text: Optional[str]) -> Verdict:
    expected = exercise.answer.text()
    if text is None:
        return Verdict(exercise.number, "missing", "", expected)
    try:
        correct, differences, example = _compare(exercise.answer, text)
    except (ValueError, TypeError, RecursionError) as error:  # ClaimSyntaxError is a ValueError
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        return Verdict(exercise.number, "unreadable", text, expected, (reason,))
    return Verdict(exercise.number, "correct" if correct else "wrong", text, expected, tuple(differences), example)


def grade(sheet: Sheet, answers: dict[int, str]) -> Grade:
    """Each exercise's verdict; an answer to an exercise the sheet does not have is a ``ValueError``."""
    extra = sorted(set(answers) - {exercise.number for exercise in sheet.exercises})
    if extra:
        raise ValueError(f"answers: exercise {extra[0]} is not on the sheet (it has {len(sheet.exercises)})")
    return Grade(tuple(_grade_one(exercise, answers.get(exercise.number)) for exercise in sheet.exercises))
