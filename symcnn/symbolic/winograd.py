"""Winograd's minimal filtering algorithms F(m, r), derived and checked exactly.

F(m, r) computes m outputs of an r-tap correlation, ``y[i] = sum_k d[i + k] g[k]`` (a convolution
layer's formula along one axis, stride and dilation 1), from a tile of ``a = m + r - 1`` inputs with
``a`` multiplications instead of ``m*r``::

    y = A^T [(G g) * (B^T d)]          (* element by element)

Nested along both axes, F(m x m, r x r) computes an m x m tile of the 2-D correlation with ``a^2``
multiplications instead of ``m^2 r^2`` (4 x fewer for F(4 x 4, 3 x 3))::

    Y = A^T [(G g G^T) * (B^T d B)] A

In a layer, ``G g G^T`` is computed once per filter and ``B^T d B`` once per input tile and channel;
the sum over input channels is then ``a^2`` independent matrix products (Lavin and Gray, "Fast
Algorithms for Convolutional Neural Networks", CVPR 2016).

The matrices come from the Cook-Toom construction: a product of polynomials computed by evaluating both
at ``a - 1`` distinct finite points and at infinity (the leading coefficients), multiplying pointwise and
interpolating back (Lagrange); F(m, r) is that algorithm transposed (Lavin and Gray, section 4). For a
finite point ``p``, with ``q`` over the other finite points: ``G``'s row is ``(1, p, ..., p^(r-1)) /
prod(p - q)``, ``B^T``'s row the coefficients of ``prod(x - q)``, ``A^T``'s column ``(1, p, ..., p^(m-1))``;
for infinity, ``G``'s row and ``A^T``'s column pick the last coefficient, and ``B^T``'s row holds the
coefficients of the product over every finite point. Exact rationals throughout; :func:`check_1d` and
:func:`check_2d` prove each result by expanding it against the correlation (:func:`check_2d`: against the
registry's ``conv2d`` formula itself).

The points set the float error: the larger the points, the wider the range of the transforms'
coefficients (F(4, 3), points 0, +-1, +-2: 1/24 to 8; F(6, 3), adding +-1/2: 1/90 to 32).
:data:`DEFAULT_POINTS` are the usual order (Lavin and Gray's), which keeps that range small.

Example:
    >>> f23 = minimal_filtering(2, 3)
    >>> f23.BT
    Matrix([
    [-1,  0, 1, 0],
    [ 0,  1, 1, 0],
    [ 0, -1, 1, 0],
    [ 0, -1, 0, 1]])
    >>> f23.multiplications_2d, f23.direct_multiplications_2d
    (16, 36)
    >>> check_2d(f23)
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import sympy
from sympy import Matrix, Rational, Symbol

__all__ = ["Transforms", "DEFAULT_POINTS", "minimal_filtering", "check_1d", "check_2d"]

#: The finite interpolation points in the order they are taken: F(m, r) takes the first m + r - 2.
DEFAULT_POINTS: tuple[Rational, ...] = tuple(sympy.nsimplify(p) for p in (
    0, 1, -1, 2, -2, Rational(1, 2), -Rational(1, 2), 3, -3, Rational(1, 3), -Rational(1, 3), 4, -4))


@dataclass(frozen=True)
class Transforms:
    """The matrices of F(m, r): ``y = AT * ((G * g) elementwise* (BT * d))``, exact."""

    m: int  # outputs per tile (along one axis)
    r: int  # filter taps
    points: tuple[Rational, ...]  # the finite interpolation points (the point at infinity is the last row)
    AT: Matrix  # m x a: the output transform
    G: Matrix  # a x r: the filter transform
    BT: Matrix  # a x a: the input transform

    @property
    def tile(self) -> int:
        """Inputs per tile along one axis: ``m + r - 1``."""
        return self.m + self.r - 1

    @property
    def multiplications_2d(self) -> int:
        """Multiplications of one m x m output tile by one filter, F(m x m, r x r)."""
        return self.tile ** 2

    @property
    def direct_multiplications_2d(self) -> int:
        """The same tile's multiplications computed directly: ``m^2 r^2``."""
        return self.m ** 2 * self.r ** 2


