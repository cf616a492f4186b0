"""Every formula evaluated as printed gives PyTorch's numbers (issue 17, self-contained formulas).

For every registered op and every formula ``symcnn formula`` prints (the forward pass and each
``--wrt``), at random small configurations (strides, paddings, dilations, output padding, adaptive
output sizes; some settings specialized on the command line's way, some left general), the JSON's
``srepr`` is read back and computed by brute force with bounds-checked reads
(:mod:`tests.views.formula_evaluator`): a read outside a tensor is an error unless the JSON lists the
tensor in ``zero_outside``. The numbers are compared with ``torch.nn.functional`` (the forward pass)
and ``torch.autograd`` (the gradients), in float64.

The formulas the generated kernels' docstrings print beyond ``symcnn formula``'s are evaluated the
same way: a grouped convolution, the rank-2 (feature vector) forms of the element-wise ops, dropout
and layer norm, and batch norm in evaluation mode.

Tensors that are not learned follow the formula's definitions: dropout's mask ``M`` is the one PyTorch
drew (read off its output, the same seed then drawing it again), the targets ``T`` are one-hot,
batch norm's running statistics are given arrays.
"""

from __future__ import annotations

import functools
import json
import zlib
import numpy as np
import pytest

from symcnn import registry
from symcnn.symbolic.adjoint import derive_gradient
from symcnn.symbolic.instances import op_formula
from symcnn.views.formula import FormulaView, general_formula
from tests.views.formula_evaluator import OutOfRange, evaluate_printed, integer_values

torch = pytest.importorskip("torch")
F = torch.nn.functional

#: Values of the symbols that are not sizes: a slope or scale, the drop probability, the variance's epsilon.
EXTRAS = {"alpha": 0.3, "p": 0.25, "epsilon": 0.1}
LEARNED = ("input", "input2", "weight", "bias")  # an add's or concat's second input: input2


def _roles(op: str) -> list[str]:
    operands = registry.get(op).load_formula()().operands
    return ["forward"] + [tensor.role for tensor in operands if registry.differentiable(tensor.role)]


CASES = [(op, wrt) for op in registry.names() for wrt in _roles(op)]


# --- random configurations, by the op's settings -------------------------------------------------


def _pair(rng, low: int, high: int) -> tuple[int, int]:
    return int(rng.integers(low, high + 1)), int(rng.integers(low, high + 1))


