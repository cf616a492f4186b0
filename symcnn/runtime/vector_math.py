"""``exp`` and ``tanh`` for the generated kernels, in arithmetic that LLVM vectorizes.

Why: numba compiles ``math.exp`` to a call of libm's ``exp`` for each element. There is no vector math
library in this numba (no SVML), so LLVM cannot vectorize a loop around the call, and an element-wise
tanh, sigmoid, ELU or softmax runs one element at a time. :func:`exp` here uses only multiplications,
additions, comparisons and bit moves, so the loop vectorizes like any other arithmetic. Measured on
300,000 float64 values, one thread, a 2-core Intel Xeon: 1.6 ns an element against libm's 4.2.

How: ``exp(x) = 2^n * exp(r)`` with ``n`` the integer nearest ``x / ln 2`` and ``r = x - n ln 2`` in
``[-ln2/2, ln2/2]``, ``ln 2`` split in two parts (Cody and Waite) so that ``r`` is exact to the last bit.
``exp(r)`` is its Taylor polynomial of degree 13 (the remainder is below ``0.35^14 / 14! < 5e-18``,
under a fortieth of an ulp). ``2^n`` is built from its bits as two factors, so that results from
``2^-1075`` to ``2^1024`` (subnormal and overflowing ones included) are rounded once, at the last
multiplication. The argument is first clamped to ``[-746, 710]``, beyond which ``exp`` is 0 or
infinite anyway; a NaN stays NaN.

Accuracy, float64, against NumPy's ``exp``: at most 1 ulp over 1.65 million arguments from -750 to
712 (``tests/runtime/test_vector_math.py``; 3 million in a first check); exact at 0, at +-inf and for
NaN. ``exp`` computes in float64 whatever it is given (a float32 argument is widened first): its callers'
formulas (ELU's ``exp(x) - 1``, the softmax's sums) lose digits to cancellation that float64 hides.

:func:`tanh` is the one function with a float32 form, because it is the one whose float32 cost showed
(suite-lenet's ``tanh1_forward`` took as long as its largest convolution, docs/performance.md):
- a float64 argument (or any but float32): ``1 - 2/(exp(2z) + 1)``, the same function, through :func:`exp`
  above. No overflow to fear: a large ``2z`` makes ``exp(2z)`` infinite and the value 1; a very negative one
  makes it 0 and the value -1. Near 0 the error is absolute, about the rounding of 1 (1e-16), not relative.
- a float32 argument: float32 arithmetic throughout, twice the vector lanes and a shorter polynomial.
  Below ``|z| = 0.55`` tanh's Taylor polynomial to ``z^19`` (the first term left out is below 6e-9 of
  ``z``, a tenth of a float32 ulp), so the value stays relative to ``z`` near 0 where ``1 - 2/(e + 1)`` would
  cancel; from 0.55 (just above ``ln(3)/2``, where tanh is 1/2) ``1 - 2/(exp(2|z|) + 1)`` with a float32
  ``exp`` (as above with float32 constants, a Taylor polynomial of degree 7: remainder below ``0.35^8 / 8!
  < 6e-9``), the sign put back. Within 2 float32 ulps of the rounded true value (the tests measure it);
  NaN stays NaN, +-inf give +-1, -0.0 gives -0.0.

numba compiles these functions into each kernel that calls them, and its on-disk cache of a kernel does not
notice a change here: the packages generated into the cache directory are keyed by this file too
(:data:`symcnn.runtime.loader.GENERATOR_SOURCES`); after changing it in a checkout, delete the shipped
packages' caches (``generated/*/__pycache__``).

Example:
    >>> import math
    >>> abs(exp(1.0) - math.e) <= math.ulp(math.e)
    True
    >>> exp(-math.inf), exp(1000.0)
    (0.0, inf)
    >>> tanh(0.5) == 1 - 2 / (exp(1.0) + 1), float(tanh(np.float32(0.5)))
    (True, 0.46211716532707214)
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import intrinsic, overload

__all__ = ["exp", "tanh"]

_LOG2_E = 1.4426950408889634
# ln 2 split so that n * _LN2_HIGH is exact for the |n| <= 1076 used here: the high part's low 21 bits are zero.
_LN2_HIGH = 0.6931471803691238
_LN2_LOW = 1.9082149292705877e-10
# 1.5 * 2^52: adding it to |y| < 2^51 rounds y to an integer held in the sum's low bits (its bits
# minus the constant's are that integer): rounding without a branch or a float-to-int conversion.
_ROUNDER = 6755399441055744.0
_ROUNDER_BITS = 0x4338000000000000
# Beyond these, exp(x) rounds to 0 (below -745.14) or overflows (above 709.79) in float64.
_LOWEST, _HIGHEST = -746.0, 710.0
_EXPONENT_BIAS, _MANTISSA_BITS = 1023, 52


#: The integer type of a float's width, for its bits.
_BITS = {types.float64: types.int64, types.float32: types.int32}


@intrinsic
def _bits_of(typingctx, value):
    """The bits of a float64 or float32, as an integer of its width (a bit move LLVM vectorizes)."""
    if value not in _BITS:
        return None
    integer = _BITS[value]

    def codegen(context, builder, signature, arguments):
        return builder.bitcast(arguments[0], context.get_value_type(integer))
    return integer(value), codegen


@intrinsic
def _float_of(typingctx, bits, like):
    """The float of ``like``'s type (float64 or float32) whose bits are the low bits of the integer ``bits``."""
    if like not in _BITS or not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, arguments):
        width = context.get_value_type(_BITS[like])
        low = builder.trunc(arguments[0], width) if bits.bitwidth > _BITS[like].bitwidth else arguments[0]
        return builder.bitcast(low, context.get_value_type(like))
    return like(bits, like), codegen


