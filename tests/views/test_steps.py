"""``symcnn derive ... --steps``: each gradient entry as its chain rule, and the numeric walk-through.

The steps are checked against three things: ``derive``'s gradient (the sum of the surviving
terms, symbolic and at the values, equals it exactly), the scatter view (the routes, summed per
entry, give the same gradient), and an independent NumPy implementation (the walk-through at
the input values, with random numbers for the weights and the upstream gradient, equals the
NumPy backward pass at those numbers).
"""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
import sympy
from sympy import Array

from tests import numpy_reference as ref
from symcnn.symbolic.derive import LayerConfig, derive
from symcnn.checking.examples import POOL_INPUT
from symcnn.symbolic.steps import steps
from symcnn.views.steps import as_dict, as_latex, as_text
from symcnn.symbolic.tensors import indices_of
from symcnn.symbolic.verify import exactly_equal

DOCUMENT_POOL_VALUES = "1,5,4;9,2,1;6,3,2"

CONFIGS = {
    "002 conv": LayerConfig("conv2d", input_size=(3, 3), kernel=(2, 2), bias=False),
    "strided conv": LayerConfig("conv2d", input_size=(5, 4), kernel=(2, 2), channels_in=2, stride=2, padding=1,
                                dilation=(2, 1)),
    "two outputs, batch 2": LayerConfig("conv2d", input_size=(3, 3), kernel=(2, 2), channels_out=2, batch=2),
    "002 max pool": LayerConfig("maxpool2d", input_size=(3, 3), kernel=(2, 2), stride=(1, 1)),
    "max pool stride 2": LayerConfig("maxpool2d", input_size=(4, 4), kernel=(2, 2)),
    "002 avg pool": LayerConfig("avgpool2d", input_size=(3, 3), kernel=(2, 2), stride=(1, 1)),
    "dense": LayerConfig("dense", input_size=3, channels_out=2),
}


def _random_values(config: LayerConfig, seed: int) -> Array:
    """Small integers, with repeats, so that max pooling meets ties."""
    generator = random.Random(seed)
    numbers = [sympy.Integer(generator.randint(-3, 3)) for _ in range(int(np.prod(config.input_shape)))]
    return Array(numbers, config.input_shape)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_entry_sums_to_derives_gradient(name):
    config = CONFIGS[name]
    walk = steps(config)
    gradients = derive(config).gradients
    expected_count = sum(int(np.prod(array.shape)) for array in gradients.values())
    assert len(walk.entries) == expected_count
    for entry in walk.entries:
        derived = gradients[f"grad_{entry.role}"][entry.index]
        assert entry.result == derived
        assert exactly_equal(entry.symbolic, derived), entry.name
        assert entry.numeric is None
        # The chain rule has one term per output element; the zero ones are the outputs without t.
        assert len(entry.partials) == int(np.prod(walk.derivation.output.shape))
        for partial, output in zip(entry.partials, walk.forward):
            assert partial.output == output.output
            assert (partial.derivative == 0) == (entry.symbol not in output.expression.free_symbols)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_routes_scatter_the_same_gradient(name):
    config = CONFIGS[name]
    walk = steps(config, _random_values(config, 1))
    scattered = {}
    for routes in walk.routes.values():
        for route in routes:
            for symbol, contribution in route.targets:
                scattered[symbol] = scattered.get(symbol, 0) + contribution
    assert set(walk.routes) == {entry.role for entry in walk.entries}
    for entry in walk.entries:
        assert exactly_equal(scattered.get(entry.symbol, 0), entry.result), entry.name


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("seed", [0, 1])
def test_numeric_walk_through_equals_numpy_at_random_numbers(name, seed):
    config = CONFIGS[name]
    values = _random_values(config, seed)
    walk = steps(config, values)
    derived = derive(config, values)
    # Random numbers for everything still symbolic: weights, bias, upstream gradient.
    generator = np.random.default_rng(seed)
    numbers = {}
    for role in ("weight", "bias", "grad_output"):
        if role in derived.tensors:
            tensor = derived.tensors[role]
            array = generator.normal(size=tensor.shape)
            numbers[role] = array
            numbers.update({tensor[index]: float(array[index]) for index in indices_of(tensor.shape)})
    x = np.array(values.tolist(), dtype=float)
    reference = _reference_gradients(config, x, numbers)
    for entry in walk.entries:
        assert exactly_equal(entry.numeric, entry.result), entry.name
        assert exactly_equal(entry.result, derived.gradients[f"grad_{entry.role}"][entry.index])
        value = float(entry.numeric.xreplace(numbers))
        assert value == pytest.approx(reference[entry.role][entry.index], abs=1e-12), entry.name


