"""Each op's forward pass, defined once, as a SymPy index formula.

An :class:`IndexFormula` is ``Y[indices] = rhs`` over ``IndexedBase`` tensors, with the shape
parameters (batch, channels, sizes, stride, padding, dilation) as symbols. Everything else in
symcnn comes from these definitions: the small-shape expansion (:mod:`symcnn.symbolic.expand`), the
gradients (by differentiation of the expansion, and later in general index form), reports and
generated kernels. A convolution's input is zero-padded: its reads outside the input are zero.

Conventions (DESIGN.md): cross-correlation, NCHW, weights ``(C_out, C_in, K_h, K_w)`` (a grouped
convolution's ``(C_out, C_in/G, K_h, K_w)``, a transposed convolution's ``(C_in, C_out, K_h, K_w)``, as
PyTorch's), dense weights ``(out, in)``, flatten in CHW order, every index 0-based.

Example:
    >>> formula = conv2d()
    >>> formula.equation()
    Eq(Y[n, c_out, i, j], b[c_out] + Sum(W[c_out, c_in, u, v]*X[n, c_in, d_h*u + i*s_h - p_h, d_w*v + j*s_w - p_w], (c_in, 0, C_in - 1), (u, 0, K_h - 1), (v, 0, K_w - 1)))
"""  # noqa: E501  (a doctest's output, as printed)

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

import sympy
from sympy import Eq, Expr, IndexedBase, Mod, Sum, Symbol, ceiling, floor

from symcnn.symbolic.functions import Bracket, MaxOver, elu as elu_function, leaky_relu as leaky_relu_function
from symcnn.symbolic.functions import relu as relu_function

__all__ = ["Tensor", "IndexFormula", "output_size", "transposed_output_size", "conv2d", "conv_transpose2d",
           "maxpool2d", "avgpool2d", "global_avgpool", "adaptive_window", "adaptive_avgpool2d", "adaptive_maxpool2d",
           "flatten", "dense", "elementwise", "relu", "leaky_relu", "elu", "sigmoid", "tanh", "dropout", "softmax",
           "cross_entropy", "softmax_cross_entropy"]


def _size(name: str) -> Symbol:
    return Symbol(name, integer=True, positive=True)


def _offset(name: str) -> Symbol:
    return Symbol(name, integer=True, nonnegative=True)


def _index(name: str) -> Symbol:
    return Symbol(name, integer=True, nonnegative=True)


# Shape parameters, by role. Names follow document 000 (H_in, K_h, s, p) with per-axis suffixes.
N = _size("N")
C_in, C_out = _size("C_in"), _size("C_out")
H_in, W_in = _size("H_in"), _size("W_in")
K_h, K_w = _size("K_h"), _size("K_w")
s_h, s_w = _size("s_h"), _size("s_w")
p_h, p_w = _offset("p_h"), _offset("p_w")
d_h, d_w = _size("d_h"), _size("d_w")
a_h, a_w = _offset("a_h"), _offset("a_w")  # a transposed convolution's output padding (Dumoulin and Visin's a)
G = _size("G")  # a grouped convolution's groups
F_in, F_out = _size("F_in"), _size("F_out")  # dense layer features
H_out, W_out = _size("H_out"), _size("W_out")  # an adaptive pool's output size, a setting

# Index variables.
n, c, c_in, c_out = _index("n"), _index("c"), _index("c_in"), _index("c_out")
i, j, k, l = _index("i"), _index("j"), _index("k"), _index("l")  # noqa: E741  (document 000's k, l)
u, v = _index("u"), _index("v")
q, r = _index("q"), _index("r")  # the batch axis inside a normalization's statistics

X, Wt, b, Y = IndexedBase("X"), IndexedBase("W"), IndexedBase("b"), IndexedBase("Y")
T = IndexedBase("T")  # one-hot targets
alpha = Symbol("alpha", positive=True)  # the negative-side slope (LeakyReLU) or scale (ELU)
epsilon = Symbol("epsilon", positive=True)  # a normalization's ε, added to the variance
gamma, beta = IndexedBase("gamma"), IndexedBase("beta")  # a normalization's scale and shift (document 003)
running_mean, running_var = IndexedBase("mu_run"), IndexedBase("sigma2_run")  # batch norm's running statistics
M = IndexedBase("M")  # dropout's mask: 0 (dropped) or 1 (kept), drawn, not learned
p = Symbol("p", nonnegative=True)  # dropout's drop probability (PyTorch's p)


