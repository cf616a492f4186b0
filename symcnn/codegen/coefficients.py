"""Loop-invariant coefficients: the factors of a kernel's products that depend on fewer indices than the
loops around them, computed once into arrays before the output loops.

Batch norm's derived input gradient is ten products per element, each with the channel's
``gamma[c]/sqrt(sigma2[c] + epsilon)`` or its 3/2 power and products of the channel's statistics,
all constant over the channel: evaluated as they read, every element would take ten square roots
and powers. Once the statistics are arrays (:class:`~symcnn.codegen.invariants.Precomputer`), each
product splits into the factors of its *invariant* indices (those of the factors that call a
function or divide, ``c`` here) and the rest (``dL/dY[n, c, i, j]``, ``X[n, c, i, j]`` or ``1``);
the invariant parts of the products whose rests are equal are summed into one array, ``coef0[c]``,
which the kernel reads:

    ``dL/dX[n, c, i, j] = coef0[c] * dL/dY[n, c, i, j] + coef1[c] + coef2[c] * X[n, c, i, j]``,

document 003's compact form (two multiply-adds per element), reached from the derived formula, not
typed in. Layer norm's products split the same way by sample (``coef0[n]``), and a weight gradient's
sum over the batch reads its per-image factor from an array (``sum_n X * dL/dY * coef1[n]``).

A product none of whose factors both reads an array and calls a function or divides (a convolution,
ReLU's gradient, an average pool's ``1/K^2``) is left as it is, so kernels without such factors are
generated as before.

Example:
    >>> from sympy import IndexedBase, Symbol, sqrt
    >>> from symcnn.codegen.invariants import Precomputer
    >>> from symcnn.codegen.kernel_ir import Loop
    >>> X, G, s = IndexedBase("X"), IndexedBase("G"), IndexedBase("s")
    >>> n, c = (Symbol(name, integer=True, nonnegative=True) for name in "nc")
    >>> precomputer = Precomputer((n, c), (8, 4), n, IndexedBase, lambda i, a, b, parallel: Loop(str(i), str(b + 1)),
    ...                           None, str)
    >>> terms = [GatherTerm((), (), G[n, c] / sqrt(s[c])), GatherTerm((), (), X[n, c] * s[c] / sqrt(s[c]))]
    >>> [term.body for term in invariant_terms(terms, precomputer)]
    [G[n, c]*coef0[c], X[n, c]*coef1[c]]
    >>> [array.values for array in precomputer.precomputed()]  # both over c: one loop
    [('1/sqrt(s[c])', 'sqrt(s[c])')]
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import sympy
from sympy import Expr, Indexed
from sympy.core.function import Application

from symcnn.codegen.invariants import Precomputer
from symcnn.symbolic.adjoint import GatherTerm

__all__ = ["invariant_terms"]


class _Split(NamedTuple):
    """A product as ``invariant * rest``: ``invariant`` depends only on ``axes`` (``(index, last)``)."""

    axes: tuple
    invariant: Expr
    rest: Expr


def invariant_terms(terms: list[GatherTerm], precomputer: Precomputer) -> list[GatherTerm]:
    """``terms`` with their invariant reductions read from arrays (the statistics) and then their
    invariant factors (the coefficients; see the module's docstring). The terms that sum nothing and
    test nothing are split into products and regrouped by what their products read per element, where
    the first of them was; a term with loops or conditions keeps them, its body rewritten in place."""
    terms = [GatherTerm(term.limits, term.conditions, precomputer.replace(term.body, term.limits))
             for term in terms]
    plain = [position for position, term in enumerate(terms) if not term.limits and not term.conditions]
    grouped = _grouped([terms[position].body for position in plain], precomputer.ranges(), precomputer)
    result = []
    for position, term in enumerate(terms):
        if position not in plain:
            result.append(_hoisted(term, precomputer))
        elif grouped is None:
            result.append(term)
        elif position == plain[0]:
            result += [GatherTerm((), (), body) for body in grouped]
    return result


def _hoisted(term: GatherTerm, precomputer: Precomputer) -> GatherTerm:
    """A term with loops or conditions, its body's invariant factors read from arrays."""
    grouped = _grouped([term.body], precomputer.ranges(term.limits), precomputer)
    return term if grouped is None else GatherTerm(term.limits, term.conditions, sympy.Add(*grouped))


def _grouped(bodies: list[Expr], loops: dict, precomputer: Precomputer) -> Optional[list[Expr]]:
    """The products of ``bodies`` grouped by what they read per element, each group's invariant parts
    summed into one coefficient array; ``None`` when no product has a costly invariant factor."""
    products = [product for body in bodies for product in sympy.Add.make_args(body)]
    splits = [_costly_split(product, loops) for product in products]
    keys = list(dict.fromkeys((split.rest, split.axes) for split in splits if split is not None))
    if not keys:
        return None
    order: list = []  # a group's key, or a product that joins none, in the order they come
    groups: dict = {}  # (rest, axes) -> the invariant parts summed into its coefficient
    for product, split in zip(products, splits):
        if split is None:  # a cheap product joins a group whose rest it shares, or stays as it is
            split = next((candidate for candidate in (_split(product, loops, axes) for _, axes in keys)
                          if (candidate.rest, candidate.axes) in keys), None)
        if split is None:
            order.append(product)
            continue
        key = (split.rest, split.axes)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(split.invariant)
    return [precomputer.coefficient(sympy.Add(*groups[entry]), entry[1]) * entry[0] if entry in groups else entry
            for entry in order]


def _costly_split(product: Expr, loops: dict) -> Optional[_Split]:
    """``product`` split by the indices of its costly factors (see :func:`_costly`), or ``None`` when
    it has none, or they depend on every loop, or on a loop an array cannot have as an axis."""
    costly = [factor for factor in sympy.Mul.make_args(product) if factor.has(Indexed) and _costly(factor)]
    if not costly:
        return None
    free = set().union(*(factor.free_symbols for factor in costly))
    axes = Precomputer.axes(sympy.Tuple(*[index for index in loops if index in free]), loops)
    return None if axes is None else _split(product, loops, axes)


def _split(product: Expr, loops: dict, axes: tuple) -> _Split:
    """``product`` as the factors that depend on ``axes`` only, and the rest."""
    allowed = {index for index, _ in axes}
    invariant, rest = [], []
    for factor in sympy.Mul.make_args(product):
        (invariant if factor.free_symbols & set(loops) <= allowed else rest).append(factor)
    return _Split(axes, sympy.Mul(*invariant), sympy.Mul(*rest))


def _costly(expr: Expr) -> bool:
    """``expr`` calls a function or divides (a square root, a power other than a positive integer's),
    outside the indices of its array reads."""
    if isinstance(expr, Indexed):
        return False
    if isinstance(expr, Application) or (isinstance(expr, sympy.Pow) and not (expr.exp.is_Integer and expr.exp > 0)):
        return True
    return any(_costly(arg) for arg in expr.args)

