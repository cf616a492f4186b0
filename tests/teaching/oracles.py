"""Independent checks of an exercise's key: PyTorch on the same tensors (the ops dispatched here, by name, as
symcnn/bench does), and SymPy's ``diff`` of ``sum(G * Y)`` with ``Y`` evaluated from the op's formula.

Nothing here reads symcnn's derivations: a numeric key is compared with PyTorch in float64 (autograd for a
gradient, the forward for an output), a symbolic key with SymPy's derivative of the expanded forward (after
the key's named quantities, a normalization's ``mu`` and ``sigma2``, are put in) and with PyTorch at a
point.
"""

from __future__ import annotations

import itertools
import sys

import pytest
import sympy

from symcnn.symbolic.derive import LayerConfig
from symcnn.symbolic.instances import evaluate_layer
from symcnn.symbolic.tensors import indices_of, symbol_array, upstream_array

#: Where a symbolic key is put to PyTorch: ε (a normalization's) is positive.
SYMBOLIC_EPSILON = sympy.Rational(1, 2)


def torch_op(torch, op, fields, tensors, constants=None):
    """The op in PyTorch, by name: an independent oracle. ``fields`` are the LayerConfig fields of the setup
    (``settings`` the op's other settings), ``constants`` the values an exercise gives a formula's symbols."""
    F = torch.nn.functional
    x = tensors["input"]
    settings = fields.get("settings", {})
    epsilon = float((constants or {}).get("epsilon", 1e-5))
    # PyTorch refuses ε = 0 in training; the smallest positive double is the same in float64 (σ² + ε == σ²).
    epsilon = epsilon or sys.float_info.min
    if op == "conv2d":
        return F.conv2d(x, tensors["weight"], tensors.get("bias"), stride=fields["stride"],
                        padding=fields["padding"], dilation=fields["dilation"])
    if op == "conv_transpose2d":
        return F.conv_transpose2d(x, tensors["weight"], tensors.get("bias"), stride=fields["stride"],
                                  padding=fields["padding"], output_padding=settings.get("output_padding", 0),
                                  dilation=fields["dilation"])
    if op in ("maxpool2d", "avgpool2d"):
        pool = F.max_pool2d if op == "maxpool2d" else F.avg_pool2d
        return pool(x, fields["kernel"], fields["stride"])
    if op in ("adaptive_maxpool2d", "adaptive_avgpool2d"):
        pool = F.adaptive_max_pool2d if op == "adaptive_maxpool2d" else F.adaptive_avg_pool2d
        return pool(x, settings["output"])
    if op == "global_avgpool":
        return x.mean(dim=(2, 3), keepdim=True)
    if op == "dense":
        return F.linear(x, tensors["weight"], tensors.get("bias"))
    if op == "batchnorm2d":
        return F.batch_norm(x, None, None, tensors["weight"], tensors["bias"], training=True, eps=epsilon)
    if op == "layernorm":
        return F.layer_norm(x, tuple(x.shape[1:]), tensors["weight"], tensors["bias"], eps=epsilon)
    alpha = float(settings.get("alpha", 0.01 if op == "leaky_relu" else 1.0))
    return {"relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
            "leaky_relu": lambda t: F.leaky_relu(t, alpha), "elu": lambda t: F.elu(t, alpha)}[op](x)


def as_tensor(torch, array):
    return torch.tensor([float(value) for value in (array[index] for index in indices_of(array.shape))],
                        dtype=torch.float64).reshape(tuple(array.shape))


def key_values(exercise):
    """The key's numbers, flat (a number, or a matrix row by row)."""
    rows = exercise.answer.value if exercise.answer.kind == "matrix" else ((exercise.answer.value,),)
    return [float(value) for row in rows for value in row]


def torch_result(torch, setup, constants=None):
    """What the setup asks, by PyTorch: the output (forward), or the gradient by autograd, through every
    layer of the setup."""
    tensors = {role: as_tensor(torch, array).requires_grad_(role != "grad_output")
               for role, array in setup.values.items()}
    value = tensors["input"]
    for number, (op, fields) in enumerate(setup.layers):
        operands = {"input": value, **({role: tensors[role] for role in ("weight", "bias") if role in tensors}
                                       if number == 0 else {})}
        fields = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1), **fields}
        value = torch_op(torch, op, fields, operands, setup.constants if constants is None else constants)
    if setup.asked == "output":
        return value.detach()
    value.backward(tensors["grad_output"].reshape(value.shape))
    return tensors[setup.asked.removeprefix("grad_")].grad


