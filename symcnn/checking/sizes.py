"""The sizes of a formula's constants and expansions, known before SymPy computes them, against
the limits of :mod:`symcnn.checking.limits`.

SymPy evaluates as it builds: ``9^{9^{9^9}}`` is computed, digit by digit, the moment the LaTeX
reader rebuilds its parse tree or ``parse_expr`` reads ``9**9**9**9``, and ``floor(exp(10**6))``
asks for a million digits of e. So the sizes are read from what comes before: SymPy's unevaluated
LaTeX parse tree (:func:`check_constants`) and the Python syntax tree of the SymPy-syntax text
(:func:`check_python_constants`). A parsed claim (:func:`check_claim`) is checked for its sums'
ranges and the terms of its expansion (:func:`check_expansion`, as the exact comparison expands);
the index checker checks the values it computes at a configuration the same way.

Example:
    >>> check_python_constants("9**9**9**9")
    Traceback (most recent call last):
    ...
    symcnn.checking.claims.ClaimSyntaxError: an exponent of 387,420,489: the checker's limit is 100
    >>> check_constants(sympy.Sum(sympy.Symbol("k"), (sympy.Symbol("k"), 0, 10**9)))
    Traceback (most recent call last):
    ...
    symcnn.checking.claims.ClaimSyntaxError: k runs to 1,000,000,000: the checker's limit is 20,000
"""

from __future__ import annotations

import ast
import math
from fractions import Fraction
from typing import Callable, Mapping, NamedTuple, Optional

import sympy

from symcnn.checking.claims import reject
from symcnn.checking.limits import (MAX_EXPANSION_TERMS, MAX_EXPONENT, MAX_FACTORIAL_ARGUMENT, MAX_NUMBER_DIGITS,
                                    MAX_SUM_RANGE)
from symcnn.symbolic.functions import FirstArgmax, MaxOver

__all__ = ["Size", "exact", "power", "factorial", "check_power", "check_constants", "check_python_constants",
           "check_claim", "check_expansion"]

# --- constants: sizes before SymPy computes them ---------------------------------------------------------------


class Size(NamedTuple):
    """What is known of an expression's constants before SymPy computes them: ``digits``, an upper
    bound on ``log10(max(|value|, 1))`` of its constant parts, and its ``exact`` value when it is a
    rational number. A symbol has no size (``None``); ``x + 10^{99}`` has the size of ``10^{99}``
    (``e^{x + 10^{99}}`` is ``e^x e^{10^{99}}`` once expanded), ``\\max(x, 0)`` that of 0."""

    digits: float
    exact: Optional[Fraction] = None


def exact(value: Fraction) -> Size:
    """The size of a rational number, refused beyond :data:`MAX_NUMBER_DIGITS` digits."""
    magnitude = abs(value)
    digits = 0.0 if magnitude <= 1 else _log10(magnitude)
    if digits > MAX_NUMBER_DIGITS:
        reject(f"a constant of about {int(digits) + 1:,} digits: the checker's limit is {MAX_NUMBER_DIGITS}")
    return Size(digits, value)


def _log10(value: Fraction) -> float:
    return math.log10(value.numerator) - math.log10(value.denominator)


def _shown(size: Size) -> str:
    if size.exact is not None and size.exact.denominator == 1 and size.digits <= 24:
        return f"{size.exact.numerator:,}"
    if size.exact is not None and size.digits <= 24:
        return str(size.exact)
    return f"about 10^{size.digits:.0f}"


def _sum(sizes: list) -> Optional[Size]:
    known = [size for size in sizes if size is not None]
    if not known:
        return None
    if len(known) == len(sizes) and all(size.exact is not None for size in sizes):
        return exact(sum((size.exact for size in sizes), Fraction(0)))
    return Size(max(size.digits for size in known) + math.log10(len(known)))


def _product(sizes: list) -> Optional[Size]:
    known = [size for size in sizes if size is not None]
    if not known:
        return None
    if len(known) == len(sizes) and all(size.exact is not None for size in sizes):
        return exact(math.prod((size.exact for size in sizes), start=Fraction(1)))
    return Size(sum(size.digits for size in known))


_E = Size(math.log10(math.e))