def output_size(size: Expr, kernel: Expr, stride: Expr, padding: Expr, dilation: Expr) -> Expr:
    """``floor((size + 2*padding - dilation*(kernel - 1) - 1) / stride) + 1`` (PyTorch's rule).

    With dilation 1 this is document 001's ``floor((I + 2P - K)/S) + 1``.

    >>> output_size(6, 3, 1, 0, 1), output_size(4, 2, 2, 0, 1)
    (4, 2)
    """
    size, kernel, stride, padding, dilation = map(sympy.sympify, (size, kernel, stride, padding, dilation))
    return floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1


def transposed_output_size(size: Expr, kernel: Expr, stride: Expr, padding: Expr, dilation: Expr,
                           output_padding: Expr) -> Expr:
    """``(size - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1`` (PyTorch's
    ``ConvTranspose2d``): the input size of the convolution that the transposed one is the adjoint of.

    >>> transposed_output_size(2, 3, 1, 0, 1, 0), transposed_output_size(3, 2, 2, 1, 1, 1)
    (4, 5)
    """
    size, kernel, stride, padding, dilation, output_padding = map(
        sympy.sympify, (size, kernel, stride, padding, dilation, output_padding))
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


@dataclass(frozen=True)
class Tensor:
    """A tensor of a formula: its role (``input``, ``weight``, ...), ``IndexedBase`` and shape."""

    role: str
    base: IndexedBase
    shape: tuple[Expr, ...]
    # The axes along which the tensor is zero-padded: a read outside the shape along them is 0 by
    # definition rather than an error (a convolution's input: its rows and columns, (2, 3)).
    padded_axes: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        return str(self.base)

    @property
    def zero_padded(self) -> bool:
        """Whether reads outside the shape (along :attr:`padded_axes`) are zero rather than an error."""
        return bool(self.padded_axes)


@dataclass(frozen=True)
class IndexFormula:
    """``output[indices] = rhs``: one op's forward pass in index notation.

    ``parameters`` maps each shape parameter's role (``in_height``, ``stride_h``, ...) to its
    symbol, or to its expression where it is derived from the others (``out_height``).
    """

    op: str
    output: Tensor
    indices: tuple[Symbol, ...]
    rhs: Expr
    operands: tuple[Tensor, ...]
    parameters: Mapping[str, Expr] = field(default_factory=dict)
    # Facts about the inputs, (Sum, value), that gradients may use: one-hot targets sum to 1.
    identities: tuple[tuple[Expr, Expr], ...] = ()
    # The batch statistics the formula computes that a layer's buffers track, by buffer role: batch norm's
    # mean and biased variance, which its running_mean and running_var follow (symcnn.runtime.buffers).
    statistics: Mapping[str, Expr] = field(default_factory=dict)

    def equation(self) -> Eq:
        lhs = self.output.base[self.indices] if self.indices else self.output.base
        return Eq(lhs, self.rhs, evaluate=False)

    def operand(self, role: str) -> Tensor:
        for tensor in self.operands:
            if tensor.role == role:
                return tensor
        raise KeyError(f"{self.op} has no operand with role {role!r}")

    @property
    def tensors(self) -> tuple[Tensor, ...]:
        return self.operands + (self.output,)

    def substitute(self, values: Mapping[Expr, Expr]) -> "IndexFormula":
        """The formula with shape parameters replaced (e.g. ``{s_h: 2}``); shapes follow."""
        values = {sympy.sympify(key): sympy.sympify(value) for key, value in values.items()}

        def sub(expr: Expr) -> Expr:
            return sympy.sympify(expr).xreplace(values)

        def sub_tensor(tensor: Tensor) -> Tensor:
            return replace(tensor, shape=tuple(sub(dim) for dim in tensor.shape))

        return replace(
            self,
            output=sub_tensor(self.output),
            rhs=sub(self.rhs),
            operands=tuple(sub_tensor(t) for t in self.operands),
            parameters={role: sub(expr) for role, expr in self.parameters.items()},
            identities=tuple((sub(total), sub(value)) for total, value in self.identities),
            statistics={role: sub(expr) for role, expr in self.statistics.items()},
        )