def check_numeric_key(torch, exercise) -> None:
    """The key's number(s) equal PyTorch's, in float64."""
    result = torch_result(torch, exercise.setup)
    expected = result[exercise.setup.index] if exercise.setup.index is not None else result
    key = torch.tensor(key_values(exercise), dtype=torch.float64)
    assert torch.allclose(key, expected.reshape(-1), atol=1e-12), exercise.title


def transposed_convolution(x, w, b, fields):
    """A transposed convolution by its definition, the convolution's adjoint: each input entry, times the
    kernel, added into the output at ``i*s + u*d - p`` (then ``output_padding`` rows and columns that only the
    bias reaches). One channel in and out, on SymPy arrays (N=1, C=1)."""
    (stride, _), (padding, _), (dilation, _) = fields["stride"], fields["padding"], fields["dilation"]
    extra = fields.get("settings", {}).get("output_padding", (0, 0))
    height, width = x.shape[2:]
    kernel = w.shape[2]
    sizes = [(size - 1) * stride - 2 * padding + dilation * (kernel - 1) + pad + 1 for size, pad in
             zip((height, width), extra)]
    bias = b[0] if b is not None else 0
    output = [[bias for _ in range(sizes[1])] for _ in range(sizes[0])]
    for i, j, u, v in itertools.product(range(height), range(width), range(kernel), range(kernel)):
        row, column = i * stride + u * dilation - padding, j * stride + v * dilation - padding
        if 0 <= row < sizes[0] and 0 <= column < sizes[1]:
            output[row][column] += x[0, 0, i, j] * w[0, 0, u, v]
    return sympy.Array([[output]])


def check_symbolic_key(torch, exercise) -> None:
    """The key's expression (its named quantities put in) equals SymPy's derivative of ``sum(G * Y)``, ``Y``
    the op's formula evaluated on symbols (an output entry: the op by its definition here), and PyTorch's
    gradient (or output) at a point."""
    (op, fields), = exercise.setup.layers
    config = LayerConfig(op, **fields)
    arrays = {"input": symbol_array("x", config.input_shape)}
    arrays.update({role: symbol_array(role[0], shape) for role, shape in config.parameter_shapes.items()})
    asked = exercise.setup.asked
    if asked == "output":
        assert op == "conv_transpose2d", op  # the one op whose forward is asked: it enlarges its map
        output = transposed_convolution(arrays["input"], arrays["weight"], arrays.get("bias"), fields)
        expected = output[exercise.setup.index]
        upstream = upstream_array(output.shape)
    else:
        output = evaluate_layer(op, arrays, config.settings)
        upstream = upstream_array(output.shape)
        loss = sum(upstream[index] * output[index] for index in indices_of(output.shape))
        expected = sympy.diff(loss, arrays[asked.removeprefix("grad_")][exercise.setup.index])
    # The key's symbols are symcnn's (epsilon positive); the ones here, by name.
    key = exercise.answer.value.xreplace(dict(exercise.answer.definitions))
    by_name = {element.name: element for element in expected.free_symbols}
    key = key.xreplace({element: by_name[element.name] for element in key.free_symbols if element.name in by_name})
    assert sympy.simplify(expected - key) == 0, exercise.title
    # and at a point, by PyTorch
    inputs = {arrays["input"][index] for index in indices_of(arrays["input"].shape)}
    point = {element: sympy.Rational(number % 7 - 3, 2) for number, element in
             enumerate(sorted(key.free_symbols | inputs, key=str)) if element.name != "epsilon"}
    point.update({element: SYMBOLIC_EPSILON for element in key.free_symbols if element.name == "epsilon"})
    values = {name: array.applyfunc(lambda element, point=point: point.get(element, 1))
              for name, array in {**arrays, "grad_output": upstream}.items()}
    setup = type(exercise.setup)(exercise.setup.layers, values, asked)
    result = torch_result(torch, setup, {"epsilon": SYMBOLIC_EPSILON})
    assert float(key.xreplace(point)) == pytest.approx(float(result[exercise.setup.index])), exercise.title
