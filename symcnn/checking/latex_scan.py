"""LaTeX source scanned as text, before any of it is parsed: the documents' Unicode and environments
normalized, a claim split into lines and where-clause items, and, at a position in the text, the
extent of a group, a name with its tags, the limits of a sum, a chain of relations. Text in, text
(and positions) out; no SymPy.

Example:
    >>> split_top(r"i = \\frac{a, b}{2}, j = (k, l)", [","])
    ['i = \\\\frac{a, b}{2}', ' j = (k, l)']
    >>> limits(r"\\sum_{m=0}^{K-1} X_m", 4)
    ('m=0', 'K-1', 16)
    >>> read_word(r"\\hat{y}_i", 0), tags("W^{[1]}_{c}", 1)
    (('yhat', 7), ('^1', [], 7))
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

from symcnn.checking.claims import reject

__all__ = ["UNICODE", "GREEK", "prepare", "claim_lines", "where_items", "integer_set", "group_end", "excerpt",
           "split_top", "skip_spaces", "braced", "read_word", "tags", "designator_end", "limits", "relation_chain"]

#: The documents' Unicode math, as the LaTeX it stands for.
UNICODE = {
    "−": "-", "·": r" \cdot ", "×": r" \times ", "∑": r"\sum", "∂": r"\partial ", "⌊": r"\lfloor ",
    "⌋": r"\rfloor ", "≤": r" \le ", "≥": r" \ge ", "≠": r" \ne ", "δ": r"\delta ", "α": r"\alpha ",
    "η": r"\eta ", "ℓ": "l", "∈": r" \in ", "′": "'", "ŷ": r"\hat{y}",
}
#: Greek letters read as names.
GREEK = {"alpha", "beta", "gamma", "eta", "theta", "lambda", "mu", "sigma", "tau", "phi", "omega", "epsilon",
         "rho", "kappa", "nu", "xi", "psi", "chi", "zeta"}
_RELATIONS = [(r"\leq", "<="), (r"\le", "<="), (r"\geq", ">="), (r"\ge", ">="), (r"\neq", "!="), (r"\ne", "!="),
              ("<=", "<="), (">=", ">="), ("<", "<"), (">", ">"), ("=", "==")]


# --- a claim's text --------------------------------------------------------------------------------------


def prepare(text: str) -> str:
    """``text`` with Unicode math as LaTeX, without math delimiters, equation environments and a
    closing full stop."""
    for old, new in UNICODE.items():
        text = text.replace(old, new)
    environments = r"(aligned|align\*?|equation\*?|gathered)"
    text = re.sub(r"\\begin\{" + environments + r"\}|\\end\{" + environments + r"\}",
                  " ", text)
    text = text.strip().strip("$").strip()
    text = re.sub(r"^\\\[|\\\]$", "", text).strip()
    return text.rstrip(".,; ")


def claim_lines(text: str) -> list[str]:
    """The lines of a claim: separated by ``\\\\``, ``;`` or a newline outside every bracket."""
    lines = []
    for line in split_top(text, ["\\\\", ";", "\n"]):
        if line.strip():
            lines.append(line.strip().rstrip(",."))
    return lines


def where_items(text: str) -> list[str]:
    """The items of a where-clause: separated by ``,``, ``\\text{and}``, ``\\quad`` or ``;``."""
    return [item.strip() for item in split_top(text, [",", r"\text{and}", r"\quad", ";"]) if item.strip()]


def integer_set(text: str) -> tuple[int, int]:
    """``\\{0, 1\\}`` or ``\\{0, \\dots, 3\\}``: consecutive integers, as ``(first, last)``."""
    content = text.strip()
    match = re.fullmatch(r"\\\{(.*)\\\}", content, flags=re.S)
    if not match:
        reject(rf"expected a set of integers like \{{0, 1\}}, got {content!r}")
    items = [item.strip() for item in match.group(1).split(",")]
    numbers = [int(item) for item in items if re.fullmatch(r"-?\d+", item)]
    if len(numbers) < 1 or (len(numbers) != len(items) and not any("dots" in item for item in items)):
        reject(rf"expected a set of integers like \{{0, 1\}}, got {content!r}")
    low, high = min(numbers), max(numbers)
    if len(numbers) == len(items) and sorted(numbers) != list(range(low, high + 1)):
        reject(f"a range must be consecutive integers, got {content!r}")
    return low, high


# --- brackets ------------------------------------------------------------------------------------------


def group_end(text: str, start: int, opening: str = "{", closing: str = "}") -> int:
    """The index just past the group opened at ``text[start]``; a clear error when unbalanced."""
    depth = 0
    position = start
    while position < len(text):
        if text.startswith("\\" + opening, position) or text.startswith("\\" + closing, position):
            position += 2
            continue
        char = text[position]
        if char == opening:
            depth += 1
        elif char == closing:
            depth -= 1
            if depth == 0:
                return position + 1
        position += 1
    reject(f"unbalanced '{opening}' at {excerpt(text, start)}")


def excerpt(text: str, position: int) -> str:
    """A short quote of ``text`` from ``position``, for an error message."""
    snippet = text[position:position + 30]
    return repr(snippet + ("..." if len(text) > position + 30 else ""))


def split_top(text: str, separators: Iterable[str]) -> list[str]:
    """``text`` split at ``separators`` that are outside every bracket (``{}``, ``()``, ``[]``,
    ``\\{\\}``, ``\\begin...\\end``). A command's characters are never separators (``\\,``)."""
    separators = sorted(separators, key=len, reverse=True)
    parts, depth, start, position = [], 0, 0, 0
    while position < len(text):
        if depth == 0:
            separator = next((sep for sep in separators if text.startswith(sep, position)), None)
            if separator is not None and not (separator[0] == "\\" and separator[-1].isalpha()
                                              and text[position + len(separator):][:1].isalpha()):
                parts.append(text[start:position])
                position += len(separator)
                start = position
                continue
        char = text[position]
        if char == "\\":
            command = re.match(r"\\(begin|end)\b|\\([A-Za-z]+)|\\(.)", text[position:], flags=re.S)
            if command is None:  # a backslash at the end: the reader refuses it
                break
            if command.group(1):
                depth += 1 if command.group(1) == "begin" else -1
            elif command.group(3) in ("{", "}"):
                depth += 1 if command.group(3) == "{" else -1
            position += len(command.group(0))
            continue
        if char in "{([":
            depth += 1
        elif char in "})]":
            depth -= 1
        position += 1
    parts.append(text[start:])
    return parts