def _reference_gradients(config, x, numbers) -> dict[str, np.ndarray]:
    g = numbers["grad_output"]
    if config.op == "conv2d":
        bias = numbers.get("bias")
        grad_x, grad_w, grad_b = ref.conv2d_backward(x, numbers["weight"], g, config.stride, config.padding,
                                                     config.dilation)
        return {"input": grad_x, "weight": grad_w, **({"bias": grad_b} if bias is not None else {})}
    if config.op == "maxpool2d":
        return {"input": ref.maxpool2d_backward(x, g, config.kernel, config.stride)}
    if config.op == "avgpool2d":
        return {"input": ref.avgpool2d_backward(x, g, config.kernel, config.stride)}
    grad_x, grad_w, grad_b = ref.dense_backward(x, numbers["weight"], g)
    return {"input": grad_x, "weight": grad_w, "bias": grad_b}


def test_document_002_pooling_walk_through():
    """Document 002: each window's maximum, and the window's upstream gradient assigned to it."""
    config = CONFIGS["002 max pool"]
    walk = steps(config, Array([[POOL_INPUT]]))
    assert [step.value for step in walk.forward] == [9, 5, 9, 3]
    routes = [(route.upstream.name, [(symbol.name, contribution) for symbol, contribution in route.targets])
              for route in walk.routes["input"]]
    a, b, c, d = sympy.symbols("a b c d", real=True)
    assert routes == [("a", [("x10", a)]), ("b", [("x01", b)]), ("c", [("x10", c)]), ("d", [("x21", d)])]
    by_name = {entry.name: entry for entry in walk.entries}
    assert by_name["x10"].numeric == a + c and by_name["x01"].numeric == b and by_name["x21"].numeric == d
    assert [partial.output.name for partial in by_name["x10"].surviving] == ["y00", "y10"]
    assert [partial.at_values for partial in by_name["x10"].surviving] == [1, 1]


def test_max_pool_tie_routes_to_the_first_maximum():
    config = LayerConfig("maxpool2d", input_size=(2, 2), kernel=(2, 2))
    walk = steps(config, Array([[[[3, 3], [1, 3]]]]))
    (route,) = walk.routes["input"]
    assert [symbol.name for symbol, _ in route.targets] == ["x00"]


def test_entry_selects_one_entry_or_a_whole_tensor():
    config = CONFIGS["002 conv"]
    walk = steps(config, entries=["x11", "dL/dw00", "x11"])
    assert [entry.name for entry in walk.entries] == ["x11", "w00"]
    assert walk.routes == {}
    whole = steps(config, entries=["w"])
    assert [entry.name for entry in whole.entries] == ["w00", "w01", "w10", "w11"]
    assert set(whole.routes) == {"weight"}


def test_unknown_entry_names_the_field_and_the_choices():
    with pytest.raises(ValueError, match=r"^entry: no entry 'x33'.*: w \(w00\.\.w11\), x \(x00\.\.x22\)$"):
        steps(CONFIGS["002 conv"], entries=["x33"])


# --- the views ---------------------------------------------------------------------------------


def test_text_shows_chain_rule_partials_terms_and_walk_through(cli):
    status, out, err = cli("derive", "maxpool2d", "--input", "3x3", "--kernel", "2", "--stride", "1",
                           "--values", DOCUMENT_POOL_VALUES, "--entry", "x10")
    assert status == 0 and err == ""
    assert "  y00 = Max(x00, x01, x10, x11) = Max(1, 5, 9, 2) = 9" in out
    assert "chain rule  dL/dx10 = a*dy00/dx10 + b*dy01/dx10 + c*dy10/dx10 + d*dy11/dx10" in out
    assert "dy01/dx10 = dy11/dx10 = 0 (x10 is not in y01, y11)" in out
    assert "dy00/dx10 = [x11 <= x10 and x00 < x10 and x01 < x10] = [2 <= 9 and 1 < 9 and 5 < 9] = 1" in out
    assert out.rstrip().endswith("dL/dx10 = a*1 + c*1 = a + c")