def power(base: Optional[Size], exponent: Optional[Size]) -> Optional[Size]:
    """The size of ``base ** exponent``, refused when the exponent is larger than
    :data:`MAX_EXPONENT` or the power would have more than :data:`MAX_NUMBER_DIGITS` digits. Known
    before the power is computed: an exponent that depends on a symbol stays a symbolic power.

    >>> power(exact(Fraction(2)), exact(Fraction(64))).exact
    Fraction(18446744073709551616, 1)
    >>> power(exact(Fraction(10**60)), exact(Fraction(2)))
    Traceback (most recent call last):
    ...
    symcnn.checking.claims.ClaimSyntaxError: a power of about 121 digits: the checker's limit is 100
    """
    if exponent is None:
        return None
    bound = abs(exponent.exact) if exponent.exact is not None else 10 ** exponent.digits
    if bound > MAX_EXPONENT:
        reject(f"an exponent of {_shown(exponent)}: the checker's limit is {MAX_EXPONENT}")
    if base is None:
        return None
    if base.exact is not None and exponent.exact is not None and exponent.exact.denominator == 1:
        if base.exact == 0:
            return None if exponent.exact < 0 else Size(0.0, Fraction(0 if exponent.exact else 1))
        magnitude = abs(base.exact)
        digits = abs(exponent.exact) * (abs(math.log10(magnitude.numerator)) + math.log10(magnitude.denominator))
        if digits > MAX_NUMBER_DIGITS:
            reject(f"a power of about {int(digits) + 1:,} digits: the checker's limit is {MAX_NUMBER_DIGITS}")
        return exact(base.exact ** int(exponent.exact))
    digits = float(bound) * base.digits  # a root or an inexact base: an estimate
    if digits > MAX_NUMBER_DIGITS:
        reject(f"a power of about {int(digits) + 1:,} digits: the checker's limit is {MAX_NUMBER_DIGITS}")
    return Size(digits)


def factorial(argument: Optional[Size]) -> Optional[Size]:
    """The size of ``argument!``, refused above :data:`MAX_FACTORIAL_ARGUMENT`."""
    if argument is None:
        return None
    if (abs(argument.exact) if argument.exact is not None else 10 ** argument.digits) > MAX_FACTORIAL_ARGUMENT:
        reject(f"the factorial of {_shown(argument)}: the checker's limit is {MAX_FACTORIAL_ARGUMENT}!")
    if argument.exact is not None and argument.exact.denominator == 1 and argument.exact >= 0:
        return exact(Fraction(math.factorial(int(argument.exact))))
    return Size(math.log10(math.factorial(MAX_FACTORIAL_ARGUMENT)))


def check_power(base, exponent) -> None:
    """:func:`power`'s limits for two numbers (ints or Fractions) about to be raised: the index
    checker's ``s^{s^s}`` at a configuration."""
    power(exact(Fraction(base)), exact(Fraction(exponent)))


def _largest(sizes: list) -> Optional[Size]:
    """The size of a value no larger than the largest of ``sizes`` (a floor, a maximum, a modulo, a
    branch of a Piecewise), from those known."""
    known = [size for size in sizes if size is not None]
    return Size(max(size.digits for size in known)) if known else None


def _logarithm(size: Optional[Size]) -> Optional[Size]:
    if size is None:
        return None
    digits = abs(_log10(abs(size.exact))) if size.exact else size.digits  # |ln v| <= 2.31 |log10 v|
    return Size(math.log10(2.31 * digits + 1))


def _range_length(low: Optional[Size], high: Optional[Size], variable) -> int:
    """The values an index takes from ``low`` to ``high`` (1 where not known), refused above
    :data:`MAX_SUM_RANGE`, as is a bound beyond it (``\\sum_{k=10^{50}}^{K}``)."""
    for bound in (low, high):
        if bound is not None and bound.exact is not None and abs(bound.exact) > MAX_SUM_RANGE:
            reject(f"{variable} runs to {_shown(bound)}: the checker's limit is {MAX_SUM_RANGE:,}")
        if bound is not None and bound.exact is not None and bound.exact.denominator != 1:
            reject(f"{variable} runs to {bound.exact}: the bounds of a sum are integers")
    if low is None or high is None or low.exact is None or high.exact is None:
        return 1
    length = math.floor(high.exact) - math.ceil(low.exact) + 1
    if length > MAX_SUM_RANGE:
        reject(f"{variable} runs over {length:,} values: the checker's limit is {MAX_SUM_RANGE:,}")
    return max(length, 1)


