"""General gradient formulas (symcnn.symbolic.adjoint): proved by expansion against element-wise derivatives.

Rung 2 of the verification ladder: each derived index formula, instantiated at a small
configuration, equals the element-wise derivative (the VJP of the expanded forward pass)
exactly, at many configurations; and its conditions are necessary, not decoration.
"""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import replace

import pytest
import sympy
from sympy import Array

from symcnn.symbolic import ops
from symcnn.symbolic.adjoint import derive_gradient, gradients_of
from symcnn.views.formula import FORMULA_OPS, from_srepr, general_formula
from symcnn.symbolic.functions import FirstArgmax
from symcnn.symbolic.tensors import symbol_array, upstream_array
from symcnn.symbolic.verify import elementwise_gradients, expand_gradient, mismatches


def conv_parameters(stride, padding, dilation):
    return {
        "stride_h": stride[0], "stride_w": stride[1],
        "padding_h": padding[0], "padding_w": padding[1],
        "dilation_h": dilation[0], "dilation_w": dilation[1],
    }


def fits(size, kernel, stride, padding, dilation):
    return all(s + 2 * p >= d * (k - 1) + 1 for s, k, p, d in zip(size, kernel, padding, dilation))


def conv_configurations(count=60, seed=2026):
    """A fixed random sample of small convolutions: strides 1-3, paddings 0-2, dilations 1-2,
    non-square inputs and kernels, 1-2 channels in and out, batch 2."""
    sizes = [(4, 5), (5, 3), (6, 6)]
    kernels = [(1, 2), (2, 2), (3, 2), (2, 3)]
    grid = [
        (size, kernel, stride, padding, dilation, channels_in, channels_out)
        for size, kernel, stride, padding, dilation, channels_in, channels_out in itertools.product(
            sizes, kernels, [(1, 1), (2, 1), (3, 2)], [(0, 0), (1, 2), (2, 1)], [(1, 1), (2, 1), (1, 2)],
            [1, 2], [1, 2])
        if fits(size, kernel, stride, padding, dilation)
    ]
    return random.Random(seed).sample(grid, count)


CONV_CONFIGURATIONS = conv_configurations()


def test_there_are_at_least_fifty_conv_configurations():
    assert len(CONV_CONFIGURATIONS) >= 50
    strides = {c[2] for c in CONV_CONFIGURATIONS}
    paddings = {c[3] for c in CONV_CONFIGURATIONS}
    dilations = {c[4] for c in CONV_CONFIGURATIONS}
    assert {(1, 1), (2, 1), (3, 2)} <= strides and {(0, 0), (1, 2), (2, 1)} <= paddings
    assert {(1, 1), (2, 1)} <= dilations


@pytest.mark.parametrize("size, kernel, stride, padding, dilation, channels_in, channels_out", CONV_CONFIGURATIONS)
def test_conv2d_formulas_equal_elementwise_derivatives(size, kernel, stride, padding, dilation, channels_in,
                                                       channels_out):
    arrays = {
        "input": symbol_array("x", (2, channels_in, *size)),
        "weight": symbol_array("w", (channels_out, channels_in, *kernel)),
        "bias": symbol_array("b", (channels_out,)),
    }
    assert mismatches(ops.conv2d(), arrays, conv_parameters(stride, padding, dilation)) == {
        "input": [], "weight": [], "bias": []}


POOL_CONFIGURATIONS = [
    ((4, 4), (2, 2), (2, 2)),
    ((3, 3), (2, 2), (1, 1)),  # document 002's overlapping windows
    ((5, 4), (2, 3), (1, 1)),
    ((5, 6), (3, 2), (2, 3)),
    ((7, 5), (2, 2), (3, 2)),  # rows and columns no window covers
    ((4, 5), (1, 2), (1, 2)),
]


