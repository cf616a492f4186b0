"""Text, LaTeX and JSON views of :class:`~symcnn.symbolic.steps.Steps`: ``symcnn derive ... --steps``.

Every expression is printed by the project's printers (:mod:`symcnn.printing.text`,
:mod:`symcnn.printing.latex`) from the derivation's SymPy objects; a numeric walk-through prints
the same expression again with each input value in place of its symbol (:class:`SubstitutionPrinter`),
then its value.

Example (document 002's convolution, one weight entry):
    >>> from symcnn.symbolic.derive import LayerConfig
    >>> from symcnn.symbolic.steps import steps
    >>> walk = steps(LayerConfig("conv2d", input_size=(3, 3), kernel=(2, 2), bias=False), entries=["w00"])
    >>> print("\\n".join(as_text(walk).splitlines()[-8:]))
    dL/dW, gathered: each entry's chain rule
      dL/dw00
        chain rule  dL/dw00 = a*dy00/dw00 + b*dy01/dw00 + c*dy10/dw00 + d*dy11/dw00
        partials    dy00/dw00 = x00
                    dy01/dw00 = x01
                    dy10/dw00 = x10
                    dy11/dw00 = x11
        terms       dL/dw00 = a*x00 + b*x01 + c*x10 + d*x11
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import sympy
from sympy import Expr, Symbol

from symcnn.views import derivation as render
from symcnn.printing.latex import SymcnnLatexPrinter, latex
from symcnn.printing.text import SymcnnStrPrinter, readable, text
from symcnn.symbolic.display import register_latex_view
from symcnn.registry import input_number
from symcnn.symbolic.steps import ChainPartial, EntrySteps, Steps, gradient_roles
from symcnn.symbolic.tensors import indices_of

__all__ = ["SubstitutionPrinter", "SubstitutionLatexPrinter", "as_text", "as_latex", "as_latex_display",
           "as_dict", "as_json", "latex_parts", "latex_entries"]

_TITLES = {"weight": "dL/dW", "bias": "dL/db", "input": "dL/dX"}
_LATEX_TITLES = {"weight": r"\frac{\partial L}{\partial W}", "bias": r"\frac{\partial L}{\partial b}",
                 "input": r"\frac{\partial L}{\partial X}"}
_MAX_CHAIN_TERMS = 8  # a longer chain rule shows its first and last terms
_MAX_NAMED_ZEROS = 3  # more zero partials are counted, not listed


class SubstitutionPrinter(SymcnnStrPrinter):
    """Prints a value in place of each mapped sub-expression (an input symbol, a partial).

    >>> x, w = sympy.symbols("x00 w00")
    >>> SubstitutionPrinter({x: sympy.Integer(-2)}).doprint(w * x)
    'w00*(-2)'
    """

    def __init__(self, values: Mapping[Expr, Expr]):
        super().__init__()
        self.values = dict(values)

    def _print(self, expr, **kwargs) -> str:
        if isinstance(expr, sympy.Basic) and expr in self.values:
            value = self.values[expr]
            printed = text(value)
            simple = value.is_Symbol or (value.is_Integer and value >= 0)
            return printed if simple else f"({printed})"
        return super()._print(expr, **kwargs)


class SubstitutionLatexPrinter(SymcnnLatexPrinter):
    """The LaTeX twin of :class:`SubstitutionPrinter`; products written with ``\\cdot``."""

    def __init__(self, values: Mapping[Expr, Expr]):
        super().__init__({"mul_symbol": "dot"})
        self.values = dict(values)

    def _print(self, expr, **kwargs) -> str:
        if isinstance(expr, sympy.Basic) and expr in self.values:
            value = self.values[expr]
            printed = latex(value)
            return r"\left(%s\right)" % printed if value.is_negative else printed
        return super()._print(expr, **kwargs)


def _show(expr: Expr) -> Expr:
    return readable(expr, {})


def _chain(pieces: list[str]) -> str:
    """``a = b = c``, without repeating a piece that prints like the one before it."""
    kept = [piece for number, piece in enumerate(pieces) if number == 0 or piece != pieces[number - 1]]
    return " = ".join(kept)


class _Format:
    """How one format prints: the project's printer, names, and the walk-through's values."""

    def __init__(self, values: Mapping[Symbol, Expr], latex_format: bool):
        self.latex = latex_format
        self.values = values
        self.print = latex if latex_format else text

    def expr(self, expr: Expr) -> str:
        return self.print(_show(expr))

    def substituted(self, expr: Expr, values: Mapping[Expr, Expr]) -> str:
        if expr in values:  # a lone value needs no parentheses
            return self.expr(values[expr])
        printer = SubstitutionLatexPrinter(values) if self.latex else SubstitutionPrinter(values)
        return printer.doprint(_show(expr))

    def walk(self, expr: Expr, value: Optional[Expr]) -> str:
        """``expr``, and at the input values: ``expr = expr with the values = value``."""
        pieces = [self.expr(expr)]
        if value is not None:
            pieces += [self.substituted(expr, self.values), self.expr(value)]
        return _chain(pieces)

    def gradient_name(self, symbol: Symbol) -> str:
        return r"\frac{\partial L}{\partial %s}" % self.print(symbol) if self.latex else f"dL/d{symbol.name}"


def _plus(terms: list[str]) -> str:
    """Printed terms as one sum: ``a - b`` rather than ``a + -b`` (a leading minus binds to its first
    factor or summand only, so the text means the same)."""
    text = ""
    for term in terms:
        if not text:
            text = term
        elif term.startswith("-"):
            text += " - " + term[1:].lstrip()
        else:
            text += " + " + term
    return text


def _chain_rule(entry: EntrySteps, fmt: _Format) -> str:
    term = lambda partial: fmt.print(partial.upstream * ChainPartial(partial.output, entry.symbol))  # noqa: E731
    partials = entry.partials
    if len(partials) > _MAX_CHAIN_TERMS:
        count = (r"\text{(%d terms)}" % len(partials) if fmt.latex
                 else f"({len(partials)} terms, one per output element)")
        dots = r"\dots" if fmt.latex else "..."
        return " + ".join([term(partials[0]), term(partials[1]), dots, term(partials[-1])]) + " " + count
    return " + ".join(term(partial) for partial in partials)


@dataclass(frozen=True)
class _Row:
    """``left relation right``, with an optional label (``chain rule``, ``partials``, ...)."""

    left: str
    right: str
    relation: str = "="
    label: str = ""


@dataclass(frozen=True)
class _Block:
    """A titled group of rows; an entry's steps are ``parts``, one block each."""

    title: str
    rows: tuple[_Row, ...] = ()
    parts: tuple["_Block", ...] = ()


