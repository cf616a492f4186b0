"""The reference documents' worked examples, each derived by symcnn and checked against the result as the
document states it (completed where the document is incomplete).

Every example carries its source document and section, the expected values transcribed from the document
(``expected``; the keys symcnn completes are listed in ``completed``), and a ``derive`` function that computes
the same values with symcnn's layers. :func:`check` compares them exactly: SymPy expressions by expansion of
their difference, shapes and counts as integers.

Example:
    >>> result = check(EXAMPLES["maxpool_3x3_k2s1"])
    >>> result.status
    'ok'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import sympy
from sympy import Array, Symbol

from symcnn.checking.documents import DOCUMENTS, describe
from symcnn.symbolic import layers, ops
from symcnn.symbolic.derive import LayerConfig, derive, gradient, vjp
from symcnn.symbolic.display import LatexDisplay, register_latex_view
from symcnn.symbolic.steps import ChainRule
from symcnn.symbolic.tensors import symbol_array, upstream_array
from symcnn.views.derivation import latex_display, latex_key, latex_value

__all__ = ["WorkedExample", "ExampleResult", "EXAMPLE_LIST", "EXAMPLES", "check", "check_all", "same"]


@dataclass(frozen=True)
class WorkedExample(LatexDisplay):
    """A worked example of a reference document and how symcnn derives it."""

    name: str
    document: str  # the document's file name (symcnn.checking.documents: its number and title)
    section: str
    title: str
    expected: Mapping[str, Any]  # as the document states it, keyed like derive()'s result
    derive: Callable[[], Mapping[str, Any]]
    completed: tuple[str, ...] = ()  # keys the document leaves out, completed by symcnn
    note: str = ""
    # Keys of derive()'s result that the example starts from (input, kernel, upstream gradient),
    # as the document shows them before its results; check() compares only ``expected``.
    given: tuple[str, ...] = ()
    heading: str = ""  # what the example shows, as a reader would title it (a report's title)
    chain_rule: Optional[ChainRule] = None  # an entry of each gradient, step by step


@dataclass(frozen=True)
class ExampleResult(LatexDisplay):
    name: str
    document: str
    status: str  # "ok" or "mismatch"
    mismatches: tuple[str, ...] = field(default_factory=tuple)
    checked: int = 0


def _example_latex_display(example: WorkedExample) -> str:
    """Jupyter's rich display: each value as symcnn derives it, and whether the document agrees."""
    derived = example.derive()
    rows = []
    for key, expected in example.expected.items():
        if key not in derived:
            rows.append(f"{latex_key(key)} && \\text{{not derived}}")
            continue
        verdict = ("completed by symcnn" if key in example.completed
                   else "as the document states it" if same(expected, derived[key]) else "differs from the document")
        rows.append(f"{latex_key(key)} &= {latex_value(derived[key])} && \\text{{{verdict}}}")
    header = [f"{example.name}: {example.title}", f"{describe(example.document)}, section “{example.section}”"]
    return latex_display(header + ([example.note] if example.note else []), [("derived by symcnn", rows)])


def _result_latex_display(result: ExampleResult) -> str:
    """Jupyter's rich display: the verdict, and each mismatch."""
    header = [f"{result.name} ({describe(result.document)}): {result.status}, {result.checked} values compared"]
    return latex_display(header + list(result.mismatches), [])


register_latex_view(WorkedExample, _example_latex_display)
register_latex_view(ExampleResult, _result_latex_display)


def _real(text: str) -> sympy.Expr:
    """A formula as a document writes it, with every symbol real (as symcnn's symbols are)."""
    expr = sympy.sympify(text)
    return expr.xreplace({s: Symbol(s.name, real=True) for s in expr.free_symbols})


def _matrix(rows: list[list[str]]) -> Array:
    """A single-channel, single-image matrix as a ``(1, 1, H, W)`` array of parsed entries."""
    return Array([[[[_real(str(entry)) for entry in row] for row in rows]]])


