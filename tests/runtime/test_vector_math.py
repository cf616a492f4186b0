"""The kernels' ``exp`` (symcnn.runtime.vector_math) against NumPy's, and that a loop over it vectorizes."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from symcnn.runtime.vector_math import exp


@njit(cache=False)
def _exp_each(values, out):
    for index in range(values.shape[0]):
        out[index] = exp(values[index])


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
"""


def test_exact_under_a_fast_math_caller(tmp_path):
    """A kernel that may reassociate (a reduction's) must not pass that on to exp: its rounding to an integer
    and its exact remainder would be folded away (exp(1) came out 2, and the plain call after it too)."""
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", _FAST_MATH_CALLER], capture_output=True, text=True,
                            env=environment, cwd=Path(__file__).resolve().parents[2], timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
