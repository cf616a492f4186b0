"""Conditions a kernel need not test: :func:`symcnn.codegen.rewrites.always_holds` and the lowering's use of it.

A condition that every output element and every value of a term's loops meet is dropped before
printing; a tested sum is never reassociated, so that a depthwise weight gradient's channel bound
kept its sum from vectorizing.
"""

from __future__ import annotations

import itertools

import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

from symcnn.codegen import cost_model
from symcnn.codegen.network import layer_kernels
from symcnn.codegen.rewrites import always_holds, fold_bound
from symcnn.printing.numba import NumbaPrinter
from symcnn.spec import load_spec

SYMBOLS = sympy.symbols("a b c", integer=True, nonnegative=True)
RELATIONS = (sympy.Le, sympy.Lt, sympy.Ge, sympy.Gt)


@settings(max_examples=200, deadline=None)
@given(coefficients=st.lists(st.integers(-3, 3), min_size=3, max_size=3), constant=st.integers(-12, 12),
       lows=st.lists(st.integers(0, 3), min_size=3, max_size=3),
       spans=st.lists(st.integers(0, 3), min_size=3, max_size=3), relation=st.sampled_from(RELATIONS))
def test_a_linear_condition_always_holds_exactly_when_it_holds_at_every_point(coefficients, constant, lows, spans,
                                                                               relation):
    """Over a box, a linear inequality's worst case is at a corner: the answer is exact, checked by
    trying every point."""
    expression = sum(coefficient * symbol for coefficient, symbol in zip(coefficients, SYMBOLS)) + constant
    condition = relation(expression, 0, evaluate=False)
    ranges = {symbol: (low, low + span) for symbol, low, span in zip(SYMBOLS, lows, spans)}
    every_point = all(
        bool(relation(expression.subs(dict(zip(SYMBOLS, point))), 0))
        for point in itertools.product(*(range(low, high + 1) for low, high in ranges.values())))
    assert always_holds(condition, ranges) == every_point


def test_unsure_conditions_are_kept():
    a, b, c = SYMBOLS
    assert not always_holds(a * b < 100, {a: (0, 1), b: (0, 1)})  # not linear
    assert not always_holds(a + c < 100, {a: (0, 1)})  # c has no range
    assert not always_holds(sympy.Eq(sympy.Mod(a, 2), 0), {a: (0, 0)})  # not an inequality


def test_a_depthwise_weight_gradient_tests_only_what_can_fail():
    """suite-separable's depthwise weight gradients read X at channel ``c_out + c_in``, ``c_in`` in
    ``range(1)``: that channel's bounds hold for every output element, so dw1's sum in the gather form
    carries no test and may be reassociated (the cost model gives dw1 the columns schedule, which reads
    zero-padded copies and tests nothing: the gather form is asked for here). dw2's strided windows
    start their rows and columns past the padding (``0 <= 2*i + u - 1`` folded into ``i``'s loop), so its
    sum carries no test either; its last row needs none (``2*15 + 2 - 1 < 32`` always)."""
    layers = {layer.label: layer for layer in load_spec("suite-separable").layers}
    with cost_model.restricted(lambda nest: nest.schedule == "gather"):
        dw1 = next(kernel for kernel in layer_kernels(layers["dw1"]) if kernel.name == "dw1_grad_weight")
    assert dw1.kind == "sum" and [term.condition for term in dw1.terms] == [None] and "reassoc" in dw1.fastmath
    dw2 = next(kernel for kernel in layer_kernels(layers["dw2"]) if kernel.name == "dw2_grad_weight")
    (term,) = dw2.terms
    assert term.condition is None and "reassoc" in dw2.fastmath
    starts = {loop.variable: (loop.start, loop.stop) for loop in term.loops}
    assert starts["i"] == ("max(0, (2 - u) // 2)", "16") and starts["j"] == ("max(0, (2 - v) // 2)", "16")


@settings(max_examples=200, deadline=None)
@given(coefficient=st.integers(-4, 4).filter(bool), outer=st.integers(-3, 3), constant=st.integers(-9, 9),
       relation=st.sampled_from(RELATIONS), span=st.integers(0, 9))
def test_a_folded_bound_keeps_exactly_the_values_that_meet_the_condition(coefficient, outer, constant, relation,
                                                                        span):
    """``coefficient*i + outer*u + constant (relation) 0``, folded into ``i``'s loop ``range(0, span + 1)``
    for each value of the outer ``u``, keeps exactly the ``i`` that meet it (strided windows have
    coefficients 2 and more; printed with Python's flooring ``//``)."""
    i, u = sympy.symbols("i u", integer=True)
    condition = relation(coefficient * i + outer * u + constant, 0, evaluate=False)
    bounds = {i: [sympy.Integer(0), sympy.Integer(span + 1)]}
    assert fold_bound(condition, bounds, [i], {u})
    printer = NumbaPrinter({})
    start, stop = (printer.doprint(bound) for bound in bounds[i])
    for value in range(-4, 5):
        kept = list(range(eval(start, {"u": value}), eval(stop, {"u": value})))  # noqa: S307 (printed bounds)
        met = [point for point in range(span + 1) if bool(condition.subs({i: point, u: value}))]
        assert kept == met, (condition, value, start, stop)
