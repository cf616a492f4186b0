"""Grouped convolution and the transposed convolution, symbolically (rungs 1, 2 and 5 of the ladder).

- conv_transpose2d is the adjoint of conv2d: its expansion equals conv2d's input gradient (the
  VJP of conv2d's expansion) element by element, and <conv(z), x> = <z, conv_transpose(x)> exactly
  at random configurations (hypothesis, integer values: no rounding);
- each op's derived general gradients equal the element-wise derivatives (conv_transpose2d at many
  configurations; the grouped formula with the symbol G and with a number);
- a grouped convolution is one convolution per group, side by side; groups = 1 is the formula as it
  was, and depthwise (groups = C_in) reads one input channel per output;
- bad settings are refused in one line naming the field (registry, spec, derive, the CLI).
"""

from __future__ import annotations

import itertools
import random

import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st
from sympy import Array

from symcnn import registry
from symcnn.shapes import transposed_output_sizes
from symcnn.spec import parse_spec
from symcnn.symbolic import layers, ops
from symcnn.symbolic.adjoint import derive_gradient
from symcnn.symbolic.derive import LayerConfig, derive, vjp
from symcnn.symbolic.expand import evaluate
from symcnn.symbolic.instances import evaluate_layer
from symcnn.symbolic.tensors import indices_of, symbol_array
from symcnn.symbolic.verify import exactly_equal, expand_gradient, mismatches
from symcnn.views.formula import general_formula


def window(stride, padding, dilation, output_padding=None):
    parameters = {"stride_h": stride[0], "stride_w": stride[1], "padding_h": padding[0], "padding_w": padding[1],
                  "dilation_h": dilation[0], "dilation_w": dilation[1]}
    if output_padding is not None:
        parameters.update(output_padding_h=output_padding[0], output_padding_w=output_padding[1])
    return parameters


def transposed_settings(out_channels, kernel, stride, padding, dilation, output_padding, bias=False):
    return registry.get("conv_transpose2d").settings_of(
        {"out_channels": out_channels, "kernel": list(kernel), "stride": list(stride), "padding": list(padding),
         "dilation": list(dilation), "output_padding": list(output_padding), "bias": bias})


def transposed_configurations(count=24, seed=2026):
    """A fixed sample of small transposed convolutions: strides 1-3, paddings 0-1, dilations 1-2,
    every output padding PyTorch allows, non-square, 1-2 channels in and out."""
    grid = []
    for size, kernel, stride, padding, dilation, channels in itertools.product(
            [(2, 3), (3, 2)], [(2, 2), (3, 2), (1, 2)], [(1, 1), (2, 1), (3, 2)], [(0, 0), (1, 0)],
            [(1, 1), (2, 1), (1, 2)], [(1, 2), (2, 1)]):
        for output_padding in itertools.product(*(range(max(s, d)) for s, d in zip(stride, dilation))):
            sizes = transposed_output_sizes(size, kernel, stride, padding, dilation, output_padding)
            if min(sizes) >= 1:
                grid.append((size, kernel, stride, padding, dilation, output_padding, channels))
    return random.Random(seed).sample(grid, count)


TRANSPOSED = transposed_configurations()


def test_the_sample_covers_strides_paddings_dilations_and_output_paddings():
    assert {c[2] for c in TRANSPOSED} == {(1, 1), (2, 1), (3, 2)}
    assert {c[3] for c in TRANSPOSED} == {(0, 0), (1, 0)} and {(2, 1), (1, 2)} <= {c[4] for c in TRANSPOSED}
    assert any(any(c[5]) for c in TRANSPOSED)
    # an output padding of at least the stride, allowed by the dilation (PyTorch's rule)
    assert any(a >= s for c in TRANSPOSED for a, s in zip(c[5], c[2]))