@pytest.mark.parametrize("op", ["maxpool2d", "avgpool2d"])
@pytest.mark.parametrize("size, kernel, stride", POOL_CONFIGURATIONS)
def test_pool_formulas_equal_elementwise_derivatives(op, size, kernel, stride):
    arrays = {"input": symbol_array("x", (2, 2, *size))}
    parameters = {"kernel_height": kernel[0], "kernel_width": kernel[1], "stride_h": stride[0], "stride_w": stride[1]}
    assert mismatches(FORMULA_OPS[op](), arrays, parameters) == {"input": []}


@pytest.mark.parametrize("shape", [(2, 1, 3, 2), (1, 3, 2, 2), (2, 2, 1, 3)])
def test_flatten_and_global_pool_formulas(shape):
    assert mismatches(ops.flatten(), {"input": symbol_array("x", shape)}) == {"input": []}
    assert mismatches(ops.global_avgpool(), {"input": symbol_array("x", shape)}) == {"input": []}


@pytest.mark.parametrize("features_in, features_out, bias", [(3, 2, True), (1, 4, False), (4, 1, True)])
def test_dense_formulas(features_in, features_out, bias):
    arrays = {"input": symbol_array("x", (2, features_in)), "weight": symbol_array("w", (features_out, features_in))}
    if bias:
        arrays["bias"] = symbol_array("b", (features_out,))
    expected = {role: [] for role in arrays}
    assert mismatches(ops.dense(bias=bias), arrays) == expected


@pytest.mark.parametrize("factory", [ops.relu, ops.leaky_relu, ops.elu])
@pytest.mark.parametrize("shape", [(2, 3), (2, 1, 2, 2)])
def test_activation_formulas(factory, shape):
    formula = factory(rank=len(shape))
    assert mismatches(formula, {"input": symbol_array("x", shape)}) == {"input": []}


def test_softmax_and_loss_formulas():
    assert mismatches(ops.softmax(), {"input": symbol_array("z", (2, 3))}) == {"input": []}
    one_hot = Array([[0, 0, 1], [1, 0, 0]])
    for formula in (ops.softmax_cross_entropy(), ops.cross_entropy()):
        arrays = {"input": symbol_array("z", (2, 3)), "target": one_hot}
        assert mismatches(formula, arrays) == {"input": []}


def test_softmax_cross_entropy_gradient_is_p_minus_y_over_batch():
    """Document 004's p - y, derived in index form (the batch mean divides by N)."""
    gradient = derive_gradient(ops.softmax_cross_entropy(), "input")
    n, i, j = gradient.indices[0], gradient.indices[1], sympy.Symbol("j", integer=True, nonnegative=True)
    X, T = ops.X, ops.T
    p = sympy.exp(X[n, i]) / sympy.Sum(sympy.exp(X[n, j]), (j, 0, ops.F_in - 1))
    assert sympy.simplify(gradient.rhs - (p - T[n, i]) / ops.N) == 0


def test_conv_input_gradient_has_document_000s_form_plus_the_range_condition():
    """dL/dX[n,c,k,l] = sum_{c_out,u,v} dL/dY[n,c_out,(k+p-u)/s,(l+p-v)/s] W[c_out,c,u,v], where s divides
    the numerators (document 000) and the quotients lie in [0, H_out) (the condition 000 omits)."""
    gradient = derive_gradient(ops.conv2d(), "input").substitute({ops.d_h: 1, ops.d_w: 1})
    (term,) = gradient.terms
    n, c, k, l = gradient.indices  # noqa: E741  (document 000's k, l)
    c_out, u, v = (limit[0] for limit in term.limits)
    row, column = (k + ops.p_h - u) / ops.s_h, (l + ops.p_w - v) / ops.s_w
    assert sympy.simplify(term.body - ops.Wt[c_out, c, u, v] * sympy.IndexedBase("dL/dY")[n, c_out, row, column]) == 0
    assert sympy.Eq(sympy.Mod(k + ops.p_h - u, ops.s_h), 0) in term.conditions
    texts = {str(condition) for condition in term.conditions}
    assert any("floor" in text for text in texts), "the upper range condition i <= H_out - 1 is kept"
    assert len(term.conditions) == 6  # divisibility, lower and upper bound, for each axis


