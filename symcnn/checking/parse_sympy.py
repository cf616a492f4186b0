"""A claim in SymPy syntax (``X[n, c, i, j]``, ``Sum(..., (m, 0, K_h - 1))``, ``dL/dX[k]``), parsed
with ``parse_expr`` over a namespace of SymPy's constructors only: no other name is callable.

Example:
    >>> claim = parse_sympy_claim("Y[i] = Sum(W[m] * X[i + m], (m, 0, 1))", {"X", "W", "Y"}, elements=False)
    >>> claim.syntax, claim.equations[0].rhs
    ('sympy', Sum(W[m]*X[i + m], (m, 0, 1)))
"""

from __future__ import annotations

import re

import sympy
from sympy import IndexedBase, Symbol

from symcnn.checking.claims import Claim, ClaimSyntaxError, Equation, MatrixValue, gradient_name, reject, tensor_base
from symcnn.checking.sizes import check_python_constants
from symcnn.symbolic.functions import FirstArgmax, MaxOver

__all__ = ["parse_sympy_claim"]

_SAFE = re.compile(r"^[\w\s\[\]\(\)\+\-\*/,\.=<>!&|'^~]*$")
_ALLOWED_FUNCTIONS = {
    "Sum": sympy.Sum, "Max": sympy.Max, "Min": sympy.Min, "floor": sympy.floor, "ceiling": sympy.ceiling,
    "Mod": sympy.Mod, "exp": sympy.exp, "log": sympy.log, "sqrt": sympy.sqrt, "cos": sympy.cos, "sin": sympy.sin,
    "Piecewise": sympy.Piecewise,
    "Eq": sympy.Eq, "Ne": sympy.Ne, "Lt": sympy.Lt, "Le": sympy.Le, "Gt": sympy.Gt, "Ge": sympy.Ge,
    "And": sympy.And, "Or": sympy.Or, "Not": sympy.Not, "KroneckerDelta": sympy.KroneckerDelta,
    "MaxOver": MaxOver, "FirstArgmax": FirstArgmax, "Rational": sympy.Rational, "Integer": sympy.Integer,
    "Float": sympy.Float, "true": sympy.true, "false": sympy.false, "E": sympy.E, "pi": sympy.pi,
    "oo": sympy.oo,
}


def parse_sympy_claim(text: str, tensors: set[str], elements: bool) -> Claim:
    """The claim ``text`` (SymPy syntax): its equations and where-clause (definitions only); ``tensors``
    and ``elements`` as :func:`symcnn.checking.parse.parse_claim` takes them."""
    if not _SAFE.match(text) or "__" in text or re.search(r"\.\s*[A-Za-z_]", text) or "lambda" in text:
        reject("SymPy syntax may hold names, numbers, brackets and arithmetic only")
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
        check_python_constants(part)  # before parse_expr evaluates a power
        try:
            value = parse_expr(part.strip(), local_dict=dict(namespace), global_dict={
                "__builtins__": {}, "Symbol": _symbol_factory(elements), **_ALLOWED_FUNCTIONS},
                transformations=(auto_symbol, auto_number, rationalize, convert_xor), evaluate=True)
        except ClaimSyntaxError:
            raise
        except Exception as error:  # parse_expr raises many kinds; all mean "not a formula"
            first_line = str(error).splitlines()[0] if str(error) else ""
            reject(f"cannot parse {part.strip()!r} as SymPy syntax ({type(error).__name__}: {first_line})")
        label = str(value.label) if isinstance(value, IndexedBase) else None
        if label is not None and label in namespace and value is namespace.get(label):
            return value
        if not isinstance(value, (sympy.Basic, MatrixValue)):
            reject(f"{part.strip()!r} is not a formula")
        return value

    equations = []
    for line in [line for line in re.split(r"[;\n]", body) if line.strip()]:
        parts = [part for part in re.split(r"(?<![<>!=])=(?!=)", line)]
        if len(parts) == 1:
            value = parse(parts[0])
            if isinstance(value, sympy.Equality):
                parts_values = [value.lhs, value.rhs]
            else:
                reject(f"expected an equation 'left = right' or Eq(left, right), got {line.strip()!r}")
        else:
            parts_values = [parse(part) for part in parts]
        equations += [Equation(parts_values[0], value) for value in parts_values[1:]]
    definitions = []
    for item in [item for item in re.split(r"[;,](?![^\[\(]*[\]\)])", where_text) if item.strip()]:
        parts = re.split(r"(?<![<>!=])=(?!=)", item)
        if len(parts) != 2:
            reject(f"cannot read the where-clause item {item.strip()!r}")
        definitions.append(Equation(parse(parts[0]), parse(parts[1])))
    if not equations:
        reject("expected an equation 'left = right'")
    return Claim(text, "sympy", tuple(equations), tuple(definitions), ())


def _symbol_factory(elements: bool):
    def make(name, **assumptions):
        name = "dL/d" + name[4:] if name.startswith("dL_d") else name  # dL/dw00 as written
        return Symbol(name, real=True) if elements else Symbol(name)

    return make
