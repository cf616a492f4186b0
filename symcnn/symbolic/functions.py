"""Scalar functions of the layers, each with its rule at non-differentiable points.

The rules are part of the math, so they sit here beside the functions (DESIGN.md):

- ``relu``: ReLU'(0) = 0 (the derivative of ``Piecewise((x, x > 0), (0, True))``).
- ``leaky_relu``: f'(x) = alpha for x <= 0, as document 003 writes it.
- ``elu``: f'(x) = alpha * exp(x) for x <= 0, which equals f(x) + alpha (document 003).
- ``WindowMax``: the derivative with respect to an argument is 1 when that argument is the
  *first* maximum in the argument order (row-major scan of a pooling window), else 0.
  This is PyTorch's CPU tie rule, and with distinct values it is document 002's routing.
  For a scan of the window in that order, :func:`replaces_first_max` states it as one comparison.
- A reduction (``Sum``, :class:`MaxOver`) scanned element by element starts from its identity
  (:func:`reduction_identity`) and combines each element into the running value
  (:func:`reduction_step`); the kernels are printed from these.

Example:
    >>> from sympy import symbols
    >>> x0, x1 = symbols("x0 x1")
    >>> WindowMax(3, 5, 5)
    5
    >>> WindowMax(x0, x1).diff(x0)
    Piecewise((1, x0 >= x1), (0, True))
"""

from __future__ import annotations

import sympy
from sympy import And, Expr, Function, Piecewise, S, exp

__all__ = ["relu", "leaky_relu", "elu", "WindowMax", "MaxOver", "FirstArgmax", "Bracket", "first_max_indicator",
           "replaces_first_max", "reduction_identity", "reduction_step"]


def relu(x: Expr) -> Expr:
    """max(0, x) with ReLU'(0) = 0.

    >>> relu(S(-2)), relu(S(3))
    (0, 3)
    """
    return Piecewise((x, x > 0), (S.Zero, True))


def leaky_relu(x: Expr, alpha: Expr = sympy.Rational(1, 100)) -> Expr:
    """x for x > 0, alpha*x otherwise (PyTorch's default alpha is 0.01)."""
    return Piecewise((x, x > 0), (alpha * x, True))


def elu(x: Expr, alpha: Expr = S.One) -> Expr:
    """x for x > 0, alpha*(exp(x) - 1) otherwise."""
    return Piecewise((x, x > 0), (alpha * (exp(x) - 1), True))


def first_max_indicator(args: tuple[Expr, ...], position: int) -> Expr:
    """1 where ``args[position]`` is the first maximum of ``args``, else 0.

    The element at ``position`` wins when it is strictly greater than every earlier
    element and at least as large as every later one.

    >>> first_max_indicator((S(9), S(9)), 1)
    0
    """
    candidate = args[position]
    conditions = [replaces_first_max(candidate, other) for other in args[:position]]
    conditions += [candidate >= other for other in args[position + 1:]]
    if any(condition is sympy.false for condition in conditions):
        return S.Zero
    conditions = [condition for condition in conditions if condition is not sympy.true]
    if not conditions:
        return S.One
    # evaluate=False: SymPy's And/Piecewise canonicalization costs milliseconds per window
    # element and finds nothing to simplify in these distinct comparisons.
    condition = conditions[0] if len(conditions) == 1 else And(*conditions, evaluate=False)
    return Piecewise((S.One, condition), (S.Zero, True), evaluate=False)


def replaces_first_max(candidate: Expr, earlier: Expr) -> Expr:
    """The first-maximum tie rule between ``candidate`` and an ``earlier`` element of the scan order:
    ``candidate`` is the maximum so far only when strictly greater (a tie keeps the earlier one).

    >>> replaces_first_max(S(9), S(9)), replaces_first_max(S(10), S(9))
    (False, True)
    """
    return candidate > earlier


class WindowMax(Function):
    """The maximum of a pooling window, its arguments in row-major order.

    Evaluates when every argument is a number; otherwise stays symbolic and
    differentiates with the first-maximum routing rule.
    """

    @classmethod
    def eval(cls, *args):
        if not args:
            raise ValueError("WindowMax needs at least one argument")
        if len(args) == 1:
            return args[0]
        if all(arg.is_number and arg.is_comparable for arg in args):
            return max(args, key=lambda arg: arg)  # max keeps the first of equal values
        return None

    def fdiff(self, argindex=1):
        return first_max_indicator(self.args, argindex - 1)

    def _eval_is_real(self):
        return all(arg.is_real for arg in self.args) or None

    # Printed as Max, its value: the text then parses back with sympy.sympify. The routing
    # rule is WindowMax's own and shows in its derivative.
    def _sympystr(self, printer) -> str:
        return "Max(%s)" % ", ".join(printer._print(arg) for arg in self.args)

    def _latex(self, printer) -> str:
        return r"\max\left(%s\right)" % ", ".join(printer._print(arg) for arg in self.args)


