"""Text, LaTeX and JSON views of a :class:`~symcnn.symbolic.derive.Derivation`.

Element names are the documents' (``y00``, ``dL/dw01``); LaTeX comes from SymPy's printer.

Example:
    >>> from symcnn.symbolic.derive import LayerConfig, derive
    >>> print(as_text(derive(LayerConfig("avgpool2d", input_size=(2, 2), kernel=(2, 2)))))
    avgpool2d: input 1x1x2x2, kernel 2x2, stride 2x2 -> output 1x1x1x1
    <BLANKLINE>
    Output
      y00 = x00/4 + x01/4 + x10/4 + x11/4
    <BLANKLINE>
    dL/dX (upstream gradient g00)
      dL/dx00 = g00/4
      dL/dx01 = g00/4
      dL/dx10 = g00/4
      dL/dx11 = g00/4
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator, NamedTuple, Sequence

import sympy
from sympy import Array, Symbol

from symcnn.registry import input_role
from symcnn.symbolic.derive import Derivation, LayerConfig
from symcnn.symbolic.display import register_latex_view
from symcnn.printing.latex import latex
from symcnn.printing.text import readable
from symcnn.symbolic.tensors import element_name, indices_of

__all__ = ["describe", "as_text", "as_latex", "as_latex_display", "as_json", "as_dict", "latex_text", "latex_blocks",
           "latex_display", "LatexParts", "latex_parts", "latex_key", "latex_value"]

_SECTIONS = (("grad_weight", "weight", "dL/dW"), ("grad_bias", "bias", "dL/db"), ("grad_input", "input", "dL/dX"))


def _gradient_sections(derivation: Derivation) -> list[tuple[str, str, str]]:
    """(gradient key, tensor role, title) of each gradient the derivation has, in the documents' order
    (weight, bias, input); an add's or concat's inputs X1, X2, ... each by number."""
    if not derivation.config.entry.merges:
        return [section for section in _SECTIONS if section[0] in derivation.gradients]
    count = derivation.config.inputs
    return [(f"grad_{input_role(number)}", input_role(number), f"dL/dX{number}") for number in range(1, count + 1)]


def _shape(shape) -> str:
    return "x".join(str(size) for size in shape)


def describe(config: LayerConfig) -> str:
    """One line: the op, its configuration and its output shape."""
    parts = [f"input {_shape(config.input_shape)}" if not config.entry.merges
             else f"{config.inputs} inputs {_shape(config.input_shape)}"]
    for role, shape in config.parameter_shapes.items():
        parts.append(f"{role} {_shape(shape)}" if len(shape) > 1 else f"{role} {shape[0]}")
    has_weight = config.weight_shape is not None
    for setting in config.entry.settings:
        if setting.key == "kernel" and has_weight:
            continue  # a convolution's kernel is its weight's last two axes
        if setting.kind == "pair":
            parts.append(f"{setting.key} {_shape(config.settings[setting.key])}")
        elif setting.kind == "number" and setting.key in config.settings:
            parts.append(f"{setting.key} {config.settings[setting.key]:g}")
        elif setting.option and setting.kind == "count" and config.settings[setting.key] != setting.default:
            parts.append(f"{setting.key} {config.settings[setting.key]}")  # conv2d's groups, where not 1
    return f"{config.op}: {', '.join(parts)} -> output {_shape(config.output_shape)}"


def _entries(array: Array, prefix: str, shape) -> Iterator[tuple[str, sympy.Expr]]:
    for index in indices_of(array.shape):
        yield element_name(prefix, index, shape), array[index]


def _tensor_prefix(derivation: Derivation, role: str) -> str:
    """The letter a tensor's symbols are named with (x, w, b)."""
    first = derivation.tensors[role][tuple(0 for _ in derivation.tensors[role].shape)]
    return first.name.rstrip("0123456789_")


def _sections(derivation: Derivation):
    """(title, [(left-hand name, expression)]) for the output and each gradient."""
    output_shape = derivation.output.shape
    yield "Output", list(_entries(derivation.output, "y", output_shape))
    for key, role, title in _gradient_sections(derivation):
        array = derivation.gradients[key]
        prefix = _tensor_prefix(derivation, role)
        yield title, [(f"dL/d{name}", expr) for name, expr in _entries(array, prefix, array.shape)]