def _entry_block(entry: EntrySteps, fmt: _Format) -> _Block:
    """One entry's steps: chain rule, partials, surviving terms, and the walk-through at the values."""
    name = fmt.gradient_name(entry.symbol)
    partial = lambda p: fmt.print(ChainPartial(p.output, entry.symbol))  # noqa: E731
    rows = [_Row(name, _chain_rule(entry, fmt), label="chain rule")]
    surviving = entry.surviving
    for number, p in enumerate(surviving):
        rows.append(_Row(partial(p), fmt.expr(p.derivative), label="partials" if number == 0 else ""))
    zeros = [p for p in entry.partials if p.derivative == 0]
    if zeros:
        label = "" if surviving else "partials"
        if len(zeros) <= _MAX_NAMED_ZEROS:
            outputs = ", ".join(fmt.print(p.output) for p in zeros)
            note = r"\quad \text{(no } %s \text{ in } %s\text{)}" if fmt.latex else " (%s is not in %s)"
            right = " = ".join([partial(p) for p in zeros[1:]] + ["0"]) + note % (fmt.print(entry.symbol), outputs)
            rows.append(_Row(partial(zeros[0]), right, label=label))
        else:
            other = "other " if surviving else ""
            words = f"the {len(zeros)} {other}partials are 0 ({entry.name} is not in those output elements)"
            rows.append(_Row("", r"\text{%s}" % words if fmt.latex else words, label=label))
    symbolic = _plus([fmt.expr(p.term) for p in surviving]) or "0"
    walked = entry.numeric is not None and any(p.at_values != p.derivative for p in surviving)
    result = fmt.expr(entry.result)
    rows.append(_Row(name, symbolic if walked else _chain([symbolic, result]), label="terms"))
    if walked:
        for number, p in enumerate(surviving):
            rows.append(_Row(partial(p), fmt.walk(p.derivative, p.at_values), label="at values" if number == 0 else ""))
        numbers = {ChainPartial(p.output, entry.symbol): p.at_values for p in surviving}
        products = [fmt.substituted(p.upstream * ChainPartial(p.output, entry.symbol), numbers) for p in surviving]
        rows.append(_Row(name, _chain([_plus(products), fmt.expr(entry.numeric), result])))
    return _Block(f"dL/d{entry.name}", tuple(rows))