def _sympy_size(node, size_of: Callable, scope: Mapping) -> Optional[Size]:
    """``node``'s size (None where it depends on a symbol), after the limits on computing it;
    ``size_of`` gives its arguments' sizes, ``scope`` a symbol's value or size by name."""
    if node.is_Rational:
        return exact(Fraction(int(node.p), int(node.q)))
    if node.is_Float:
        return exact(Fraction(str(node))) if node.is_finite else None
    if node is sympy.E:
        return _E
    if isinstance(node, sympy.NumberSymbol):
        return Size(1.0)
    if isinstance(node, sympy.Symbol):
        value = scope.get(node.name)
        if isinstance(value, sympy.Symbol) and value.name in scope:  # a placeholder for a bound index
            value = scope[value.name]
        if isinstance(value, Size):
            return value
        if isinstance(value, sympy.Symbol) and value.name == "e":  # e^{x} is read as exp(x)
            return _E
        return check_constants(value) if isinstance(value, sympy.Basic) and value != node else None
    args = [size_of(arg) for arg in node.args]
    if isinstance(node, sympy.Add):
        return _sum(args)
    if isinstance(node, sympy.Mul):
        return _product(args)
    if isinstance(node, sympy.Pow):
        return power(*args)
    if isinstance(node, sympy.exp):
        return power(_E, args[0])
    if isinstance(node, sympy.functions.combinatorial.factorials.CombinatorialFunction):
        sizes = [factorial(argument) for argument in args]
        return sizes[0] if isinstance(node, sympy.factorial) else None
    if isinstance(node, _REDUCTIONS):
        terms = 1
        for limit in node.limits:
            if len(limit) == 3:
                variable = scope.get(limit[0].name) if isinstance(limit[0], sympy.Symbol) else None
                variable = variable if isinstance(variable, sympy.Symbol) else limit[0]
                terms *= _range_length(size_of(limit[1]), size_of(limit[2]), variable)
        body = args[0]
        return Size(body.digits + math.log10(terms)) if body is not None and isinstance(node, sympy.Sum) else body
    if isinstance(node, sympy.Piecewise):
        return _largest([size_of(branch) for branch, _ in node.args])
    if isinstance(node, sympy.log):
        return _logarithm(args[0])
    if isinstance(node, (sympy.Function, sympy.Max, sympy.Min)) and args:  # floor, Mod, the reader's max(...)
        return _largest(args)
    return None


_REDUCTIONS = (sympy.Sum, sympy.Product, MaxOver, FirstArgmax)  # sympy.Product: the LaTeX reader's \max


def _body_scope(node, scope: dict) -> dict:
    """The scope of a reduction's body: its indices stand for the largest value they take
    (``e^{k}`` in ``\\sum_{k=1}^{20000}`` is ``e^{20000}`` at most)."""
    inner = dict(scope)
    for limit in node.limits:
        if len(limit) == 3 and isinstance(limit[0], sympy.Symbol):
            low, high = check_constants(limit[1], scope), check_constants(limit[2], scope)
            meaning = scope.get(limit[0].name)  # the LaTeX reader's placeholders: one per occurrence of k
            name = meaning.name if isinstance(meaning, sympy.Symbol) else limit[0].name
            inner[name] = None if low is None or high is None else Size(max(low.digits, high.digits))
    return inner


