"""Adaptive pooling (``adaptive_avgpool2d``, ``adaptive_maxpool2d``): PyTorch's windows, derived,
generated and verified on the ladder of DESIGN.md.

Output ``i`` of an axis of ``size`` pooled to ``out`` reads ``floor(i*size/out)`` to
``ceiling((i + 1)*size/out) - 1``: where ``out`` does not divide ``size`` the windows differ in
length and overlap. The window's bounds depend on the output index, so the formula is a reduction
whose range follows the output position; the tests below check each stage that reads it:

- the element-wise derivation (``symcnn derive``) against entries worked by hand;
- the general gradient (``symcnn formula``) proved by expansion, and its conditions necessary;
- the kernels against the symbolic expansion (float64), PyTorch autograd (float64, float32; ties
  included), central finite differences, and the NumPy reference network;
- hypothesis over random sizes: the symbolic layers against PyTorch, and the kernels against PyTorch;
- bad sizes refused in one line (spec, library, command line).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symcnn.bench.numpy_network import NumpyNetwork
from symcnn.checking.checker import check
from symcnn.cli.main import main
from symcnn.codegen.network import layer_kernels
from symcnn.codegen.rewrites import integer_indices
from symcnn.printing.numba import NumbaPrinter
from symcnn.spec import spec_from_dict
from symcnn.symbolic import ops
from symcnn.symbolic.adjoint import derive_gradient
from symcnn.symbolic.derive import LayerConfig, derive
from symcnn.symbolic.tensors import symbol_array
from symcnn.symbolic.verify import (elementwise_gradients, exactly_equal, expand_gradient, mismatches,
                                    symbolic_network_gradients)
from symcnn.views.formula import general_formula
from tests.kernels_helpers import COMPILES_KERNELS, network_for, random_params, torch_loss_and_grads

ADAPTIVE = ("adaptive_avgpool2d", "adaptive_maxpool2d")


def pytorch_windows(size: int, out: int) -> list[range]:
    """PyTorch's adaptive windows, as its CPU kernel computes them (start_index / end_index)."""
    return [range((i * size) // out, ((i + 1) * size + out - 1) // out) for i in range(out)]


# --- the windows and the element-wise derivation ----------------------------------------------


@pytest.mark.parametrize("size, out", [(5, 3), (7, 4), (4, 4), (6, 1), (10, 7), (9, 2), (1, 1)])
def test_the_formulas_windows_are_pytorchs(size, out):
    windows = [ops.adaptive_window(i, size, out) for i in range(out)]
    assert [range(int(first), int(last) + 1) for first, last in windows] == pytorch_windows(size, out)


def test_average_pooling_5_to_3_matches_entries_worked_by_hand():
    """Rows and columns 0-1, 1-3 and 3-4: windows of 2, 3 and 2 that overlap at 1 and 3."""
    result = derive(LayerConfig("adaptive_avgpool2d", input_size=(5, 5), settings={"output": 3}))
    assert result.output.shape == (1, 1, 3, 3)
    assert str(result.output[0, 0, 0, 1]) == "x01/6 + x02/6 + x03/6 + x11/6 + x12/6 + x13/6"
    assert str(result.output[0, 0, 2, 2]) == "x33/4 + x34/4 + x43/4 + x44/4"
    # x11 lies in four windows (rows 0-1 and 1-3, columns likewise): of 2x2, 2x3, 3x2 and 3x3 elements
    assert str(result.gradients["grad_input"][0, 0, 1, 1]) == "g00/4 + g01/6 + g10/6 + g11/9"
    assert str(result.gradients["grad_input"][0, 0, 2, 2]) == "g11/9"  # only the middle window holds it


def test_max_pooling_routes_to_the_first_maximum_of_each_overlapping_window():
    """Input 3x5 pooled to 2x3 (columns 0-1, 1-3, 3-4), with ties: each window's first maximum gets it."""
    values = sympy.Array([[[[1, 7, 7, 2, 9], [7, 0, 3, 9, 9], [4, 4, 1, 1, 0]]]])
    result = derive(LayerConfig("adaptive_maxpool2d", input_size=(3, 5), settings={"output": (2, 3)}), values)
    assert result.output.tolist() == [[[[7, 9, 9], [7, 9, 9]]]]
    (a, b, c), (d, e, f) = result.tensors["grad_output"].tolist()[0][0]  # the upstream gradient, 2x3
    # y00's window x00, x01, x10, x11 holds 7 twice: x01 comes first. y01 (x01..x03, x11..x13) and
    # y11 (x11..x13, x21..x23) have their 9 at x13; y02 (x03, x04, x13, x14) meets x04 first, y12 x13.
    expected = [[0, a, 0, 0, c], [d, 0, 0, b + e + f, 0], [0, 0, 0, 0, 0]]
    assert result.gradients["grad_input"].tolist() == [[expected]]


def test_derive_refuses_an_output_larger_than_the_input():
    with pytest.raises(ValueError, match=r"^output: must be at most the input's size along each axis \(5x4\), "
                                         r"got 3x5$"):
        LayerConfig("adaptive_avgpool2d", input_size=(5, 4), settings={"output": (3, 5)})


# --- the general gradient ------------------------------------------------------------------


@pytest.mark.parametrize("op, size, out", [
    ("adaptive_avgpool2d", (5, 5), (3, 3)),
    ("adaptive_avgpool2d", (7, 4), (4, 4)),
    ("adaptive_avgpool2d", (6, 3), (1, 2)),
    ("adaptive_maxpool2d", (5, 4), (3, 2)),
    ("adaptive_maxpool2d", (3, 6), (2, 1)),
])
def test_the_general_gradient_equals_the_elementwise_derivative(op, size, out):
    arrays = {"input": symbol_array("x", (2, 1, *size))}
    assert mismatches(getattr(ops, op)(), arrays, {"out_height": out[0], "out_width": out[1]}) == {"input": []}


def test_every_window_condition_is_kept_and_necessary():
    """The general formula states that the element lies in output (i, j)'s window, both bounds along
    both axes; without any one of them it gathers from a window that does not hold the element."""
    gradient = derive_gradient(ops.adaptive_avgpool2d(), "input")
    text = general_formula("adaptive_avgpool2d", "input").text()
    for condition in ("floor(H_in*i/H_out) <= k", "floor(W_in*j/W_out) <= l",
                      "k <= ceiling(H_in*(i + 1)/H_out) - 1", "l <= ceiling(W_in*(j + 1)/W_out) - 1"):
        assert condition in text
    assert "where H_out" not in text  # the output size is a setting here, not a rule
    (term,) = gradient.terms
    assert len(term.conditions) == 4
    arrays, parameters = {"input": symbol_array("x", (1, 1, 5, 5))}, {"out_height": 3, "out_width": 3}
    upstream, oracle = elementwise_gradients(ops.adaptive_avgpool2d(), arrays, parameters, ["input"])
    kept = expand_gradient(gradient, arrays, upstream, parameters)
    assert all(exactly_equal(kept[index], oracle["input"][index]) for index in np.ndindex(1, 1, 5, 5))
    for dropped in range(4):
        weaker = replace(term, conditions=term.conditions[:dropped] + term.conditions[dropped + 1:])
        general = expand_gradient(replace(gradient, terms=(weaker,)), arrays, upstream, parameters)
        assert any(not exactly_equal(general[index], oracle["input"][index]) for index in np.ndindex(1, 1, 5, 5)), \
            term.conditions[dropped]


def test_the_max_gradient_names_its_window_in_the_routing_indicator():
    text = general_formula("adaptive_maxpool2d", "input").text()
    assert ("first argmax_{k'=floor(H_in*i/H_out)..ceiling(H_in*(i + 1)/H_out) - 1, "
            "l'=floor(W_in*j/W_out)..ceiling(W_in*(j + 1)/W_out) - 1} X[n, c, k', l']") in text
    forward = general_formula("adaptive_maxpool2d", "forward").text()
    assert "max_{k=floor(H_in*i/H_out)..ceiling(H_in*(i + 1)/H_out) - 1, l=" in forward
    assert "first argmax_{u', v'}" in general_formula("maxpool2d", "input").text()  # a pool's window: from 0


def test_the_checker_searches_output_sizes_and_finds_a_fixed_window_wrong():
    """``symcnn check --against``: a claim in PyTorch's windows is correct; 2x2 windows (right only where
    the output halves the input) fail at the smallest output size that shows it."""
    windows = (r"\sum_{k=\lfloor i H_{in}/H_{out} \rfloor}^{\lceil (i+1) H_{in}/H_{out} \rceil - 1}"
               r"\sum_{l=\lfloor j W_{in}/W_{out} \rfloor}^{\lceil (j+1) W_{in}/W_{out} \rceil - 1}")
    lengths = (r"(\lceil (i+1) H_{in}/H_{out} \rceil - \lfloor i H_{in}/H_{out} \rfloor)"
               r"(\lceil (j+1) W_{in}/W_{out} \rceil - \lfloor j W_{in}/W_{out} \rfloor)")
    right = check(rf"Y_{{n,c,i,j}} = \frac{{1}}{{{lengths}}} {windows} X_{{n,c,k,l}}", "adaptive_avgpool2d")
    assert right.correct and right.checked > 10
    wrong = check(r"Y_{n,c,i,j} = \frac{1}{4} \sum_{k=2i}^{2i+1} \sum_{l=2j}^{2j+1} X_{n,c,k,l}", "adaptive_avgpool2d")
    assert not wrong.correct and wrong.configuration == "N=1, C_in=1, input 2x2, output 1x2"
    rows = r"\max_{k=\lfloor i H_{in}/H_{out} \rfloor}^{%s (i+1) H_{in}/H_{out} %s - 1}"
    columns = r"\max_{l=\lfloor j W_{in}/W_{out} \rfloor}^{\lceil (j+1) W_{in}/W_{out} \rceil - 1}"
    ceiling, floor = rows % (r"\lceil", r"\rceil"), rows % (r"\lfloor", r"\rfloor")
    assert check(rf"Y_{{n,c,i,j}} = {ceiling} {columns} X_{{n,c,k,l}}", "adaptive_maxpool2d").correct
    assert not check(rf"Y_{{n,c,i,j}} = {floor} {columns} X_{{n,c,k,l}}", "adaptive_maxpool2d").correct


# --- kernels: integer window bounds -----------------------------------------------------------


@pytest.mark.parametrize("numerator, divisor", [(n, d) for n in range(-12, 13) for d in (1, 2, 3, 7)])
def test_floor_and_ceiling_print_as_exact_integer_divisions(numerator, divisor):
    i = sympy.Symbol("i", integer=True)
    for function, exact in ((sympy.floor, math.floor), (sympy.ceiling, math.ceil)):
        code = NumbaPrinter({}).doprint(integer_indices(-function((5 * i + numerator) / sympy.Integer(divisor))))
        assert "floor" not in code and "ceil" not in code
        for value in range(-4, 5):
            assert eval(code, {"i": value}) == -exact((5 * value + numerator) / divisor), code  # noqa: S307


def test_window_loops_start_where_the_window_does():
    spec = spec_from_dict({"name": "windows", "input": [1, 7, 5], "layers": [
        {"type": "adaptive_avgpool2d", "output": [4, 4]}, {"type": "adaptive_maxpool2d", "output": [3, 2]},
        {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 2}]})
    average, average_grad = layer_kernels(spec.layers[0])
    assert average.kind == "sum"  # not tiled: the window loops depend on every output index
    (term,) = average.terms  # the window's loops: the term's own, or those of the sum it reads (hoisted)
    loops = term.loops or term.reductions[0].loops
    assert [(loop.start, loop.stop) for loop in loops] == [
        ("(7*i) // 4", "(7*i + 10) // 4"), ("(5*j) // 4", "(5*j + 8) // 4")]
    maximum, _ = layer_kernels(spec.layers[1])
    assert [(loop.start, loop.stop) for loop in maximum.window] == [("(4*i) // 3", "(4*i + 6) // 3"),
                                                                     ("2*j", "2*j + 2")]  # 4 -> 2: windows of 2
    assert maximum.window_first_offset == "0"
    for kernel in (average, average_grad, maximum):
        assert not {name for _, name in kernel.imports} & {"floor", "ceil"}


# --- kernels: the symbolic expansion, PyTorch, finite differences, NumPy ------------------------

#: conv -> adaptive pools -> flatten -> dense: max pooling 5 -> 3 and 6 -> 4 (windows of 2 and 3 that
#: overlap), then average pooling 3 -> 1 and 4 -> 4 (windows of one element). The max pool's gradient
#: runs in the accumulate schedule (its output, the 5x6 input, is a tile), the average pool's in gather form.
CHAIN = {
    "name": "adaptive-chain",
    "input": [1, 5, 6],
    "layers": [
        {"type": "conv2d", "name": "conv", "out_channels": 2, "kernel": 3, "padding": 1},
        {"type": "adaptive_maxpool2d", "output": [3, 4]},
        {"type": "adaptive_avgpool2d", "output": [1, 4]},
        {"type": "flatten"},
        {"type": "dense", "name": "fc", "out_features": 3},
    ],
}


@pytest.fixture(scope="module")
def chain64(tmp_path_factory):
    return network_for(CHAIN, tmp_path_factory.mktemp("chain"), dtype="float64", seed=3)


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@COMPILES_KERNELS
def test_kernels_equal_the_symbolic_expansion(chain64):
    rng = np.random.default_rng(7)
    params = random_params(chain64, rng)
    chain64.load_params(params)
    x = rng.standard_normal((2, *chain64.spec.input_shape))
    labels = np.array([0, 2])
    loss, grads = chain64.loss_and_grads(x, labels)
    expected = symbolic_network_gradients(chain64.spec, params, x, labels)
    assert loss == pytest.approx(expected["loss"], rel=1e-12, abs=1e-12)
    for name in list(params) + ["input"]:
        np.testing.assert_allclose(grads[name], expected[name], rtol=1e-10, atol=1e-12, err_msg=name)


def _equals_pytorch(net, x, labels, torch_dtype, tolerance):
    loss, grads = net.loss_and_grads(x, labels)
    expected_loss, expected_logits, expected = torch_loss_and_grads(net.spec, net.params, x, labels, torch_dtype)
    assert loss == pytest.approx(expected_loss, rel=tolerance)
    np.testing.assert_allclose(net.forward(x), expected_logits, rtol=tolerance, atol=tolerance)
    assert set(grads) == set(expected)
    for key, value in expected.items():
        scale = np.abs(value).max()
        np.testing.assert_allclose(grads[key], value, rtol=tolerance, atol=tolerance * scale, err_msg=key)


@COMPILES_KERNELS
def test_kernels_equal_pytorch_in_float64(torch, chain64):
    chain64.load_params(random_params(chain64, np.random.default_rng(5)))
    x = np.random.default_rng(11).standard_normal((4, *chain64.spec.input_shape))
    _equals_pytorch(chain64, x, np.array([2, 0, 1, 2]), torch.float64, 1e-10)


@COMPILES_KERNELS
def test_kernels_equal_pytorch_in_float32(torch, tmp_path):
    net = network_for(CHAIN, tmp_path, dtype="float32", seed=3)
    x = np.random.default_rng(11).standard_normal((4, *net.spec.input_shape)).astype(np.float32)
    _equals_pytorch(net, x, np.array([2, 0, 1, 2]), torch.float32, 2e-4)


@COMPILES_KERNELS
def test_ties_route_to_the_first_maximum_as_in_pytorch(torch, chain64):
    """A constant convolution output: every max window is all ties, and the first element wins."""
    params = random_params(chain64, np.random.default_rng(1))
    params["conv.weight"][...] = 0.0
    chain64.load_params(params)
    x = np.random.default_rng(2).standard_normal((2, *chain64.spec.input_shape))
    _equals_pytorch(chain64, x, np.array([1, 2]), torch.float64, 1e-12)
    _, grads = chain64.loss_and_grads(x, np.array([1, 2]))
    assert np.count_nonzero(grads["conv.bias"]) == 2


@COMPILES_KERNELS
def test_gradients_equal_central_finite_differences(chain64):
    chain64.load_params(random_params(chain64, np.random.default_rng(9)))
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, *chain64.spec.input_shape))
    labels = np.array([1, 0])
    _, grads = chain64.loss_and_grads(x, labels)
    step = 1e-5
    arrays = dict(chain64.params, input=x)
    for key, array in arrays.items():
        for _ in range(4):
            index = tuple(rng.integers(0, size) for size in array.shape)
            original = array[index]
            array[index] = original + step
            upper = chain64.loss_and_grads(x, labels)[0]
            array[index] = original - step
            lower = chain64.loss_and_grads(x, labels)[0]
            array[index] = original
            assert grads[key][index] == pytest.approx((upper - lower) / (2 * step), rel=1e-6, abs=1e-9), (key, index)