def _spatial_parameters(out_height: Expr, out_width: Expr) -> dict[str, Expr]:
    return {
        "batch": N,
        "in_height": H_in,
        "in_width": W_in,
        "kernel_height": K_h,
        "kernel_width": K_w,
        "stride_h": s_h,
        "stride_w": s_w,
        "out_height": out_height,
        "out_width": out_width,
    }


def conv2d(bias: bool = True, groups: Expr = 1) -> IndexFormula:
    """Cross-correlation with stride, zero padding and dilation (document 000's forward).

    ``Y[n, c_out, i, j] = b[c_out] + sum_{c_in, u, v} W[c_out, c_in, u, v] *
    X[n, c_in, s_h*i + d_h*u - p_h, s_w*j + d_w*v - p_w]``.

    ``groups`` (PyTorch's): the channels split into ``G`` groups, each output channel reading the
    ``C_in/G`` input channels of its group, ``c_out // (C_out/G)``; the input channel of ``c_in`` is
    then ``c_out // (C_out/G) * (C_in/G) + c_in`` and the weight ``(C_out, C_in/G, K_h, K_w)``. A
    number or the symbol ``G``; 1 (the default) is the formula above, as it stands.

    >>> conv2d(bias=False, groups=G).rhs.function.args[1]
    X[n, C_in*floor(G*c_out/C_out)/G + c_in, d_h*u + i*s_h - p_h, d_w*v + j*s_w - p_w]
    """
    out_height = output_size(H_in, K_h, s_h, p_h, d_h)
    out_width = output_size(W_in, K_w, s_w, p_w, d_w)
    groups = sympy.sympify(groups)
    per_group = C_in / groups  # input channels per group
    channel = c_in if groups == 1 else floor(c_out / (C_out / groups)) * per_group + c_in
    product = Wt[c_out, c_in, u, v] * X[n, channel, s_h * i + d_h * u - p_h, s_w * j + d_w * v - p_w]
    rhs = Sum(product, (c_in, 0, per_group - 1), (u, 0, K_h - 1), (v, 0, K_w - 1))
    operands = [
        Tensor("input", X, (N, C_in, H_in, W_in), padded_axes=(2, 3)),
        Tensor("weight", Wt, (C_out, per_group, K_h, K_w)),
    ]
    if bias:
        rhs = rhs + b[c_out]
        operands.append(Tensor("bias", b, (C_out,)))
    parameters = _spatial_parameters(out_height, out_width)
    parameters.update(
        in_channels=C_in, out_channels=C_out, padding_h=p_h, padding_w=p_w, dilation_h=d_h, dilation_w=d_w
    )
    if groups != 1:
        parameters["groups"] = groups
    return IndexFormula(
        op="conv2d",
        output=Tensor("output", Y, (N, C_out, out_height, out_width)),
        indices=(n, c_out, i, j),
        rhs=rhs,
        operands=tuple(operands),
        parameters=parameters,
    )