def check_constants(expr, resolve: Optional[Mapping] = None) -> Optional[Size]:
    """Refuse, before SymPy evaluates it, an expression (the LaTeX reader's unevaluated parse tree,
    a parsed claim, a value being computed) whose constants are beyond the limits: a power, an
    exponential, a factorial, a number, a sum's range; return its size. ``resolve`` maps names of
    symbols to what they stand for (a SymPy value or a :class:`Size`): the LaTeX reader's
    placeholders, the parameters of a configuration. Iterative: a tree may be as deep as its formula
    has tokens.

    >>> from sympy.parsing.latex import parse_latex
    >>> check_constants(parse_latex(r"(10^{10})!"))
    Traceback (most recent call last):
    ...
    symcnn.checking.claims.ClaimSyntaxError: the factorial of 10,000,000,000: the checker's limit is 50!
    """
    if not isinstance(expr, sympy.Basic):
        return None
    outer = dict(resolve or {})
    scopes = [outer]  # alive while sizes are keyed by (node, scope): a name means one thing per scope
    sizes: dict[tuple[int, int], Optional[Size]] = {}
    stack = [(expr, outer, False, None)]  # node, its scope, visited, the scope of its body (a reduction's)
    while stack:
        node, scope, visited, body_scope = stack.pop()
        if not visited:
            args = [arg for arg in node.args if isinstance(arg, sympy.Basic)]
            body_scope = scope
            if isinstance(node, _REDUCTIONS) and args:
                body_scope = _body_scope(node, scope)
                scopes.append(body_scope)
            stack.append((node, scope, True, body_scope))
            stack.extend((arg, body_scope if index == 0 else scope, False, None) for index, arg in enumerate(args))
            continue
        body = node.args[0] if isinstance(node, _REDUCTIONS) and node.args else None
        sizes[(id(node), id(scope))] = _sympy_size(node, _sizes_in(sizes, body, scope, body_scope), scope)
    return sizes[(id(expr), id(outer))]


def _sizes_in(sizes: dict, body, scope: dict, body_scope: dict) -> Callable:
    """The sizes of a node's arguments: its ``body`` (a reduction's) in ``body_scope``, the others in ``scope``."""
    return lambda arg: sizes.get((id(arg), id(body_scope if arg is body else scope)))


_PYTHON_SIZES = {"floor", "ceiling", "Max", "Min", "Mod", "Abs", "Integer", "Float", "Piecewise"}


def check_python_constants(text: str) -> None:
    """The limits of :func:`check_constants` for SymPy syntax, read as the Python it is (``^`` is a
    power), before ``parse_expr`` evaluates it. Text that is not Python is left to ``parse_expr``."""
    try:
        tree = ast.parse(text.strip().replace("^", "**"), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return
    _python_walk(tree.body, {})


def _python_walk(root, outer: dict) -> Optional[Size]:
    """:func:`check_constants`'s walk over a Python syntax tree: iterative, a reduction's body in a
    scope where its indices stand for their largest values."""
    scopes = [outer]
    sizes: dict[tuple[int, int], Optional[Size]] = {}
    stack = [(root, outer, False, outer)]
    while stack:
        node, scope, visited, body_scope = stack.pop()
        body = node.args[0] if _is_python_reduction(node) else None
        if not visited:
            body_scope = scope
            if body is not None:
                body_scope = _python_body_scope(node, scope)
                scopes.append(body_scope)
            stack.append((node, scope, True, body_scope))
            stack.extend((child, body_scope if child is body else scope, False, None)
                         for child in ast.iter_child_nodes(node))
            continue
        sizes[(id(node), id(scope))] = _python_size(node, _sizes_in(sizes, body, scope, body_scope), scope)
    return sizes[(id(root), id(outer))]


def _is_python_reduction(node) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and bool(node.args)
            and node.func.id in ("Sum", "MaxOver", "FirstArgmax"))


def _python_body_scope(node, scope: dict) -> dict:
    inner = dict(scope)
    for limit in node.args[1:]:
        if isinstance(limit, ast.Tuple) and len(limit.elts) == 3 and isinstance(limit.elts[0], ast.Name):
            low, high = _python_walk(limit.elts[1], scope), _python_walk(limit.elts[2], scope)
            _range_length(low, high, limit.elts[0].id)  # SymPy may evaluate a sum as it builds it
            inner[limit.elts[0].id] = None if low is None or high is None else Size(max(low.digits, high.digits))
    return inner