@COMPILES_KERNELS
def test_the_numpy_reference_network_agrees(chain64):
    chain64.load_params(random_params(chain64, np.random.default_rng(4)))
    x = np.random.default_rng(6).standard_normal((3, *chain64.spec.input_shape))
    labels = np.array([0, 1, 2])
    loss, grads = chain64.loss_and_grads(x, labels)
    reference_loss, reference = NumpyNetwork(chain64.spec, chain64.params).loss_and_grads(x, labels)
    assert loss == pytest.approx(reference_loss, rel=1e-12)
    for key, value in reference.items():
        np.testing.assert_allclose(grads[key], value, rtol=1e-10, atol=1e-12, err_msg=key)


# --- hypothesis: random sizes ----------------------------------------------------------------


@st.composite
def adaptive_layers(draw):
    """An input size and an adaptive pool of it: outputs from 1 to the input along each axis."""
    height, width = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    output = [draw(st.integers(1, height)), draw(st.integers(1, width))]
    return draw(st.sampled_from(ADAPTIVE)), (height, width), output


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layer=adaptive_layers(), seed=st.integers(0, 2**16))
def test_the_symbolic_layer_equals_pytorch_at_random_sizes(torch, layer, seed):
    """Output and input gradient, exactly derived, against PyTorch's autograd (small integers: ties)."""
    op, size, output = layer
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=(1, 2, *size))
    result = derive(LayerConfig(op, input_size=size, channels_in=2, settings={"output": output}),
                    sympy.Array(x.tolist()))
    x = x.astype(float)
    tx = torch.tensor(x, requires_grad=True)
    module = torch.nn.AdaptiveAvgPool2d(output) if op == "adaptive_avgpool2d" else torch.nn.AdaptiveMaxPool2d(output)
    expected = module(tx)
    upstream = rng.standard_normal(expected.shape)
    expected.backward(torch.tensor(upstream))
    np.testing.assert_allclose(np.array(result.output.tolist(), dtype=float), expected.detach().numpy(), rtol=1e-12)
    names = result.tensors["grad_output"]
    values = {names[index]: upstream[index] for index in np.ndindex(*upstream.shape)}
    gradient = np.array(result.gradients["grad_input"].applyfunc(lambda entry: entry.xreplace(values)).tolist(),
                        dtype=float)
    np.testing.assert_allclose(gradient, tx.grad.numpy(), rtol=1e-12, atol=1e-15)


