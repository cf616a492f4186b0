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
    symcnn.checking.claims.ClaimSyntaxError: an exponent of 387420489: the checker's limit is 100
    >>> check_constants(sympy.Sum(sympy.Symbol("k"), (sympy.Symbol("k"), 0, 10**9)))
    Traceback (most recent call last):
    ...
    symcnn.checking.claims.ClaimSyntaxError: k runs over 1,000,000,001 values: the checker's limit is 20,000
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
from symcnn.symbolic.functions import FirstArgmax, MaxOver, WindowMax

__all__ = ["Size", "exact", "power", "factorial", "check_power", "check_constants", "check_python_constants",
           "check_claim", "check_expansion"]

# --- constants: sizes before SymPy computes them ---------------------------------------------------------------


class Size(NamedTuple):
    """What is known of a constant before it is computed: ``digits``, an upper bound on
    ``log10(max(|value|, 1))``, and the ``exact`` value when it is rational. An expression that
    depends on a symbol has no size (``None``); an indicator ``1(x > 0)`` has one (at most 1)."""

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
    if size.exact is not None and len(str(size.exact)) <= 24:
        return str(size.exact)
    return f"about 10^{size.digits:.0f}"


def _sum(sizes: list) -> Optional[Size]:
    if not sizes or None in sizes:
        return None
    if all(size.exact is not None for size in sizes):
        return exact(sum((size.exact for size in sizes), Fraction(0)))
    return Size(max(size.digits for size in sizes) + math.log10(len(sizes)))


def _product(sizes: list) -> Optional[Size]:
    if not sizes or None in sizes:
        return None
    if all(size.exact is not None for size in sizes):
        return exact(math.prod((size.exact for size in sizes), start=Fraction(1)))
    return Size(sum(size.digits for size in sizes))


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
    """A size no larger than the largest of ``sizes`` (a floor, a maximum, a modulo)."""
    if not sizes or None in sizes:
        return None
    return Size(max(size.digits for size in sizes))


def _range_length(low: Optional[Size], high: Optional[Size], variable) -> None:
    if low is None or high is None or low.exact is None or high.exact is None:
        return
    length = math.floor(high.exact) - math.ceil(low.exact) + 1
    if length > MAX_SUM_RANGE:
        reject(f"{variable} runs over {length:,} values: the checker's limit is {MAX_SUM_RANGE:,}")


def _sympy_size(node, size_of: Callable, resolve: Callable) -> Optional[Size]:
    """``node``'s size (None where it depends on a symbol), after the limits on computing it;
    ``size_of`` gives its arguments' sizes, ``resolve`` a symbol's value or size (or None)."""
    if node.is_Rational:
        return exact(Fraction(int(node.p), int(node.q)))
    if node.is_Float:
        return exact(Fraction(str(node))) if node.is_finite else None
    if node is sympy.E:
        return _E
    if isinstance(node, sympy.NumberSymbol):
        return Size(1.0)
    if isinstance(node, sympy.Symbol):
        value = resolve(node)
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
    if isinstance(node, (sympy.Sum, sympy.Product, MaxOver, FirstArgmax)):
        for limit in node.limits:
            if len(limit) == 3:
                variable = resolve(limit[0]) if isinstance(limit[0], sympy.Symbol) else None
                _range_length(size_of(limit[1]), size_of(limit[2]), variable or limit[0])
        return None
    if isinstance(node, sympy.Piecewise):
        return _largest([size_of(branch) for branch, _ in node.args])
    if isinstance(node, (sympy.floor, sympy.ceiling, sympy.Abs, sympy.Max, sympy.Min, sympy.Mod, WindowMax)):
        return _largest(args)
    return None


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
    symcnn.checking.claims.ClaimSyntaxError: the factorial of 10000000000: the checker's limit is 50!
    """
    if not isinstance(expr, sympy.Basic):
        return None
    table = resolve or {}
    sizes: dict[int, Optional[Size]] = {}
    stack = [(expr, False)]
    while stack:
        node, visited = stack.pop()
        if not visited:
            stack.append((node, True))
            stack.extend((arg, False) for arg in node.args if isinstance(arg, sympy.Basic))
            continue
        sizes[id(node)] = _sympy_size(node, lambda arg: sizes.get(id(arg)),
                                      lambda symbol: table.get(symbol.name))
    return sizes[id(expr)]


_PYTHON_SIZES = {"floor", "ceiling", "Max", "Min", "Mod", "Abs", "Integer", "Float", "Piecewise"}


def check_python_constants(text: str) -> None:
    """The limits of :func:`check_constants` for SymPy syntax, read as the Python it is (``^`` is a
    power), before ``parse_expr`` evaluates it. Text that is not Python is left to ``parse_expr``."""
    try:
        tree = ast.parse(text.strip().replace("^", "**"), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return
    sizes: dict[int, Optional[Size]] = {}
    stack = [(tree.body, False)]
    while stack:
        node, visited = stack.pop()
        if not visited:
            stack.append((node, True))
            stack.extend((child, False) for child in ast.iter_child_nodes(node))
            continue
        sizes[id(node)] = _python_size(node, lambda child: sizes.get(id(child)))


def _python_size(node, size_of: Callable) -> Optional[Size]:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return exact(Fraction(str(node.value))) if math.isfinite(node.value) else None
    if isinstance(node, ast.Name):
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
        if name == "Rational" and len(args) == 2 and None not in args and args[1].exact:
            return _product([args[0], exact(1 / args[1].exact)]) if args[0].exact is not None else None
        if name in ("Sum", "MaxOver", "FirstArgmax"):
            return None  # its ranges: check_claim, once it is built
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