def _python_size(node, size_of: Callable, scope: Mapping) -> Optional[Size]:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return exact(Fraction(str(node.value))) if math.isfinite(node.value) else None
    if isinstance(node, ast.Name):
        if isinstance(scope.get(node.id), Size):
            return scope[node.id]
        return _E if node.id == "E" else Size(1.0) if node.id == "pi" else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        size = size_of(node.operand)
        return Size(size.digits, -size.exact) if size and size.exact is not None and isinstance(
            node.op, ast.USub) else size
    if isinstance(node, ast.BinOp):
        left, right = size_of(node.left), size_of(node.right)
        if isinstance(node.op, ast.Pow):
            return power(left, right)
        if isinstance(node.op, (ast.Add, ast.Sub)):
            if isinstance(node.op, ast.Sub) and right is not None and right.exact is not None:
                right = Size(right.digits, -right.exact)
            return _sum([left, right])
        if isinstance(node.op, ast.Mult):
            return _product([left, right])
        if isinstance(node.op, ast.Div) and right is not None and right.exact:
            return _product([left, exact(1 / right.exact)])
        return _largest([left, right]) if isinstance(node.op, (ast.Mod, ast.FloorDiv)) else None
    if isinstance(node, (ast.Tuple, ast.List)) and node.elts:
        return _largest([size_of(element) for element in node.elts])
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        args = [size_of(arg) for arg in node.args]
        name = node.func.id
        if name == "exp" and len(args) == 1:
            return power(_E, args[0])
        if name == "sqrt" and len(args) == 1:
            return power(args[0], exact(Fraction(1, 2)))
        if name == "log" and args:
            return _logarithm(args[0])
        if name == "Rational" and len(args) == 2 and None not in args and args[1].exact:
            return _product([args[0], exact(1 / args[1].exact)]) if args[0].exact is not None else None
        if name in ("Sum", "MaxOver", "FirstArgmax") and args:  # a sum: its terms' size, times its range at most
            return args[0] and Size(args[0].digits + (math.log10(MAX_SUM_RANGE) if name == "Sum" else 0))
        if name in _PYTHON_SIZES:
            return _largest(args)
    return None


# --- the parsed claim ---------------------------------------------------------------------------------------------


def check_claim(claim) -> None:
    """Refuse a parsed claim (:class:`~symcnn.checking.claims.Claim`) beyond the limits: a sum's
    or a where-range's constant range, a constant, or an expansion of more than
    :data:`MAX_EXPANSION_TERMS` terms (``(a + b + c)^{50}``)."""
    for variable, low, high in claim.ranges:
        _range_length(exact(Fraction(low)), exact(Fraction(high)), variable)
    for equation in claim.equations + claim.definitions:
        for side in (equation.lhs, equation.rhs):
            for expr in ([entry for row in side.rows for entry in row] if hasattr(side, "rows") else [side]):
                check_constants(expr)
                check_expansion(expr)


def _terms(node, terms_of: Callable) -> int:
    """An upper bound on the terms of ``node`` expanded, from its arguments' (``terms_of``)."""
    if isinstance(node, sympy.Add) or isinstance(node, sympy.Piecewise):
        return sum(terms_of(arg) for arg in node.args)
    if isinstance(node, sympy.Mul):
        return math.prod(terms_of(arg) for arg in node.args)
    if isinstance(node, sympy.Pow):
        base = terms_of(node.base)
        if node.exp.is_Integer and base > 1:
            power = abs(int(node.exp))
            return math.comb(base + power - 1, power) if power <= MAX_EXPONENT else MAX_EXPANSION_TERMS + 1
        return base
    if isinstance(node, (sympy.Sum, MaxOver)):
        count = 1
        for limit in node.limits:
            if len(limit) == 3 and limit[1].is_Integer and limit[2].is_Integer:
                count *= max(0, int(limit[2]) - int(limit[1]) + 1)
        return terms_of(node.function) * count
    return 1


def check_expansion(expr, where: str = "") -> None:
    """Refuse ``expr`` when expanding it (as the exact comparison does) could give more than
    :data:`MAX_EXPANSION_TERMS` terms; ``where`` says where it was evaluated, for the message.

    >>> from sympy.abc import a, b, c
    >>> check_expansion((a + b + c) ** 2)
    >>> check_expansion((a + b + c) ** 500)
    Traceback (most recent call last):
    ...
    symcnn.checking.claims.ClaimSyntaxError: an expression that expands to more than 20,000 terms: the checker's limit
    """
    if not isinstance(expr, sympy.Basic):
        return
    terms: dict[int, int] = {}
    stack = [(expr, False)]
    while stack:
        node, visited = stack.pop()
        if not visited:
            stack.append((node, True))
            stack.extend((arg, False) for arg in node.args if isinstance(arg, sympy.Basic))
            continue
        count = _terms(node, lambda arg: terms.get(id(arg), 1))
        if count > MAX_EXPANSION_TERMS:
            reject(f"an expression that expands to more than {MAX_EXPANSION_TERMS:,} terms{where}: the checker's limit")
        terms[id(node)] = count