class MaxOver(Expr):
    """``max`` of ``function`` over index ranges, the reduction twin of ``sympy.Sum``.

    ``MaxOver(X[i + m], (m, 0, K - 1))`` is the index-notation form of a max-pooling
    window; :func:`symcnn.symbolic.expand.unroll` turns it into a :class:`WindowMax` of the
    window's elements in row-major order (the first limit varies slowest).

    >>> from sympy import IndexedBase, symbols
    >>> X, m = IndexedBase("X"), symbols("m", integer=True)
    >>> MaxOver(X[m], (m, 0, 1))
    max_{m}(X[m])
    """

    is_commutative = True

    def __new__(cls, function, *limits):
        limits = tuple(sympy.Tuple(*map(sympy.sympify, limit)) for limit in limits)
        return Expr.__new__(cls, sympy.sympify(function), *limits)

    @property
    def function(self) -> Expr:
        return self.args[0]

    @property
    def limits(self) -> tuple[sympy.Tuple, ...]:
        return self.args[1:]

    @property
    def variables(self) -> list[Expr]:
        return [limit[0] for limit in self.limits]

    @property
    def free_symbols(self):
        return _free_symbols_of_reduction(self.function, self.limits)

    def _latex(self, printer):
        ranges = r"\\".join(r"%s \leq %s \leq %s"
                            % (printer._print(low), printer._print(variable), printer._print(high))
                            for variable, low, high in self.limits)
        return r"\max_{\substack{%s}} %s" % (ranges, printer._print(self.function))

    def _eval_derivative(self, symbol):
        # d max_w f(w) = sum_w [w is the first argmax] * d f(w): the routing rule, in index form.
        # The indicator keeps its own copy of the window with primed variables, so that
        # substituting for the outer sum's variables never captures the window's.
        primed = {var: sympy.Symbol(var.name + "'", **var.assumptions0) for var in self.variables}
        window = self.function.xreplace(primed)
        window_limits = [(primed[var], low, high) for var, low, high in self.limits]
        indicator = FirstArgmax(window, tuple(self.variables), *window_limits)
        return sympy.Sum(indicator * sympy.diff(self.function, symbol), *self.limits)

    def _sympystr(self, printer) -> str:
        return f"max_{{{_window_text(self.limits, printer)}}}({printer._print(self.function)})"


def _window_text(limits, printer) -> str:
    """A window's variables, ``u, v`` for windows from 0 (a pool's, ``K`` long), with their ranges
    ``k=a..b, l=c..d`` (as a ``Sum`` prints them) where a window starts elsewhere (an adaptive pool's)."""
    if all(low == 0 for _, low, _ in limits):
        return ", ".join(printer._print(limit[0]) for limit in limits)
    return ", ".join(f"{printer._print(v)}={printer._print(low)}..{printer._print(high)}" for v, low, high in limits)


def _window_latex(limits, printer) -> str:
    """:func:`_window_text` in LaTeX: the variables, or a ``\\substack`` of their ranges."""
    if all(low == 0 for _, low, _ in limits):
        return ", ".join(printer._print(limit[0]) for limit in limits)
    return r"\substack{%s}" % r"\\".join(r"%s \leq %s \leq %s" % tuple(printer._print(part) for part in (low, v, high))
                                       for v, low, high in limits)


def _free_symbols_of_reduction(function: Expr, limits) -> set:
    bound = {limit[0] for limit in limits}
    free = function.free_symbols - bound
    for _, low, high in limits:
        free |= low.free_symbols | high.free_symbols
    return free