@st.composite
def adaptive_specs(draw):
    """Two adaptive pools in a row (each op, any order), flatten and dense: a spec of random sizes."""
    channels, height, width = draw(st.integers(1, 2)), draw(st.integers(2, 7)), draw(st.integers(2, 7))
    first = [draw(st.integers(1, height)), draw(st.integers(1, width))]
    second = [draw(st.integers(1, first[0])), draw(st.integers(1, first[1]))]
    kinds = draw(st.permutations(ADAPTIVE))
    layers = [{"type": kinds[0], "output": first}, {"type": kinds[1], "output": second},
              {"type": "flatten"}, {"type": "dense", "name": "fc", "out_features": 3}]
    digest = hashlib.sha256(repr((layers, channels, height, width)).encode()).hexdigest()[:10]
    return {"name": f"adaptive-{digest}", "input": [channels, height, width], "layers": layers}


@COMPILES_KERNELS
@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=adaptive_specs())
def test_random_adaptive_specs_equal_pytorch(torch, tmp_path_factory, spec):
    net = network_for(spec, tmp_path_factory.mktemp("spec"))
    rng = np.random.default_rng(0)
    net.load_params(random_params(net, rng))
    x = rng.standard_normal((2, *net.spec.input_shape))
    _equals_pytorch(net, x, np.array([1, 2]), torch.float64, 1e-10)