@pytest.mark.parametrize("size, kernel, stride, padding, dilation, output_padding, channels", TRANSPOSED)
def test_conv_transpose2d_is_conv2ds_input_gradient(size, kernel, stride, padding, dilation, output_padding,
                                                    channels):
    """Expand conv_transpose2d(x, w); expand conv2d(y, w) on an input of conv_transpose2d's output shape
    and differentiate it with upstream x (zero where conv2d's output is longer: an output padding
    of at least the stride adds rows that no conv2d output reads back). Equal, entry by entry."""
    channels_in, channels_out = channels
    x = symbol_array("x", (2, channels_in, *size))
    weight = symbol_array("w", (channels_in, channels_out, *kernel))  # conv2d's (C_out, C_in, ...) of the adjoint
    settings = transposed_settings(channels_out, kernel, stride, padding, dilation, output_padding)
    transposed = evaluate_layer("conv_transpose2d", {"input": x, "weight": weight}, settings)
    y = symbol_array("y", transposed.shape)
    convolved = layers.conv2d(y, weight, stride=stride, padding=padding, dilation=dilation)
    upstream = [[[[x[n, c, i, j] if i < size[0] and j < size[1] else 0 for j in range(convolved.shape[3])]
                  for i in range(convolved.shape[2])] for c in range(channels_in)] for n in range(2)]
    gradient = vjp(convolved, Array(upstream), {"input": y})["input"]
    assert all(sympy.expand(transposed[index] - gradient[index]) == 0 for index in indices_of(transposed.shape))


@st.composite
def adjoint_cases(draw):
    """A transposed convolution of a random small configuration, and integer x and z."""
    axes = [draw(st.tuples(st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(0, 2),
                           st.integers(1, 2))) for _ in range(2)]
    size, kernel, stride, padding, dilation = (tuple(axis[part] for axis in axes) for part in range(5))
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    channels_in, channels_out = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    out = transposed_output_sizes(size, kernel, stride, padding, dilation, output_padding)
    if min(out) < 1:
        padding = (0, 0)
        out = transposed_output_sizes(size, kernel, stride, padding, dilation, output_padding)
    values = st.integers(-5, 5)

    def array(shape):
        return Array([draw(values) for _ in range(sympy.prod(shape))], shape)

    settings = transposed_settings(channels_out, kernel, stride, padding, dilation, output_padding)
    x, weight = array((1, channels_in, *size)), array((channels_in, channels_out, *kernel))
    return x, weight, array((1, channels_out, *out)), settings


@given(adjoint_cases())
def test_dot_product_conv_and_its_transpose(case):
    """<conv(z), x> = <z, conv_transpose(x)>, exactly: conv_transpose2d is conv2d's adjoint (the dot test).
    conv2d's output may be longer than x (an output padding of at least the stride): those rows pair with 0."""
    x, weight, z, settings = case
    transposed = evaluate_layer("conv_transpose2d", {"input": x, "weight": weight}, settings)
    assert transposed.shape == z.shape
    convolved = layers.conv2d(z, weight, stride=settings["stride"], padding=settings["padding"],
                              dilation=settings["dilation"])
    left = sum(convolved[index] * x[index] for index in indices_of(x.shape))
    right = sum(z[index] * transposed[index] for index in indices_of(z.shape))
    assert left == right


@pytest.mark.parametrize("size, kernel, stride, padding, dilation, output_padding, channels", TRANSPOSED[:10])
def test_conv_transpose2d_formulas_equal_elementwise_derivatives(size, kernel, stride, padding, dilation,
                                                                 output_padding, channels):
    channels_in, channels_out = channels
    arrays = {"input": symbol_array("x", (2, channels_in, *size)),
              "weight": symbol_array("w", (channels_in, channels_out, *kernel)),
              "bias": symbol_array("b", (channels_out,))}
    parameters = window(stride, padding, dilation, output_padding)
    assert mismatches(ops.conv_transpose2d(), arrays, parameters) == {"input": [], "weight": [], "bias": []}


def test_conv_transpose2d_input_gradient_is_a_convolution_without_divisibility():
    """Solving k = (i + p - d*u)/s for the output index gives i = s*k - p + d*u: a whole number for
    every k (no divisibility condition), in range where 0 <= i <= H_out - 1: conv2d's forward form."""
    gradient = derive_gradient(ops.conv_transpose2d(), "input")
    (term,) = gradient.terms
    n, c_in, k, l = gradient.indices  # noqa: E741  (document 000's k, l)
    c_out, u, v = (limit[0] for limit in term.limits)
    row, column = ops.s_h * k - ops.p_h + ops.d_h * u, ops.s_w * l - ops.p_w + ops.d_w * v
    assert term.body == ops.Wt[c_in, c_out, u, v] * sympy.IndexedBase("dL/dY")[n, c_out, row, column]
    assert not any(condition.has(sympy.Mod) for condition in term.conditions)
    assert len(term.conditions) == 4  # lower and upper bound, for each axis
    text = general_formula("conv_transpose2d", "input").text()
    assert "where H_out = a_h + d_h*(K_h - 1) - 2*p_h + s_h*(H_in - 1) + 1" in text