class FirstArgmax(Expr):
    """1 where ``position`` is the first argmax of ``function`` over the window ``limits``, else 0.

    ``FirstArgmax(X[s*i + u'], (u,), (u', 0, K - 1))`` is the max-pooling routing indicator of
    the gradient formula: it is 1 when the window element at offset ``u`` is the window's first
    maximum in row-major order. :func:`symcnn.symbolic.expand.unroll` evaluates it at concrete indices
    into :func:`first_max_indicator` of the window's elements.
    """

    is_commutative = True

    def __new__(cls, function, position, *limits):
        limits = tuple(sympy.Tuple(*map(sympy.sympify, limit)) for limit in limits)
        return Expr.__new__(cls, sympy.sympify(function), sympy.Tuple(*position), *limits)

    @property
    def function(self) -> Expr:
        return self.args[0]

    @property
    def position(self) -> tuple[Expr, ...]:
        return tuple(self.args[1])

    @property
    def limits(self) -> tuple[sympy.Tuple, ...]:
        return self.args[2:]

    @property
    def free_symbols(self):
        free = _free_symbols_of_reduction(self.function, self.limits)
        for coordinate in self.position:
            free |= coordinate.free_symbols
        return free

    def _eval_derivative(self, symbol):
        return S.Zero  # piecewise constant

    def _sympystr(self, printer) -> str:
        position = ", ".join(printer._print(p) for p in self.position)
        return f"[({position}) = first argmax_{{{_window_text(self.limits, printer)}}} {printer._print(self.function)}]"

    def _latex(self, printer) -> str:
        position = ", ".join(printer._print(p) for p in self.position)
        return (r"\mathbf{1}\left[(%s) = \operatorname{argmax}_{%s} %s\right]"
                % (position, _window_latex(self.limits, printer), printer._print(self.function)))


class Bracket(Expr):
    """``[c_1 and c_2 ...]``: 1 where every condition holds, else 0 (an Iverson bracket).

    For conditions on indices, which a formula states where a tensor is read: a transposed
    convolution's ``[s | i + p - d*u]`` and ``[0 <= (i + p - d*u)/s <= H_in - 1]``. Unlike a
    ``Piecewise``, which SymPy folds out of a ``Sum`` even when its condition holds the sum's own
    variables, a bracket stays a factor where it is written, and its conditions stay as written.
    It evaluates to 1 or 0 once its conditions decide (at concrete indices), and is constant in
    every tensor (its derivative is 0). The derivation and the kernels read its conditions as the
    conditions of the term it multiplies (:func:`symcnn.symbolic.adjoint.lift_conditions`).

    >>> from sympy import symbols
    >>> k = symbols("k", integer=True)
    >>> Bracket(sympy.Le(0, k), sympy.Le(k, 2))
    [0 <= k and k <= 2]
    >>> Bracket(sympy.Le(0, k), sympy.Le(k, 2)).subs(k, 3), Bracket(sympy.Le(0, k)).subs(k, 1)
    (0, 1)
    """

    is_commutative = True

    def __new__(cls, *conditions):
        kept = []
        for condition in map(sympy.sympify, conditions):
            if condition is sympy.false:
                return S.Zero
            if condition is not sympy.true and condition not in kept:
                kept.append(condition)
        return Expr.__new__(cls, *kept) if kept else S.One

    @property
    def conditions(self) -> tuple:
        return self.args

    def _eval_derivative(self, symbol):
        return S.Zero  # piecewise constant, in indices only

    def _eval_is_integer(self):
        return True

    def _eval_is_nonnegative(self):
        return True

    def _sympystr(self, printer) -> str:
        return "[%s]" % " and ".join(printer._print(condition) for condition in self.conditions)

    def _latex(self, printer) -> str:
        return r"\left[%s\right]" % r" \,\land\, ".join(printer._print(condition) for condition in self.conditions)


def reduction_identity(reduction: type) -> Expr:
    """The value of a ``reduction`` (``Sum`` or :class:`MaxOver`) over no elements: where a scan of
    its elements starts, since combining it with the first element gives that element.

    >>> reduction_identity(sympy.Sum), reduction_identity(MaxOver)
    (0, -oo)
    """
    if reduction is sympy.Sum:
        return S.Zero
    if reduction is MaxOver:
        return S.NegativeInfinity
    raise ValueError(f"reduction: {reduction.__name__} is not Sum or MaxOver")


def reduction_step(reduction: type, accumulated: Expr, value: Expr) -> Expr:
    """The running value of a scan of a ``reduction`` after ``value``, the elements before it having
    given ``accumulated``: ``accumulated + value`` for a ``Sum``, the maximum of the two for a
    :class:`MaxOver`, where a tie keeps ``accumulated`` (the first maximum). Unevaluated, the
    running value first: the step as a kernel performs it.

    >>> from sympy import symbols
    >>> acc, x = symbols("acc x")
    >>> reduction_step(sympy.Sum, acc, x), reduction_step(MaxOver, acc, x)
    (acc + x, Max(acc, x))
    """
    if reduction is sympy.Sum:
        return sympy.Add(accumulated, value, evaluate=False)
    if reduction is MaxOver:
        return WindowMax(accumulated, value, evaluate=False)
    raise ValueError(f"reduction: {reduction.__name__} is not Sum or MaxOver")
