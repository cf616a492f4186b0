"""Winograd's minimal filtering F(m, r) (symcnn.symbolic.winograd): proved by expansion, against the
registry's conv2d formula and the published matrices, and in floating point."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sympy import Matrix, Rational

from symcnn.symbolic.winograd import DEFAULT_POINTS, check_1d, check_2d, minimal_filtering

# Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016), section 4.1 and 4.2,
# typed from the paper.
LAVIN_F23 = dict(
    BT=Matrix([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]),
    G=Matrix([[1, 0, 0], [Rational(1, 2), Rational(1, 2), Rational(1, 2)],
              [Rational(1, 2), -Rational(1, 2), Rational(1, 2)], [0, 0, 1]]),
    AT=Matrix([[1, 1, 1, 0], [0, 1, -1, -1]]),
)
LAVIN_F43 = dict(
    BT=Matrix([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
               [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]),
    G=Matrix([[Rational(1, 4), 0, 0], [-Rational(1, 6), -Rational(1, 6), -Rational(1, 6)],
              [-Rational(1, 6), Rational(1, 6), -Rational(1, 6)], [Rational(1, 24), Rational(1, 12), Rational(1, 6)],
              [Rational(1, 24), -Rational(1, 12), Rational(1, 6)], [0, 0, 1]]),
    AT=Matrix([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
)


def test_f43_is_the_published_algorithm():
    f43 = minimal_filtering(4, 3)
    assert (f43.BT, f43.G, f43.AT) == (LAVIN_F43["BT"], LAVIN_F43["G"], LAVIN_F43["AT"])


def test_f23_is_the_published_algorithm_up_to_the_scale_of_each_point():
    # the paper's F(2, 3) scales the rows of points 0 and infinity by -1 in two of the three matrices;
    # each point's term (A^T column) x (G row) x (B^T row) is what the algorithm sums, and is unchanged
    ours = minimal_filtering(2, 3)
    for point in range(4):
        term = [ours.AT[:, point] * ours.G[point, :] * ours.BT[point, k] for k in range(4)]
        published = [LAVIN_F23["AT"][:, point] * LAVIN_F23["G"][point, :] * LAVIN_F23["BT"][point, k]
                     for k in range(4)]
        assert term == published


@pytest.mark.parametrize("m, r", [(1, 1), (2, 2), (3, 2), (2, 3), (3, 3), (4, 3), (6, 3), (2, 5), (4, 5), (1, 7)])
def test_one_dimensional_algorithm_is_the_correlation(m, r):
    assert check_1d(minimal_filtering(m, r))


@pytest.mark.parametrize("m, r", [(2, 2), (3, 2), (2, 3), (4, 3)])
def test_nested_algorithm_is_the_conv2d_formula(m, r):
    assert check_2d(minimal_filtering(m, r))


def test_other_points_give_other_matrices_and_the_same_sums():
    chosen = minimal_filtering(2, 3, points=[0, Rational(1, 2), -3])
    assert chosen.points == (0, Rational(1, 2), -3) and chosen.BT != minimal_filtering(2, 3).BT
    assert check_1d(chosen)


def test_a_wrong_matrix_is_caught():
    f23 = minimal_filtering(2, 3)
    one_entry_off = Matrix(4, 4, lambda i, j: 1 if (i, j) == (1, 2) else 0)
    broken = type(f23)(m=2, r=3, points=f23.points, AT=f23.AT, G=f23.G, BT=f23.BT + one_entry_off)
    assert not check_1d(broken) and not check_2d(broken)


def test_counts():
    f43 = minimal_filtering(4, 3)
    assert (f43.tile, f43.multiplications_2d, f43.direct_multiplications_2d) == (6, 36, 144)


@pytest.mark.parametrize("arguments, message", [
    ((0, 3), "m: must be an integer >= 1, got 0"),
    ((2, True), "r: must be an integer >= 1, got True"),
    ((2.0, 3), "m: must be an integer >= 1, got 2.0"),
    ((2, 3, [0, 1]), "points: must be 3 distinct finite numbers (m + r - 2 for F(2, 3)), got [0, 1]"),
    ((2, 3, [0, 1, "inf"]), "points: must be 3 distinct finite numbers"),
    ((2, 3, [0, 1, float("nan")]), "points: must be 3 distinct finite numbers"),
    ((9, 8), f"m + r - 2: at most {len(DEFAULT_POINTS)} default points, F(9, 8) needs 15"),
])
def test_bad_arguments(arguments, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]").replace("+", r"\+")):
        minimal_filtering(*arguments)


def _float_matrices(transforms):
    return tuple(np.array(matrix.tolist(), dtype=np.float64) for matrix in (transforms.AT, transforms.G, transforms.BT))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([(2, 3), (4, 3), (3, 2), (2, 5)]), st.integers(0, 2 ** 32 - 1))
def test_float64_tile_matches_the_direct_correlation(shape, seed):
    m, r = shape
    AT, G, BT = _float_matrices(minimal_filtering(m, r))
    rng = np.random.default_rng(seed)
    d, g = rng.standard_normal((m + r - 1, m + r - 1)), rng.standard_normal((r, r))
    tile = AT @ ((G @ g @ G.T) * (BT @ d @ BT.T)) @ AT.T
    direct = np.array([[np.sum(d[i:i + r, j:j + r] * g) for j in range(m)] for i in range(m)])
    np.testing.assert_allclose(tile, direct, rtol=0, atol=1e-12 * (1 + np.abs(d).max() * np.abs(g).sum()) * 64)