def test_the_forward_formula_states_where_it_reads():
    view = general_formula("conv_transpose2d", "forward")
    line = view.text().splitlines()[1]
    assert line.startswith("Y[n, c_out, i, j] = b[c_out] + sum_{c_in=0..C_in - 1, u=0..K_h - 1, v=0..K_w - 1} "
                           "[s_h | -d_h*u + i + p_h and s_w | -d_w*v + j + p_w and 0 <= (-d_h*u + i + p_h)/s_h")
    assert "(-d_h*u + i + p_h)/s_h <= H_in - 1" in line
    assert "W[c_in, c_out, u, v]*X[n, c_in, (-d_h*u + i + p_h)/s_h, (-d_w*v + j + p_w)/s_w]" in line
    weight = general_formula("conv_transpose2d", "weight", stride=1)
    assert "|" not in weight.text() and "sum_{n=0..N - 1, i=0..H_out - 1, j=0..W_out - 1}" in weight.text()


def test_the_bracket_is_necessary():
    """Without its bracket the formula reads X at a fraction (stride 2) or outside X: an error, never
    a silent zero."""
    formula = ops.conv_transpose2d(bias=False)
    bare = sympy.Sum(ops.Wt[ops.c_in, ops.c_out, ops.u, ops.v] * formula.rhs.function.args[-1], *formula.rhs.limits)
    unbracketed = ops.IndexFormula(formula.op, formula.output, formula.indices, bare, formula.operands,
                                   formula.parameters)
    arrays = {"input": symbol_array("x", (1, 1, 2, 2)), "weight": symbol_array("w", (1, 1, 2, 2))}
    with pytest.raises(ValueError, match="non-integer|outside"):
        evaluate(unbracketed, arrays, window((2, 2), (0, 0), (1, 1), (0, 0)))


def test_the_integer_output_size_rule_equals_the_symbolic_one():
    for size, kernel, stride, padding, dilation, extra in itertools.product(range(1, 5), range(1, 4), range(1, 4),
                                                                           range(0, 3), range(1, 3), range(0, 3)):
        expected = ops.transposed_output_size(size, kernel, stride, padding, dilation, extra)
        assert transposed_output_sizes((size,), (kernel,), (stride,), (padding,), (dilation,), (extra,)) == (expected,)


def test_document_style_derivation_with_output_padding():
    """Stride 2, output padding 1 on a 2x2 input: the 5x5 output's last row and column get the bias only."""
    result = derive(LayerConfig("conv_transpose2d", input_size=(2, 2), kernel=(2, 2), stride=(2, 2),
                                settings={"output_padding": (1, 1)}))
    x00, w00, w11, b0 = sympy.symbols("x00 w00 w11 b0", real=True)
    assert result.output.shape == (1, 1, 5, 5)
    assert result.output[0, 0, 0, 0] == b0 + w00 * x00 and result.output[0, 0, 1, 1] == b0 + w11 * x00
    assert all(result.output[0, 0, 4, j] == b0 and result.output[0, 0, j, 4] == b0 for j in range(5))
    g = {name: sympy.Symbol(name, real=True) for name in ("g00", "g01", "g10", "g11")}
    assert result.gradients["grad_input"][0, 0, 0, 0] == sum(g[f"g{u}{v}"] * sympy.Symbol(f"w{u}{v}", real=True)
                                                          for u in range(2) for v in range(2))


# --- grouped convolution --------------------------------------------------------------------------


def test_groups_one_is_the_formula_as_it_was():
    assert ops.conv2d(groups=1) == ops.conv2d() and ops.conv2d(bias=False, groups=1) == ops.conv2d(bias=False)
    assert "groups" not in ops.conv2d().parameters
    assert str(ops.conv2d().rhs.args[-1].function) == "W[c_out, c_in, u, v]*X[n, c_in, d_h*u + i*s_h - p_h, " \
                                                      "d_w*v + j*s_w - p_w]"