def conv_transpose2d(bias: bool = True) -> IndexFormula:
    """The transposed convolution (PyTorch's ``ConvTranspose2d``), the adjoint of :func:`conv2d`, in gather form.

    ``Y[n, c_out, i, j] = b[c_out] + sum_{c_in, u, v} [s_h | i + p_h - d_h*u and
    0 <= (i + p_h - d_h*u)/s_h <= H_in - 1 and (the same for j)] * W[c_in, c_out, u, v] *
    X[n, c_in, (i + p_h - d_h*u)/s_h, (j + p_w - d_w*v)/s_w]``: input element ``(k, l)`` reaches output
    ``(s_h*k - p_h + d_h*u, s_w*l - p_w + d_w*v)`` through tap ``(u, v)`` (conv2d's index map, read
    backwards), so each output element gathers the taps whose row and column solve it. Weights
    ``(C_in, C_out, K_h, K_w)``; the output is ``(H_in - 1)*s_h - 2*p_h + d_h*(K_h - 1) + a_h + 1``
    high, ``a_h`` the output padding (extra rows at the end, which only the bias reaches).
    """
    out_height = transposed_output_size(H_in, K_h, s_h, p_h, d_h, a_h)
    out_width = transposed_output_size(W_in, K_w, s_w, p_w, d_w, a_w)
    row_offset, column_offset = i + p_h - d_h * u, j + p_w - d_w * v
    row, column = row_offset / s_h, column_offset / s_w
    # Every read in range: the input is not padded, the bracket says which taps land on an input element.
    lands = Bracket(Eq(Mod(row_offset, s_h), 0), Eq(Mod(column_offset, s_w), 0), sympy.Le(0, row),
                    sympy.Le(0, column), sympy.Le(row, H_in - 1), sympy.Le(column, W_in - 1))
    product = lands * Wt[c_in, c_out, u, v] * X[n, c_in, row, column]
    rhs = Sum(product, (c_in, 0, C_in - 1), (u, 0, K_h - 1), (v, 0, K_w - 1))
    operands = [Tensor("input", X, (N, C_in, H_in, W_in)), Tensor("weight", Wt, (C_in, C_out, K_h, K_w))]
    if bias:
        rhs = rhs + b[c_out]
        operands.append(Tensor("bias", b, (C_out,)))
    parameters = _spatial_parameters(out_height, out_width)
    parameters.update(in_channels=C_in, out_channels=C_out, padding_h=p_h, padding_w=p_w, dilation_h=d_h,
                      dilation_w=d_w, output_padding_h=a_h, output_padding_w=a_w)
    return IndexFormula(
        op="conv_transpose2d",
        output=Tensor("output", Y, (N, C_out, out_height, out_width)),
        indices=(n, c_out, i, j),
        rhs=rhs,
        operands=tuple(operands),
        parameters=parameters,
    )


def _pool(op: str, reduce: Callable[[Expr], Expr]) -> IndexFormula:
    out_height = output_size(H_in, K_h, s_h, 0, 1)
    out_width = output_size(W_in, K_w, s_w, 0, 1)
    element = X[n, c, s_h * i + u, s_w * j + v]
    parameters = _spatial_parameters(out_height, out_width)
    parameters["in_channels"] = C_in
    return IndexFormula(
        op=op,
        output=Tensor("output", Y, (N, C_in, out_height, out_width)),
        indices=(n, c, i, j),
        rhs=reduce(element),
        operands=(Tensor("input", X, (N, C_in, H_in, W_in)),),
        parameters=parameters,
    )


def maxpool2d() -> IndexFormula:
    """``Y[n, c, i, j] = max_{u, v} X[n, c, s_h*i + u, s_w*j + v]``; ties route to the first maximum."""
    return _pool("maxpool2d", lambda element: MaxOver(element, (u, 0, K_h - 1), (v, 0, K_w - 1)))


def avgpool2d() -> IndexFormula:
    """``Y[n, c, i, j] = 1/(K_h K_w) sum_{u, v} X[n, c, s_h*i + u, s_w*j + v]``."""
    return _pool("avgpool2d", lambda element: Sum(element, (u, 0, K_h - 1), (v, 0, K_w - 1)) / (K_h * K_w))


def global_avgpool() -> IndexFormula:
    """``Y[n, c, 0, 0] = 1/(H W) sum_{k, l} X[n, c, k, l]`` (document 002), output ``(N, C, 1, 1)``."""
    rhs = Sum(X[n, c, k, l], (k, 0, H_in - 1), (l, 0, W_in - 1)) / (H_in * W_in)
    return IndexFormula(
        op="global_avgpool",
        output=Tensor("output", Y, (N, C_in, 1, 1)),
        indices=(n, c, i, j),  # i = j = 0
        rhs=rhs,
        operands=(Tensor("input", X, (N, C_in, H_in, W_in)),),
        parameters={"batch": N, "in_channels": C_in, "in_height": H_in, "in_width": W_in},
    )


def adaptive_window(index: Expr, size: Expr, out: Expr) -> tuple[Expr, Expr]:
    """The first and last input position of output ``index``'s window when ``size`` positions pool to
    ``out``: ``floor(index*size/out)`` and ``ceiling((index + 1)*size/out) - 1`` (PyTorch's windows).
    Where ``out`` does not divide ``size`` the windows differ in length and may overlap.

    >>> [adaptive_window(index, 5, 3) for index in range(3)]
    [(0, 1), (1, 3), (3, 4)]
    """
    return floor(index * size / out), ceiling((index + 1) * size / out) - 1


