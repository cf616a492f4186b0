"""A claim written in LaTeX, as the documents write it, read into SymPy.

A claim is one or more equations ``target = value`` (``a = b = c`` chains, ``aligned`` blocks
and lines separated by ``\\\\`` or ``;``), optionally followed by ``\\text{where}`` and
definitions (``i = \\lfloor (k + p - m)/s \\rfloor``), parameter constraints (``p = (K-1)/2``)
or ranges (``u, v \\in \\{0, 1\\}``).

Each expression goes through SymPy's own parser (``sympy.parsing.latex.parse_latex``, ANTLR backend)
after a rewriting pass (:class:`_LatexReader`) that turns the documents' notation into what that
parser accepts:

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
- ``\\sum_{m}`` or ``\\sum_{u,v}`` without bounds keep the bounds open (:data:`~symcnn.checking.claims.OPEN`),
  resolved later from the tensor axes the variable indexes; ``\\max_{u=0}^{K-1}`` and
  ``\\max_{u,v \\in \\{0,1\\}}`` are window maxima (:class:`~symcnn.symbolic.functions.MaxOver`);
  ``\\mathbf{1}(cond)`` is an indicator, with ``s \\mid a`` for divisibility; ``e^{x}`` is
  ``exp(x)``; ``\\begin{bmatrix}`` a matrix of entries.

Example:
    >>> claim = parse_latex_claim(r"Y_{i} = \\sum_{m} W_{m} X_{i+m}", {"X", "W", "Y"}, elements=False)
    >>> claim.equations[0].rhs
    Sum(W[m]*X[i + m], (m, ?lo, ?hi))
"""

from __future__ import annotations

import itertools
import re
from typing import Optional

import sympy
from sympy import IndexedBase, Piecewise, S, Symbol

from symcnn.checking.claims import (OPEN, Claim, Equation, MatrixValue, base_name, gradient_name, reject,
                                    tensor_base)
from symcnn.checking.latex_scan import (GREEK, UNICODE, braced, claim_lines, designator_end, excerpt, group_end,
                                        integer_set, limits, prepare, read_word, relation_chain, skip_spaces,
                                        split_top, tags, where_items)
from symcnn.checking.sizes import check_constants
from symcnn.symbolic.functions import MaxOver
from symcnn.symbolic.tensors import element_name

__all__ = ["parse_latex_claim", "looks_like_latex", "COMPOUND_NAMES"]

# Spacing and sizing commands: no meaning for the math.
_DROP = ("left", "right", "bigl", "bigr", "Bigl", "Bigr", "biggl", "biggr", "big", "Big", "displaystyle",
         "limits", "nolimits", "quad", "qquad")
_SPACES = (r"\,", r"\;", r"\:", r"\!", r"\ ", "~")
# Commands parse_latex understands, passed through.
_PASS = {"frac", "dfrac", "tfrac", "cdot", "times", "div", "lfloor", "rfloor", "lceil", "rceil", "log", "ln",
         "exp", "sqrt", "le", "leq", "ge", "geq", "lt", "gt", "ne", "neq"}
# Placeholder letters: antlr's lexer reads "d" followed by a letter as a differential.
_PLACEHOLDER_LETTERS = "abcfghjkmnpqrstuvwxy"
_INDICATOR = re.compile(r"\\(?:mathbf|mathbb)\s*\{\s*1\s*\}")
_WHERE = re.compile(r"\\(?:text|mathrm)\s*\{\s*(?:where|with)\s*\}|\bwhere\b")

#: Names with a subscript that are never tensor reads (``K_h``), even where ``K`` is a tensor.
COMPOUND_NAMES = frozenset({"K_h", "K_w", "s_h", "s_w", "p_h", "p_w", "d_h", "d_w", "H_in", "W_in", "H_out",
                            "W_out", "C_in", "C_out", "F_in", "F_out", "N_in", "N_out"})


def looks_like_latex(text: str) -> bool:
    """LaTeX holds a backslash, a brace or the documents' Unicode math; SymPy syntax has none."""
    return "\\" in text or "{" in text or any(char in text for char in UNICODE)