def _configuration(op: str, rng, groups: int = 1) -> tuple[dict, dict]:
    """``(values by parameter role, settings for general_formula by option)``: a valid small layer."""
    keys = registry.get(op).keys()
    values = {"batch": int(rng.integers(1, 3))}
    if "kernel" in keys and "padding" in keys:  # a convolution, plain or transposed
        while True:
            kernel, stride, padding, dilation = _pair(rng, 1, 3), _pair(rng, 1, 3), _pair(rng, 0, 2), _pair(rng, 1, 2)
            size = _pair(rng, 1, 6)
            if "output_padding" in keys:
                extra = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
                out = [(size[a] - 1) * stride[a] - 2 * padding[a] + dilation[a] * (kernel[a] - 1) + extra[a] + 1
                       for a in range(2)]
            else:
                out = [(size[a] + 2 * padding[a] - dilation[a] * (kernel[a] - 1) - 1) // stride[a] + 1
                       for a in range(2)]
            if min(out) >= 1 and max(out) <= 8:
                break
        values.update(in_channels=groups * int(rng.integers(1, 3)), out_channels=groups * int(rng.integers(1, 3)),
                      in_height=size[0], in_width=size[1], kernel_height=kernel[0], kernel_width=kernel[1],
                      stride_h=stride[0], stride_w=stride[1], padding_h=padding[0], padding_w=padding[1],
                      dilation_h=dilation[0], dilation_w=dilation[1])
        settings = {"kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation}
        if "output_padding" in keys:
            values.update(output_padding_h=extra[0], output_padding_w=extra[1])
    elif "kernel" in keys:  # a pooling window
        kernel, stride = _pair(rng, 1, 3), _pair(rng, 1, 3)
        size = tuple(kernel[a] + stride[a] * int(rng.integers(0, 3)) + int(rng.integers(0, 2)) for a in range(2))
        values.update(in_channels=int(rng.integers(1, 3)), in_height=size[0], in_width=size[1],
                      kernel_height=kernel[0], kernel_width=kernel[1], stride_h=stride[0], stride_w=stride[1])
        settings = {"kernel": kernel, "stride": stride}
    elif 3 in registry.get(op).inputs:  # a map (N, C, H, W)
        size = _pair(rng, 1, 4)
        values.update(in_channels=int(rng.integers(1, 3)), in_height=size[0], in_width=size[1])
        if op == "batchnorm2d" and size == (1, 1):  # PyTorch refuses a batch statistic of one value
            values["batch"] = 2
        if "output" in keys:  # an adaptive pool: at most the input's size
            values.update(out_height=int(rng.integers(1, size[0] + 1)), out_width=int(rng.integers(1, size[1] + 1)))
        settings = {}
    else:  # features (N, F)
        values.update(in_features=int(rng.integers(1, 5)), out_features=int(rng.integers(1, 4)))
        settings = {}
    if registry.get(op).merges:  # a concatenation's second input: its own channels (features)
        values.update(in_channels2=int(rng.integers(1, 3)), in_features2=int(rng.integers(1, 5)))
    # specialize some settings as `symcnn formula --stride 2 ...` does; the others stay symbols
    specialized = {key: value for key, value in settings.items() if rng.random() < 0.3}
    return values, specialized


# --- PyTorch's numbers -----------------------------------------------------------------------------


def _torch_output(op: str, tensors: dict, v: dict, mode: str, seed: int):
    """The op in PyTorch (``torch.nn.functional``), its arguments by role (``v``: parameter values by role)."""
    x, weight, bias = tensors["input"], tensors.get("weight"), tensors.get("bias")
    stride, padding = (v.get("stride_h"), v.get("stride_w")), (v.get("padding_h"), v.get("padding_w"))
    dilation, kernel = (v.get("dilation_h"), v.get("dilation_w")), (v.get("kernel_height"), v.get("kernel_width"))
    if op == "conv2d":
        groups = v["in_channels"] // weight.shape[1]
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)
    if op == "conv_transpose2d":
        return F.conv_transpose2d(x, weight, bias, stride, padding, (v["output_padding_h"], v["output_padding_w"]),
                                  1, dilation)
    if op in ("maxpool2d", "avgpool2d"):
        return (F.max_pool2d if op == "maxpool2d" else F.avg_pool2d)(x, kernel, stride)
    if op in ("adaptive_avgpool2d", "adaptive_maxpool2d"):
        pool = F.adaptive_avg_pool2d if op == "adaptive_avgpool2d" else F.adaptive_max_pool2d
        return pool(x, (v["out_height"], v["out_width"]))
    if op == "dropout":
        torch.manual_seed(seed)  # the mask the formula was given (see _arrays)
        return F.dropout(x, EXTRAS["p"], training=True)
    if op == "batchnorm2d" and mode == "evaluation":
        return F.batch_norm(x, tensors["running_mean"], tensors["running_var"], weight, bias, training=False,
                            eps=EXTRAS["epsilon"])
    if op in ("softmax_cross_entropy", "cross_entropy"):
        labels = tensors["target"].argmax(dim=1)
        return F.cross_entropy(x, labels) if op == "softmax_cross_entropy" else F.nll_loss(torch.log(x), labels)
    functions = {
        "global_avgpool": lambda: x.mean(dim=(2, 3), keepdim=True),
        "flatten": lambda: x.reshape(x.shape[0], -1),
        "dense": lambda: F.linear(x, weight, bias),
        "relu": lambda: F.relu(x), "leaky_relu": lambda: F.leaky_relu(x, EXTRAS["alpha"]),
        "elu": lambda: F.elu(x, EXTRAS["alpha"]), "sigmoid": lambda: torch.sigmoid(x), "tanh": lambda: torch.tanh(x),
        "softmax": lambda: F.softmax(x, dim=1),
        "add": lambda: x + tensors["input2"], "concat": lambda: torch.cat([x, tensors["input2"]], dim=1),
        "batchnorm2d": lambda: F.batch_norm(x, None, None, weight, bias, training=True, eps=EXTRAS["epsilon"]),
        "layernorm": lambda: F.layer_norm(x, tuple(x.shape[1:]), weight, bias, eps=EXTRAS["epsilon"]),
    }
    return functions[op]()


