"""``exp`` for the generated kernels, in arithmetic that LLVM vectorizes.

Why: numba compiles ``math.exp`` to a call of libm's ``exp`` for each element. There is no vector math
library in this numba (no SVML), so LLVM cannot vectorize a loop around the call, and an element-wise
tanh, sigmoid, ELU or softmax runs one element at a time. :func:`exp` here uses only multiplications,
additions, comparisons and bit moves, so the loop vectorizes like any other arithmetic. Measured on
300,000 float64 values, one thread, a 2-core Intel Xeon: 1.6 ns an element against libm's 4.2. For tanh
in a kernel (``1 - 2/(exp(2z) + 1)``, :func:`symcnn.codegen.rewrites.exponential_tanh`) it was 2.0 ns
against 4.0 (``docs/performance.md``).

How: ``exp(x) = 2^n * exp(r)`` with ``n`` the integer nearest ``x / ln 2`` and ``r = x - n ln 2`` in
``[-ln2/2, ln2/2]``, ``ln 2`` split in two parts (Cody and Waite) so that ``r`` is exact to the last bit.
``exp(r)`` is its Taylor polynomial of degree 13 (the remainder is below ``0.35^14 / 14! < 5e-18``,
under a fortieth of an ulp). ``2^n`` is built from its bits as two factors, so that results from
``2^-1075`` to ``2^1024`` (subnormal and overflowing ones included) are rounded once, at the last
multiplication. The argument is first clamped to ``[-746, 710]``, beyond which ``exp`` is 0 or
infinite anyway; a NaN stays NaN.

Accuracy, float64, against NumPy's ``exp``: at most 1 ulp over 1.65 million arguments from -750 to
712 (``tests/runtime/test_vector_math.py``; 3 million in a first check); exact at 0, at +-inf and for
NaN. The kernels compute in float64 what they compute in float64 today; a float32 argument is widened
first.

numba compiles this ``exp`` into each kernel that calls it, and its on-disk cache of a kernel does not
notice a change here: the packages generated into the cache directory are keyed by this file too
(:data:`symcnn.runtime.loader.GENERATOR_SOURCES`); after changing it in a checkout, delete the shipped
packages' caches (``generated/*/__pycache__``).

Example:
    >>> import math
    >>> abs(exp(1.0) - math.e) <= math.ulp(math.e)
    True
    >>> exp(-math.inf), exp(1000.0)
    (0.0, inf)
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["exp"]

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


@intrinsic
def _bits_of(typingctx, value):
    """The 64 bits of a float64, as an int64 (a bit move LLVM vectorizes)."""
    def codegen(context, builder, signature, arguments):
        return builder.bitcast(arguments[0], context.get_value_type(types.int64))
    return types.int64(types.float64), codegen


@intrinsic
def _float_of(typingctx, bits):
    """The float64 whose bits are an int64's."""
    def codegen(context, builder, signature, arguments):
        return builder.bitcast(arguments[0], context.get_value_type(types.float64))
    return types.float64(types.int64), codegen


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
    return (polynomial * _float_of((half + _EXPONENT_BIAS) << _MANTISSA_BITS)
            * _float_of((power - half + _EXPONENT_BIAS) << _MANTISSA_BITS))