def _adaptive(op: str, reduce: Callable[..., Expr]) -> IndexFormula:
    """An adaptive pool: ``reduce(element, rows, columns)`` over output ``(i, j)``'s window, whose
    bounds depend on ``i`` and ``j``."""
    rows = (k, *adaptive_window(i, H_in, H_out))
    columns = (l, *adaptive_window(j, W_in, W_out))
    shape = (N, C_in, H_in, W_in)
    return IndexFormula(
        op=op,
        output=Tensor("output", Y, (N, C_in, H_out, W_out)),
        indices=(n, c, i, j),
        rhs=reduce(X[n, c, k, l], rows, columns),
        operands=(Tensor("input", X, shape),),
        parameters={"batch": N, "in_channels": C_in, "in_height": H_in, "in_width": W_in,
                    "out_height": H_out, "out_width": W_out},
    )


def _window_length(limit: tuple) -> Expr:
    return limit[2] - limit[1] + 1


def adaptive_avgpool2d() -> IndexFormula:
    """``Y[n, c, i, j]`` = the mean of ``X[n, c, k, l]`` over ``floor(i*H_in/H_out) <= k <=
    ceiling((i + 1)*H_in/H_out) - 1`` and likewise ``l`` (PyTorch's ``AdaptiveAvgPool2d``)."""
    return _adaptive("adaptive_avgpool2d", lambda element, rows, columns:
                     Sum(element, rows, columns) / (_window_length(rows) * _window_length(columns)))


def adaptive_maxpool2d() -> IndexFormula:
    """``Y[n, c, i, j]`` = the maximum of ``X[n, c, k, l]`` over the adaptive window of ``(i, j)``
    (:func:`adaptive_avgpool2d`'s); a tie routes the gradient to the first maximum in row-major order."""
    return _adaptive("adaptive_maxpool2d", lambda element, rows, columns: MaxOver(element, rows, columns))


def flatten() -> IndexFormula:
    """``Y[n, k] = X[n, c, i, j]`` with ``k = c*H*W + i*W + j`` (document 004), as a gather over k."""
    rhs = X[n, floor(k / (H_in * W_in)), sympy.Mod(floor(k / W_in), H_in), sympy.Mod(k, W_in)]
    return IndexFormula(
        op="flatten",
        output=Tensor("output", Y, (N, C_in * H_in * W_in)),
        indices=(n, k),
        rhs=rhs,
        operands=(Tensor("input", X, (N, C_in, H_in, W_in)),),
        parameters={"batch": N, "in_channels": C_in, "in_height": H_in, "in_width": W_in},
    )


def dense(bias: bool = True) -> IndexFormula:
    """``Y[n, i] = b[i] + sum_k W[i, k] X[n, k]`` (document 004's FC layer, weights ``(out, in)``)."""
    rhs = Sum(Wt[i, k] * X[n, k], (k, 0, F_in - 1))
    operands = [Tensor("input", X, (N, F_in)), Tensor("weight", Wt, (F_out, F_in))]
    if bias:
        rhs = rhs + b[i]
        operands.append(Tensor("bias", b, (F_out,)))
    return IndexFormula(
        op="dense",
        output=Tensor("output", Y, (N, F_out)),
        indices=(n, i),
        rhs=rhs,
        operands=tuple(operands),
        parameters={"batch": N, "in_features": F_in, "out_features": F_out},
    )


ELEMENT_INDICES = {2: (n, k), 4: (n, c, i, j)}
ELEMENT_SHAPES = {2: (N, F_in), 4: (N, C_in, H_in, W_in)}
ELEMENT_PARAMETERS = {
    2: {"batch": N, "in_features": F_in},
    4: {"batch": N, "in_channels": C_in, "in_height": H_in, "in_width": W_in},
}


def elementwise(op: str, function: Callable[[Expr], Expr], rank: int = 4) -> IndexFormula:
    """``Y[idx] = function(X[idx])`` for a tensor of rank 2 ``(N, F)`` or 4 ``(N, C, H, W)``."""
    if rank not in ELEMENT_INDICES:
        raise ValueError(f"rank must be 2 or 4, got {rank}")
    indices, shape = ELEMENT_INDICES[rank], ELEMENT_SHAPES[rank]
    return IndexFormula(
        op=op,
        output=Tensor("output", Y, shape),
        indices=indices,
        rhs=function(X[indices]),
        operands=(Tensor("input", X, shape),),
        parameters=dict(ELEMENT_PARAMETERS[rank]),
    )