def test_text_without_values_ends_each_entry_with_its_terms(cli):
    status, out, _ = cli("derive", "conv2d", "--input", "3x3", "--kernel", "2", "--no-bias", "--steps")
    assert status == 0
    assert "terms       dL/dw00 = a*x00 + b*x01 + c*x10 + d*x11" in out
    assert "terms       dL/dx11 = a*w11 + b*w10 + c*w01 + d*w00" in out
    assert "  a (dL/dy00): w00 += a*x00, w01 += a*x01, w10 += a*x10, w11 += a*x11" in out
    assert "at values" not in out


def test_text_result_lines_equal_derive(cli):
    """The last line of every entry equals derive's line for the same entry."""
    argv = ["derive", "conv2d", "--input", "4x3", "--kernel", "2", "--stride", "2", "--padding", "1",
            "--values", "1,-2,3;0,1/2,1;2,2,-1;4,0,1"]
    _, steps_out, _ = cli(*argv, "--steps")
    _, derive_out, _ = cli(*argv)
    derived = dict(line.strip().split(" = ", 1) for line in derive_out.splitlines() if line.startswith("  dL/d"))
    blocks = re.split(r"\n  (dL/d\S+)\n", steps_out)[1:]  # entry heading, its lines, ...
    names, bodies = blocks[0::2], blocks[1::2]
    assert sorted(names) == sorted(derived)
    for name, body in zip(names, bodies):
        last = body.split("\n\n")[0].rstrip().splitlines()[-1]
        assert last.rsplit(" = ", 1)[1] == derived[name], name


def test_latex_and_json_formats(cli):
    argv = ["derive", "maxpool2d", "--input", "3x3", "--kernel", "2", "--stride", "1", "--values",
            DOCUMENT_POOL_VALUES, "--steps"]
    status, latex, _ = cli(*argv, "--format", "latex")
    assert status == 0
    assert r"\frac{\partial L}{\partial x_{10}} &= a \cdot 1 + c \cdot 1 = a + c" in latex
    assert r"\max\left(1, 5, 9, 2\right) = 9" in latex
    assert latex.count(r"\begin{aligned}") == latex.count(r"\end{aligned}") == 3 + 9
    status, out, _ = cli(*argv, "--format", "json")
    data = json.loads(out)
    derived = derive(CONFIGS["002 max pool"], Array([[POOL_INPUT]])).gradients["grad_input"]
    assert len(data["entries"]) == 9
    for entry in data["entries"]:
        expected = derived[tuple(entry["index"])]
        assert sympy.sympify(entry["result"]) == sympy.sympify(str(expected))
        assert sympy.sympify(entry["at_values"]) == sympy.sympify(str(expected))
        assert len(entry["chain_rule"]) == 4
    assert data["routes"]["input"][0] == {"output": "y00", "upstream": "a", "targets": {"x10": "a"}}


def test_views_agree_on_the_entries():
    walk = steps(CONFIGS["dense"], Array([[1, -2, sympy.Rational(1, 2)]]))
    text, latex, data = as_text(walk), as_latex(walk), as_dict(walk)
    for entry in walk.entries:
        assert f"  dL/d{entry.name}\n" in text
        assert f"% dL/d{entry.name} by the chain rule" in latex
    assert [entry["entry"] for entry in data["entries"]] == [entry.name for entry in walk.entries]
    assert "dy00/dw01 = x01 = -2" in text and "dL/dw01 = g00*(-2) = -2*g00" in text


def test_long_chain_rules_are_abbreviated(cli):
    status, out, _ = cli("derive", "conv2d", "--input", "5x5", "--kernel", "2", "--entry", "x22")
    assert status == 0
    assert "chain rule  dL/dx22 = g00*dy00/dx22 + g01*dy01/dx22 + ... + g33*dy33/dx22 (16 terms" in out
    assert "the 12 other partials are 0 (x22 is not in those output elements)" in out


@pytest.mark.parametrize("argv, option", [
    (["--entry", "x99"], "--entry"),
    (["--entry", "q"], "--entry"),
    (["--steps", "--values", "1,2"], "--values"),
])
def test_bad_input_is_one_line_and_exit_2(cli, argv, option):
    status, out, err = cli("derive", "conv2d", "--input", "3x3", "--kernel", "2", *argv)
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and option in err and "Traceback" not in err
