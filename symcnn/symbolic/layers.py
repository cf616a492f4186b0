"""Symbolic layers at small shapes, on SymPy arrays of symbols or numbers.

Each function validates its arguments, then evaluates the op's index formula
(:mod:`symcnn.symbolic.ops`) at the arrays' shapes. Gradients come from :func:`symcnn.symbolic.derive.vjp`.

Example (document 002's convolution):
    >>> from symcnn.symbolic.tensors import symbol_array
    >>> y = conv2d(symbol_array("x", (1, 1, 3, 3)), symbol_array("w", (1, 1, 2, 2)))
    >>> y[0, 0, 0, 1]
    w00*x01 + w01*x02 + w10*x11 + w11*x12
"""

from __future__ import annotations

import sympy
from sympy import Array, Expr

from symcnn.symbolic import ops
from symcnn.symbolic.expand import evaluate
from symcnn.symbolic.tensors import as_array
from symcnn.validation import check_window, pair

__all__ = [
    "conv2d",
    "maxpool2d",
    "avgpool2d",
    "global_avgpool",
    "flatten",
    "dense",
    "relu",
    "leaky_relu",
    "elu",
    "softmax",
    "cross_entropy",
    "softmax_cross_entropy",
]


def _tensor(value, name: str, rank: int) -> Array:
    array = as_array(value, name)
    if array.rank() != rank:
        layout = {2: "(N, F)", 4: "(N, C, H, W)", 1: "(C_out,)"}[rank]
        raise ValueError(f"{name}: expected a rank-{rank} tensor {layout}, got shape {tuple(array.shape)}")
    if any(size == 0 for size in array.shape):
        raise ValueError(f"{name}: every axis must be non-empty, got shape {tuple(array.shape)}")
    return array


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1) -> Array:
    """Cross-correlation of ``x (N, C_in, H, W)`` with ``weight (C_out, C_in, K_h, K_w)``.

    ``stride``, ``padding`` (zeros) and ``dilation`` are ints or ``(height, width)`` pairs;
    ``bias`` is ``None`` or a ``(C_out,)`` vector.
    """
    x, weight = _tensor(x, "input", 4), _tensor(weight, "weight", 4)
    stride, padding = pair(stride, "stride", 1), pair(padding, "padding", 0)
    dilation = pair(dilation, "dilation", 1)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"weight: has {weight.shape[1]} input channels, but the input has {x.shape[1]}")
    check_window(x.shape[2:], weight.shape[2:], padding, dilation)
    arrays = {"input": x, "weight": weight}
    if bias is not None:
        arrays["bias"] = _tensor(bias, "bias", 1)
        if arrays["bias"].shape[0] != weight.shape[0]:
            raise ValueError(f"bias: expected {weight.shape[0]} entries (one per output channel), "
                             f"got {arrays['bias'].shape[0]}")
    parameters = {
        "stride_h": stride[0], "stride_w": stride[1],
        "padding_h": padding[0], "padding_w": padding[1],
        "dilation_h": dilation[0], "dilation_w": dilation[1],
    }
    return evaluate(ops.conv2d(bias=bias is not None), arrays, parameters)


def _pool(formula: ops.IndexFormula, x, kernel, stride) -> Array:
    x = _tensor(x, "input", 4)
    kernel = pair(kernel, "kernel", 1)
    stride = kernel if stride is None else pair(stride, "stride", 1)
    check_window(x.shape[2:], kernel)
    parameters = {"kernel_height": kernel[0], "kernel_width": kernel[1], "stride_h": stride[0], "stride_w": stride[1]}
    return evaluate(formula, {"input": x}, parameters)


def maxpool2d(x, kernel, stride=None) -> Array:
    """Max over each ``kernel`` window; ``stride`` defaults to the kernel (PyTorch's default).

    The gradient routes to the first maximum of each window in row-major order.
    """
    return _pool(ops.maxpool2d(), x, kernel, stride)


def avgpool2d(x, kernel, stride=None) -> Array:
    """Mean over each ``kernel`` window; ``stride`` defaults to the kernel."""
    return _pool(ops.avgpool2d(), x, kernel, stride)


def global_avgpool(x) -> Array:
    """Mean over each channel's whole map: ``(N, C, H, W) -> (N, C, 1, 1)``."""
    return evaluate(ops.global_avgpool(), {"input": _tensor(x, "input", 4)})


def flatten(x) -> Array:
    """``(N, C, H, W) -> (N, C*H*W)`` in CHW order."""
    return evaluate(ops.flatten(), {"input": _tensor(x, "input", 4)})


def dense(x, weight, bias=None) -> Array:
    """``x (N, F_in) @ weight.T (F_out, F_in) + bias``."""
    x, weight = _tensor(x, "input", 2), _tensor(weight, "weight", 2)
    if weight.shape[1] != x.shape[1]:
        raise ValueError(f"weight: has {weight.shape[1]} input features, but the input has {x.shape[1]}")
    arrays = {"input": x, "weight": weight}
    if bias is not None:
        arrays["bias"] = _tensor(bias, "bias", 1)
        if arrays["bias"].shape[0] != weight.shape[0]:
            raise ValueError(f"bias: expected {weight.shape[0]} entries (one per output feature), "
                             f"got {arrays['bias'].shape[0]}")
    return evaluate(ops.dense(bias=bias is not None), arrays)


def _elementwise(formula_for_rank, x) -> Array:
    x = as_array(x, "input")
    if x.rank() not in (2, 4):
        raise ValueError(f"input: expected a rank-2 (N, F) or rank-4 (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    return evaluate(formula_for_rank(x.rank()), {"input": x})


def relu(x) -> Array:
    """``max(0, x)`` element-wise; ReLU'(0) = 0."""
    return _elementwise(lambda rank: ops.relu(rank=rank), x)


def leaky_relu(x, alpha: Expr = sympy.Rational(1, 100)) -> Array:
    """``x`` where positive, else ``alpha*x``."""
    return _elementwise(lambda rank: ops.leaky_relu(sympy.sympify(alpha), rank=rank), x)


def elu(x, alpha: Expr = sympy.S.One) -> Array:
    """``x`` where positive, else ``alpha*(exp(x) - 1)``."""
    return _elementwise(lambda rank: ops.elu(sympy.sympify(alpha), rank=rank), x)


def softmax(z) -> Array:
    """Softmax over the classes of ``z (N, classes)``."""
    return evaluate(ops.softmax(), {"input": _tensor(z, "input", 2)})


def _one_hot(targets, shape) -> Array:
    targets = _tensor(targets, "targets", 2)
    if tuple(targets.shape) != tuple(shape):
        raise ValueError(f"targets: expected shape {tuple(shape)} like the scores, got {tuple(targets.shape)}")
    return targets


def cross_entropy(p, targets) -> Expr:
    """``-(1/N) sum y log p`` for probabilities ``p (N, classes)`` and one-hot ``targets``."""
    p = _tensor(p, "probabilities", 2)
    return evaluate(ops.cross_entropy(), {"input": p, "target": _one_hot(targets, p.shape)})


def softmax_cross_entropy(z, targets) -> Expr:
    """The loss of document 004: softmax of the scores ``z``, then cross-entropy, batch mean."""
    z = _tensor(z, "input", 2)
    return evaluate(ops.softmax_cross_entropy(), {"input": z, "target": _one_hot(targets, z.shape)})