def skip_spaces(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def braced(text: str, position: int) -> tuple[str, int]:
    """The content of the ``{...}`` group (or the single character) at ``position``."""
    position = skip_spaces(text, position)
    if position >= len(text):
        reject("a formula that ends too early")
    if text[position] == "{":
        end = group_end(text, position)
        return text[position + 1:end - 1], end
    if text[position] == "\\":
        match = re.match(r"\\[A-Za-z]+", text[position:])
        if match:
            return match.group(0), position + len(match.group(0))
    return text[position], position + 1


# --- names, limits, relations --------------------------------------------------------------------------------


def read_word(text: str, position: int) -> tuple[str, int]:
    """One name: a letter, a Greek letter, ``\\mathcal{L}``, ``\\hat{y}`` or a ``\\text{word}``."""
    if text[position].isalpha():
        return text[position], position + 1
    match = re.match(r"\\([A-Za-z]+)", text[position:])
    command = match.group(1)
    end = position + len(match.group(0))
    if command in GREEK:
        return command, end
    content, end = braced(text, end)
    content = content.strip()
    if command in ("mathcal", "mathbf", "boldsymbol", "mathbb"):
        return content, end
    if command in ("hat", "tilde", "bar"):
        word, _ = read_word(content, 0)
        return word + command, end
    return content, end  # \text, \mathrm, \operatorname, \mathit


def tags(text: str, position: int) -> tuple[str, list, int]:
    """Layer tags ``^{[1]}`` and leading-index superscripts ``^{(k)}`` after a name."""
    tag, leading = "", []
    while True:
        start = skip_spaces(text, position)
        layer = re.match(r"\^\s*\{\s*\[([^\]]*)\]\s*\}", text[start:])
        if layer:
            tag += "^" + re.sub(r"[\s{}]", "", layer.group(1))
            position = start + len(layer.group(0))
            continue
        index = re.match(r"\^\s*\{\s*\(([^)]*)\)\s*\}", text[start:])
        if index:
            leading.append(index.group(1))
            position = start + len(index.group(0))
            continue
        return tag, leading, position


def designator_end(text: str, position: int) -> int:
    """The end of a subscript ``_{...}`` at ``position`` (``position`` itself when there is none)."""
    start = skip_spaces(text, position)
    if text.startswith("_", start):
        _, end = braced(text, start + 1)
        return end
    return position


def limits(text: str, position: int) -> tuple[str, Optional[str], int]:
    """``_{sub}^{sup}`` (either order, ``^`` optional) after ``\\sum`` or ``\\max``."""
    sub = sup = None
    for _ in range(2):
        start = skip_spaces(text, position)
        while text.startswith(r"\limits", start) or text.startswith(r"\nolimits", start):
            start = skip_spaces(text, start + (7 if text.startswith(r"\limits", start) else 9))
        if text.startswith("_", start) and sub is None:
            sub, position = braced(text, start + 1)
        elif text.startswith("^", start) and sup is None:
            sup, position = braced(text, start + 1)
        else:
            break
    if sub is None:
        reject(r"a \sum or \max needs its index, like \sum_{m} or \sum_{m=0}^{K-1}")
    return sub, sup, position


def relation_chain(text: str) -> tuple[list[str], list[str]]:
    """``a < b \\le c`` as its sides ``['a ', ' b ', ' c']`` and operators ``['<', '<=']``."""
    pieces, operators, start, position, depth = [], [], 0, 0, 0
    while position < len(text):
        char = text[position]
        if char in "{([":
            depth += 1
        elif char in "})]":
            depth -= 1
        elif depth == 0:
            match = next(((latex_op, op) for latex_op, op in _RELATIONS if text.startswith(latex_op, position)
                          and not (latex_op[0] == "\\" and text[position + len(latex_op):][:1].isalpha())), None)
            if match:
                pieces.append(text[start:position])
                operators.append(match[1])
                position += len(match[0])
                start = position
                continue
        position += 1
    pieces.append(text[start:])
    return pieces, operators
