"""Text, LaTeX and JSON views of :class:`~symcnn.steps.Steps`: ``symcnn derive ... --steps``.

Every expression is printed by the project's printers (:mod:`symcnn.printing`) from the
derivation's SymPy objects; a numeric walk-through prints the same expression again with
each input value in place of its symbol (:class:`SubstitutionPrinter`), then its value.

Example (document 002's convolution, one weight entry):
    >>> from symcnn.derive import LayerConfig
    >>> from symcnn.steps import steps
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
from typing import Any, Mapping, Optional

import sympy
from sympy import Expr, Symbol

from symcnn import render
from symcnn.printing import SymcnnLatexPrinter, SymcnnStrPrinter, latex, readable, text
from symcnn.steps import ROLES, ChainPartial, EntrySteps, Steps
from symcnn.tensors import indices_of

__all__ = ["SubstitutionPrinter", "SubstitutionLatexPrinter", "as_text", "as_latex", "as_latex_display",
           "as_dict", "as_json"]

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


def _chain_rule(entry: EntrySteps, fmt: _Format) -> str:
    terms = [fmt.print(partial.upstream * ChainPartial(partial.output, entry.symbol)) for partial in entry.partials]
    if len(terms) > _MAX_CHAIN_TERMS:
        count = r"\text{(%d terms)}" % len(terms) if fmt.latex else f"({len(terms)} terms, one per output element)"
        dots = r"\dots" if fmt.latex else "..."
        return " + ".join(terms[:2] + [dots, terms[-1]]) + " " + count
    return " + ".join(terms)


def _entry_rows(entry: EntrySteps, fmt: _Format) -> list[tuple[str, str, str]]:
    """``(label, left side, right side)`` rows of one entry's steps."""
    name = fmt.gradient_name(entry.symbol)
    partial = lambda p: fmt.print(ChainPartial(p.output, entry.symbol))  # noqa: E731
    rows = [("chain rule", name, _chain_rule(entry, fmt))]
    surviving = entry.surviving
    for number, p in enumerate(surviving):
        rows.append(("partials" if number == 0 else "", partial(p), fmt.expr(p.derivative)))
    zeros = [p for p in entry.partials if p.derivative == 0]
    if zeros:
        label = "" if surviving else "partials"
        if len(zeros) <= _MAX_NAMED_ZEROS:
            outputs = ", ".join(fmt.print(p.output) for p in zeros)
            note = r"\quad \text{(no } %s \text{ in } %s\text{)}" if fmt.latex else " (%s is not in %s)"
            rhs = " = ".join(partial(p) for p in zeros[1:]) + (" = " if len(zeros) > 1 else "") + "0"
            rows.append((label, partial(zeros[0]), rhs + note % (fmt.print(entry.symbol), outputs)))
        else:
            other = "other " if surviving else ""
            words = f"the {len(zeros)} {other}partials are 0 ({entry.name} is not in those output elements)"
            rows.append((label, "", r"\text{%s}" % words if fmt.latex else words))
    symbolic = " + ".join(fmt.expr(p.term) for p in surviving) or "0"
    walked = entry.numeric is not None and any(p.at_values != p.derivative for p in surviving)
    result = fmt.expr(entry.result)
    rows.append(("terms", name, symbolic if walked else _chain([symbolic, result])))
    if walked:
        for number, p in enumerate(surviving):
            rows.append(("at values" if number == 0 else "", partial(p), fmt.walk(p.derivative, p.at_values)))
        numbers = {ChainPartial(p.output, entry.symbol): p.at_values for p in surviving}
        products = [fmt.substituted(p.upstream * ChainPartial(p.output, entry.symbol), numbers) for p in surviving]
        rows.append(("", name, _chain([" + ".join(products), fmt.expr(entry.numeric), result])))
    return rows


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


def _route_rows(walk: Steps, role: str, fmt: _Format) -> list[tuple[str, str]]:
    rows = []
    for route in walk.routes[role]:
        plus = r" \mathrel{+}= " if fmt.latex else " += "
        targets = ", ".join(fmt.print(symbol) + plus + fmt.expr(contribution) for symbol, contribution in route.targets)
        left = f"{fmt.print(route.upstream)} ({fmt.gradient_name(route.output)})"
        if fmt.latex:
            left = r"%s \;\left(%s\right)" % (fmt.print(route.upstream), fmt.gradient_name(route.output))
        rows.append((left, targets or ("\\text{no entry}" if fmt.latex else "no entry")))
    return rows