def _upstream_names(derivation: Derivation) -> str:
    upstream = derivation.tensors["grad_output"]
    names = [str(upstream[index]) for index in indices_of(upstream.shape)]
    return " ".join(names) if len(names) <= 8 else f"{names[0]} ... {names[-1]}"


def _values_line(derivation: Derivation) -> str:
    return "at input values " + ", ".join(f"{symbol}={value}" for symbol, value in derivation.values.items())


def as_text(derivation: Derivation) -> str:
    """The derivation as the documents write it: one equation a line."""
    lines = [describe(derivation.config)]
    if derivation.values:
        lines.append(_values_line(derivation))
    for title, entries in _sections(derivation):
        if title != "Output":
            title = f"{title} (upstream gradient {_upstream_names(derivation)})"
        lines += ["", title]
        lines += [f"  {name} = {sympy.sstr(expr)}" for name, expr in entries]
    return "\n".join(lines)


def _latex_name(name: str) -> str:
    if name.startswith("dL/d"):
        return r"\frac{\partial L}{\partial %s}" % sympy.latex(sympy.Symbol(name[4:]))
    return sympy.latex(sympy.Symbol(name))


# Characters that LaTeX's text mode and MathJax's \text{} treat differently: written in math mode.
_MATH_CHARACTERS = {"_": r"\_", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "{": r"\{", "}": r"\}",
                    "<": "<", ">": ">", "<=": r"\leq", ">=": r"\geq", "^": r"\hat{}", "~": r"\sim",
                    "\\": r"\backslash", "->": r"\to", "×": r"\times", "·": r"\cdot", "−": "-"}
_MATH_PATTERN = re.compile("(" + "|".join(re.escape(key) for key in sorted(_MATH_CHARACTERS, key=len, reverse=True))
                           + ")")


def latex_text(line: str) -> str:
    """A line of prose for a math display: ``\\text{...}``, special characters in math mode.

    >>> print(latex_text("conv2d: input 1x1x3x3 -> output 1x1x2x2"))
    \\text{conv2d: input 1x1x3x3 }\\to\\text{ output 1x1x2x2}
    """
    parts = []
    for number, piece in enumerate(_MATH_PATTERN.split(line)):
        if number % 2:
            parts.append(_MATH_CHARACTERS[piece])
        elif piece:
            parts.append(r"\text{%s}" % piece)
    return "".join(parts)


def latex_blocks(header: str, blocks: Sequence[tuple[str, Sequence[str]]]) -> str:
    """A ``%`` comment header, then an ``aligned`` block of rows per ``(title, rows)``."""
    parts = [header] if header else []
    for title, rows in blocks:
        parts.append(f"% {title}\n\\begin{{aligned}}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}")
    return "\n\n".join(parts)


def latex_display(header: Sequence[str], blocks: Sequence[tuple[str, Sequence[str]]]) -> str:
    """One ``$$...$$`` display for Jupyter: the header lines and each block's title as text,
    each block's rows aligned, all stacked (``gathered``)."""
    lines = [latex_text(line) for line in header]
    for title, rows in blocks:
        lines.append(latex_text(title) + " \\\\\n\\begin{aligned}\n" + " \\\\\n".join(rows) + "\n\\end{aligned}")
    return "$$\n\\begin{gathered}\n" + " \\\\[2ex]\n".join(lines) + "\n\\end{gathered}\n$$"


def _latex_sections(derivation: Derivation) -> list[tuple[str, list[str]]]:
    return [(title, [f"{_latex_name(name)} &= {latex(readable(expr, {}))}" for name, expr in entries])
            for title, entries in _sections(derivation)]


class LatexParts(NamedTuple):
    """A view's LaTeX before it is laid out: header lines (plain text) and ``(title, aligned rows)``
    blocks. ``symcnn derive --standalone`` lays them out as a complete document."""

    header: tuple[str, ...]
    blocks: tuple[tuple[str, tuple[str, ...]], ...]


