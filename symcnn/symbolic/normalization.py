"""Document 003's normalization layers as index formulas: batch normalization (training and evaluation
mode) and layer normalization, their statistics written out as sums (the mean nested in the variance),
so that every gradient is derived, never typed in. Symbols as :mod:`symcnn.symbolic.ops` names them.

Example:
    >>> formula = batchnorm2d()
    >>> [tensor.role for tensor in formula.operands]
    ['input', 'weight', 'bias']
"""

from __future__ import annotations

from typing import Callable

import sympy
from sympy import Expr, Sum

from symcnn.symbolic.ops import (ELEMENT_INDICES, ELEMENT_PARAMETERS, ELEMENT_SHAPES, C_in, H_in, IndexFormula, N,
                                 Tensor, W_in, X, Y, beta, c, epsilon, gamma, i, j, k, l, n, q, r, running_mean,
                                 running_var, u, v)

__all__ = ["batchnorm2d", "batchnorm2d_evaluation", "layernorm"]


def _normalized(element: Expr, mean: Expr, variance: Expr, scale: Expr, shift: Expr) -> Expr:
    """``scale * (element - mean) / sqrt(variance + epsilon) + shift`` (document 003's x̂ scaled and shifted)."""
    return scale * (element - mean) / sympy.sqrt(variance + epsilon) + shift


def _mean_and_variance(read: Callable[..., Expr], mean_limits: tuple, variance_limits: tuple) -> tuple[Expr, Expr]:
    """The mean and the biased variance of ``read(*variables)`` over the limits' ranges, both as sums:
    ``mu = (1/m) sum x``, ``sigma^2 = (1/m) sum (x - mu)^2`` (document 003), the mean nested in the variance."""
    count = sympy.Mul(*[high - low + 1 for _, low, high in mean_limits])
    mean = Sum(read(*[limit[0] for limit in mean_limits]), *mean_limits) / count
    deviation = read(*[limit[0] for limit in variance_limits]) - mean
    return mean, Sum(deviation**2, *variance_limits) / count


_MAP_SHAPE = (N, C_in, H_in, W_in)
_MAP_PARAMETERS = {"batch": N, "in_channels": C_in, "in_height": H_in, "in_width": W_in}


def batchnorm2d() -> IndexFormula:
    """Batch normalization in training mode (document 003), per channel ``c`` over ``m = N*H*W`` values:

    ``Y[n, c, i, j] = gamma[c] * (X[n, c, i, j] - mu[c]) / sqrt(sigma2[c] + epsilon) + beta[c]`` with the
    batch mean ``mu[c] = (1/m) sum_{q, k, l} X[q, c, k, l]`` and the biased batch variance
    ``sigma2[c] = (1/m) sum_{r, u, v} (X[r, c, u, v] - mu[c])^2``, written out as sums (PyTorch's
    ``BatchNorm2d``: ``weight`` is gamma, ``bias`` beta).
    """
    mean, variance = _mean_and_variance(
        lambda batch, row, column: X[batch, c, row, column],
        ((q, 0, N - 1), (k, 0, H_in - 1), (l, 0, W_in - 1)), ((r, 0, N - 1), (u, 0, H_in - 1), (v, 0, W_in - 1)))
    return IndexFormula(
        op="batchnorm2d",
        output=Tensor("output", Y, _MAP_SHAPE),
        indices=(n, c, i, j),
        rhs=_normalized(X[n, c, i, j], mean, variance, gamma[c], beta[c]),
        operands=(Tensor("input", X, _MAP_SHAPE), Tensor("weight", gamma, (C_in,)), Tensor("bias", beta, (C_in,))),
        parameters=dict(_MAP_PARAMETERS),
        statistics={"running_mean": mean, "running_var": variance},
    )


def batchnorm2d_evaluation() -> IndexFormula:
    """Batch normalization in evaluation mode: the running statistics in place of the batch's.

    ``Y[n, c, i, j] = gamma[c] * (X[n, c, i, j] - mu_run[c]) / sqrt(sigma2_run[c] + epsilon) + beta[c]``.
    """
    return IndexFormula(
        op="batchnorm2d",
        output=Tensor("output", Y, _MAP_SHAPE),
        indices=(n, c, i, j),
        rhs=_normalized(X[n, c, i, j], running_mean[c], running_var[c], gamma[c], beta[c]),
        operands=(Tensor("input", X, _MAP_SHAPE), Tensor("weight", gamma, (C_in,)), Tensor("bias", beta, (C_in,)),
                  Tensor("running_mean", running_mean, (C_in,)), Tensor("running_var", running_var, (C_in,))),
        parameters=dict(_MAP_PARAMETERS),
    )


def layernorm(rank: int = 4) -> IndexFormula:
    """Layer normalization (document 003's ``LN(x) = gamma (x - mu)/sigma + beta``) over each sample's
    trailing axes, ``(C, H, W)`` of a map or ``(F,)`` of a vector, with an ε inside the square root and
    a scale and shift of that trailing shape (PyTorch's ``LayerNorm(normalized_shape)``):

    ``Y[n, c, i, j] = gamma[c, i, j] * (X[n, c, i, j] - mu[n]) / sqrt(sigma2[n] + epsilon) + beta[c, i, j]``,
    ``mu[n]`` and the biased ``sigma2[n]`` over the sample's ``C*H*W`` values, as sums.
    """
    if rank not in ELEMENT_INDICES:
        raise ValueError(f"rank must be 2 or 4, got {rank}")
    indices, shape = ELEMENT_INDICES[rank], ELEMENT_SHAPES[rank]
    trailing = indices[1:]
    mean_variables, variance_variables = ((q, k, l), (r, u, v)) if rank == 4 else ((q,), (r,))
    mean, variance = _mean_and_variance(
        lambda *axes: X[(n, *axes)],
        tuple((variable, 0, size - 1) for variable, size in zip(mean_variables, shape[1:])),
        tuple((variable, 0, size - 1) for variable, size in zip(variance_variables, shape[1:])))
    return IndexFormula(
        op="layernorm",
        output=Tensor("output", Y, shape),
        indices=indices,
        rhs=_normalized(X[indices], mean, variance, gamma[trailing], beta[trailing]),
        operands=(Tensor("input", X, shape), Tensor("weight", gamma, shape[1:]), Tensor("bias", beta, shape[1:])),
        parameters=dict(ELEMENT_PARAMETERS[rank]),
    )