# --- bad sizes ------------------------------------------------------------------------------


def _spec_with(layer: dict) -> dict:
    return {"name": "bad", "input": [1, 5, 4], "layers": [layer, {"type": "flatten"},
                                                           {"type": "dense", "name": "fc", "out_features": 2}]}


@pytest.mark.parametrize("op", ADAPTIVE)
@pytest.mark.parametrize("output, message", [
    ([6, 4], "output: must be at most the input's size along each axis (5x4), got 6x4"),
    (5, "output: must be at most the input's size along each axis (5x4), got 5x5"),
    (0, "output: must be an integer >= 1, got 0"),
    ([2], "output: must be an integer or a pair [height, width], got [2]"),
    (None, "output: missing (required)"),
])
def test_a_spec_with_a_bad_output_is_refused_in_one_line(op, output, message):
    layer = {"type": op} if output is None else {"type": op, "output": output}
    with pytest.raises(ValueError) as error:
        spec_from_dict(_spec_with(layer))
    assert str(error.value) == f"[[layers]] table 1 ({op}): {message}"


@pytest.mark.parametrize("argv, message", [
    (["derive", "adaptive_avgpool2d", "--input", "5x5", "--output", "6"],
     "--output: must be at most the input's size along each axis (5x5), got 6x6"),
    (["derive", "adaptive_maxpool2d", "--input", "5x5", "--output", "3x0"], "--output: must be an integer >= 1, got 0"),
    (["derive", "adaptive_maxpool2d", "--input", "5x5"], "--output: missing (required)"),
    (["derive", "adaptive_maxpool2d", "--output", "2", "--kernel", "3"],
     "--kernel: adaptive_maxpool2d takes no kernel"),
    (["derive", "maxpool2d", "--output", "2"], "--output: maxpool2d takes no output"),
    (["formula", "adaptive_avgpool2d", "--stride", "2"], "--stride: adaptive_avgpool2d has no stride"),
])
def test_the_command_line_refuses_bad_sizes_in_one_line(capsys, argv, message):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == f"symcnn {argv[0]}: error: {message}\n"


def test_derive_prints_the_expansion_at_the_command_line(capsys):
    assert main(["derive", "adaptive_avgpool2d", "--input", "5x5", "--output", "3"]) == 0
    out = capsys.readouterr().out
    assert "y11 = x11/9 + x12/9 + x13/9 + x21/9 + x22/9 + x23/9 + x31/9 + x32/9 + x33/9" in out
    assert "dL/dx11 = g00/4 + g01/6 + g10/6 + g11/9" in out