def _torch_value(op: str, wrt: str, arrays: dict, values: dict, mode: str, seed: int) -> np.ndarray:
    tensors = {role: torch.tensor(array, requires_grad=role in LEARNED) for role, array in arrays.items()}
    output = _torch_output(op, tensors, values, mode, seed)
    if wrt == "forward":
        return output.detach().numpy()
    if output.dim() == 0:  # a loss
        output.backward()
    else:
        output.backward(tensors["grad_output"])
    return tensors[wrt].grad.numpy()


# --- one case --------------------------------------------------------------------------------------


def _arrays(op: str, data: dict, values: dict, rng, seed: int) -> dict[str, np.ndarray]:
    """Random float64 operands by role, shaped as the JSON says (at ``values``, by symbol name)."""
    arrays = {}
    for role, tensor in data["tensors"].items():
        if role == "output" or (role.startswith("grad_") and role != "grad_output"):
            continue
        shape = tuple(integer_values(dict(enumerate(tensor["shape"])), values).values())
        if role == "target":  # one-hot rows (the identity sum_i T[n, i] = 1 that the gradient uses)
            arrays[role] = np.eye(shape[1])[rng.integers(0, shape[1], shape[0])]
        elif role == "running_var" or (role == "input" and op == "cross_entropy"):  # positive
            arrays[role] = rng.uniform(0.2, 1.0, shape)
        else:
            arrays[role] = rng.standard_normal(shape)
    if "mask" in arrays:  # dropout's mask: the one PyTorch draws with this seed (the input has no zeros)
        torch.manual_seed(seed)
        arrays["mask"] = (F.dropout(torch.tensor(arrays["input"]), EXTRAS["p"], training=True) != 0).double().numpy()
    return arrays


def _values_by_name(data: dict, by_role: dict) -> dict:
    """Each symbol's value by name: the parameters the JSON names (checking those it specialized), and the extras."""
    named = dict(EXTRAS)
    for role, text in data["parameters"].items():
        if role not in by_role:
            continue
        if text.isidentifier():
            named[text] = by_role[role]
        elif text.lstrip("-").isdigit():
            assert int(text) == by_role[role], (role, text, by_role[role])
    return named


def _check(op: str, wrt: str, view: FormulaView, values: dict, mode: str, rng, seed: int) -> None:
    data = json.loads(view.json())
    by_name = _values_by_name(data, values)
    arrays = _arrays(op, data, by_name, rng, seed)
    names = {role: tensor["name"] for role, tensor in data["tensors"].items()}
    got = evaluate_printed(data, {names[role]: array for role, array in arrays.items()}, by_name)
    expected = _torch_value(op, wrt, arrays, values, mode, seed)
    assert got.shape == expected.shape, (op, wrt, values)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-11, err_msg=f"{op} {wrt} at {values}")


@functools.lru_cache(maxsize=None)
def _printed(op: str, wrt: str, settings: tuple) -> FormulaView:
    """``symcnn formula OP --wrt WRT [settings]`` (cached: derived once per process)."""
    return general_formula(op, wrt, **dict(settings))


def _docstring_view(formula, wrt: str) -> FormulaView:
    """A formula as a generated kernel's docstring prints it (symcnn.codegen.lower._docstring)."""
    if wrt == "forward":
        return FormulaView(formula.op, wrt, formula.equation(), formula, None, {})
    gradient = derive_gradient(formula, wrt)
    return FormulaView(formula.op, wrt, gradient.equation(), formula, gradient, {})


def _seed(*parts) -> int:
    return zlib.crc32(" ".join(map(str, parts)).encode())


def _run_printed(op: str, wrt: str, trials: int) -> None:
    rng = np.random.default_rng(_seed(op, wrt, trials))
    for trial in range(trials):
        values, specialized = _configuration(op, rng)
        view = _printed(op, wrt, tuple(sorted(specialized.items())))
        _check(op, wrt, view, values, "training", rng, _seed(op, wrt, trial))