def test_stride_one_drops_the_divisibility_condition():
    general = general_formula("conv2d", "input")
    assert any(isinstance(c, sympy.Eq) and c.lhs.has(sympy.Mod) for c in general.conditions)
    strided = general_formula("conv2d", "input", stride=1)
    assert not any(c.has(sympy.Mod) for c in strided.conditions)
    assert "|" not in strided.text()


def test_rows_no_window_covers_get_zero_gradient():
    """Stride 3 with a 2-row kernel on 7 rows: rows 2 and 5 are read by no window."""
    arrays = {"input": symbol_array("x", (1, 1, 7, 4)), "weight": symbol_array("w", (1, 1, 2, 2))}
    parameters = conv_parameters((3, 1), (0, 0), (1, 1))
    gradient = derive_gradient(ops.conv2d(bias=False), "input")
    upstream, oracle = elementwise_gradients(ops.conv2d(bias=False), arrays, parameters, ["input"])
    general = expand_gradient(gradient, arrays, upstream, parameters)
    for row in (2, 5):
        assert all(general[0, 0, row, column] == 0 for column in range(4))
        assert all(oracle["input"][0, 0, row, column] == 0 for column in range(4))
    assert general[0, 0, 3, 1] != 0


def _without(gradient, keep):
    terms = tuple(replace(term, conditions=tuple(c for c in term.conditions if keep(c))) for term in gradient.terms)
    return replace(gradient, terms=terms)


def test_the_range_condition_is_necessary():
    """Dropping 0 <= i <= H_out - 1 reads dL/dY outside its shape: the proof would catch it."""
    arrays = {"input": symbol_array("x", (1, 1, 4, 4)), "weight": symbol_array("w", (1, 1, 2, 2))}
    parameters = conv_parameters((1, 1), (0, 0), (1, 1))
    gradient = derive_gradient(ops.conv2d(bias=False), "input")
    no_range = _without(gradient, lambda condition: condition.has(sympy.Mod))
    with pytest.raises(ValueError, match="outside"):
        expand_gradient(no_range, arrays, upstream_array((1, 1, 3, 3)), parameters)


def test_the_divisibility_condition_is_necessary():
    arrays = {"input": symbol_array("x", (1, 1, 5, 5)), "weight": symbol_array("w", (1, 1, 2, 2))}
    parameters = conv_parameters((2, 2), (0, 0), (1, 1))
    gradient = derive_gradient(ops.conv2d(bias=False), "input")
    no_divisibility = _without(gradient, lambda condition: not condition.has(sympy.Mod))
    with pytest.raises(ValueError, match="non-integer"):
        expand_gradient(no_divisibility, arrays, upstream_array((1, 1, 2, 2)), parameters)


def test_a_wrong_formula_is_caught():
    """The proof can fail: flip the kernel (the classic convolution/correlation slip)."""
    arrays = {"input": symbol_array("x", (1, 1, 3, 3)), "weight": symbol_array("w", (1, 1, 2, 2))}
    parameters = conv_parameters((1, 1), (0, 0), (1, 1))
    gradient = derive_gradient(ops.conv2d(bias=False), "input").substitute({ops.K_h: 2, ops.K_w: 2})
    (term,) = gradient.terms
    flipped_body = term.body.replace(
        lambda e: isinstance(e, sympy.Indexed) and e.base == ops.Wt,
        lambda e: ops.Wt[e.indices[0], e.indices[1], 1 - e.indices[2], 1 - e.indices[3]])
    wrong = replace(gradient, terms=(replace(term, body=flipped_body),))
    upstream, oracle = elementwise_gradients(ops.conv2d(bias=False), arrays, parameters, ["input"])
    general = expand_gradient(wrong, arrays, upstream, parameters)
    differing = [index for index in itertools.product([0], [0], range(3), range(3))
                 if sympy.expand(general[index] - oracle["input"][index]) != 0]
    assert differing