def _values_line(walk: Steps) -> str:
    return "at input values " + ", ".join(f"{symbol}={value}" for symbol, value in walk.values.items())


def _sections(walk: Steps, fmt: _Format):
    """``(title, rows)`` with rows ``(label, left, right)``: forward, then each tensor's routes and entries."""
    at = " (at the input values)" if walk.values else ""
    yield "Forward: the expressions that are differentiated" + at, [
        ("", fmt.print(step.output), fmt.walk(step.expression, step.value)) for step in walk.forward]
    yield "Upstream gradient dL/dY", [("", "", _upstream_summary(walk, fmt))]
    for role in ROLES:
        title = _TITLES[role]
        if role in walk.routes:
            yield f"{title}, scattered: where each upstream gradient goes{at}", [
                ("", left, right) for left, right in _route_rows(walk, role, fmt)]
        entries = [entry for entry in walk.entries if entry.role == role]
        if entries:
            yield f"{title}, gathered: each entry's chain rule", [
                (None, entry, None) for entry in entries]


def as_text(walk: Steps) -> str:
    """The steps as plain text, one equation a line."""
    fmt = _Format(walk.values, latex_format=False)
    lines = [render.describe(walk.derivation.config)]
    if walk.values:
        lines.append(_values_line(walk))
    for title, rows in _sections(walk, fmt):
        lines += ["", title]
        for label, left, right in rows:
            if isinstance(left, EntrySteps):
                lines.append(f"  {fmt.gradient_name(left.symbol)}")
                width = max(len(row[0]) for row in _entry_rows(left, fmt))
                lines += [f"    {name:<{width}}  {lhs} = {rhs}" if lhs else f"    {name:<{width}}  {rhs}"
                          for name, lhs, rhs in _entry_rows(left, fmt)]
            elif left and title.startswith("Forward"):
                lines.append(f"  {left} = {right}")
            elif left:
                lines.append(f"  {left}: {right}")
            else:
                lines.append(f"  {right}")
    return "\n".join(lines)


def _latex_blocks(walk: Steps) -> list[tuple[str, list[str]]]:
    """``(title, aligned rows)`` for each section; each entry is its own block."""
    fmt = _Format(walk.values, latex_format=True)
    blocks = []
    for title, rows in _sections(walk, fmt):
        if rows and isinstance(rows[0][1], EntrySteps):
            for _, entry, _ in rows:
                body = [(f"{lhs} &= {rhs}" if lhs else f"&{rhs}") + (r" && \text{%s}" % label if label else "")
                        for label, lhs, rhs in _entry_rows(entry, fmt)]
                blocks.append((f"dL/d{entry.name} by the chain rule", body))
        elif title.startswith("Forward"):
            blocks.append((title, [f"{left} &= {right}" for _, left, right in rows]))
        elif title.startswith("Upstream gradient"):
            blocks.append((title, [f"&{right}" for _, _, right in rows]))
        else:
            blocks.append((title, [f"{left} &: {right}" for _, left, right in rows]))
    return blocks


def as_latex(walk: Steps) -> str:
    """An ``aligned`` block per section, headed by a ``%`` comment, for a LaTeX document."""
    header = [f"% {render.describe(walk.derivation.config)}"]
    if walk.values:
        header.append(f"% {_values_line(walk)}")
    return render.latex_blocks("\n".join(header), _latex_blocks(walk))


def as_latex_display(walk: Steps) -> str:
    """One ``$$...$$`` display (Jupyter's ``_repr_latex_``)."""
    header = [render.describe(walk.derivation.config)] + ([_values_line(walk)] if walk.values else [])
    return render.latex_display(header, _latex_blocks(walk))


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
    result["upstream"] = {step.output.name: sstr(upstream) for step, upstream in zip(walk.forward, _upstream_elements(walk))}
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