def _upstream_summary(walk: Steps, fmt: _Format) -> str:
    pairs = [(fmt.gradient_name(step.output), fmt.print(upstream))
             for step, upstream in zip(walk.forward, _upstream_elements(walk))]
    if len(pairs) > _MAX_CHAIN_TERMS:
        pairs = pairs[:2] + [(r"\dots" if fmt.latex else "...", None), pairs[-1]]
    separator = r",\quad " if fmt.latex else ", "
    return separator.join(name if value is None else f"{name} = {value}" for name, value in pairs)


def _upstream_elements(walk: Steps) -> list[Expr]:
    upstream = walk.derivation.tensors["grad_output"]
    return [upstream[index] for index in indices_of(upstream.shape)]


def _route_rows(walk: Steps, role: str, fmt: _Format) -> tuple[_Row, ...]:
    """``a (dL/dy00): x10 += a, ...``: the scatter view of one tensor's gradient."""
    plus = r" \mathrel{+}= " if fmt.latex else " += "
    rows = []
    for route in walk.routes[role]:
        targets = ", ".join(fmt.print(symbol) + plus + fmt.expr(contribution) for symbol, contribution in route.targets)
        left = (r"%s \;\left(%s\right)" if fmt.latex else "%s (%s)") % (fmt.print(route.upstream),
                                                                       fmt.gradient_name(route.output))
        rows.append(_Row(left, targets or (r"\text{no entry}" if fmt.latex else "no entry"), relation=":"))
    return tuple(rows)


def _values_line(walk: Steps) -> str:
    return "at input values " + ", ".join(f"{symbol}={value}" for symbol, value in walk.values.items())


def _blocks(walk: Steps, fmt: _Format) -> list[_Block]:
    """Forward expressions, the upstream gradient, then each tensor's routes and entries."""
    at = " (at the input values)" if walk.values else ""
    blocks = [
        _Block("Forward: the expressions that are differentiated" + at,
               tuple(_Row(fmt.print(step.output), fmt.walk(step.expression, step.value)) for step in walk.forward)),
        _Block("Upstream gradient dL/dY", (_Row("", _upstream_summary(walk, fmt)),)),
    ]
    merges = walk.derivation.config.entry.merges
    for role in gradient_roles(walk.derivation.tensors):
        title = f"dL/dX{input_number(role)}" if merges else _TITLES[role]  # an add's inputs X1, X2, ...
        if role in walk.routes:
            blocks.append(_Block(f"{title}, scattered: where each upstream gradient goes{at}",
                                 _route_rows(walk, role, fmt)))
        entries = [_entry_block(entry, fmt) for entry in walk.entries if entry.role == role]
        if entries:
            blocks.append(_Block(f"{title}, gathered: each entry's chain rule", parts=tuple(entries)))
    return blocks


def _text_row(row: _Row) -> str:
    if not row.left:
        return row.right
    return f"{row.left}: {row.right}" if row.relation == ":" else f"{row.left} {row.relation} {row.right}"