@pytest.mark.parametrize("channels_in, channels_out, groups, stride, padding", [
    (4, 6, 2, (1, 1), (1, 0)),  # two groups: 2 inputs, 3 outputs each
    (3, 3, 3, (2, 1), (1, 1)),  # depthwise
    (2, 4, 2, (1, 2), (0, 1)),  # depthwise with a channel multiplier of 2
])
def test_grouped_formulas_equal_elementwise_derivatives(channels_in, channels_out, groups, stride, padding):
    arrays = {"input": symbol_array("x", (2, channels_in, 3, 4)),
              "weight": symbol_array("w", (channels_out, channels_in // groups, 2, 2)),
              "bias": symbol_array("b", (channels_out,))}
    parameters = window(stride, padding, (1, 1))
    expected = {"input": [], "weight": [], "bias": []}
    assert mismatches(ops.conv2d(groups=groups), arrays, parameters) == expected
    # the general grouped formula, G a symbol bound like any shape parameter
    assert mismatches(ops.conv2d(groups=ops.G), arrays, {**parameters, "groups": groups}) == expected


@pytest.mark.parametrize("channels_in, channels_out, groups", [(4, 6, 2), (3, 6, 3), (2, 2, 2)])
def test_a_grouped_convolution_is_one_convolution_per_group(channels_in, channels_out, groups):
    x = symbol_array("x", (1, channels_in, 3, 3))
    weight = symbol_array("w", (channels_out, channels_in // groups, 2, 2))
    settings = registry.get("conv2d").settings_of({"out_channels": channels_out, "kernel": 2, "groups": groups,
                                                   "bias": False})
    grouped = evaluate_layer("conv2d", {"input": x, "weight": weight}, settings)
    per_in, per_out = channels_in // groups, channels_out // groups
    for group in range(groups):
        part = layers.conv2d(x[:, group * per_in:(group + 1) * per_in, :, :],
                             weight[group * per_out:(group + 1) * per_out, :, :, :])
        for n, c, i, j in indices_of(part.shape):
            assert grouped[n, group * per_out + c, i, j] == part[n, c, i, j]


def test_depthwise_reads_one_input_channel_per_output():
    result = derive(LayerConfig("conv2d", input_size=(2, 2), kernel=(1, 1), channels_in=3, channels_out=3,
                                bias=False, settings={"groups": 3}))
    for channel in range(3):
        x = sympy.Symbol(f"x{channel}00", real=True)
        w = sympy.Symbol(f"w{channel}00", real=True)  # weight (3, 1, 1, 1)
        assert result.output[0, channel, 0, 0] == w * x
    assert result.config.weight_shape == (3, 1, 1, 1)


def test_grouped_derivations_equal_the_general_formula_at_small_shapes():
    """symcnn derive (the VJP) and the general formula (derived once, in G) agree, entry by entry."""
    config = LayerConfig("conv2d", input_size=(3, 3), kernel=(2, 2), channels_in=4, channels_out=2,
                         settings={"groups": 2})
    result = derive(config)
    gradient = derive_gradient(ops.conv2d(groups=ops.G), "input")
    parameters = {**window((1, 1), (0, 0), (1, 1)), "groups": 2}
    general = expand_gradient(gradient, {role: result.tensors[role] for role in ("input", "weight", "bias")},
                              result.tensors["grad_output"], parameters)
    expected = result.gradients["grad_input"]
    assert all(exactly_equal(general[index], expected[index]) for index in indices_of(general.shape))


# --- bad inputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("given, message", [
    ({"out_channels": 6, "kernel": 3, "groups": 4}, "groups: must divide both the input channels (4) and "
                                                    "out_channels (6), got 4"),
    ({"out_channels": 5, "kernel": 3, "groups": 2}, "groups: must divide both"),
    ({"out_channels": 6, "kernel": 3, "groups": 0}, "groups: must be an integer >= 1, got 0"),
])
def test_bad_groups_are_refused(given, message):
    entry = registry.get("conv2d")
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        entry.output_shape((4, 8, 8), entry.settings_of(given))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("given, message", [
    ({"output_padding": 1}, "output_padding: must be smaller than the stride or the dilation"),
    ({"stride": 2, "output_padding": [0, 2]}, "got 2 with stride 2 and dilation 1"),
    ({"stride": 2, "dilation": 3, "output_padding": 3}, "output_padding: must be smaller"),
    ({"padding": 4}, "padding: the output would be empty"),
    ({"output_padding": -1}, "output_padding: must be an integer >= 0, got -1"),
])
def test_bad_transposed_settings_are_refused(given, message):
    entry = registry.get("conv_transpose2d")
    with pytest.raises(ValueError, match=message) as error:
        entry.output_shape((2, 3, 3), entry.settings_of({"out_channels": 2, "kernel": 2, **given}))
    assert "\n" not in str(error.value)


def test_a_spec_names_the_layer_and_the_field():
    spec = """name = "bad"
input = [3, 8, 8]

[[layers]]
type = "conv2d"
name = "grouped"
out_channels = 4
kernel = 3
groups = 2
"""
    with pytest.raises(ValueError) as error:
        parse_spec(spec)
    assert str(error.value) == ("[[layers]] table 1 (conv2d 'grouped'): groups: must divide both the input channels "
                                "(3) and out_channels (4), got 2")
    transposed = spec.replace('type = "conv2d"', 'type = "conv_transpose2d"').replace("groups = 2",
                                                                                      "output_padding = 1")
    with pytest.raises(ValueError, match=r"^\[\[layers\]\] table 1 \(conv_transpose2d 'grouped'\): output_padding: "):
        parse_spec(transposed)
    with pytest.raises(ValueError, match=r"\(conv_transpose2d\): groups: unknown key \(allowed: bias, dilation, "):
        parse_spec(spec.replace('type = "conv2d"', 'type = "conv_transpose2d"'))


@pytest.mark.parametrize("argv, message", [
    (["conv2d", "--channels-in", "3", "--channels-out", "6", "--groups", "2"],
     "--groups: must divide both the input channels (3) and out_channels (6), got 2"),
    (["conv2d", "--output-padding", "1"], "--output-padding: conv2d takes no output padding"),
    (["conv_transpose2d", "--groups", "2"], "--groups: conv_transpose2d takes no groups"),
    (["relu", "--groups", "2"], "--groups: relu takes no groups"),
    (["conv_transpose2d", "--stride", "2", "--output-padding", "2"],
     "--output-padding: must be smaller than the stride or the dilation (PyTorch's rule), got 2 with stride 2"),
    (["conv_transpose2d", "--input", "1x1", "--padding", "2"], "--padding: the output would be empty"),
])
def test_derive_refuses_bad_settings_in_one_line(cli, argv, message):
    status, out, err = cli("derive", *argv)
    assert status == 2 and out == "" and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_derive_takes_groups_and_output_padding(cli):
    status, out, _ = cli("derive", "conv2d", "--channels-in", "2", "--channels-out", "2", "--groups", "2",
                         "--input", "2x2", "--kernel", "1", "--no-bias")
    assert status == 0 and out.splitlines()[0] == ("conv2d: input 1x2x2x2, weight 2x1x1x1, stride 1x1, padding 0x0, "
                                                   "dilation 1x1, groups 2 -> output 1x2x2x2")
    assert "y100 = w100*x100" in out
    status, out, _ = cli("derive", "conv_transpose2d", "--input", "2x2", "--stride", "2", "--output-padding", "1")
    assert status == 0 and "-> output 1x1x5x5" in out.splitlines()[0] and "  y44 = b0" in out


def test_the_checker_reads_conv_transpose2d_at_stride_one_as_the_full_convolution():
    """symcnn check searches conv_transpose2d like any convolution (at output padding 0): at stride 1 it
    is the 'full' convolution with the kernel flipped, X zero outside its shape; unflipped, it is wrong."""
    from symcnn.checking.checker import check
    from symcnn.checking.result import CheckOptions

    options = CheckOptions(stride=1, padding=0, dilation=1, zero_outside=frozenset({"X"}))
    assert check(r"Y_{i,j} = \sum_{m}\sum_{n} X_{i-m,j-n} W_{m,n}", "conv_transpose2d", options).correct
    assert not check(r"Y_{i,j} = \sum_{m}\sum_{n} X_{i+m,j+n} W_{m,n}", "conv_transpose2d", options).correct
