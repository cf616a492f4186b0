"""Document 003's compact backward of batch (and layer) normalization, derived by symcnn: the
formula cut at its statistics, each piece derived, the lines equal to the document's and to the
op's derived gradients, and the document's ``−2/m Σ(x_i − μ)`` term proved zero."""

from __future__ import annotations

from dataclasses import replace

import pytest
import sympy
from sympy import Sum

from symcnn.symbolic import normalization, ops
from symcnn.symbolic.normalization_backward import (COUNT, MEAN, NORMALIZED, VARIANCE, ChainLine,
                                                    check_compact_backward, compact_backward, deviations_vanish,
                                                    split_statistics)
from symcnn.symbolic.tensors import symbol_array, upstream_array
from symcnn.symbolic.verify import exactly_equal

FORMULAS = {"batchnorm2d": normalization.batchnorm2d, "layernorm": lambda: normalization.layernorm(rank=4),
            "layernorm-features": lambda: normalization.layernorm(rank=2)}


def _arrays(shape, parameter_shape):
    return {"input": symbol_array("x", shape), "weight": symbol_array("w", parameter_shape),
            "bias": symbol_array("b", parameter_shape)}


@pytest.mark.parametrize("name", FORMULAS)
def test_the_pieces_compose_back_to_the_registry_formula(name):
    forward = FORMULAS[name]()
    mean, variance, normalized, output = split_statistics(forward).nodes
    composed = output.rhs.xreplace({NORMALIZED[forward.indices]: normalized.rhs})
    composed = composed.xreplace({VARIANCE[variance.indices]: variance.rhs})
    composed = composed.xreplace({MEAN[mean.indices]: mean.rhs})
    assert composed == forward.rhs


@pytest.mark.parametrize("op", ["conv2d", "softmax", "dense", "global_avgpool"])
def test_an_op_without_statistics_is_not_split(op):
    from symcnn.views.formula import FORMULA_OPS

    assert split_statistics(FORMULA_OPS[op]()) is None
    with pytest.raises(ValueError, match="not a normalization"):
        compact_backward(FORMULA_OPS[op]())


def _term(line: ChainLine, upstream_name: str):
    (term,) = [term for term in line.terms if str(term.upstream.base) == upstream_name]
    return term


def test_the_derived_lines_are_the_documents_four_lines():
    """Document 003's lines (``../shared/seeds/003_*.txt``, "Backward Pass"), in index form: the derived
    lines have the same terms, each over the same sum."""
    compact = compact_backward(normalization.batchnorm2d())
    n, c, i, j, r, u, v = ops.n, ops.c, ops.i, ops.j, ops.r, ops.u, ops.v
    x, mu, var = ops.X[n, c, i, j], MEAN[c], VARIANCE[c]
    root = sympy.sqrt(var + ops.epsilon)
    grad_y, grad_xhat = sympy.IndexedBase("dL/dY")[n, c, i, j], sympy.IndexedBase("dL/dXhat")[n, c, i, j]
    grad_var, grad_mean = sympy.IndexedBase("dL/dsigma2")[c], sympy.IndexedBase("dL/dmu")[c]
    batch = ((n, 0, ops.N - 1), (i, 0, ops.H_in - 1), (j, 0, ops.W_in - 1))
    # ∂L/∂x̂_i = ∂L/∂y_i · γ
    assert exactly_equal(compact.line("Xhat").rhs, grad_y * ops.gamma[c])
    # ∂L/∂σ² = Σ ∂L/∂x̂_i · (x_i − μ) · (−1/2)(σ² + ε)^{-3/2}
    term = _term(compact.line("sigma2"), "dL/dXhat")
    assert term.limits == batch
    assert exactly_equal(term.upstream * term.local, grad_xhat * (x - mu) * sympy.Rational(-1, 2) * root ** -3)
    # ∂L/∂μ = Σ ∂L/∂x̂_i · (−1/√(σ² + ε)) + ∂L/∂σ² · (−2/m) Σ(x_i − μ)
    first, second = _term(compact.line("mu"), "dL/dXhat"), _term(compact.line("mu"), "dL/dsigma2")
    assert first.limits == batch and exactly_equal(first.upstream * first.local, grad_xhat * (-1 / root))
    assert second.limits == ((r, 0, ops.N - 1), (u, 0, ops.H_in - 1), (v, 0, ops.W_in - 1))
    deviations = ops.X[r, c, u, v] - mu
    assert exactly_equal(second.upstream * second.local, grad_var * sympy.Rational(-2) / COUNT * deviations)
    # ∂L/∂x_i = ∂L/∂x̂_i/√(σ² + ε) + ∂L/∂σ² · 2(x_i − μ)/m + ∂L/∂μ/m
    assert exactly_equal(compact.line("X").rhs, grad_xhat / root + grad_var * 2 * (x - mu) / COUNT + grad_mean / COUNT)
    # and the two the document omits: ∂L/∂γ = Σ ∂L/∂y_i x̂_i, ∂L/∂β = Σ ∂L/∂y_i
    assert compact.line("gamma").rhs == Sum(grad_y * NORMALIZED[n, c, i, j], *batch)
    assert compact.line("beta").rhs == Sum(grad_y, *batch)
    assert compact.mean_without_zero.terms == (first,)


@pytest.mark.parametrize("name", FORMULAS)
def test_the_documents_zero_term_is_zero_for_every_shape(name):
    compact = compact_backward(FORMULAS[name]())
    split, value = deviations_vanish(compact)
    assert value == 0 and compact.deviations != 0
    assert split.has(COUNT) and split.has(Sum)  # sum X - m mu, before the mean's own sum is put in


def test_a_wrong_mean_would_not_make_the_zero_term_vanish():
    compact = compact_backward(normalization.batchnorm2d())
    (limit, *others) = compact.statistics.mean_sum.limits
    short = Sum(compact.statistics.mean_sum.function, (limit[0], limit[1], limit[2] - 1), *others)  # one sample less
    wrong = replace(compact, statistics=replace(compact.statistics, mean_sum=short))
    with pytest.raises(AssertionError, match="deviations from the mean sum to"):
        deviations_vanish(wrong)


@pytest.mark.parametrize("name, shape, parameter_shape", [
    ("batchnorm2d", (2, 1, 1, 2), (1,)),
    ("batchnorm2d", (1, 2, 2, 1), (2,)),
    ("layernorm", (2, 1, 1, 2), (1, 1, 2)),
    ("layernorm-features", (2, 3), (3,)),
])
def test_the_lines_give_the_derived_gradients(name, shape, parameter_shape):
    compact = compact_backward(FORMULAS[name]())
    assert check_compact_backward(compact, _arrays(shape, parameter_shape), upstream_array(shape)) == []


def test_a_wrong_line_is_caught():
    """The check can fail: ∂L/∂x with the variance's term halved (2(x − μ)/m written (x − μ)/m)."""
    compact = compact_backward(normalization.batchnorm2d())
    line = compact.line("X")
    terms = tuple(replace(term, local=term.local / 2) if str(term.upstream.base) == "dL/dsigma2" else term
                  for term in line.terms)
    wrong = replace(compact, lines=tuple(replace(line, terms=terms) if candidate is line else candidate
                                         for candidate in compact.lines))
    problems = check_compact_backward(wrong, _arrays((2, 1, 1, 2), (1,)), upstream_array((2, 1, 1, 2)))
    assert len(problems) == 1 and problems[0].startswith("dL/dX: differs")
