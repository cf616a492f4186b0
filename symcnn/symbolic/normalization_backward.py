"""Document 003's compact backward pass of a normalization, derived from the op's forward formula.

Document 003 writes batch normalization's backward in four lines, through the intermediate
quantities of the forward pass: ``∂L/∂x̂``, ``∂L/∂σ²``, ``∂L/∂μ``, ``∂L/∂x``. symcnn derives the same
lines from the registry's formula (:mod:`symcnn.symbolic.normalization`), nothing typed in:

1. :func:`split_statistics` cuts the formula at its statistics: the mean's and the variance's sums
   become tensors ``mu`` and ``sigma2`` indexed like the statistic (``mu[c]``), the scaled value
   ``(X - mu)/sqrt(sigma2 + epsilon)`` becomes ``Xhat``; four index formulas result (``mu``,
   ``sigma2``, ``Xhat``, ``Y = gamma Xhat + beta``), checked to compose back to the op's formula;
2. :func:`compact_backward` derives each of them with respect to each tensor it reads
   (:func:`symcnn.symbolic.adjoint.derive_gradient`) and gathers, for each tensor, what its readers
   send back (the chain rule along the formula's graph): one :class:`ChainLine` per tensor;
3. the term of ``∂L/∂mu`` that comes through the variance carries ``sum (X - mu)``, the deviations
   from the mean, which :func:`deviations_vanish` proves zero for every shape: document 003's
   ``−2/m Σ(x_i − μ)``.

:func:`check_compact_backward` evaluates the lines at concrete arrays and compares them with the
op's derived gradients there.

Example:
    >>> from symcnn.symbolic import normalization
    >>> compact = compact_backward(normalization.batchnorm2d())
    >>> [str(line.gradient) for line in compact.lines]
    ['dL/dXhat[n, c, i, j]', 'dL/dsigma2[c]', 'dL/dmu[c]', 'dL/dX[n, c, i, j]', 'dL/dgamma[c]', 'dL/dbeta[c]']
    >>> for term in compact.line("mu").terms:
    ...     print(term.upstream, "*", term.local, "summed over", ", ".join(str(limit[0]) for limit in term.limits))
    dL/dXhat[n, c, i, j] * -1/sqrt(epsilon + sigma2[c]) summed over n, i, j
    dL/dsigma2[c] * -2*(X[r, c, u, v] - mu[c])/m summed over r, u, v
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import sympy
from sympy import Array, Expr, Indexed, IndexedBase, Sum, Symbol

from symcnn.symbolic.adjoint import GradientFormula, derive_gradient
from symcnn.symbolic.expand import evaluate
from symcnn.symbolic.ops import IndexFormula, Tensor, epsilon
from symcnn.symbolic.tensors import indices_of
from symcnn.symbolic.verify import exactly_equal, expand_gradient

__all__ = ["MEAN", "VARIANCE", "NORMALIZED", "COUNT", "Statistics", "split_statistics", "ChainTerm", "ChainLine",
           "CompactBackward", "compact_backward", "deviations_vanish", "check_compact_backward"]

#: The statistics as tensors: the mean, the (biased) variance, the normalized input (document 003's x̂).
MEAN, VARIANCE, NORMALIZED = IndexedBase("mu"), IndexedBase("sigma2"), IndexedBase("Xhat")
#: The number of values each statistic is taken over (document 003's ``m``).
COUNT = Symbol("m", integer=True, positive=True)


def _gradient_base(base: IndexedBase) -> IndexedBase:
    return IndexedBase(f"dL/d{base}")


@dataclass(frozen=True)
class Statistics:
    """A normalization's formula cut at its statistics: ``nodes`` in forward order, ``mu``,
    ``sigma2``, ``Xhat`` and the output; ``count`` is ``m`` (``N*H_in*W_in`` for batch norm) and
    ``mean_sum`` the mean's sum as the formula writes it (``m mu = mean_sum``)."""

    forward: IndexFormula
    count: Expr
    statistic_indices: tuple[Symbol, ...]
    mean_sum: Sum
    nodes: tuple[IndexFormula, ...]


def _read(formula: IndexFormula, role: str) -> Indexed:
    """How the formula reads its operand of ``role`` (``gamma[c]``), the read itself."""
    base = formula.operand(role).base
    reads = {node for node in formula.rhs.atoms(Indexed) if node.base == base}
    if len(reads) != 1:
        raise ValueError(f"{formula.op}: reads its {role} {len(reads)} ways, not once")
    return reads.pop()