def same(expected: Any, actual: Any) -> bool:
    """Exact equality: arrays by shape and element, expressions by expanding their difference."""
    if isinstance(expected, (sympy.NDimArray, list)) or isinstance(actual, (sympy.NDimArray, list)):
        expected, actual = Array(expected), Array(actual)
        if expected.shape != actual.shape:
            return False
        return all(same(e, a) for e, a in zip(expected, actual))
    if isinstance(expected, tuple) or isinstance(actual, tuple):
        return isinstance(expected, tuple) and isinstance(actual, tuple) and expected == actual
    difference = sympy.sympify(expected) - sympy.sympify(actual)
    return sympy.expand(difference) == 0 or sympy.simplify(difference) == 0


def _sign_cases(derivative: Callable[[sympy.Expr], sympy.Expr]) -> dict[str, sympy.Expr]:
    """A derived scalar derivative at a positive symbol, at 0 and at a negative symbol."""
    positive, negative = Symbol("x", positive=True), Symbol("x", negative=True)
    return {"x > 0": derivative(positive), "x = 0": derivative(sympy.S.Zero), "x < 0": derivative(negative)}


def _activation_derivative(layer: Callable[[Array], Array]) -> Callable[[sympy.Expr], sympy.Expr]:
    """d layer(x)/dx, derived with the layer at a 1×1 map, then evaluated at ``point``."""
    x = symbol_array("x", (1, 1))
    derivative = gradient(layer(x)[0, 0], x)[0, 0]
    return lambda point: derivative.xreplace({x[0, 0]: point})


# --- document 002: convolution, max and average pooling, global average pooling ---------------


def _conv_3x3_2x2() -> dict[str, Any]:
    result = derive(LayerConfig("conv2d", input_size=(3, 3), kernel=(2, 2), bias=False))
    return {"X": result.tensors["input"], "K": result.tensors["weight"], "dL/dY": result.tensors["grad_output"],
            "Y": result.output, "dL/dW": result.gradients["grad_weight"], "dL/dX": result.gradients["grad_input"]}


POOL_INPUT = [[1, 5, 4], [9, 2, 1], [6, 3, 2]]


def _pool_3x3(op: str) -> Callable[[], dict[str, Any]]:
    def compute() -> dict[str, Any]:
        config = LayerConfig(op, input_size=(3, 3), kernel=(2, 2), stride=(1, 1))
        result = derive(config, values=Array([[POOL_INPUT]]))
        given = result.tensors["input"].applyfunc(lambda symbol: result.values[symbol])
        return {"X": given, "dL/dY": result.tensors["grad_output"], "Y": result.output,
                "dL/dX": result.gradients["grad_input"]}

    return compute


def _global_avgpool() -> dict[str, Any]:
    x = symbol_array("x", (1, 1, 3, 3))
    y = layers.global_avgpool(x)
    upstream = upstream_array(y.shape)
    return {"X": x, "dL/dY": upstream, "Y": y, "dL/dX": vjp(y, upstream, {"x": x})["x"]}


# --- document 001: output sizes, parameter count -----------------------------------------------


def _conv_output_size() -> dict[str, Any]:
    rule = ops.conv2d().parameters["out_height"].subs({ops.H_in: 6, ops.K_h: 3, ops.p_h: 0, ops.s_h: 1, ops.d_h: 1})
    expanded = layers.conv2d(symbol_array("x", (1, 1, 6, 6)), symbol_array("w", (1, 1, 3, 3)))
    return {"output size (rule)": int(rule), "output shape (expanded)": tuple(expanded.shape[2:])}


def _maxpool_output_size() -> dict[str, Any]:
    rule = ops.maxpool2d().parameters["out_height"].subs({ops.H_in: 4, ops.K_h: 2, ops.s_h: 2})
    expanded = layers.maxpool2d(symbol_array("x", (1, 1, 4, 4)), kernel=2, stride=2)
    return {"output size (rule)": int(rule), "output shape (expanded)": tuple(expanded.shape[2:])}