def latex_parts(derivation: Derivation) -> LatexParts:
    """The header and blocks of :func:`as_latex`, unlaid (the input values in the header, if any)."""
    header = (describe(derivation.config),) + ((_values_line(derivation),) if derivation.values else ())
    return LatexParts(header, tuple((title, tuple(rows)) for title, rows in _latex_sections(derivation)))


def as_latex(derivation: Derivation) -> str:
    """An ``aligned`` block per section, for a LaTeX document or a Markdown math cell.

    Expressions are printed by :mod:`symcnn.printing.latex` (max pooling's routing conditions as
    Iverson brackets).
    """
    return latex_blocks(f"% {describe(derivation.config)}", _latex_sections(derivation))


def as_latex_display(derivation: Derivation) -> str:
    """The derivation as one ``$$...$$`` display: Jupyter's ``_repr_latex_``."""
    header = [describe(derivation.config)]
    if derivation.values:
        header.append(_values_line(derivation))
    return latex_display(header, _latex_sections(derivation))


register_latex_view(Derivation, as_latex_display)


def _nested_strings(array: Array) -> Any:
    if array.rank() == 0:
        return sympy.sstr(array[()])
    return [_nested_strings(array[index]) if array.rank() > 1 else sympy.sstr(array[index])
            for index in range(array.shape[0])]


def as_dict(derivation: Derivation) -> dict[str, Any]:
    """A JSON-ready dict: ``output`` and each gradient as nested lists of SymPy strings, and
    ``symbols``, each symbol's name mapped to ``[tensor, [full index]]``."""
    config = derivation.config
    result: dict[str, Any] = {
        "op": config.op,
        "config": {
            "input_shape": list(config.input_shape),
            "weight_shape": list(config.weight_shape) if config.weight_shape else None,
            "bias": config.has_bias,
            "output_shape": list(config.output_shape),
        },
        "output": _nested_strings(derivation.output),
    }
    if "kernel" in config.settings:
        result["config"].update(kernel=list(config.kernel), stride=list(config.stride),
                                padding=list(config.padding), dilation=list(config.dilation))
    numbers = {key: value for key, value in config.settings.items() if config.entry.setting(key).kind == "number"}
    if numbers:
        result["config"].update(numbers)
    for key, _, _ in _gradient_sections(derivation):
        result[key] = _nested_strings(derivation.gradients[key])
    if derivation.values:
        result["input_values"] = _nested_strings(derivation.tensors["input"].applyfunc(
            lambda symbol: derivation.values[symbol]))
    result["symbols"] = {name: [role, list(index)] for name, (role, index) in derivation.symbols().items()}
    return result


def as_json(derivation: Derivation) -> str:
    return json.dumps(as_dict(derivation), indent=2)


def latex_key(key: str) -> str:
    """A result's key as a left-hand side: ``dL/dW`` as a fraction, ``Y`` as a symbol, else text.

    >>> latex_key("Y"), latex_key("dL/dW").startswith(chr(92) + "frac")  # chr(92): a backslash
    ('Y', True)
    """
    if key.startswith("dL/d") and key[4:].isidentifier():
        return r"\frac{\partial L}{\partial %s}" % sympy.latex(Symbol(key[4:]))
    return sympy.latex(Symbol(key)) if len(key) == 1 else latex_text(key)


def latex_value(value: Any) -> str:
    """A derived value in LaTeX: an array without its axes of length 1, as a matrix."""
    if isinstance(value, sympy.NDimArray):
        shape = [size for size in value.shape if size != 1]
        elements = [readable(element, {}) for element in sympy.flatten(value.tolist())]
        if not shape:
            return latex(elements[0])
        rows, columns = (shape[0], 1) if len(shape) == 1 else (shape[0], len(elements) // shape[0])
        if len(shape) > 2:
            return latex(Array(elements, tuple(shape)))
        matrix = sympy.Matrix(rows, columns, elements)
        return latex(matrix.T if len(shape) == 1 else matrix)
    if isinstance(value, tuple):
        return r"\left(%s\right)" % ", ".join(str(item) for item in value)
    return latex(readable(sympy.sympify(value), {}))
