"""Claims as the documents write them, parsed into SymPy: LaTeX or SymPy syntax.

A claim is one or more equations ``target = value`` (``a = b = c`` chains, ``aligned`` blocks
and lines separated by ``\\\\`` or ``;``), optionally followed by ``\\text{where}`` and
definitions (``i = \\lfloor (k + p - m)/s \\rfloor``), parameter constraints (``p = (K-1)/2``)
or ranges (``u, v \\in \\{0, 1\\}``).

LaTeX goes through SymPy's own parser (``sympy.parsing.latex.parse_latex``, ANTLR backend) after a
pre-processing pass that turns the documents' notation into what that parser accepts:

- every name becomes an opaque placeholder, so that ``d \\cdot x`` is not read as a differential
  and ``c_{in}`` not as ``c_i * n``; names are single letters (``ab`` is ``a*b``), Greek letters,
  or a letter with a subscript (``c_{in}``, ``K_h``, ``x_{00}``) or a prime (``c'``);
- a tensor read ``X_{b, c, i, j}``, ``X(i - m, j - n)``, ``X_c(i, j)``, ``X[i, j, c]``,
  ``Y^{(k)}(i, j)`` (a leading index as a superscript), ``W_{\\mathrm{fc}, i, k}`` (a name tag) or
  ``S^{[1]}_{c,i,j}`` (a layer tag) becomes ``IndexedBase(name)[indices]``, its indices parsed on
  their own. Which names are tensors is told by the caller (``tensors``); a subscript with a comma
  always makes a read;
- a gradient ``\\frac{\\partial L}{\\partial X_{k,l}}`` or ``\\delta^{[X]}_{k,l}`` reads the tensor
  named ``dL/dX``; a bare ``\\delta_{i,j}`` is the upstream gradient ``dL/dY``;
- ``\\sum_{m}`` or ``\\sum_{u,v}`` without bounds keep the bounds open (:data:`OPEN`), resolved
  later from the tensor axes the variable indexes; ``\\max_{u=0}^{K-1}`` and
  ``\\max_{u,v \\in \\{0,1\\}}`` are window maxima (:class:`~symcnn.symbolic.functions.MaxOver`);
  ``\\mathbf{1}(cond)`` is an indicator, with ``s \\mid a`` for divisibility; ``e^{x}`` is
  ``exp(x)``; ``\\begin{bmatrix}`` a matrix of entries.

SymPy syntax (``X[n, c, i, j]``, ``Sum(..., (m, 0, K_h - 1))``, ``dL/dX[k]``) is parsed with
``parse_expr`` over a namespace of SymPy's constructors only: no other name is callable.

Example:
    >>> claim = parse_claim(r"\\frac{\\partial L}{\\partial w_{00}} = a x_{00} + b \\cdot x_{01}", elements=True)
    >>> claim.equations[0].lhs, claim.equations[0].rhs
    (dL/dw00, a*x00 + b*x01)
    >>> claim = parse_claim(r"Y_{i} = \\sum_{m} W_{m} X_{i+m}", tensors={"X", "W", "Y"})
    >>> claim.equations[0].rhs
    Sum(W[m]*X[i + m], (m, ?lo, ?hi))
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass
from typing import Iterable, Optional

import sympy
from sympy import Expr, IndexedBase, Piecewise, S, Symbol

from symcnn.symbolic.functions import FirstArgmax, MaxOver

__all__ = ["ClaimSyntaxError", "Equation", "Claim", "MatrixValue", "OPEN", "parse_claim", "gradient_name",
           "is_gradient_name", "base_name", "tensor_base"]

#: Bounds of a sum written without them (``\sum_{m}``): resolved from the tensors the variable indexes.
OPEN = (Symbol("?lo"), Symbol("?hi"))


class ClaimSyntaxError(ValueError):
    """A formula that cannot be parsed; its message is one line naming the problem."""


def gradient_name(name: str) -> str:
    """The name of the gradient of tensor ``name``: ``dL/dX``."""
    return "dL/d" + name


def is_gradient_name(name: str) -> bool:
    return name.startswith("dL/d")


def tensor_base(name: str) -> IndexedBase:
    """The ``IndexedBase`` of a claim's tensor. Its label is a *real* symbol, so that it never
    collides with an index of the same name (document 000 calls the batch index ``b``, like the bias)."""
    return IndexedBase(Symbol(name, real=True))


def base_name(name: str) -> str:
    """A tensor name without its layer or name tags: ``W^[1]`` and ``W_fc`` are ``W``."""
    return re.split(r"[\^_]", name, maxsplit=1)[0]


@dataclass(frozen=True)
class MatrixValue:
    """A matrix written in the claim (``\\begin{bmatrix}``): rows of entries."""

    rows: tuple[tuple[Expr, ...], ...]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.rows), len(self.rows[0])


@dataclass(frozen=True)
class Equation:
    """``lhs = rhs``. ``lhs`` is a tensor read (``Indexed``), a whole tensor (``IndexedBase``) or a
    name (``Symbol``: a parameter such as ``H_out``, or an element such as ``y01``)."""

    lhs: Expr
    rhs: object  # Expr or MatrixValue


@dataclass(frozen=True)
class Claim:
    """A parsed claim: its equations (a chain ``a = b = c`` gives ``a = b`` and ``a = c``) and the
    ``where`` clause: ``definitions`` (equations) and ``ranges`` (``u in {0, 1}``)."""

    text: str
    syntax: str  # "latex" or "sympy"
    equations: tuple[Equation, ...]
    definitions: tuple[Equation, ...] = ()
    ranges: tuple[tuple[Symbol, int, int], ...] = ()

    @property
    def tensor_names(self) -> set[str]:
        names = set()
        for equation in self.equations + self.definitions:
            for side in (equation.lhs, equation.rhs):
                for expr in _entries(side):
                    names |= {str(base.label) for base in expr.atoms(IndexedBase)}
        return names


def _entries(value) -> list:
    if isinstance(value, MatrixValue):
        return [entry for row in value.rows for entry in row]
    return [value]


# --- LaTeX pre-processing --------------------------------------------------------------------------------

_UNICODE = {
    "−": "-", "·": r" \cdot ", "×": r" \times ", "∑": r"\sum", "∂": r"\partial ", "⌊": r"\lfloor ",
    "⌋": r"\rfloor ", "≤": r" \le ", "≥": r" \ge ", "≠": r" \ne ", "δ": r"\delta ", "α": r"\alpha ",
    "η": r"\eta ", "ℓ": "l", "∈": r" \in ", "′": "'", "ŷ": r"\hat{y}",
}
# Spacing and sizing commands: no meaning for the math.
_DROP = ("left", "right", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr", "big", "Big", "displaystyle",
         "limits", "nolimits", "quad", "qquad")
_SPACES = (r"\,", r"\;", r"\:", r"\!", r"\ ", "~")
_GREEK = {"alpha", "beta", "gamma", "eta", "theta", "lambda", "mu", "sigma", "tau", "phi", "omega", "epsilon",
          "rho", "kappa", "nu", "xi", "psi", "chi", "zeta"}
# Commands parse_latex understands, passed through.
_PASS = {"frac", "dfrac", "tfrac", "cdot", "times", "div", "lfloor", "rfloor", "lceil", "rceil", "log", "ln",
         "exp", "sqrt", "le", "leq", "ge", "geq", "lt", "gt", "ne", "neq"}
_RELATIONS = [(r"\leq", "<="), (r"\le", "<="), (r"\geq", ">="), (r"\ge", ">="), (r"\neq", "!="), (r"\ne", "!="),
              ("<=", "<="), (">=", ">="), ("<", "<"), (">", ">"), ("=", "==")]
# Placeholder letters: antlr's lexer reads "d" followed by a letter as a differential.
_PLACEHOLDER_LETTERS = "abcfghjkmnpqrstuvwxy"
_INDICATOR = re.compile(r"\\(?:mathbf|mathbb)\s*\{\s*1\s*\}")
_WHERE = re.compile(r"\\(?:text|mathrm)\s*\{\s*(?:where|with)\s*\}|\bwhere\b")


def _fail(message: str):
    raise ClaimSyntaxError(message)


def _group_end(text: str, start: int, opening: str = "{", closing: str = "}") -> int:
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
    _fail(f"unbalanced '{opening}' at {_excerpt(text, start)}")


def _excerpt(text: str, position: int) -> str:
    snippet = text[position:position + 30]
    return repr(snippet + ("..." if len(text) > position + 30 else ""))


def _split_top(text: str, separators: Iterable[str]) -> list[str]:
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


class _LatexReader:
    """Turns one LaTeX expression into parse_latex input with placeholders, and back into SymPy."""

    def __init__(self, tensors: set[str], elements: bool, names: frozenset = frozenset()):
        self.tensors = tensors
        self.names = names
        self.elements = elements
        self.table: dict[str, object] = {}
        self.counter = itertools.count()

    # placeholders --------------------------------------------------------------------------------------
    def placeholder(self, value) -> str:
        number = next(self.counter)
        letters = ""
        while True:
            number, digit = divmod(number, len(_PLACEHOLDER_LETTERS))
            letters += _PLACEHOLDER_LETTERS[digit]
            if number == 0:
                break
        key = "zq" + letters
        self.table[key] = value
        return r"\mathit{%s}" % key

    def symbol(self, name: str) -> Symbol:
        return Symbol(name, real=True) if self.elements else Symbol(name)

    # entry points ---------------------------------------------------------------------------------------
    def expression(self, text: str):
        """One expression (no top-level ``=``) as a SymPy object."""
        text = text.strip()
        if not text:
            _fail("an empty expression")
        matrix = re.fullmatch(r"\\begin\{([bpv]?matrix)\}(.*)\\end\{\1\}", text, flags=re.S)
        if matrix:
            rows = [row for row in _split_top(matrix.group(2), ["\\\\"]) if row.strip()]
            cells = [tuple(self.expression(cell) for cell in _split_top(row, ["&"])) for row in rows]
            if len({len(row) for row in cells}) != 1:
                _fail("a matrix with rows of different lengths")
            return MatrixValue(tuple(cells))
        rewritten = self.rewrite(text)
        alone = re.fullmatch(r"\s*\\mathit\{(zq[a-z]+)\}\s*", rewritten)
        if alone:  # a lone name or read (most indices): no need for the parser
            return _evaluate(self.table[alone.group(1)])
        if re.fullmatch(r"\s*\d+\s*", rewritten):
            return sympy.Integer(int(rewritten))
        from sympy.parsing.latex import parse_latex
        from sympy.parsing.latex.errors import LaTeXParsingError

        try:
            parsed = parse_latex(rewritten, strict=True)
        except (LaTeXParsingError, sympy.SympifyError, TypeError, ValueError) as error:
            _fail(f"cannot parse {text!r} as LaTeX ({str(error).splitlines()[0]})")
        except ImportError as error:  # pragma: no cover - a dependency of the package
            _fail(f"LaTeX parsing needs antlr4-python3-runtime 4.11 ({error})")
        return self.restore(parsed)

    def condition(self, text: str):
        """A condition: relations (chains allowed), ``a \\mid b``, joined by ``,`` or ``\\land``."""
        parts = _split_top(text, [",", r"\land", r"\wedge", r"\text{and}"])
        conditions = []
        for part in parts:
            if r"\mid" in part:
                divisor, numerator = part.split(r"\mid", 1)
                conditions.append(sympy.Eq(sympy.Mod(self.expression(numerator), self.expression(divisor)), 0))
                continue
            pieces, operators = self._relation_chain(part)
            if not operators:
                _fail(f"expected a condition (a relation such as x > 0), got {part.strip()!r}")
            sides = [self.expression(piece) for piece in pieces]
            for (left, right), operator in zip(zip(sides, sides[1:]), operators):
                conditions.append(_relation(operator, left, right))
        return sympy.And(*conditions) if len(conditions) > 1 else conditions[0]

    def _relation_chain(self, text: str):
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

    # the rewriting pass ------------------------------------------------------------------------------------
    def rewrite(self, text: str) -> str:
        out, position = [], 0
        while position < len(text):
            char = text[position]
            if char.isspace():
                out.append(" ")
                position += 1
            elif char == "\\":
                position = self._command(text, position, out)
            elif char.isalpha():
                position = self._name(text, position, out)
            elif char == "&":
                position += 1
            elif char == "_" or char == "^" and text.startswith("^{[", position):
                _fail(f"a subscript or tag with nothing before it at {_excerpt(text, position)}")
            else:
                out.append(char)
                position += 1
        return "".join(out)

    def _command(self, text: str, position: int, out: list) -> int:
        match = re.match(r"\\([A-Za-z]+|.)", text[position:])
        name = match.group(1)
        end = position + len(match.group(0))
        indicator = _INDICATOR.match(text, position)
        if indicator:
            return self._indicator(text, indicator.end(), out)
        if text.startswith((r"\left.", r"\right."), position):
            return end + 1
        if name in _DROP or match.group(0) in _SPACES:
            return end
        if name == "frac" and self._is_gradient_fraction(text, end):
            return self._gradient_fraction(text, end, out)
        if name == "delta":
            return self._delta(text, end, out)
        if name == "sum":
            return self._sum(text, end, out)
        if name == "max" or name == "min":
            rest = self._skip(text, end)
            if text.startswith("_", rest):
                if name == "min":
                    _fail(r"\min over a range is not supported")
                return self._max_reduction(text, rest, out)
            out.append(r"\%s" % name)
            return end
        if name in ("text", "mathrm", "operatorname", "boxed", "mathit"):
            group_start = self._skip(text, end)
            if not text.startswith("{", group_start):
                _fail(f"\\{name} needs a {{...}} group at {_excerpt(text, position)}")
            group_end = _group_end(text, group_start)
            content = text[group_start + 1:group_end - 1]
            if name == "boxed":
                out.append("(" + self.rewrite(content) + ")")
                return group_end
            if name in ("text", "mathrm") and not content.strip().isalpha():
                _fail(f"unexpected \\{name}{{{content}}}")
            return self._name(text, position, out, word=(content.strip(), group_end))
        if name in ("mathcal", "hat", "tilde", "bar", "mathbf", "boldsymbol", "mathbb"):
            return self._name(text, position, out)
        if name in _GREEK:
            return self._name(text, position, out)
        slash = re.match(r"\\partial\s*(?:L|\\mathcal\s*\{?\s*L\s*\}?)\s*/\s*\\partial\s*", text[position:])
        if slash:  # the plain-text gradient of document 003: dL/dX[i, j, c]
            start = position + len(slash.group(0))
            end = self._designator_after(text, start)
            self._gradient_of(text[start:end], out)
            return end
        if name in ("partial", "nabla"):
            _fail(f"a \\{name} outside a gradient \\frac{{\\partial L}}{{\\partial X}} at {_excerpt(text, position)}")
        if name in _PASS or name in ("{", "}"):
            out.append(match.group(0) + (" " if name.isalpha() else ""))
            return end
        _fail(f"unsupported LaTeX command \\{name}")

    @staticmethod
    def _skip(text: str, position: int) -> int:
        while position < len(text) and text[position].isspace():
            position += 1
        return position

    def _braced(self, text: str, position: int) -> tuple[str, int]:
        """The content of the ``{...}`` group (or the single character) at ``position``."""
        position = self._skip(text, position)
        if position >= len(text):
            _fail("a formula that ends too early")
        if text[position] == "{":
            end = _group_end(text, position)
            return text[position + 1:end - 1], end
        if text[position] == "\\":
            match = re.match(r"\\[A-Za-z]+", text[position:])
            if match:
                return match.group(0), position + len(match.group(0))
        return text[position], position + 1

    # names and tensor reads -----------------------------------------------------------------------------------
    def _read_word(self, text: str, position: int) -> tuple[str, int]:
        """One name: a letter, a Greek letter, ``\\mathcal{L}``, ``\\hat{y}`` or a ``\\text{word}``."""
        if text[position].isalpha():
            return text[position], position + 1
        match = re.match(r"\\([A-Za-z]+)", text[position:])
        command = match.group(1)
        end = position + len(match.group(0))
        if command in _GREEK:
            return command, end
        content, end = self._braced(text, end)
        content = content.strip()
        if command in ("mathcal", "mathbf", "boldsymbol", "mathbb"):
            return content, end
        if command in ("hat", "tilde", "bar"):
            word, _ = self._read_word(content, 0)
            return word + command, end
        return content, end  # \text, \mathrm, \operatorname, \mathit

    def _tags(self, text: str, position: int) -> tuple[str, list, int]:
        """Layer tags ``^{[1]}`` and leading-index superscripts ``^{(k)}`` after a name."""
        tag, leading = "", []
        while True:
            start = self._skip(text, position)
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

    def _name(self, text: str, position: int, out: list, word: Optional[tuple[str, int]] = None) -> int:
        name, position = word if word is not None else self._read_word(text, position)
        while text.startswith("'", position):
            name += "'"
            position += 1
        tag, leading, position = self._tags(text, position)
        name += tag
        indices: Optional[list[str]] = list(leading) if leading else None
        while True:  # subscripts: name parts (c_{in}, x_{00}), name tags (W_{\mathrm{fc}}) or indices
            start = self._skip(text, position)
            if not text.startswith("_", start):
                break
            subscript, position = self._braced(text, start + 1)
            items = _split_top(subscript, [","])
            name_tag = re.fullmatch(r"\\(?:mathrm|text|operatorname)\s*\{\s*([A-Za-z]+)\s*\}", items[0].strip())
            if name_tag:
                name += "_" + name_tag.group(1)
                items = items[1:]
                if not items:
                    continue
            word_subscript = re.fullmatch(r"(?:\\(?:text|mathrm)\s*\{\s*)?(in|out)\s*\}?", subscript.strip())
            suffix = word_subscript.group(1) if word_subscript else re.sub(r"[\s{}\\]|mathrm|text", "", subscript)
            compound = f"{name}_{suffix}" in self.names or not self._is_tensor(name)
            if self.elements or word_subscript or (len(items) == 1 and indices is None and compound):
                name += suffix if self.elements else "_" + suffix
            else:
                indices = (indices or []) + items
        start = self._skip(text, position)
        if not self.elements and start < len(text) and text[start] in "([" and (
                self._is_tensor(name) or indices is not None):
            closing = ")" if text[start] == "(" else "]"
            end = _group_end(text, start, text[start], closing)
            indices = (indices or []) + _split_top(text[start + 1:end - 1], [","])
            position = end
        if indices is not None:
            parsed = tuple(self.expression(index) for index in indices)
            out.append(self.placeholder(tensor_base(name)[parsed]))
        else:  # a bare name; the checker tells a scalar tensor (the loss L) from an index or a size
            out.append(self.placeholder(self.symbol(name)))
        return position

    def _is_tensor(self, name: str) -> bool:
        return name in self.tensors or base_name(name) in self.tensors

    # gradients ------------------------------------------------------------------------------------------------
    def _is_gradient_fraction(self, text: str, position: int) -> bool:
        numerator, end = self._braced(text, position)
        return re.fullmatch(r"\s*\\partial\s*(?:L|\\mathcal\s*\{?\s*L\s*\}?|\\ell)\s*", numerator) is not None

    def _gradient_fraction(self, text: str, position: int, out: list) -> int:
        _, end = self._braced(text, position)
        denominator, end = self._braced(text, end)
        match = re.fullmatch(r"\s*\\partial\s*(.*)", denominator, flags=re.S)
        if not match or not match.group(1).strip():
            _fail(r"a gradient must read \frac{\partial L}{\partial X...}")
        self._gradient_of(match.group(1).strip(), out)
        return end

    def _gradient_of(self, designator: str, out: list) -> None:
        """``X_{k,l}`` or ``w_{00}`` (a tensor and its indices, or an element): its gradient."""
        inner = _LatexReader(self.tensors | {base_name(designator[:1])}, self.elements, self.names)
        inner.counter = self.counter
        rewritten = inner.rewrite(designator).strip()
        keys = re.findall(r"\\mathit\{(zq[a-z]+)\}", rewritten)
        if len(keys) != 1 or rewritten != r"\mathit{%s}" % keys[0]:
            _fail(f"cannot read the tensor of the gradient \\partial {designator}")
        value = inner.table[keys[0]]
        self.table.update(inner.table)
        if isinstance(value, sympy.Indexed):
            gradient = tensor_base(gradient_name(str(value.base.label)))[value.indices]
        else:  # a bare name: a whole tensor, or an element (dL/dw00 names the entry)
            gradient = self.symbol(gradient_name(str(value)))
        out.append(self.placeholder(gradient))

    def _delta(self, text: str, position: int, out: list) -> int:
        """``\\delta^{[X]}_{k,l}``: the gradient of X; a bare ``\\delta_{i,j}``: of the output Y."""
        start = self._skip(text, position)
        layer = re.match(r"\^\s*\{\s*\[(.*?)\]\s*\}", text[start:])
        target = "Y"
        if layer:
            target = layer.group(1)
            position = start + len(layer.group(0))
            target = re.sub(r"\s", "", target)
            target = re.sub(r"\^\{?\[?([A-Za-z0-9]+)\]?\}?", r"^{[\1]}", target)  # P^{1} -> P^{[1]}
        designator = target + text[position:self._designator_end(text, position)]
        self._gradient_of(designator, out)
        return self._designator_end(text, position)

    def _designator_after(self, text: str, position: int) -> int:
        """The end of a tensor designator at ``position``: a name, then subscripts, tags and an index list."""
        scratch = _LatexReader(self.tensors | {text[position:position + 1]}, self.elements, self.names)
        scratch.counter = itertools.count()
        return scratch._name(text, position, [])

    def _designator_end(self, text: str, position: int) -> int:
        start = self._skip(text, position)
        if text.startswith("_", start):
            _, end = self._braced(text, start + 1)
            return end
        return position

    # sums and maxima --------------------------------------------------------------------------------------
    def _limits(self, text: str, position: int) -> tuple[str, Optional[str], int]:
        """``_{sub}^{sup}`` (either order, ``^`` optional) after ``\\sum`` or ``\\max``."""
        sub = sup = None
        for _ in range(2):
            start = self._skip(text, position)
            while text.startswith(r"\limits", start) or text.startswith(r"\nolimits", start):
                start = self._skip(text, start + (7 if text.startswith(r"\limits", start) else 9))
            if text.startswith("_", start) and sub is None:
                sub, position = self._braced(text, start + 1)
            elif text.startswith("^", start) and sup is None:
                sup, position = self._braced(text, start + 1)
            else:
                break
        if sub is None:
            _fail(r"a \sum or \max needs its index, like \sum_{m} or \sum_{m=0}^{K-1}")
        return sub, sup, position

    def _sum(self, text: str, position: int, out: list) -> int:
        sub, sup, position = self._limits(text, position)
        if "=" in sub:
            variable, low = sub.split("=", 1)
            if sup is None:
                _fail(rf"\sum_{{{sub}}} needs an upper bound ^{{...}}")
            out.append(r"\sum_{%s=%s}^{%s} " % (self.rewrite(variable), self.rewrite(low), self.rewrite(sup)))
            return position
        if sup is not None:
            _fail(rf"\sum_{{{sub}}}^{{{sup}}} needs a lower bound: \sum_{{{sub.strip()}=0}}^{{{sup}}}")
        for variable in _split_top(sub, [","]):
            if not variable.strip():
                _fail(rf"an empty summation index in \sum_{{{sub}}}")
            low, high = (self.placeholder(bound) for bound in OPEN)
            out.append(r"\sum_{%s=%s}^{%s} " % (self.rewrite(variable), low, high))
        return position

    def _max_reduction(self, text: str, position: int, out: list) -> int:
        """``\\max_{u=a}^{b}`` or ``\\max_{u, v \\in \\{a, ..., b\\}}``: written as ``\\prod`` for the
        parser (a reduction over limits of the same shape), turned into ``MaxOver`` afterwards."""
        sub, sup, position = self._limits(text, position)
        if r"\in" in sub:
            variables, values = sub.split(r"\in", 1)
            low, high = _integer_set(values)
            for variable in _split_top(variables, [","]):
                out.append(r"\prod_{%s=%d}^{%d} " % (self.rewrite(variable), low, high))
            return position
        if "=" not in sub or sup is None:
            _fail(rf"\max_{{{sub}}} needs its range: \max_{{u=0}}^{{K-1}} or \max_{{u \in \{{0, 1\}}}}")
        variable, low = sub.split("=", 1)
        out.append(r"\prod_{%s=%s}^{%s} " % (self.rewrite(variable), self.rewrite(low), self.rewrite(sup)))
        return position

    def _indicator(self, text: str, position: int, out: list) -> int:
        start = self._skip(text, position)
        for command in (r"\left", r"\bigl", r"\Bigl", r"\big", r"\Big"):
            if text.startswith(command, start):
                start = self._skip(text, start + len(command))
        if start >= len(text) or text[start] not in "([":
            _fail(r"an indicator needs its condition in parentheses: \mathbf{1}(x > 0)")
        closing = ")" if text[start] == "(" else "]"
        end = _group_end(text, start, text[start], closing)
        inner = re.sub(r"\\(right|bigr|Bigr|big|Big)\s*$", "", text[start + 1:end - 1].rstrip())
        condition = self.condition(inner)
        out.append(self.placeholder(Piecewise((S.One, condition), (S.Zero, True))))
        return end

    # back from the parser ---------------------------------------------------------------------------------------
    def restore(self, parsed):
        replacements = {Symbol(key): value for key, value in self.table.items()}
        restored = parsed.xreplace(replacements)
        # parse_latex may leave placeholders inside limits (its Sum keeps our symbols): replace again.
        restored = restored.xreplace(replacements)
        return _evaluate(restored)


def _integer_set(text: str) -> tuple[int, int]:
    """``\\{0, 1\\}`` or ``\\{0, \\dots, 3\\}``: consecutive integers, as ``(first, last)``."""
    content = text.strip()
    match = re.fullmatch(r"\\\{(.*)\\\}", content, flags=re.S)
    if not match:
        _fail(rf"expected a set of integers like \{{0, 1\}}, got {content!r}")
    items = [item.strip() for item in match.group(1).split(",")]
    numbers = [int(item) for item in items if re.fullmatch(r"-?\d+", item)]
    if len(numbers) < 1 or (len(numbers) != len(items) and not any("dots" in item for item in items)):
        _fail(rf"expected a set of integers like \{{0, 1\}}, got {content!r}")
    low, high = min(numbers), max(numbers)
    if len(numbers) == len(items) and sorted(numbers) != list(range(low, high + 1)):
        _fail(f"a range must be consecutive integers, got {content!r}")
    return low, high


def _relation(operator: str, left, right):
    return {"<=": sympy.Le, ">=": sympy.Ge, "<": sympy.Lt, ">": sympy.Gt, "!=": sympy.Ne,
            "==": sympy.Eq}[operator](left, right)


def _evaluate(expr):
    """Rebuild bottom-up with evaluation: parse_latex builds unevaluated nodes (``2*0``). Also:
    ``max(...)`` becomes ``Max``, ``e**x`` becomes ``exp(x)``, ``Product`` (our ``\\max``) becomes
    ``MaxOver``, and decimals exact rationals (``4.25`` is ``17/4``)."""
    if isinstance(expr, MatrixValue):
        return expr
    if isinstance(expr, sympy.Float):
        return sympy.Rational(str(expr))
    if isinstance(expr, (Symbol, sympy.Number, IndexedBase)) or not expr.args:
        return expr
    args = [_evaluate(arg) if isinstance(arg, sympy.Basic) else arg for arg in expr.args]
    if isinstance(expr, sympy.Product):
        function, *limits = args
        return MaxOver(function, *reversed(limits))  # parse_latex lists the innermost limit first
    if isinstance(expr, sympy.Function) and type(expr).__name__ in ("max", "min"):
        return (sympy.Max if type(expr).__name__ == "max" else sympy.Min)(*args)
    if isinstance(expr, sympy.Function) and expr.func.__class__ is sympy.core.function.UndefinedFunction:
        _fail(f"unknown function {type(expr).__name__}(...) (tensors are read as X_{{i,j}}, X(i, j) or X[i, j])")
    if isinstance(expr, sympy.Pow) and isinstance(args[0], Symbol) and args[0].name == "e":
        return sympy.exp(args[1])
    if isinstance(expr, sympy.log) and len(args) == 2 and args[1] == sympy.E:
        return sympy.log(args[0])
    if isinstance(expr, (sympy.Indexed, sympy.Tuple)):
        return expr.func(*args)
    return expr.func(*args)


# --- claims --------------------------------------------------------------------------------------------


def _prepare(text: str) -> str:
    for old, new in _UNICODE.items():
        text = text.replace(old, new)
    text = re.sub(r"\\begin\{(aligned|align\*?|equation\*?|gathered)\}|\\end\{(aligned|align\*?|equation\*?|gathered)\}",
                  " ", text)
    text = text.strip().strip("$").strip()
    text = re.sub(r"^\\\[|\\\]$", "", text).strip()
    return text.rstrip(".,; ")


def _lines(text: str) -> list[str]:
    lines = []
    for line in _split_top(text, ["\\\\", ";", "\n"]):
        if line.strip():
            lines.append(line.strip().rstrip(",."))
    return lines


def _where_items(text: str) -> list[str]:
    return [item.strip() for item in _split_top(text, [",", r"\text{and}", r"\quad", ";"]) if item.strip()]


#: Names with a subscript that are never tensor reads (``K_h``), even where ``K`` is a tensor.
COMPOUND_NAMES = frozenset({"K_h", "K_w", "s_h", "s_w", "p_h", "p_w", "d_h", "d_w", "H_in", "W_in", "H_out",
                            "W_out", "C_in", "C_out", "F_in", "F_out", "N_in", "N_out"})


def parse_claim(text: str, tensors: Iterable[str] = (), elements: bool = False) -> Claim:
    """Parse ``text`` (LaTeX when it holds a backslash or a brace, else SymPy syntax) into a :class:`Claim`.

    ``tensors`` names the tensors (a name read with a single index, like ``z_i``, is a tensor only
    when named here; with two or more it always is). ``elements=True`` reads every subscript as
    part of a name (``x_{00}`` is the symbol ``x00``), for claims about a worked example's entries.
    Raises :class:`ClaimSyntaxError` (a ``ValueError``) with a one-line message.
    """
    return _parse_cached(text, frozenset(tensors), elements)


@functools.lru_cache(maxsize=256)
def _parse_cached(text: str, tensors: frozenset, elements: bool) -> Claim:
    if not isinstance(text, str) or not text.strip():
        _fail("the formula is empty")
    if "\\" in text or "{" in text or any(char in text for char in _UNICODE):  # SymPy syntax has no braces
        return _parse_latex_claim(text, set(tensors), elements)
    return _parse_sympy_claim(text, set(tensors), elements)


def _parse_latex_claim(text: str, tensors: set[str], elements: bool) -> Claim:
    prepared = _prepare(text)
    main, *where = _WHERE.split(prepared, maxsplit=1)
    reader = _LatexReader(tensors, elements, COMPOUND_NAMES)
    equations = []
    for line in _lines(main):
        parts = _split_top(line, ["="])
        if len(parts) < 2:
            _fail(f"expected an equation 'left = right', got {line.strip()!r}")
        sides = [reader.expression(part) for part in parts]
        equations += [Equation(sides[0], side) for side in sides[1:]]
    definitions, ranges, pending = [], [], []
    for item in _where_items(where[0]) if where else []:
        if r"\in" in item:
            names, values = item.split(r"\in", 1)
            low, high = _integer_set(values)
            for name in pending + _split_top(names, [","]):
                ranges.append((reader.expression(name), low, high))
            pending = []
        elif "=" in _split_top(item, ["="])[0] or len(_split_top(item, ["="])) > 1:
            left, right = _split_top(item, ["="])[:2]
            definitions.append(Equation(reader.expression(left), reader.expression(right)))
        elif re.fullmatch(r"[A-Za-z]'?", item):
            pending.append(item)
        else:
            _fail(f"cannot read the where-clause item {item!r}")
    if pending:
        _fail(f"a where clause names {', '.join(pending)} without a range (\\in \\{{...\\}})")
    if not equations:
        _fail("expected an equation 'left = right'")
    return Claim(text, "latex", tuple(equations), tuple(definitions), tuple(ranges))


# --- SymPy syntax ----------------------------------------------------------------------------------------

_SAFE = re.compile(r"^[\w\s\[\]\(\)\+\-\*/,\.=<>!&|'^~]*$")
_ALLOWED_FUNCTIONS = {
    "Sum": sympy.Sum, "Max": sympy.Max, "Min": sympy.Min, "floor": sympy.floor, "ceiling": sympy.ceiling,
    "Mod": sympy.Mod, "exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt, "Piecewise": sympy.Piecewise,
    "Eq": sympy.Eq, "Ne": sympy.Ne, "Lt": sympy.Lt, "Le": sympy.Le, "Gt": sympy.Gt, "Ge": sympy.Ge,
    "And": sympy.And, "Or": sympy.Or, "Not": sympy.Not, "KroneckerDelta": sympy.KroneckerDelta,
    "MaxOver": MaxOver, "FirstArgmax": FirstArgmax, "Rational": sympy.Rational, "Integer": sympy.Integer,
    "Float": sympy.Float, "true": sympy.true, "false": sympy.false, "E": sympy.E, "pi": sympy.pi,
    "oo": sympy.oo,
}


def _parse_sympy_claim(text: str, tensors: set[str], elements: bool) -> Claim:
    if not _SAFE.match(text) or "__" in text or re.search(r"\.\s*[A-Za-z_]", text) or "lambda" in text:
        _fail("SymPy syntax may hold names, numbers, brackets and arithmetic only")
    body, *where = re.split(r"\bwhere\b", text, maxsplit=1)
    namespace = {}
    # dL/dX[...] as symcnn prints a gradient: one name.
    body = re.sub(r"\bdL/d([A-Za-z]\w*)", r"dL_d\1", body)
    where_text = re.sub(r"\bdL/d([A-Za-z]\w*)", r"dL_d\1", where[0]) if where else ""
    for name in set(re.findall(r"\b([A-Za-z]\w*)\s*\[", body + " " + where_text)):
        label = gradient_name(name[4:]) if name.startswith("dL_d") else name
        namespace[name] = tensor_base(label)
    for name in tensors:
        if name.isidentifier() and name not in namespace and name not in _ALLOWED_FUNCTIONS:
            namespace.setdefault(name, tensor_base(name))

    def parse(part: str):
        from sympy.parsing.sympy_parser import (auto_number, auto_symbol, convert_xor, parse_expr,
                                                rationalize)
        try:
            value = parse_expr(part.strip(), local_dict=dict(namespace), global_dict={
                "__builtins__": {}, "Symbol": _symbol_factory(elements), **_ALLOWED_FUNCTIONS},
                transformations=(auto_symbol, auto_number, rationalize, convert_xor), evaluate=True)
        except ClaimSyntaxError:
            raise
        except Exception as error:  # parse_expr raises many kinds; all mean "not a formula"
            _fail(f"cannot parse {part.strip()!r} as SymPy syntax ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
        if isinstance(value, IndexedBase) and str(value.label) in namespace and value is namespace.get(str(value.label)):
            return value
        if not isinstance(value, (sympy.Basic, MatrixValue)):
            _fail(f"{part.strip()!r} is not a formula")
        return value

    equations = []
    for line in [line for line in re.split(r"[;\n]", body) if line.strip()]:
        parts = [part for part in re.split(r"(?<![<>!=])=(?!=)", line)]
        if len(parts) == 1:
            value = parse(parts[0])
            if isinstance(value, sympy.Equality):
                parts_values = [value.lhs, value.rhs]
            else:
                _fail(f"expected an equation 'left = right' or Eq(left, right), got {line.strip()!r}")
        else:
            parts_values = [parse(part) for part in parts]
        equations += [Equation(parts_values[0], value) for value in parts_values[1:]]
    definitions = []
    for item in [item for item in re.split(r"[;,](?![^\[\(]*[\]\)])", where_text) if item.strip()]:
        parts = re.split(r"(?<![<>!=])=(?!=)", item)
        if len(parts) != 2:
            _fail(f"cannot read the where-clause item {item.strip()!r}")
        definitions.append(Equation(parse(parts[0]), parse(parts[1])))
    if not equations:
        _fail("expected an equation 'left = right'")
    return Claim(text, "sympy", tuple(equations), tuple(definitions), ())


def _symbol_factory(elements: bool):
    def make(name, **assumptions):
        name = "dL/d" + name[4:] if name.startswith("dL_d") else name  # dL/dw00 as written
        return Symbol(name, real=True) if elements else Symbol(name)

    return make
