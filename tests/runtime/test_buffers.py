"""Batch norm's per-channel batch statistics (symcnn.runtime.buffers.channel_statistics) against NumPy in float64."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symcnn.runtime.buffers import channel_statistics


def _reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    wide = x.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    return wide.mean(axis=axes), wide.var(axis=axes, ddof=1)


@settings(max_examples=40, deadline=None)
@given(shape=st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(1, 7), st.integers(1, 7)),
       dtype=st.sampled_from([np.float32, np.float64]), offset=st.floats(-1e3, 1e3), seed=st.integers(0, 2**32 - 1))
def test_each_channels_mean_and_unbiased_variance_are_numpys_in_float64(shape, dtype, offset, seed):
    x = (np.random.default_rng(seed).standard_normal(shape) * 3 + offset).astype(dtype)
    if x.size // shape[1] < 2:
        return  # one value a channel: see the NaN test
    mean, unbiased = channel_statistics(x)
    expected_mean, expected_var = _reference(x)
    assert mean.dtype == unbiased.dtype == dtype
    # float64 sums: the float32 results are the exact statistics rounded once (a few ulps of the offset)
    tolerance = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(mean, expected_mean, rtol=tolerance, atol=tolerance * (abs(offset) + 3))
    np.testing.assert_allclose(unbiased, expected_var, rtol=tolerance * 10, atol=tolerance)


def test_two_dimensional_and_strided_inputs_are_taken_as_they_are():
    x = np.random.default_rng(1).standard_normal((6, 4, 5, 3))
    strided = x[:, :, ::2, :]
    for values in (strided, x[:, :, 0, 0]):
        for got, expected in zip(channel_statistics(values), _reference(values)):
            np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_a_channel_of_one_value_has_a_nan_variance_as_in_pytorch():
    mean, unbiased = channel_statistics(np.array([[[[2.5]], [[-1.0]]]], dtype=np.float32))
    assert mean.tolist() == [2.5, -1.0]
    assert np.isnan(unbiased).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_large_offset_does_not_cancel(dtype):
    # two passes (the mean, then the squares about it): E[x^2] - E[x]^2 in one pass would lose about
    # 14 of float64's 16 digits here (E[x^2] ~ 1e14, the variance ~ 1)
    x = (1e7 + np.random.default_rng(2).standard_normal((16, 3, 8, 8))).astype(dtype)
    _, unbiased = channel_statistics(x)
    np.testing.assert_allclose(unbiased, _reference(x)[1], rtol=1e-4)