def as_text(walk: Steps) -> str:
    """The steps as plain text, one equation a line."""
    fmt = _Format(walk.values, latex_format=False)
    lines = [render.describe(walk.derivation.config)]
    if walk.values:
        lines.append(_values_line(walk))
    for block in _blocks(walk, fmt):
        lines += ["", block.title]
        lines += [f"  {_text_row(row)}" for row in block.rows]
        for part in block.parts:
            width = max(len(row.label) for row in part.rows)
            lines.append(f"  {part.title}")
            lines += [f"    {row.label:<{width}}  {_text_row(row)}" for row in part.rows]
    return "\n".join(lines)


def _latex_row(row: _Row) -> str:
    text = f"{row.left} &{row.relation} {row.right}" if row.left else f"&{row.right}"
    return text + (r" && \text{%s}" % row.label if row.label else "")


def _latex_blocks(walk: Steps) -> list[tuple[str, list[str]]]:
    """``(title, aligned rows)`` for each block; each entry is a block of its own."""
    blocks = []
    for block in _blocks(walk, _Format(walk.values, latex_format=True)):
        if block.rows:
            blocks.append((block.title, [_latex_row(row) for row in block.rows]))
        blocks += [(f"{part.title} by the chain rule", [_latex_row(row) for row in part.rows]) for part in block.parts]
    return blocks


def as_latex(walk: Steps) -> str:
    """An ``aligned`` block per section, headed by a ``%`` comment, for a LaTeX document."""
    header = [f"% {render.describe(walk.derivation.config)}"]
    if walk.values:
        header.append(f"% {_values_line(walk)}")
    return render.latex_blocks("\n".join(header), _latex_blocks(walk))


def latex_entries(walk: Steps) -> list[tuple[EntrySteps, tuple[str, ...]]]:
    """Each entry's chain rule as aligned LaTeX rows, as ``--steps --format latex`` shows it (for a report)."""
    fmt = _Format(walk.values, latex_format=True)
    return [(entry, tuple(_latex_row(row) for row in _entry_block(entry, fmt).rows)) for entry in walk.entries]


def latex_parts(walk: Steps) -> render.LatexParts:
    """The header and blocks of :func:`as_latex`, unlaid (for a complete document)."""
    header = (render.describe(walk.derivation.config),) + ((_values_line(walk),) if walk.values else ())
    return render.LatexParts(header, tuple((title, tuple(rows)) for title, rows in _latex_blocks(walk)))


def as_latex_display(walk: Steps) -> str:
    """One ``$$...$$`` display (Jupyter's ``_repr_latex_``)."""
    header = [render.describe(walk.derivation.config)] + ([_values_line(walk)] if walk.values else [])
    return render.latex_display(header, _latex_blocks(walk))


register_latex_view(Steps, as_latex_display)


def as_dict(walk: Steps) -> dict[str, Any]:
    """A JSON-ready dict; expressions as SymPy strings (``sympy.sympify`` reads them back)."""
    sstr = sympy.sstr
    optional = lambda expr: None if expr is None else sstr(expr)  # noqa: E731
    base = render.as_dict(walk.derivation)
    result: dict[str, Any] = {"op": base["op"], "config": base["config"]}
    if "input_values" in base:
        result["input_values"] = base["input_values"]
    result["forward"] = [{"output": step.output.name, "expression": sstr(step.expression),
                          "value": optional(step.value)} for step in walk.forward]
    result["upstream"] = {step.output.name: sstr(upstream)
                          for step, upstream in zip(walk.forward, _upstream_elements(walk))}
    result["routes"] = {role: [{"output": route.output.name, "upstream": sstr(route.upstream),
                                "targets": {symbol.name: sstr(value) for symbol, value in route.targets}}
                               for route in routes] for role, routes in walk.routes.items()}
    result["entries"] = [{
        "entry": entry.name,
        "role": entry.role,
        "index": list(entry.index),
        "chain_rule": [{"output": p.output.name, "upstream": sstr(p.upstream), "derivative": sstr(p.derivative),
                        "at_values": optional(p.at_values)} for p in entry.partials],
        "terms": sstr(entry.symbolic),
        "at_values": optional(entry.numeric),
        "result": sstr(entry.result),
    } for entry in walk.entries]
    return result


def as_json(walk: Steps) -> str:
    return json.dumps(as_dict(walk), indent=2)