def _dense_weight_count() -> dict[str, Any]:
    weight = ops.dense().operand("weight")
    count = sympy.Mul(*weight.shape).subs({ops.F_in: 200 * 200 * 3, ops.F_out: 1000})
    return {"weights": int(count)}


# --- document 003: activation derivatives, conv parameter count ---------------------------------

ALPHA = Symbol("alpha", positive=True)


def _relu_derivative() -> dict[str, Any]:
    return _sign_cases(_activation_derivative(layers.relu))


def _leaky_relu_derivative() -> dict[str, Any]:
    return _sign_cases(_activation_derivative(lambda x: layers.leaky_relu(x, ALPHA)))


def _elu_derivative() -> dict[str, Any]:
    return _sign_cases(_activation_derivative(lambda x: layers.elu(x, ALPHA)))


def _elu_expected() -> dict[str, Any]:
    # Document 003: f'(x) = 1 if x > 0, f(x) + alpha if x <= 0, with f(x) = alpha*(e^x - 1) there.
    def f_plus_alpha(point):
        return ALPHA * (sympy.exp(point) - 1) + ALPHA

    negative = Symbol("x", negative=True)
    return {"x > 0": 1, "x = 0": f_plus_alpha(sympy.S.Zero), "x < 0": f_plus_alpha(negative)}


def _conv_parameter_count() -> dict[str, Any]:
    formula = ops.conv2d()
    count = sum(sympy.Mul(*formula.operand(role).shape) for role in ("weight", "bias"))
    seed004_conv1 = count.subs({ops.K_h: 3, ops.K_w: 3, ops.C_in: 3, ops.C_out: 16})
    return {"parameters": count, "parameters of a 3x3 conv, 3 -> 16 channels": int(seed004_conv1)}


# --- document 004: the network's shapes, flatten index, softmax cross-entropy gradient ----------