@pytest.mark.parametrize("op, wrt", CASES)
def test_every_formula_as_printed_gives_pytorchs_numbers(op, wrt):
    _run_printed(op, wrt, trials=3)


@pytest.mark.slow
@pytest.mark.parametrize("op, wrt", CASES)
def test_every_formula_as_printed_at_many_configurations(op, wrt):
    _run_printed(op, wrt, trials=25)


def _variants() -> list:
    """(op, wrt, op_formula's arguments, groups, mode): the docstrings' formulas beyond ``symcnn formula``'s."""
    found = [pytest.param("conv2d", wrt, {"settings": {"groups": 2}}, 2, "training", id=f"conv2d-groups2-{wrt}")
             for wrt in _roles("conv2d")]
    for op in registry.names():
        if registry.get(op).ranked and 1 in registry.get(op).inputs:
            found += [pytest.param(op, wrt, {"rank": 2}, 1, "training", id=f"{op}-rank2-{wrt}") for wrt in _roles(op)]
    found += [pytest.param("batchnorm2d", wrt, {"mode": "evaluation"}, 1, "evaluation", id=f"batchnorm2d-eval-{wrt}")
              for wrt in _roles("batchnorm2d")]
    return found


@pytest.mark.parametrize("op, wrt, arguments, groups, mode", _variants())
def test_the_kernels_docstring_formulas_give_pytorchs_numbers(op, wrt, arguments, groups, mode):
    view = _docstring_view(op_formula(op, **arguments), wrt)
    rng = np.random.default_rng(_seed(op, wrt, arguments))
    for trial in range(3):
        values, _ = _configuration(op, rng, groups)
        if arguments.get("rank") == 2:
            values = {"batch": values["batch"], "in_features": int(rng.integers(1, 5)),
                      "in_features2": int(rng.integers(1, 5))}
        _check(op, wrt, view, values, mode, rng, _seed(op, wrt, trial))


# --- the declaration is needed, and exact ----------------------------------------------------------


@pytest.mark.parametrize("wrt", ["forward", "weight"])
def test_without_its_zero_outside_a_padded_convolution_reads_outside_its_input(wrt):
    """The strict reader is what makes the test above able to fail: conv2d's forward pass and weight
    gradient read X at the padded border, and only the declaration makes those reads 0."""
    data = json.loads(general_formula("conv2d", wrt).json())
    assert data["zero_outside"] == ["X"]
    values = {"N": 1, "C_in": 1, "C_out": 1, "H_in": 3, "W_in": 3, "K_h": 3, "K_w": 3, "s_h": 1, "s_w": 1,
              "p_h": 1, "p_w": 1, "d_h": 1, "d_w": 1}
    rng = np.random.default_rng(0)
    arrays = {"X": rng.standard_normal((1, 1, 3, 3)), "W": rng.standard_normal((1, 1, 3, 3)),
              "b": rng.standard_normal(1), "dL/dY": rng.standard_normal((1, 1, 3, 3))}
    evaluate_printed(data, arrays, values)
    with pytest.raises(OutOfRange, match="outside X"):
        evaluate_printed(data, arrays, values, zero_outside=[])


def test_zero_outside_lists_exactly_the_tensors_read_outside_their_shape():
    listed = {(op, wrt): json.loads(_printed(op, wrt, ()).json())["zero_outside"] for op, wrt in CASES}
    assert {case: names for case, names in listed.items() if names} == {("conv2d", "forward"): ["X"],
                                                                         ("conv2d", "weight"): ["X"]}
    # specialized to padding 0, every read lies inside X; padding along one axis keeps that axis's statement
    assert json.loads(_printed("conv2d", "weight", (("padding", 0),)).json())["zero_outside"] == []
    one_axis = _printed("conv2d", "forward", (("padding", (0, 1)),)).text().splitlines()[-1]
    assert one_axis == "  X[n, c, h, w] is read as 0 outside 0 <= w <= W_in - 1 (zero padding)"