def relu(rank: int = 4) -> IndexFormula:
    """``Y = max(0, X)`` element-wise, with ReLU'(0) = 0."""
    return elementwise("relu", relu_function, rank)


def leaky_relu(alpha: Expr = alpha, rank: int = 4) -> IndexFormula:
    """``Y = X`` where ``X > 0``, else ``alpha*X``."""
    return elementwise("leaky_relu", lambda x: leaky_relu_function(x, alpha), rank)


def elu(alpha: Expr = alpha, rank: int = 4) -> IndexFormula:
    """``Y = X`` where ``X > 0``, else ``alpha*(exp(X) - 1)``."""
    return elementwise("elu", lambda x: elu_function(x, alpha), rank)


def sigmoid(rank: int = 4) -> IndexFormula:
    """``Y = 1 / (1 + exp(-X))`` element-wise (the logistic function, document 003)."""
    return elementwise("sigmoid", lambda x: 1 / (1 + sympy.exp(-x)), rank)


def tanh(rank: int = 4) -> IndexFormula:
    """``Y = tanh(X)`` element-wise (document 003)."""
    return elementwise("tanh", sympy.tanh, rank)


def dropout(rank: int = 4) -> IndexFormula:
    """Inverted dropout, ``Y = M * X / (1 - p)`` element-wise (document 003's standard dropout).

    The mask ``M`` is an operand like the input, but drawn (each element 0 with the drop
    probability ``p``, else 1), never learned nor differentiated: the gradient is
    ``dL/dX = M * dL/dY / (1 - p)``. Dividing by the keep probability ``1 - p`` keeps each
    element's expected value, so that evaluation mode is the identity.
    """
    formula = elementwise("dropout", lambda x: x, rank)
    indices, shape = formula.indices, formula.output.shape
    return replace(formula, rhs=M[indices] * X[indices] / (1 - p),
                   operands=formula.operands + (Tensor("mask", M, shape),))


def softmax() -> IndexFormula:
    """``P[n, i] = exp(Z[n, i]) / sum_j exp(Z[n, j])`` over ``F_in`` classes (document 004)."""
    return IndexFormula(
        op="softmax",
        output=Tensor("output", Y, (N, F_in)),
        indices=(n, i),
        rhs=sympy.exp(X[n, i]) / Sum(sympy.exp(X[n, j]), (j, 0, F_in - 1)),
        operands=(Tensor("input", X, (N, F_in)),),
        parameters={"batch": N, "in_features": F_in},
    )


def cross_entropy() -> IndexFormula:
    """``L = -(1/N) sum_{n, i} T[n, i] log P[n, i]`` for probabilities ``P`` and one-hot ``T``."""
    rhs = -Sum(T[n, i] * sympy.log(X[n, i]), (n, 0, N - 1), (i, 0, F_in - 1)) / N
    return IndexFormula(
        op="cross_entropy",
        output=Tensor("output", IndexedBase("L"), ()),
        indices=(),
        rhs=rhs,
        operands=(Tensor("input", X, (N, F_in)), Tensor("target", T, (N, F_in))),
        parameters={"batch": N, "in_features": F_in},
        identities=((Sum(T[n, j], (j, 0, F_in - 1)), sympy.S.One),),
    )


def softmax_cross_entropy() -> IndexFormula:
    """``L = -(1/N) sum_{n, i} T[n, i] log softmax(Z)[n, i]`` with one-hot targets ``T``.

    The batch mean is PyTorch's default reduction; for one sample it is document 004's loss.
    ``log softmax`` is written ``Z[n, i] - log sum_j exp Z[n, j]``, the stable form.
    """
    log_probability = X[n, i] - sympy.log(Sum(sympy.exp(X[n, j]), (j, 0, F_in - 1)))
    rhs = -Sum(T[n, i] * log_probability, (n, 0, N - 1), (i, 0, F_in - 1)) / N
    return IndexFormula(
        op="softmax_cross_entropy",
        output=Tensor("output", IndexedBase("L"), ()),
        indices=(),
        rhs=rhs,
        operands=(Tensor("input", X, (N, F_in)), Tensor("target", T, (N, F_in))),
        parameters={"batch": N, "in_features": F_in},
        identities=((Sum(T[n, j], (j, 0, F_in - 1)), sympy.S.One),),
    )
