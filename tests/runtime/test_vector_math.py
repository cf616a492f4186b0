"""The kernels' ``exp`` and ``tanh`` (symcnn.runtime.vector_math) against NumPy's; loops over them vectorize."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import numba
from numba import njit

from symcnn.runtime import vector_math
from symcnn.runtime.vector_math import exp, tanh


def _each(function):
    """A compiled loop storing ``function`` of each element, as a kernel's element-wise loop does."""
    @njit(cache=False)
    def each(values, out):
        for index in range(values.shape[0]):
            out[index] = function(values[index])
    return each


_exp_each = _each(exp)


def _ulps(values: np.ndarray) -> np.ndarray:
    """How many ulps the kernels' exp is from NumPy's at each finite, nonzero result."""
    out = np.empty_like(values)
    _exp_each(values, out)
    with np.errstate(over="ignore"):
        reference = np.exp(values)
    finite = np.isfinite(reference) & (reference > 0)
    return np.abs(out[finite] - reference[finite]) / np.spacing(reference[finite])


def test_within_one_ulp_over_the_whole_range():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.uniform(-750.0, 712.0, 1_000_000), rng.standard_normal(500_000),
                             rng.uniform(-1e-6, 1e-6, 100_000), np.linspace(-745.2, -708.0, 50_001)])
    assert _ulps(values).max() <= 1.0


@pytest.mark.parametrize("value, expected", [
    (0.0, 1.0), (-0.0, 1.0), (math.inf, math.inf), (-math.inf, 0.0), (1000.0, math.inf), (709.79, math.inf),
    (-746.0, 0.0), (-1e9, 0.0), (1e9, math.inf), (-745.1, 5e-324), (709.78, float(np.exp(709.78))),
])
def test_special_and_edge_values(value, expected):
    assert exp(value) == expected


def test_nan_stays_nan():
    assert math.isnan(exp(math.nan))


def test_a_float32_argument_is_widened_first():
    value = np.float32(0.1)
    assert exp(value) == pytest.approx(math.exp(float(value)), rel=2e-16)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-745.0, max_value=709.7, allow_nan=False))
def test_property_within_one_ulp(value):
    assert abs(exp(value) - math.exp(value)) <= math.ulp(math.exp(value))


def test_a_loop_over_it_vectorizes():
    """Why the module exists: LLVM turns the loop into vector code (a libm call it cannot)."""
    _exp_each(np.zeros(4), np.zeros(4))
    assembly = next(iter(_exp_each.inspect_llvm().values()))
    assert "x double>" in assembly



#: Run in a new process, with an empty numba cache, so that the fast-math caller is the first to compile exp.
_FAST_MATH_CALLER = """
import math, numpy as np
import numba
from numba import njit
from symcnn.runtime.vector_math import exp

@njit(fastmath=True)
def each(values, out):
    for index in range(values.shape[0]):
        out[index] = exp(values[index])

values = np.linspace(-20.0, 20.0, 4001)
out = np.empty_like(values)
each(values, out)
np.testing.assert_allclose(out, np.exp(values), rtol=3e-16, atol=0)
assert abs(exp(1.0) - math.e) <= math.ulp(math.e), exp(1.0)

from symcnn.runtime.vector_math import tanh

@njit(fastmath=True)
def each_tanh(values, out):
    for index in range(values.shape[0]):
        out[index] = tanh(values[index])

values32 = np.linspace(-12.0, 12.0, 4001, dtype=np.float32)
out32 = np.empty_like(values32)
each_tanh(values32, out32)
np.testing.assert_allclose(out32, np.tanh(values32.astype(np.float64)), rtol=3e-7, atol=1e-38)
"""


def test_exact_under_a_fast_math_caller(tmp_path):
    """A kernel that may reassociate (a reduction's) must not pass that on to exp (nor to float32 tanh's exp): its
    rounding to an integer and its exact remainder would be folded away (exp(1) came out 2, and the plain call
    after it too)."""
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", _FAST_MATH_CALLER], capture_output=True, text=True,
                            env=environment, cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


# ---- tanh: float32 arithmetic for float32, one float64 exp otherwise ----


_tanh_each = _each(tanh)


def _float32_ulps(values: np.ndarray) -> np.ndarray:
    """How many float32 ulps the float32 tanh is from the true tanh (NumPy's in float64) at each value."""
    out = np.empty_like(values)
    _tanh_each(values, out)
    assert out.dtype == np.float32
    reference = np.tanh(values.astype(np.float64))
    spacing = np.abs(np.spacing(reference.astype(np.float32))).astype(np.float64)
    return np.abs(out.astype(np.float64) - reference) / spacing


def test_float32_tanh_within_two_ulps():
    """Near 0 (the Taylor side), across the switch at 0.55, out to saturation, and at tiny and subnormal values."""
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.uniform(-12.0, 12.0, 1_000_000), rng.standard_normal(500_000),
                             rng.uniform(-0.6, 0.6, 500_000), rng.uniform(-1e-3, 1e-3, 100_000),
                             np.linspace(0.53, 0.57, 40_001), -np.linspace(0.53, 0.57, 40_001),
                             [1e-30, -1e-38, 1e-44, 2.0 ** -75, 2.0 ** -74, 9.0, 9.1, 50.0]]).astype(np.float32)
    ulps = _float32_ulps(values)
    assert ulps.max() <= 2.0, values[ulps.argmax()]


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=-20.0, max_value=20.0, width=32, allow_nan=False))
def test_property_float32_tanh_within_two_ulps(value):
    assert _float32_ulps(np.array([value], dtype=np.float32))[0] <= 2.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_special_values(dtype):
    values = np.array([0.0, -0.0, np.inf, -np.inf, 1e6, -1e6, np.nan], dtype=dtype)
    out = np.empty_like(values)
    _tanh_each(values, out)
    assert out[:6].tolist() == [0.0, 0.0, 1.0, -1.0, 1.0, -1.0] and np.isnan(out[6])
    if dtype == np.float32:  # the float32 form keeps -0.0's sign; the float64 one computes 1 - 1
        assert np.signbit(out[1])


def test_float64_tanh_is_tanh_through_one_exp():
    """The float64 form is ``1 - 2/(exp(2z) + 1)``: within 4e-16 of tanh (the error near 0 is absolute)."""
    values = np.concatenate([np.linspace(-30, 30, 2001), [-1e300, -800.0, 800.0, 1e300, 0.0, 1e-8, -3e-12]])
    out = np.empty_like(values)
    _tanh_each(values, out)
    for value, result in zip(values, out):
        assert abs(result - math.tanh(value)) <= 4e-16, value
        assert result == 1 - 2 / (exp(2 * value) + 1)
    assert tanh(800.0) == 1.0 and tanh(-800.0) == -1.0  # exp overflows to inf: the limit, no NaN


def test_float32_tanh_taylor_coefficients_are_the_series():
    """The coefficients of z^3 ... z^19 are tanh's Taylor series (SymPy's), rounded to float32."""
    import sympy

    z = sympy.Symbol("z")
    series = sympy.series(sympy.tanh(z), z, 0, 21).removeO()
    expected = [np.float32(float(series.coeff(z, power))) for power in range(3, 20, 2)]
    assert list(vector_math._TANH_TAYLOR_32) == expected
    assert series.coeff(z, 1) == 1


def test_a_loop_over_float32_tanh_vectorizes_in_float32():
    values = np.zeros(4, dtype=np.float32)
    _tanh_each(values, values.copy())
    assembly = _tanh_each.inspect_llvm()[(numba.float32[::1], numba.float32[::1])]
    assert "x float>" in assembly and "x double>" not in assembly