def minimal_filtering(m: int, r: int, points: Optional[Sequence] = None) -> Transforms:
    """The Cook-Toom matrices of F(m, r) from ``m + r - 2`` distinct finite ``points`` (default: the first of
    :data:`DEFAULT_POINTS`) and the point at infinity.

    >>> f43 = minimal_filtering(4, 3)
    >>> f43.G.row(1), f43.AT.col(5).T
    (Matrix([[-1/6, -1/6, -1/6]]), Matrix([[0, 0, 0, 1]]))
    >>> minimal_filtering(2, 3, points=[0, 1, 1])
    Traceback (most recent call last):
    ...
    ValueError: points: must be 3 distinct finite numbers (m + r - 2 for F(2, 3)), got [0, 1, 1]
    """
    for name, value in (("m", m), ("r", r)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
    count = m + r - 2
    if points is None:
        if count > len(DEFAULT_POINTS):
            raise ValueError(f"m + r - 2: at most {len(DEFAULT_POINTS)} default points, F({m}, {r}) needs {count}")
        chosen = DEFAULT_POINTS[:count]
    else:
        try:
            chosen = tuple(sympy.nsimplify(p, rational=True) for p in points)
        except (TypeError, ValueError, sympy.SympifyError):
            chosen = ()
        if (len(chosen) != count or len(set(chosen)) != count
                or not all(p.is_Rational for p in chosen)):
            raise ValueError(f"points: must be {count} distinct finite numbers (m + r - 2 for F({m}, {r})), "
                             f"got {list(points)}")
    a = m + r - 1
    x = Symbol("x")
    AT, G, BT = sympy.zeros(m, a), sympy.zeros(a, r), sympy.zeros(a, a)
    for j, p in enumerate(chosen):
        others = [q for q in chosen if q != p]
        denominator = sympy.prod([p - q for q in others])
        for i in range(m):
            AT[i, j] = p ** i
        for i in range(r):
            G[j, i] = p ** i / denominator
        coefficients = sympy.Poly(sympy.prod([x - q for q in others]), x).all_coeffs()[::-1]
        for i, coefficient in enumerate(coefficients):
            BT[j, i] = coefficient
    # the point at infinity: the leading coefficients
    AT[m - 1, a - 1] = 1
    G[a - 1, r - 1] = 1
    for i, coefficient in enumerate(sympy.Poly(sympy.prod([x - q for q in chosen]), x).all_coeffs()[::-1]):
        BT[a - 1, i] = coefficient
    return Transforms(m=m, r=r, points=chosen, AT=AT, G=G, BT=BT)


def check_1d(transforms: Transforms) -> bool:
    """Whether ``AT [(G g) * (BT d)]`` equals ``y[i] = sum_k d[i + k] g[k]`` for symbolic ``d`` and ``g``,
    expanded exactly.

    >>> check_1d(minimal_filtering(3, 2))
    True
    """
    d = Matrix(sympy.symbols(f"d0:{transforms.tile}"))
    g = Matrix(sympy.symbols(f"g0:{transforms.r}"))
    tile = transforms.AT * (transforms.G * g).multiply_elementwise(transforms.BT * d)
    direct = [sum(d[i + k] * g[k] for k in range(transforms.r)) for i in range(transforms.m)]
    return all(sympy.expand(tile[i] - direct[i]) == 0 for i in range(transforms.m))


def check_2d(transforms: Transforms) -> bool:
    """Whether ``AT [(G g G^T) * (BT d B)] A`` equals the registry's ``conv2d`` forward formula (stride,
    padding 0, dilation 1, no bias) on one a x a input channel and one r x r filter, all symbols,
    expanded exactly: the nested algorithm computes the layer's own sums.

    >>> check_2d(minimal_filtering(2, 2))
    True
    """
    from symcnn.symbolic.instances import evaluate_layer
    from symcnn.symbolic.tensors import symbol_array

    a, r, m = transforms.tile, transforms.r, transforms.m
    x, w = symbol_array("x", (1, 1, a, a)), symbol_array("w", (1, 1, r, r))
    layer = evaluate_layer("conv2d", {"input": x, "weight": w},
                           {"bias": False, "stride": (1, 1), "padding": (0, 0), "dilation": (1, 1)})
    d = Matrix(a, a, lambda i, j: x[0, 0, i, j])
    g = Matrix(r, r, lambda i, j: w[0, 0, i, j])
    AT, G, BT = transforms.AT, transforms.G, transforms.BT
    tile = AT * (G * g * G.T).multiply_elementwise(BT * d * BT.T) * AT.T
    return all(sympy.expand(tile[i, j] - layer[0, 0, i, j]) == 0 for i in range(m) for j in range(m))