def split_statistics(forward: IndexFormula) -> Optional[Statistics]:
    """``forward`` cut at its mean, variance and normalized value; ``None`` when it has no such statistics.

    >>> from symcnn.symbolic import normalization
    >>> [f"{node.output.base}[{', '.join(map(str, node.indices))}]" for node in
    ...  split_statistics(normalization.layernorm(rank=2)).nodes]
    ['mu[n]', 'sigma2[n]', 'Xhat[n, k]', 'Y[n, k]']
    """
    roles = {tensor.role for tensor in forward.operands}
    if not {"input", "weight", "bias"} <= roles or not forward.rhs.has(epsilon):
        return None
    source = forward.operand("input")
    sums = forward.rhs.atoms(Sum)
    means = [node for node in sums if isinstance(node.function, Indexed) and node.function.base == source.base]
    variances = [node for node in sums if node.function.is_Pow and node.function.exp == 2]
    if len(means) != 1 or len(variances) != 1:
        return None
    (mean_sum,), (variance_sum,) = means, variances
    count = sympy.Mul(*[high - low + 1 for _, low, high in mean_sum.limits])
    statistic_indices = tuple(index for index in forward.indices if index in mean_sum.free_symbols)
    statistic_shape = tuple(forward.output.shape[forward.indices.index(index)] for index in statistic_indices)
    mean, variance = MEAN[statistic_indices], VARIANCE[statistic_indices]
    # The sums replaced whole (the variance's holds the mean's): count * mu / count is mu.
    cut = forward.rhs.xreplace({mean_sum: count * mean, variance_sum: count * variance})
    if cut.has(Sum):
        return None
    gamma, beta = _read(forward, "weight"), _read(forward, "bias")
    normalized_value = (cut - beta) / gamma  # the output before its scale and shift
    if normalized_value.has(gamma.base) or normalized_value.has(beta.base):
        return None
    scale_and_shift = gamma * NORMALIZED[forward.indices] + beta
    assert sympy.expand(scale_and_shift.xreplace({NORMALIZED[forward.indices]: normalized_value}) - cut) == 0
    mean_tensor, variance_tensor = Tensor("mean", MEAN, statistic_shape), Tensor("variance", VARIANCE, statistic_shape)
    normalized = Tensor("normalized", NORMALIZED, forward.output.shape)
    parameters = forward.parameters
    nodes = (
        IndexFormula("mean", mean_tensor, statistic_indices, mean_sum / count, (source,), parameters),
        IndexFormula("variance", variance_tensor, statistic_indices,
                     (variance_sum / count).xreplace({mean_sum: count * mean}), (source, mean_tensor), parameters),
        IndexFormula("normalized", normalized, forward.indices, normalized_value,
                     (source, mean_tensor, variance_tensor), parameters),
        IndexFormula(forward.op, forward.output, forward.indices, scale_and_shift,
                     (normalized, forward.operand("weight"), forward.operand("bias")), parameters),
    )
    return Statistics(forward, count, statistic_indices, mean_sum, nodes)


@dataclass(frozen=True)
class ChainTerm:
    """What one reader of a tensor sends back to it: ``sum_limits upstream * local``, with ``upstream`` the
    reader's own gradient (``dL/dXhat[n, c, i, j]``) and ``local`` the reader's derivative."""

    limits: tuple[tuple[Symbol, Expr, Expr], ...]
    upstream: Indexed
    local: Expr

    def expr(self) -> Expr:
        product = self.upstream * self.local
        return Sum(product, *self.limits) if self.limits else product

    @property
    def upstream_outside(self) -> bool:
        """Whether the upstream gradient is constant over the sum (``dL/dsigma2[c]`` over ``r, u, v``)."""
        return not any(self.upstream.has(limit[0]) for limit in self.limits)


@dataclass(frozen=True)
class ChainLine:
    """``gradient = sum of terms``: a tensor's gradient, one term per reader."""

    gradient: Indexed
    terms: tuple[ChainTerm, ...]

    @property
    def rhs(self) -> Expr:
        return sympy.Add(*[term.expr() for term in self.terms])


@dataclass(frozen=True)
class CompactBackward:
    """Document 003's backward of a normalization, derived: a line per tensor, in the document's order
    (``Xhat``, ``sigma2``, ``mu``, ``X``, then ``gamma`` and ``beta``, which it omits). ``deviations`` is
    the sum that the variance's term of ``∂L/∂mu`` carries, proved zero (:func:`deviations_vanish`);
    ``mean_without_zero`` is ``∂L/∂mu`` with that term dropped."""

    statistics: Statistics
    lines: tuple[ChainLine, ...]
    deviations: Sum
    mean_without_zero: ChainLine

    def line(self, name: str) -> ChainLine:
        """The line of the tensor named ``name`` (``mu``, ``X``, ``gamma``, ...)."""
        return next(line for line in self.lines if str(line.gradient.base) == f"dL/d{name}")