def test_max_pool_gradient_routes_through_the_first_argmax_indicator():
    gradient = derive_gradient(ops.maxpool2d(), "input")
    assert gradient.terms[0].body.has(FirstArgmax)
    # numeric: document 002's example through the general formula
    values = Array([[[[1, 5, 4], [9, 2, 1], [6, 3, 2]]]])
    parameters = {"kernel_height": 2, "kernel_width": 2, "stride_h": 1, "stride_w": 1}
    general = expand_gradient(gradient, {"input": values}, upstream_array((1, 1, 2, 2)), parameters)
    a, b, c, d = sympy.symbols("a b c d", real=True)
    assert general.tolist() == [[[[0, b, 0], [a + c, 0, 0], [0, d, 0]]]]


def test_every_op_has_a_gradient_for_each_differentiable_operand():
    expected = {name: {"input", "weight", "bias"}
                for name in ("conv2d", "conv_transpose2d", "dense", "batchnorm2d", "layernorm")}
    expected.update(add={"input", "input2"}, concat={"input", "input2"})  # each of two inputs (the default)
    for name, factory in FORMULA_OPS.items():
        roles = set(gradients_of(factory()))
        assert roles == expected.get(name, {"input"}), name


def test_json_rebuilds_the_exact_sympy_object_and_evaluates():
    view = general_formula("conv2d", "input", stride=2)
    data = json.loads(view.json())
    rebuilt = from_srepr(data["srepr"])
    assert rebuilt == view.equation
    maxpool = general_formula("maxpool2d", "input")
    assert from_srepr(maxpool.as_dict()["srepr"]) == maxpool.equation
    assert data["tensors"]["grad_output"]["name"] == "dL/dY"
    assert data["tensors"]["weight"]["shape"] == ["C_out", "C_in", "K_h", "K_w"]
    assert data["parameters"]["stride_h"] == "2" and data["parameters"]["padding_h"] == "p_h"
    assert "floor" in data["parameters"]["out_height"]
    # substitute a configuration from the JSON's own names and evaluate on arrays
    symbols = {s.name: s for s in rebuilt.free_symbols if isinstance(s, sympy.Symbol)}
    config = {symbols["p_h"]: 1, symbols["p_w"]: 0, symbols["d_h"]: 1, symbols["d_w"]: 1, symbols["K_h"]: 2,
              symbols["K_w"]: 2, symbols["C_out"]: 1, symbols["H_in"]: 4, symbols["W_in"]: 4}
    specialized = rebuilt.rhs.xreplace(config)
    from symcnn.symbolic.expand import unroll
    point = unroll(specialized).xreplace({symbols["n"]: 0, symbols["c_in"]: 0, symbols["k"]: 1, symbols["l"]: 2})
    # non-zero entries read dL/dY and W only at integer indices inside their shapes
    reads = point.atoms(sympy.Indexed)
    assert reads and all(all(index.is_Integer and index >= 0 for index in read.indices) for read in reads)


def test_a_formula_is_derived_once_and_each_caller_gets_its_own_forward():
    """The derivation is kept per equation: a second formula object with the same equation (another layer's
    convolution) reuses it, carrying its own parameters; a different equation is derived anew."""
    from symcnn.symbolic import adjoint

    adjoint._derived.cache_clear()
    first = ops.conv2d()
    second = replace(ops.conv2d(), parameters={**first.parameters, "extra": sympy.Symbol("q")})
    gradient = derive_gradient(first, "input")
    again = derive_gradient(second, "input")
    assert adjoint._derived.cache_info().hits == 1
    assert gradient.forward is first and again.forward is second and again.terms == gradient.terms
    strided = first.substitute({first.parameters["stride_h"]: 1, first.parameters["stride_w"]: 1})
    unstrided = derive_gradient(strided, "input")
    assert adjoint._derived.cache_info().misses == 2 and unstrided.forward is strided
    assert unstrided.terms != gradient.terms  # no divisibility condition at stride 1
    adjoint._derived.cache_clear()
    assert derive_gradient(strided, "input").terms == unstrided.terms  # the same as derived afresh
