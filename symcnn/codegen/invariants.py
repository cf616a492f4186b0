"""Loop-invariant reductions: computed once, not once per output element.

A normalization's formula reads statistics of a whole channel (batch norm's mean and variance over
the batch and the map) at every output element, and its derived gradients are sums over the channel
of products whose factors depend on different indices. Lowered as they read, each output element
would recompute them: ``N*H*W`` times the work, or more for a sum nested in a sum (the variance reads
the mean). Two generic rewrites, keyed on no op:

- :func:`factor_sums`: a gather term ``sum_{L} a * f(L1) * g(L2)`` whose factors split by summation
  indices (``L1``, ``L2`` disjoint, ``a`` free of both) becomes ``a * (sum_{L1} f) * (sum_{L2} g)``:
  products of independent sums, each a reduction of its own;
- :class:`Precomputer`: a reduction in a kernel's body that does not depend on the output's batch
  index (where the output has one) nor on the indices of the term's own sum is computed before the
  output loops, once per value of the output indices it does depend on (per channel), into an array
  the body then reads (``stat0[c]``); nested reductions first (the mean before the variance that
  reads it), and a reduction written twice with other summation indices once.

Kernels of the shipped specs have neither (their sums are of one product of reads, and their only
inner reduction, softmax's normalizer, depends on the image), so they are generated as before.

Example:
    >>> from sympy import IndexedBase, Symbol
    >>> from symcnn.codegen.kernel_ir import Loop
    >>> X, G = IndexedBase("X"), IndexedBase("G")
    >>> n, q, c = (Symbol(name, integer=True, nonnegative=True) for name in "nqc")
    >>> term = GatherTerm(((q, 0, 3),), (), X[n, c] * G[q, c])
    >>> factor_sums(term).body
    X[n, c]*Sum(G[q, c], (q, 0, 3))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import sympy
from sympy import Expr, Sum, Symbol

from symcnn.codegen.kernel_ir import Loop, Reduction
from symcnn.symbolic.adjoint import GatherTerm
from symcnn.symbolic.functions import MaxOver

__all__ = ["factor_sums", "Precomputed", "Precomputer"]


def factor_sums(term: GatherTerm) -> GatherTerm:
    """``term`` as a product of independent sums where its factors split by summation index (see the
    module's docstring); unchanged when it has conditions, or one group of factors and nothing but
    numbers outside it (a convolution's sum of products)."""
    if term.conditions or not term.limits:
        return term
    bound = [limit[0] for limit in term.limits]
    outside, groups = [], []  # groups: [set of bound variables, factors]
    for factor in sympy.Mul.make_args(term.body):
        variables = factor.free_symbols & set(bound)
        if not variables:
            outside.append(factor)
            continue
        joined = [group for group in groups if group[0] & variables]
        factors = [f for group in joined for f in group[1]] + [factor]
        merged = [variables.union(*(group[0] for group in joined)), factors]
        groups = [group for group in groups if group not in joined] + [merged]
    if len(groups) < 2 and all(factor.is_number for factor in outside):
        return term
    sums = [Sum(sympy.Mul(*factors), *[limit for limit in term.limits if limit[0] in variables])
            for variables, factors in groups]
    read = set().union(*(group[0] for group in groups))
    counts = [high - low + 1 for variable, low, high in term.limits if variable not in read]  # sum of a constant
    return GatherTerm((), (), sympy.Mul(*outside) * sympy.Mul(*counts) * sympy.Mul(*sums))


@dataclass(frozen=True)
class Precomputed:
    """An array ``name`` of ``shape`` filled before the output loops: over ``loops`` (the output
    indices the reduction depends on; the first parallel), ``reduction`` into ``name[index]``."""

    name: str
    shape: tuple[str, ...]  # printed extents
    loops: tuple[Loop, ...]
    reduction: Reduction
    index: str  # printed


class Precomputer:
    """Finds the reductions of a kernel's terms that do not depend on its batch index, and replaces each
    by a read of an array computed before the output loops (:class:`Precomputed`), innermost first.

    ``indices`` and ``extents`` are the kernel's output indices and sizes; ``batch_index`` the output
    index of the batch (``None``: the kernel has none). ``array`` makes an
    array name printable, ``loop`` and ``reduction`` print as the lowering does.
    """

    def __init__(self, indices, extents, batch_index: Optional[Symbol], array: Callable, loop: Callable,
                 reduction: Callable[[str, Expr], Reduction]):
        self.extents = dict(zip(indices, extents))
        self.indices = tuple(indices)
        self.batch_index = batch_index
        self.array, self.loop, self.reduction = array, loop, reduction
        self.reads: dict[Expr, Expr] = {}  # canonical reduction -> the read that replaces it (across terms)
        self.arrays: list[Precomputed] = []

    def _invariant(self, node: Expr, bound: set) -> bool:
        free = node.free_symbols
        return (self.batch_index is None or self.batch_index not in free) and not free & bound

    def replace(self, body: Expr, bound: set = frozenset()) -> Expr:
        """``body`` with every invariant reduction read from its precomputed array; ``bound``: the
        term's own summation indices (a reduction reading them stays in the term)."""
        while True:
            innermost = [node for node in body.atoms(Sum, MaxOver)
                         if not node.function.atoms(Sum, MaxOver) and self._invariant(node, set(bound))]
            if not innermost:
                return body
            for node in sorted(innermost, key=sympy.default_sort_key):
                if _canonical(node) not in self.reads:
                    self.reads[_canonical(node)] = self._precompute(node)
            body = body.xreplace({node: self.reads[_canonical(node)] for node in innermost})

    def _precompute(self, node: Expr) -> Expr:
        name = f"stat{len(self.arrays)}"
        depends = [index for index in self.indices if index in node.free_symbols]
        base = self.array(name)
        loops = tuple(self.loop(index, 0, self.extents[index] - 1, parallel=position == 0)
                      for position, index in enumerate(depends))
        shape = tuple(loop.stop for loop in loops) or ("1",)
        read = base[tuple(depends)] if depends else base[0]
        printed_index = ", ".join(loop.variable for loop in loops) or "0"
        self.arrays.append(Precomputed(name, shape, loops, self.reduction(f"{name}_acc", node), printed_index))
        return read


def _canonical(node: Expr) -> Expr:
    """``node`` with its summation indices renamed in order, so that ``sum_q X[q]`` and ``sum_r X[r]``
    over the same range compare equal."""
    renaming = {limit[0]: Symbol(f"_index{position}", integer=True) for position, limit in enumerate(node.limits)}
    return node.xreplace(renaming)