def _chain_shapes(layer_list: list[tuple[str, dict]], input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Each layer's output shape by its op's output-size rule, for a network of document 004."""
    shapes: dict[str, Any] = {}
    shape = input_shape
    for name, settings in layer_list:
        formula = settings["formula"]
        bindings = {ops.N: shape[0]}
        if len(shape) == 4:
            bindings.update({ops.C_in: shape[1], ops.H_in: shape[2], ops.W_in: shape[3]})
        else:
            bindings[ops.F_in] = shape[1]
        bindings.update(settings.get("parameters", {}))
        shape = tuple(int(sympy.sympify(dim).subs(bindings)) for dim in formula.output.shape)
        shapes[name] = shape[1:]
    return shapes


_CONV_3X3_P1 = {ops.K_h: 3, ops.K_w: 3, ops.s_h: 1, ops.s_w: 1, ops.p_h: 1, ops.p_w: 1, ops.d_h: 1, ops.d_w: 1}
_POOL_2X2_S2 = {ops.K_h: 2, ops.K_w: 2, ops.s_h: 2, ops.s_w: 2}


def _seed004_shapes() -> dict[str, Any]:
    diagram = [
        ("conv1", {"formula": ops.conv2d(), "parameters": {ops.C_out: 16, **_CONV_3X3_P1}}),
        ("pool1", {"formula": ops.maxpool2d(), "parameters": _POOL_2X2_S2}),
        ("conv2", {"formula": ops.conv2d(), "parameters": {ops.C_out: 32, **_CONV_3X3_P1}}),
        ("flatten", {"formula": ops.flatten()}),
        ("fc1", {"formula": ops.dense(), "parameters": {ops.F_out: 10}}),
    ]
    text = [diagram[0], diagram[1], diagram[3], diagram[4]]
    shapes = {f"diagram {k}": v for k, v in _chain_shapes(diagram, (1, 3, 32, 32)).items()}
    shapes.update({f"text {k}": v for k, v in _chain_shapes(text, (1, 3, 32, 32)).items()})
    return shapes


def _flatten_index() -> dict[str, Any]:
    """Where the flatten formula reads element k from, for document 004's 16×16×16 map."""
    concrete = ops.flatten().substitute({ops.C_in: 16, ops.H_in: 16, ops.W_in: 16})
    mismatched = 0
    for k in range(16 * 16 * 16):
        read = concrete.rhs.xreplace({ops.k: k})
        c, i, j = (int(value) for value in read.indices[1:])
        mismatched += c * 16 * 16 + i * 16 + j != k
    return {"entries whose position differs from k = c*16*16 + i*16 + j": mismatched, "length": 16 * 16 * 16}


CLASSES = 10


def _softmax_ce_gradient() -> dict[str, Any]:
    z = symbol_array("z", (1, CLASSES))
    y = symbol_array("y", (1, CLASSES))
    loss = layers.softmax_cross_entropy(z, y)
    derived = gradient(loss, z)
    # One-hot labels sum to 1: eliminate the last label by that constraint.
    one_hot = {y[0, CLASSES - 1]: 1 - sum(y[0, i] for i in range(CLASSES - 1))}
    return {"dL/dz": derived.applyfunc(lambda e: sympy.cancel(sympy.together(e.xreplace(one_hot))))}


def _softmax_ce_expected() -> dict[str, Any]:
    """Document 004: dL/dz_i = p_i - y_i with p_i = exp(z_i) / sum_j exp(z_j)."""
    z = [Symbol(f"z0{i}", real=True) for i in range(CLASSES)]
    y = [Symbol(f"y0{i}", real=True) for i in range(CLASSES)]
    y[-1] = 1 - sum(y[:-1])
    total = sum(sympy.exp(zi) for zi in z)
    return {"dL/dz": Array([[sympy.cancel(sympy.together(sympy.exp(zi) / total - yi)) for zi, yi in zip(z, y)]])}


EXAMPLE_LIST = [
    WorkedExample(
        name="conv_3x3_2x2", heading="backpropagation through a 3×3 convolution with a 2×2 kernel",
        chain_rule=ChainRule(LayerConfig("conv2d", input_size=(3, 3), kernel=(2, 2), bias=False), ("w00", "x11")),
        document=DOCUMENTS["002"],
        section="Backprop Through Convolution Layer",
        title="3×3 input, 2×2 kernel: the four outputs, four weight gradients and the input gradient",
        expected={
            "Y": _matrix([
                ["x00*w00 + x01*w01 + x10*w10 + x11*w11", "x01*w00 + x02*w01 + x11*w10 + x12*w11"],
                ["x10*w00 + x11*w01 + x20*w10 + x21*w11", "x11*w00 + x12*w01 + x21*w10 + x22*w11"],
            ]),
            "dL/dW": _matrix([
                ["a*x00 + b*x01 + c*x10 + d*x11", "a*x01 + b*x02 + c*x11 + d*x12"],
                ["a*x10 + b*x11 + c*x20 + d*x21", "a*x11 + b*x12 + c*x21 + d*x22"],
            ]),
            "dL/dX": _matrix([
                ["a*w00", "a*w01 + b*w00", "b*w01"],
                ["a*w10 + c*w00", "a*w11 + b*w10 + c*w01 + d*w00", "b*w11 + d*w01"],
                ["c*w10", "c*w11 + d*w10", "d*w11"],
            ]),
        },
        derive=_conv_3x3_2x2,
        completed=("dL/dX",),
        note="The document lists dL/dx00, dL/dx01, dL/dx10 and dL/dx11; symcnn completes all nine.",
        given=("X", "K", "dL/dY"),
    ),
    WorkedExample(
        name="maxpool_3x3_k2s1", heading="backpropagation through 2×2 max pooling with stride 1",
        chain_rule=ChainRule(LayerConfig("maxpool2d", input_size=(3, 3), kernel=(2, 2), stride=(1, 1)), ("x10",),
                             POOL_INPUT),
        document=DOCUMENTS["002"],
        section="Backprop Through Pooling Layer / Max Pooling",
        title="max pooling of a 3×3 input, 2×2 window, stride 1, and its gradient routing",
        expected={"Y": _matrix([[9, 5], [9, 3]]), "dL/dX": _matrix([[0, "b", 0], ["a + c", 0, 0], [0, "d", 0]])},
        derive=_pool_3x3("maxpool2d"),
        note="The document's windows overlap: its kernel is 2×2 with stride 1.",
        given=("X", "dL/dY"),
    ),
    WorkedExample(
        name="avgpool_3x3_k2s1", heading="backpropagation through 2×2 average pooling with stride 1",
        chain_rule=ChainRule(LayerConfig("avgpool2d", input_size=(3, 3), kernel=(2, 2), stride=(1, 1)), ("x11",),
                             POOL_INPUT),
        document=DOCUMENTS["002"],
        section="Backprop Through Pooling Layer / Average Pooling",
        title="average pooling of the same input, 2×2 window, stride 1, and its gradient",
        expected={
            "Y": _matrix([["17/4", 3], [5, 2]]),
            "dL/dX": _matrix([
                ["a/4", "a/4 + b/4", "b/4"],
                ["a/4 + c/4", "a/4 + b/4 + c/4 + d/4", "b/4 + d/4"],
                ["c/4", "c/4 + d/4", "d/4"],
            ]),
        },
        derive=_pool_3x3("avgpool2d"),
        note="The document writes 4.25; symcnn keeps it exact, 17/4.",
        given=("X", "dL/dY"),
    ),
    WorkedExample(
        name="global_avgpool_3x3", heading="global average pooling of a 3×3 map, and its gradient",
        chain_rule=ChainRule(LayerConfig("global_avgpool", input_size=(3, 3)), ("x00",)),
        document=DOCUMENTS["002"],
        section="Global Pooling (e.g., Global Average Pooling)",
        title="global average pooling of a 3×3 map, output_c = 1/(H W) sum X_c(i, j), and its gradient",
        expected={
            "Y": Array([[[[_real("(x00 + x01 + x02 + x10 + x11 + x12 + x20 + x21 + x22)/9")]]]]),
            "dL/dX": _matrix([["g00/9"] * 3] * 3),
        },
        derive=_global_avgpool,
        completed=("dL/dX",),
        note="The document gives the forward formula only; the gradient spreads g00/(H W) over the map.",
        given=("X", "dL/dY"),
    ),
    WorkedExample(
        name="conv_output_size_6x6", heading="the output size of a 3×3 convolution on a 6×6 input",
        document=DOCUMENTS["001"],
        section="3.2 Hyperparameters and Output Size Calculation",
        title="6×6 input, F = 3, P = 0, S = 1 gives a 4×4 output",
        expected={"output size (rule)": 4, "output shape (expanded)": (4, 4)},
        derive=_conv_output_size,
    ),
    WorkedExample(
        name="maxpool_output_size_4x4", heading="the output size of 2×2 max pooling on a 4×4 map",
        document=DOCUMENTS["001"],
        section="4.2 Output Size Calculation",
        title="4×4 map, 2×2 max pooling, stride 2 gives a 2×2 output",
        expected={"output size (rule)": 2, "output shape (expanded)": (2, 2)},
        derive=_maxpool_output_size,
    ),
    WorkedExample(
        name="dense_weight_count", heading="the weights of a dense layer on a 200×200×3 image",
        document=DOCUMENTS["001"],
        section="1. Why CNNs for Images?",
        title="a 200×200×3 image into a 1,000-neuron dense layer needs 120 million weights",
        expected={"weights": 120_000_000},
        derive=_dense_weight_count,
    ),
    WorkedExample(
        name="relu_derivative", heading="the derivative of ReLU",
        document=DOCUMENTS["003"],
        section="Activation Functions in CNNs / ReLU",
        title="f'(x) = 1 if x > 0, 0 if x <= 0",
        expected={"x > 0": 1, "x = 0": 0, "x < 0": 0},
        derive=_relu_derivative,
    ),
    WorkedExample(
        name="leaky_relu_derivative", heading="the derivative of Leaky ReLU",
        document=DOCUMENTS["003"],
        section="Activation Functions in CNNs / Leaky ReLU",
        title="f'(x) = 1 if x > 0, alpha if x <= 0",
        expected={"x > 0": 1, "x = 0": ALPHA, "x < 0": ALPHA},
        derive=_leaky_relu_derivative,
    ),
    WorkedExample(
        name="elu_derivative", heading="the derivative of ELU",
        document=DOCUMENTS["003"],
        section="Activation Functions in CNNs / ELU",
        title="f'(x) = 1 if x > 0, f(x) + alpha if x <= 0",
        expected=_elu_expected(),
        derive=_elu_derivative,
    ),
    WorkedExample(
        name="conv_parameter_count", heading="the parameters of a convolutional layer",
        document=DOCUMENTS["003"],
        section="Parameter Calculation / Convolutional Layer",
        title="Parameters = K_h × K_w × C_in × C_out + C_out",
        expected={
            "parameters": ops.K_h * ops.K_w * ops.C_in * ops.C_out + ops.C_out,
            "parameters of a 3x3 conv, 3 -> 16 channels": 3 * 3 * 3 * 16 + 16,
        },
        derive=_conv_parameter_count,
    ),
    WorkedExample(
        name="seed004_shapes", heading="the shapes of its network, layer by layer",
        document=DOCUMENTS["004"],
        section="CNN Architecture; Forward Pass",
        title="the shapes of document 004's network: its diagram (with conv2) and its text (without)",
        expected={
            "diagram conv1": (16, 32, 32),
            "diagram pool1": (16, 16, 16),
            "diagram conv2": (32, 16, 16),
            "diagram flatten": (8192,),
            "diagram fc1": (10,),
            "text conv1": (16, 32, 32),
            "text pool1": (16, 16, 16),
            "text flatten": (4096,),
            "text fc1": (10,),
        },
        derive=_seed004_shapes,
        note="The diagram's flatten is 16×16×32 = 8192; the text's derivation has no conv2 and sums k to 4096.",
    ),
    WorkedExample(
        name="flatten_index", heading="the flatten order and its inverse",
        document=DOCUMENTS["004"],
        section="Backpropagation / 3. Flatten",
        title="the flatten order k = c·16·16 + i·16 + j, and its inverse",
        expected={"entries whose position differs from k = c*16*16 + i*16 + j": 0, "length": 4096},
        derive=_flatten_index,
    ),
    WorkedExample(
        name="softmax_ce_gradient", heading="the gradient of softmax with cross-entropy, p − y",
        document=DOCUMENTS["004"],
        section="Backpropagation / 1. Softmax and Cross-Entropy",
        title="dL/dz_i = p_i - y_i for 10 classes, derived from softmax and cross-entropy",
        expected=_softmax_ce_expected(),
        derive=_softmax_ce_gradient, chain_rule=ChainRule(LayerConfig("softmax", input_size=3), ("x00",)),
        note="Differentiated with symbolic labels y, then simplified with sum(y) = 1 (one-hot). The chain rule below "
             "is the softmax's alone, at 3 classes, its input written x and its output y (the document's z and p): "
             "its upstream gradient g_k is the cross-entropy's, dL/dp_k = -y_k/p_k, and with it the sum over k "
             "is p_i sum_k y_k - y_i = p_i - y_i.",
    ),
]

EXAMPLES: dict[str, WorkedExample] = {example.name: example for example in EXAMPLE_LIST}


def check(example: WorkedExample) -> ExampleResult:
    """Derive ``example`` and compare every expected value exactly."""
    derived = example.derive()
    mismatches = []
    for key, expected in example.expected.items():
        if key not in derived:
            mismatches.append(f"{key}: not derived")
        elif not same(expected, derived[key]):
            mismatches.append(f"{key}: document {_show(expected)}, derived {_show(derived[key])}")
    status = "mismatch" if mismatches else "ok"
    return ExampleResult(example.name, example.document, status, tuple(mismatches), len(example.expected))


def check_all() -> list[ExampleResult]:
    return [check(example) for example in EXAMPLE_LIST]


def _show(value: Any) -> str:
    if isinstance(value, sympy.NDimArray):
        return str(value.tolist())
    return str(value)