# fastmath=False, said explicitly: numba compiles a function that a kernel calls with the kernel's fast-math
# flags unless the function sets its own, and the reductions' kernels allow reassociation, under which LLVM
# may fold ``(y + R) - R`` into ``y`` and ``(x - a) - b`` into ``x - (a + b)``: no rounding to an integer and
# no exact remainder, so exp(1) came out 2 (seen: the first compile, cached, then served every caller).
@njit(cache=True, fastmath=False, error_model="numpy")
def exp(x):
    """e to the power ``x``, in float64, within 1 ulp (see the module's docstring)."""
    x = min(max(np.float64(x), _LOWEST), _HIGHEST)  # NaN stays NaN
    shifted = x * _LOG2_E + _ROUNDER
    n = shifted - _ROUNDER  # the integer nearest x / ln 2
    r = (x - n * _LN2_HIGH) - n * _LN2_LOW
    polynomial = 1.0 + r * (1.0 + r * (1 / 2 + r * (1 / 6 + r * (1 / 24 + r * (1 / 120 + r * (
        1 / 720 + r * (1 / 5040 + r * (1 / 40320 + r * (1 / 362880 + r * (1 / 3628800 + r * (
            1 / 39916800 + r * (1 / 479001600 + r * (1 / 6227020800)))))))))))))
    power = _bits_of(shifted) - _ROUNDER_BITS  # n as an integer, from -1076 to 1025
    half = power >> 1
    return (polynomial * _float_of((half + _EXPONENT_BIAS) << _MANTISSA_BITS, x)
            * _float_of((power - half + _EXPONENT_BIAS) << _MANTISSA_BITS, x))


# float32 forms: every constant a float32, so that numba keeps the arithmetic in float32 (a Python float
# or int next to a float32 makes it float64).
_F32 = np.float32
_LOG2_E_32 = _F32(1.4426950408889634)
# n * _LN2_HIGH_32 is exact for the |n| <= 151 used here: the high part's low 9 bits are zero.
_LN2_HIGH_32, _LN2_LOW_32 = _F32(0.693145751953125), _F32(1.428606765330187e-06)
# 1.5 * 2^23, the float32 rounder (see _ROUNDER).
_ROUNDER_32, _ROUNDER_BITS_32 = _F32(12582912.0), 0x4B400000
# Beyond these, exp(x) rounds to 0 (below -103.98) or overflows (above 88.73) in float32.
_LOWEST_32, _HIGHEST_32 = _F32(-104.0), _F32(89.0)
_EXPONENT_BIAS_32, _MANTISSA_BITS_32 = 127, 23
_ONE_32, _TWO_32 = _F32(1.0), _F32(2.0)
_EXP_TAYLOR_32 = tuple(_F32(1 / math.factorial(power)) for power in range(8))
# tanh(z) = z + z^3 * (c3 + z^2 * (c5 + ...)), the Taylor coefficients of z^3 ... z^19 (tests/runtime/
# test_vector_math.py checks them against SymPy's series).
_TANH_TAYLOR_32 = tuple(_F32(numerator / denominator) for numerator, denominator in (
    (-1, 3), (2, 15), (-17, 315), (62, 2835), (-1382, 155925), (21844, 6081075), (-929569, 638512875),
    (6404582, 10854718875), (-443861162, 1856156927625)))