def _orient(expr: Expr) -> Expr:
    """``2*(-X + mu)/m`` as ``-2*(X - mu)/m``: each sum in a product written with its leading term positive."""
    factors = sympy.Mul.make_args(expr)
    flipped = [factor for factor in factors if isinstance(factor, sympy.Add) and factor.could_extract_minus_sign()]
    if not flipped:
        return expr
    kept = [factor for factor in factors if factor not in flipped]
    sign = -1 if len(flipped) % 2 else 1
    oriented = sympy.Mul(sign, *kept, *[-factor for factor in flipped])
    # A number times one sum alone would be multiplied out again: keep that product as it stands.
    return oriented if oriented.is_Mul else sympy.Mul(sign, *kept, *[-factor for factor in flipped], evaluate=False)


def _chain_terms(gradient: GradientFormula, upstream_base: IndexedBase, renaming: Mapping[Symbol, Symbol],
                 count: Expr) -> list[ChainTerm]:
    """The derived terms of one reader as :class:`ChainTerm` s: its upstream ``dL/dY`` renamed to the
    reader's gradient, the free indices to the tensor's names, terms over the same sum gathered."""
    grouped: dict = {}
    for term in gradient.terms:
        if term.conditions:
            raise ValueError(f"{gradient.forward.op}: a normalization's gradient has no conditions, "
                             f"got {term.conditions}")
        bound = {limit[0] for limit in term.limits}
        if bound & set(renaming.values()):
            raise AssertionError(f"{gradient.forward.op}: a sum binds one of {sorted(map(str, renaming.values()))}")
        body = term.body.xreplace(renaming).xreplace({gradient.grad_output.base: upstream_base})
        (upstream,) = [read for read in body.atoms(Indexed) if read.base == upstream_base]
        key = (term.limits, upstream)
        grouped[key] = grouped.get(key, 0) + sympy.cancel(body / upstream)
    return [ChainTerm(limits, upstream, _orient(sympy.factor_terms(local.subs(count, COUNT))))
            for (limits, upstream), local in grouped.items()]


def compact_backward(forward: IndexFormula) -> CompactBackward:
    """Document 003's lines for ``forward`` (batch or layer normalization), each derived by symcnn."""
    statistics = split_statistics(forward)
    if statistics is None:
        raise ValueError(f"{forward.op}: not a normalization (no mean and variance of its input to split at)")
    weight, bias = forward.operand("weight").base, forward.operand("bias").base
    indices = {forward.operand("input").base: forward.indices, MEAN: statistics.statistic_indices,
               VARIANCE: statistics.statistic_indices, NORMALIZED: forward.indices,
               weight: _read(forward, "weight").indices, bias: _read(forward, "bias").indices}
    order = (NORMALIZED, VARIANCE, MEAN, forward.operand("input").base, weight, bias)
    lines = []
    for target in order:
        terms = []
        for reader in reversed(statistics.nodes):  # the reader nearest the loss first, as the document
            role = next((t.role for t in reader.operands if t.base == target), None)
            if role is None:
                continue
            gradient = derive_gradient(reader, role)
            renaming = dict(zip(gradient.indices, indices[target]))
            upstream = gradient.grad_output.base if reader.output.base == forward.output.base else \
                _gradient_base(reader.output.base)
            terms += _chain_terms(gradient, upstream, renaming, statistics.count)
        lines.append(ChainLine(_gradient_base(target)[indices[target]], tuple(terms)))
    mean_line = next(line for line in lines if line.gradient.base == _gradient_base(MEAN))
    through_variance = next(term for term in mean_line.terms if term.upstream.base == _gradient_base(VARIANCE))
    _, deviation = through_variance.local.as_independent(*[limit[0] for limit in through_variance.limits],
                                                         as_Add=False)
    deviations = Sum(deviation, *through_variance.limits)
    kept = tuple(term for term in mean_line.terms if term is not through_variance)
    return CompactBackward(statistics, tuple(lines), deviations, ChainLine(mean_line.gradient, kept))


def _canonical_sums(expr: Expr) -> Expr:
    """Every sum's bound variables renamed by position, so that one sum written with two sets of
    names (``sum_r X[r]`` and ``sum_q X[q]``) is one expression."""
    def rename(node: Sum) -> Sum:
        names = {limit[0]: Symbol(f"_bound{position}", **limit[0].assumptions0)
                 for position, limit in enumerate(node.limits)}
        return node.xreplace(names)

    return expr.replace(lambda node: isinstance(node, Sum), rename)