def parse_latex_claim(text: str, tensors: set[str], elements: bool) -> Claim:
    """The claim ``text`` (LaTeX): its equations and where-clause; ``tensors`` and ``elements`` as
    :func:`symcnn.checking.parse.parse_claim` takes them."""
    prepared = prepare(text)
    main, *where = _WHERE.split(prepared, maxsplit=1)
    reader = _LatexReader(tensors, elements, COMPOUND_NAMES)
    equations = []
    for line in claim_lines(main):
        parts = split_top(line, ["="])
        if len(parts) < 2:
            reject(f"expected an equation 'left = right', got {line.strip()!r}")
        sides = [reader.expression(part) for part in parts]
        equations += [Equation(sides[0], side) for side in sides[1:]]
    definitions, ranges, pending = [], [], []
    for item in where_items(where[0]) if where else []:
        if r"\in" in item:
            names, values = item.split(r"\in", 1)
            low, high = integer_set(values)
            for name in pending + split_top(names, [","]):
                ranges.append((reader.expression(name), low, high))
            pending = []
        elif "=" in split_top(item, ["="])[0] or len(split_top(item, ["="])) > 1:
            left, right = split_top(item, ["="])[:2]
            definitions.append(Equation(reader.expression(left), reader.expression(right)))
        elif re.fullmatch(r"[A-Za-z]'?", item):
            pending.append(item)
        else:
            reject(f"cannot read the where-clause item {item!r}")
    if pending:
        reject(f"a where clause names {', '.join(pending)} without a range (\\in \\{{...\\}})")
    if not equations:
        reject("expected an equation 'left = right'")
    return Claim(text, "latex", tuple(equations), tuple(definitions), tuple(ranges))


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
            reject("an empty expression")
        matrix = re.fullmatch(r"\\begin\{([bpv]?matrix)\}(.*)\\end\{\1\}", text, flags=re.S)
        if matrix:
            rows = [row for row in split_top(matrix.group(2), ["\\\\"]) if row.strip()]
            cells = [tuple(self.expression(cell) for cell in split_top(row, ["&"])) for row in rows]
            if len({len(row) for row in cells}) != 1:
                reject("a matrix with rows of different lengths")
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
            reject(f"cannot parse {text!r} as LaTeX ({str(error).splitlines()[0]})")
        except ImportError as error:  # pragma: no cover - a dependency of the package
            reject(f"LaTeX parsing needs antlr4-python3-runtime 4.11 ({error})")
        check_constants(parsed, self.table)  # before restore() evaluates a power or a factorial
        return self.restore(parsed)

    def condition(self, text: str):
        """A condition: relations (chains allowed), ``a \\mid b``, joined by ``,`` or ``\\land``."""
        parts = split_top(text, [",", r"\land", r"\wedge", r"\text{and}"])
        conditions = []
        for part in parts:
            if r"\mid" in part:
                divisor, numerator = part.split(r"\mid", 1)
                conditions.append(sympy.Eq(sympy.Mod(self.expression(numerator), self.expression(divisor)), 0))
                continue
            pieces, operators = relation_chain(part)
            if not operators:
                reject(f"expected a condition (a relation such as x > 0), got {part.strip()!r}")
            sides = [self.expression(piece) for piece in pieces]
            for (left, right), operator in zip(zip(sides, sides[1:]), operators):
                conditions.append(_relation(operator, left, right))
        return sympy.And(*conditions) if len(conditions) > 1 else conditions[0]

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
                reject(f"a subscript or tag with nothing before it at {excerpt(text, position)}")
            else:
                out.append(char)
                position += 1
        return "".join(out)

    def _command(self, text: str, position: int, out: list) -> int:
        match = re.match(r"\\([A-Za-z]+|.)", text[position:], flags=re.S)
        if match is None:
            reject("a backslash with no command after it")
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
            rest = skip_spaces(text, end)
            if text.startswith("_", rest):
                if name == "min":
                    reject(r"\min over a range is not supported")
                return self._max_reduction(text, rest, out)
            out.append(r"\%s" % name)
            return end
        if name in ("text", "mathrm", "operatorname", "boxed", "mathit"):
            group_start = skip_spaces(text, end)
            if not text.startswith("{", group_start):
                reject(f"\\{name} needs a {{...}} group at {excerpt(text, position)}")
            group_stop = group_end(text, group_start)
            content = text[group_start + 1:group_stop - 1]
            if name == "boxed":
                out.append("(" + self.rewrite(content) + ")")
                return group_stop
            if name in ("text", "mathrm") and not content.strip().isalpha():
                reject(f"unexpected \\{name}{{{content}}}")
            return self._name(text, position, out, word=(content.strip(), group_stop))
        if name in ("mathcal", "hat", "tilde", "bar", "mathbf", "boldsymbol", "mathbb"):
            return self._name(text, position, out)
        if name in GREEK:
            return self._name(text, position, out)
        slash = re.match(r"\\partial\s*(?:L|\\mathcal\s*\{?\s*L\s*\}?)\s*/\s*\\partial\s*", text[position:])
        if slash:  # the plain-text gradient of document 003: dL/dX[i, j, c]
            start = position + len(slash.group(0))
            end = self._designator_after(text, start)
            self._gradient_of(text[start:end], out)
            return end
        if name in ("partial", "nabla"):
            reject(f"a \\{name} outside a gradient \\frac{{\\partial L}}{{\\partial X}} at {excerpt(text, position)}")
        if name in _PASS or name in ("{", "}"):
            out.append(match.group(0) + (" " if name.isalpha() else ""))
            return end
        reject(f"unsupported LaTeX command \\{name}")

    # names and tensor reads -----------------------------------------------------------------------------------
    def _name(self, text: str, position: int, out: list, word: Optional[tuple[str, int]] = None) -> int:
        name, position = word if word is not None else read_word(text, position)
        while text.startswith("'", position):
            name += "'"
            position += 1
        tag, leading, position = tags(text, position)
        name += tag
        indices: Optional[list[str]] = list(leading) if leading else None
        while True:  # subscripts: name parts (c_{in}, x_{00}), name tags (W_{\mathrm{fc}}) or indices
            start = skip_spaces(text, position)
            if not text.startswith("_", start):
                break
            subscript, position = braced(text, start + 1)
            items = split_top(subscript, [","])
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
                name += _entry_suffix(items, suffix) if self.elements else "_" + suffix
            else:
                indices = (indices or []) + items
        start = skip_spaces(text, position)
        if not self.elements and start < len(text) and text[start] in "([" and (
                self._is_tensor(name) or indices is not None):
            closing = ")" if text[start] == "(" else "]"
            end = group_end(text, start, text[start], closing)
            indices = (indices or []) + split_top(text[start + 1:end - 1], [","])
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
        numerator, end = braced(text, position)
        return re.fullmatch(r"\s*\\partial\s*(?:L|\\mathcal\s*\{?\s*L\s*\}?|\\ell)\s*", numerator) is not None

    def _gradient_fraction(self, text: str, position: int, out: list) -> int:
        _, end = braced(text, position)
        denominator, end = braced(text, end)
        match = re.fullmatch(r"\s*\\partial\s*(.*)", denominator, flags=re.S)
        if not match or not match.group(1).strip():
            reject(r"a gradient must read \frac{\partial L}{\partial X...}")
        self._gradient_of(match.group(1).strip(), out)
        return end

    def _gradient_of(self, designator: str, out: list) -> None:
        """``X_{k,l}`` or ``w_{00}`` (a tensor and its indices, or an element): its gradient."""
        inner = _LatexReader(self.tensors | {base_name(designator[:1])}, self.elements, self.names)
        inner.counter = self.counter
        rewritten = inner.rewrite(designator).strip()
        keys = re.findall(r"\\mathit\{(zq[a-z]+)\}", rewritten)
        if len(keys) != 1 or rewritten != r"\mathit{%s}" % keys[0]:
            reject(f"cannot read the tensor of the gradient \\partial {designator}")
        value = inner.table[keys[0]]
        self.table.update(inner.table)
        if isinstance(value, sympy.Indexed):
            gradient = tensor_base(gradient_name(str(value.base.label)))[value.indices]
        else:  # a bare name: a whole tensor, or an element (dL/dw00 names the entry)
            gradient = self.symbol(gradient_name(str(value)))
        out.append(self.placeholder(gradient))

    def _delta(self, text: str, position: int, out: list) -> int:
        """``\\delta^{[X]}_{k,l}``: the gradient of X; a bare ``\\delta_{i,j}``: of the output Y."""
        start = skip_spaces(text, position)
        layer = re.match(r"\^\s*\{\s*\[(.*?)\]\s*\}", text[start:])
        target = "Y"
        if layer:
            target = layer.group(1)
            position = start + len(layer.group(0))
            target = re.sub(r"\s", "", target)
            target = re.sub(r"\^\{?\[?([A-Za-z0-9]+)\]?\}?", r"^{[\1]}", target)  # P^{1} -> P^{[1]}
        designator = target + text[position:designator_end(text, position)]
        self._gradient_of(designator, out)
        return designator_end(text, position)

    def _designator_after(self, text: str, position: int) -> int:
        """The end of a tensor designator at ``position``: a name, then subscripts, tags and an index list."""
        scratch = _LatexReader(self.tensors | {text[position:position + 1]}, self.elements, self.names)
        scratch.counter = itertools.count()
        return scratch._name(text, position, [])

    # sums and maxima --------------------------------------------------------------------------------------
    def _sum(self, text: str, position: int, out: list) -> int:
        sub, sup, position = limits(text, position)
        if "=" in sub:
            variable, low = sub.split("=", 1)
            if sup is None:
                reject(rf"\sum_{{{sub}}} needs an upper bound ^{{...}}")
            out.append(r"\sum_{%s=%s}^{%s} " % (self.rewrite(variable), self.rewrite(low), self.rewrite(sup)))
            return position
        if sup is not None:
            reject(rf"\sum_{{{sub}}}^{{{sup}}} needs a lower bound: \sum_{{{sub.strip()}=0}}^{{{sup}}}")
        for variable in split_top(sub, [","]):
            if not variable.strip():
                reject(rf"an empty summation index in \sum_{{{sub}}}")
            low, high = (self.placeholder(bound) for bound in OPEN)
            out.append(r"\sum_{%s=%s}^{%s} " % (self.rewrite(variable), low, high))
        return position

    def _max_reduction(self, text: str, position: int, out: list) -> int:
        """``\\max_{u=a}^{b}`` or ``\\max_{u, v \\in \\{a, ..., b\\}}``: written as ``\\prod`` for the
        parser (a reduction over limits of the same shape), turned into ``MaxOver`` afterwards."""
        sub, sup, position = limits(text, position)
        if r"\in" in sub:
            variables, values = sub.split(r"\in", 1)
            low, high = integer_set(values)
            for variable in split_top(variables, [","]):
                out.append(r"\prod_{%s=%d}^{%d} " % (self.rewrite(variable), low, high))
            return position
        if "=" not in sub or sup is None:
            reject(rf"\max_{{{sub}}} needs its range: \max_{{u=0}}^{{K-1}} or \max_{{u \in \{{0, 1\}}}}")
        variable, low = sub.split("=", 1)
        out.append(r"\prod_{%s=%s}^{%s} " % (self.rewrite(variable), self.rewrite(low), self.rewrite(sup)))
        return position

    def _indicator(self, text: str, position: int, out: list) -> int:
        start = skip_spaces(text, position)
        for command in (r"\left", r"\bigl", r"\Bigl", r"\big", r"\Big"):
            if text.startswith(command, start):
                start = skip_spaces(text, start + len(command))
        if start >= len(text) or text[start] not in "([":
            reject(r"an indicator needs its condition in parentheses: \mathbf{1}(x > 0)")
        closing = ")" if text[start] == "(" else "]"
        end = group_end(text, start, text[start], closing)
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