_TANH_SERIES_BELOW_32 = _F32(0.55)


# fastmath={"contract"} for the float32 forms, as the kernels have it: a fused multiply-add rounds once, so
# the rounder still rounds to an integer and the remainder stays exact; the polynomials take half the
# instructions (suite-lenet's tanh1 kernel, 64 images: 0.145 ms without, 0.099 ms with). No reassociation:
# see exp.
@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def _exp_32(x):
    """e to the power of a float32, in float32 arithmetic (the float64 ``exp``'s steps, float32 constants)."""
    x = min(max(x, _LOWEST_32), _HIGHEST_32)  # NaN stays NaN
    shifted = x * _LOG2_E_32 + _ROUNDER_32
    n = shifted - _ROUNDER_32
    r = (x - n * _LN2_HIGH_32) - n * _LN2_LOW_32
    c = _EXP_TAYLOR_32
    polynomial = c[0] + r * (c[1] + r * (c[2] + r * (c[3] + r * (c[4] + r * (c[5] + r * (c[6] + r * c[7]))))))
    power = np.int64(_bits_of(shifted)) - _ROUNDER_BITS_32  # n, from -150 to 128
    half = power >> 1
    return (polynomial * _float_of((half + _EXPONENT_BIAS_32) << _MANTISSA_BITS_32, x)
            * _float_of((power - half + _EXPONENT_BIAS_32) << _MANTISSA_BITS_32, x))


@njit(cache=True, fastmath={"contract"}, error_model="numpy")
def _tanh_32(z):
    """tanh of a float32, in float32 arithmetic: the Taylor polynomial near 0, ``1 - 2/(e^2|z| + 1)`` beyond."""
    square = z * z
    c = _TANH_TAYLOR_32
    series = z + z * square * (c[0] + square * (c[1] + square * (c[2] + square * (c[3] + square * (
        c[4] + square * (c[5] + square * (c[6] + square * (c[7] + square * c[8]))))))))
    magnitude = abs(z)
    far = _ONE_32 - _TWO_32 / (_exp_32(magnitude + magnitude) + _ONE_32)
    # Selections, not returns from branches: LLVM vectorizes a loop over them (and did not over three returns).
    value = far if z >= 0 else -far  # a NaN z: far is NaN
    value = series if magnitude < _TANH_SERIES_BELOW_32 else value
    # Where z^2 underflows (|z| < 2^-75) tanh(z) rounds to z; z also keeps -0.0's sign, which the sum loses.
    return z if square == 0 else value


@njit(cache=True, fastmath=False, error_model="numpy")
def _tanh_64(z):
    """tanh through one float64 ``exp``: ``1 - 2/(exp(2z) + 1)``."""
    return 1 - 2 / (exp(2 * z) + 1)


def tanh(z):
    """The hyperbolic tangent: float32 arithmetic for a float32 ``z``, float64 otherwise (the module's docstring).

    >>> tanh(0.0), tanh(np.float32(-0.0)), tanh(math.inf), tanh(np.float32(-math.inf))
    (0.0, -0.0, 1.0, -1.0)
    """
    return _tanh_32(z) if isinstance(z, np.float32) else _tanh_64(z)


@overload(tanh)
def _tanh_in_kernels(z):
    """In compiled code, the form for ``z``'s type."""
    if z == types.float32:
        return lambda z: _tanh_32(z)
    return lambda z: _tanh_64(z)
