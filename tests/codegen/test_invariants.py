"""Loop invariants in the lowering: sums nested as deep as their factors allow, reductions and costly
factors computed once per value of the indices they depend on (per channel, per sample), the sums
over the same ranges in one pass; and tanh computed through one exp."""

from __future__ import annotations


import sympy
from sympy import IndexedBase, Sum, Symbol

from symcnn.codegen.coefficients import invariant_terms
from symcnn.codegen.invariants import Precomputer, factor_sums
from symcnn.codegen.kernel_ir import Loop, Reduction
from symcnn.codegen.lower import loss_kernels
from symcnn.codegen.network import layer_kernels
from symcnn.spec import load_spec
from symcnn.symbolic.adjoint import GatherTerm

X, G, W = IndexedBase("X"), IndexedBase("G"), IndexedBase("W")
n, c, q, k = (Symbol(name, integer=True, nonnegative=True) for name in "ncqk")
N = Symbol("N", integer=True, positive=True)


def loop(variable, low, high, parallel=False) -> Loop:
    return Loop(str(variable), str(high + 1), parallel, str(low))


def precomputer(indices, extents, batch_index=None) -> Precomputer:
    return Precomputer(indices, extents, batch_index, IndexedBase, loop,
                       lambda name, node: Reduction(name, (), "0.0", f"{name} += {node.function}"), str)


def test_an_index_that_only_some_factors_read_is_summed_inside_the_others():
    term = GatherTerm(((n, 0, N - 1), (q, 0, 3)), (), G[n, c] * X[n, q] / sympy.sqrt(W[n]))
    nested = factor_sums(term)
    assert nested.limits == ((n, 0, N - 1),)
    assert nested.body == G[n, c] * Sum(X[n, q], (q, 0, 3)) / sympy.sqrt(W[n])
    convolution = GatherTerm(((q, 0, 3), (k, 0, 2)), (), W[c, q, k] * X[n, q, k])
    assert factor_sums(convolution) is convolution  # every index read by both factors: as it was


def test_a_per_sample_statistic_read_in_a_sum_over_the_batch_is_an_array_over_the_batch():
    collector = precomputer((c,), (16,))
    mean = Sum(X[n, q], (q, 0, 15))
    body = collector.replace(G[n, c] * mean / sympy.sqrt(Sum((X[n, k] - mean) ** 2, (k, 0, 15))), ((n, 0, N - 1),))
    assert body == G[n, c] * IndexedBase("stat0")[n] / sympy.sqrt(IndexedBase("stat1")[n])
    arrays = collector.precomputed()
    assert [array.names for array in arrays] == [("stat0",), ("stat1",)]  # the variance reads the mean
    assert [loop.stop for array in arrays for loop in array.loops] == ["N", "N"]


def test_a_reduction_over_every_loop_around_it_stays_where_it_is():
    collector = precomputer((n, c), (N, 16), batch_index=n)
    per_element = Sum(X[n, c, q], (q, 0, 3))
    assert collector.replace(G[n, c] * per_element) == G[n, c] * per_element
    assert collector.precomputed() == ()


def test_products_that_read_the_same_per_element_values_share_one_coefficient():
    collector = precomputer((n, c), (N, 16), batch_index=n)
    s = IndexedBase("s")
    terms = [GatherTerm((), (), G[n, c] * W[c] / sympy.sqrt(s[c])), GatherTerm((), (), X[n, c] / s[c]),
             GatherTerm((), (), G[n, c] * W[c] ** 2 / s[c] ** 3), GatherTerm((), (), W[c] + X[n, c] * G[n, c])]
    bodies = [term.body for term in invariant_terms(terms, collector)]
    coefficient = IndexedBase("coef0"), IndexedBase("coef1")
    assert bodies[:2] == [G[n, c] * coefficient[0][c], X[n, c] * coefficient[1][c]]
    assert set(bodies[2:]) == {W[c], X[n, c] * G[n, c]}  # nothing costly: as they were
    (arrays,) = collector.precomputed()  # both over the channels: one loop
    assert arrays.values == ("W[c]**2/s[c]**3 + W[c]/sqrt(s[c])", "1/s[c]")


def test_the_loss_keeps_its_shifted_exponential_sum_in_the_term():
    spec = load_spec("digits")
    gradient = loss_kernels(spec)[1]
    assert not gradient.precomputed
    assert [reduction.name for term in gradient.terms for reduction in term.reductions][:1] == ["peak1"]


def test_batch_norm_kernels_compute_no_square_root_per_element():
    spec = load_spec("resnet-mini")
    layer = next(layer for layer in spec.layers if layer.kind == "batchnorm2d")
    for kernel in layer_kernels(layer):
        if kernel.name.endswith(("grad_weight", "grad_bias")):
            continue  # one element per channel
        assert all("sqrt" not in term.update and "**" not in term.update for term in kernel.terms), kernel.name


def test_a_function_only_coefficients_call_is_imported():
    spec = load_spec("resnet-mini")
    layer = next(layer for layer in spec.layers if layer.kind == "batchnorm2d")
    forward = layer_kernels(layer)[0]
    assert not any("sqrt" in term.update for term in forward.terms)  # only the coefficients take the root
    assert any("sqrt(" in value for array in forward.precomputed for value in array.values)
    assert ("math", "sqrt") in forward.imports