def deviations_vanish(compact: CompactBackward) -> tuple[Expr, Expr]:
    """Prove ``sum (X - mu) = 0`` for every shape: ``(split, value)`` with ``split`` the sum split as
    ``sum X - m mu`` and ``value`` what it is with ``m mu`` the mean's own sum: 0, or AssertionError.

    >>> from symcnn.symbolic import normalization
    >>> deviations_vanish(compact_backward(normalization.batchnorm2d()))
    (-m*mu[c] + Sum(X[r, c, u, v], (r, 0, N - 1), (u, 0, H_in - 1), (v, 0, W_in - 1)), 0)
    """
    statistics = compact.statistics
    mean = MEAN[statistics.statistic_indices]
    split = compact.deviations.expand().doit()  # sum X - (N H_in W_in) mu: the mean is constant over the sum
    value = sympy.simplify(_canonical_sums(split.xreplace({mean: statistics.mean_sum / statistics.count})))
    if value != 0:
        raise AssertionError(f"{statistics.forward.op}: the deviations from the mean sum to {value}, not 0")
    return split.subs(statistics.count * mean, COUNT * mean), value


#: The role of each tensor of the lines, to evaluate them (:func:`symcnn.symbolic.expand.evaluate`).
_ROLES = {"mu": "mean", "sigma2": "variance", "Xhat": "normalized", "dL/dY": "grad_output",
          "dL/dXhat": "grad_normalized", "dL/dsigma2": "grad_variance", "dL/dmu": "grad_mean"}


def _tensors(compact: CompactBackward) -> dict[IndexedBase, Tensor]:
    """Every tensor the lines read or define, by base, with a role to evaluate it by."""
    statistics = compact.statistics
    tensors = {tensor.base: tensor for node in statistics.nodes for tensor in node.tensors
               if tensor.base != statistics.forward.output.base}
    upstream = IndexedBase("dL/dY")
    tensors[upstream] = Tensor("grad_output", upstream, statistics.forward.output.shape)
    for line in compact.lines:
        base = line.gradient.base
        source = next(t for t in tensors.values() if _gradient_base(t.base) == base)
        role = _ROLES.get(str(base), f"grad_{source.role}")
        tensors[base] = Tensor(role, base, source.shape)
    return tensors


def _as_formula(line: ChainLine, compact: CompactBackward, tensors: Mapping[IndexedBase, Tensor]) -> IndexFormula:
    """A line as an index formula over the tensors it reads, to evaluate at concrete arrays."""
    read = {node.base for node in line.rhs.atoms(Indexed)}
    operands = tuple(tensor for base, tensor in tensors.items() if base in read)
    statistics = compact.statistics
    return IndexFormula(str(line.gradient.base), tensors[line.gradient.base], line.gradient.indices,
                        line.rhs.subs(COUNT, statistics.count), operands, statistics.forward.parameters)


def _differences(found: Array, expected: Array) -> list[tuple[int, ...]]:
    """The indices where two arrays of expressions differ (exactly)."""
    return [index for index in indices_of(expected.shape) if not exactly_equal(found[index], expected[index])]


def check_compact_backward(compact: CompactBackward, arrays: Mapping[str, Array], upstream: Array,
                           derived: Optional[Mapping[str, GradientFormula]] = None) -> list[str]:
    """Where the lines, evaluated one after the other at ``arrays`` (by role: ``input``, ``weight``,
    ``bias``) and ``upstream`` (``dL/dY``), differ from the op's derived gradients (``derived``, by role;
    derived here when not given) there: ``[]`` when they agree everywhere. ``∂L/∂mu`` is checked with
    and without the term that the deviations' sum makes zero; the nodes, composed, against the forward.
    """
    statistics, tensors = compact.statistics, _tensors(compact)
    values = {**arrays, "grad_output": upstream}
    for node in statistics.nodes[:-1]:
        values[node.output.role] = evaluate(node, values)
    problems = []
    output, composed = evaluate(statistics.forward, values), evaluate(statistics.nodes[-1], values)
    if _differences(composed, output):
        problems.append("the nodes composed differ from the forward formula")
    for line in compact.lines:
        tensor = tensors[line.gradient.base]
        values[tensor.role] = evaluate(_as_formula(line, compact, tensors), values)
    without = evaluate(_as_formula(compact.mean_without_zero, compact, tensors), values)
    if _differences(without, values["grad_mean"]):
        problems.append("dL/dmu without the deviations' term differs from dL/dmu")
    for role in ("input", "weight", "bias"):
        gradient = derived[role] if derived is not None else derive_gradient(statistics.forward, role)
        expected = expand_gradient(gradient, arrays, upstream, {})
        wrong = _differences(values[f"grad_{role}"], expected)
        if wrong:
            name = statistics.forward.operand(role).base
            problems.append(f"dL/d{name}: differs from the derived gradient at {wrong}")
    return problems