def _entry_suffix(items: list[str], suffix: str) -> str:
    """An element claim's subscript as the derived entries name it: ``y_{1,2}`` is ``y12``, as ``y_{12}``, and
    ``x_{1,11,2}`` is ``x_1_11_2`` (an index of 10 or more: :func:`symcnn.symbolic.tensors.element_name`).

    >>> _entry_suffix(["1", " 11", "2"], "1,11,2"), _entry_suffix(["0", "1"], "0,1"), _entry_suffix(["01"], "01")
    ('_1_11_2', '01', '01')
    """
    values = [item.strip() for item in items]
    if len(values) < 2 or not all(re.fullmatch(r"\d+", value) for value in values):
        return suffix
    numbers = [int(value) for value in values]
    return element_name("", numbers, [2] * len(numbers))


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
        reject(f"unknown function {type(expr).__name__}(...) (tensors are read as X_{{i,j}}, X(i, j) or X[i, j])")
    if isinstance(expr, sympy.Pow) and isinstance(args[0], Symbol) and args[0].name == "e":
        return sympy.exp(args[1])
    if isinstance(expr, sympy.log) and len(args) == 2 and args[1] == sympy.E:
        return sympy.log(args[0])
    if isinstance(expr, (sympy.Indexed, sympy.Tuple)):
        return expr.func(*args)
    return expr.func(*args)
