"""Axis alignment (correlation ratio + one-to-one assignment) on codes whose answer is known."""
import numpy as np
import pytest

from gdrae.errors import GdraeError
from gdrae.metrics import alignment, explained_variance

SECTOR = (64, 64)  # the Sector2D grid: (radius, angle) classes


def polar_codes(grid):
    """A perfect polar map on the Sector2D grid: z0 a nonlinear increasing function of the
    radius index, z1 of the angle index, each centred and scaled to unit variance."""
    factors = grid(SECTOR)
    z0 = np.exp(factors[:, 0] / 20.0)
    z1 = np.tanh((factors[:, 1] - 40) / 10.0)
    codes = np.stack([z0, z1], axis=1)
    return (codes - codes.mean(0)) / codes.std(0)


def rotate(codes, degrees):
    """The codes turned by ``degrees`` in the (z0, z1) plane: z0' = cos z0 - sin z1, z1' = sin z0 + cos z1."""
    t = np.radians(degrees)
    return codes @ np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]).T


def test_hand_computed_two_by_two_grid(grid):
    # rows in grid order (0,0), (0,1), (1,0), (1,1): z = 2 v0 + v1 = 0, 1, 2, 3, Var z = 1.25;
    # E[z | v0] = 0.5, 2.5 (variance 1), E[z | v1] = 1, 2 (variance 0.25)
    codes = (2 * grid((2, 2))[:, :1] + grid((2, 2))[:, 1:]).astype(float)
    np.testing.assert_allclose(explained_variance(codes, (2, 2)), [[0.8, 0.2]], atol=1e-12)
    assert alignment(codes, (2, 2)) == pytest.approx(
        {"min_r2": 0.8, "mean_r2": 0.8, "axis0_r2": 0.8, "axis0_factor": 0.0}, abs=1e-12)


def test_perfect_polar_map_scores_one(grid):
    codes = polar_codes(grid)
    np.testing.assert_allclose(explained_variance(codes, SECTOR), np.eye(2), atol=1e-12)
    result = alignment(codes, SECTOR)
    assert result == pytest.approx({"min_r2": 1.0, "mean_r2": 1.0, "axis0_r2": 1.0, "axis0_factor": 0.0,
                                    "axis1_r2": 1.0, "axis1_factor": 1.0}, abs=1e-12)
    assert list(result) == ["min_r2", "mean_r2", "axis0_r2", "axis0_factor", "axis1_r2", "axis1_factor"]
    assert all(isinstance(v, float) for v in result.values())


def test_non_monotone_function_of_one_factor_scores_one(grid):
    # cos over a full turn of the angle index: linear correlation with the angle is about 0, eta^2 is 1
    factors = grid(SECTOR)
    codes = np.stack([np.sqrt(factors[:, 0]), np.cos(2 * np.pi * factors[:, 1] / 64)], axis=1)
    assert abs(np.corrcoef(codes[:, 1], factors[:, 1])[0, 1]) < 0.1
    assert alignment(codes, SECTOR)["min_r2"] == pytest.approx(1.0, abs=1e-12)


def test_swapped_axes_score_one_with_swapped_factors(grid):
    result = alignment(polar_codes(grid)[:, ::-1], SECTOR)
    assert result["min_r2"] == pytest.approx(1.0, abs=1e-12)
    assert (result["axis0_factor"], result["axis1_factor"]) == (1.0, 0.0)  # z0 runs along the angle


@pytest.mark.parametrize("degrees", [30, 45, 60])
def test_rotated_map_scores_cos_squared(grid, degrees):
    # z0' = cos(t) a - sin(t) b with a = f(radius), b = g(angle) centred, unit variance and (on the
    # complete grid) uncorrelated: Var z0' = 1, E[z0' | radius] = cos(t) a, so eta^2 = cos^2(t) on the
    # radius and sin^2(t) on the angle; z1' = sin(t) a + cos(t) b the other way round
    c2, s2 = np.cos(np.radians(degrees)) ** 2, np.sin(np.radians(degrees)) ** 2
    eta = explained_variance(rotate(polar_codes(grid), degrees), SECTOR)
    np.testing.assert_allclose(eta, [[c2, s2], [s2, c2]], atol=1e-12)
    result = alignment(rotate(polar_codes(grid), degrees), SECTOR)
    best = max(c2, s2)  # past 45 degrees the better pairing is the swapped one
    assert result["min_r2"] == pytest.approx(best, abs=1e-12)
    assert result["axis0_r2"] == pytest.approx(best, abs=1e-12)
    assert result["axis1_r2"] == pytest.approx(best, abs=1e-12)


def test_thirty_degrees_is_three_quarters_and_keeps_the_pairing(grid):
    result = alignment(rotate(polar_codes(grid), 30), SECTOR)
    assert result["min_r2"] == pytest.approx(0.75, abs=1e-12) and result["mean_r2"] == pytest.approx(0.75, abs=1e-12)
    assert (result["axis0_factor"], result["axis1_factor"]) == (0.0, 1.0)
    assert result["min_r2"] < alignment(polar_codes(grid), SECTOR)["min_r2"]


def test_forty_five_degrees_is_one_half_on_both(grid):
    result = alignment(rotate(polar_codes(grid), 45), SECTOR)
    assert result["axis0_r2"] == pytest.approx(0.5, abs=1e-12)
    assert result["axis1_r2"] == pytest.approx(0.5, abs=1e-12)
    assert {result["axis0_factor"], result["axis1_factor"]} == {0.0, 1.0}


def test_constant_code_scores_zero():
    # 7.7 is not exact in binary: the grid mean differs from it by rounding, and two rounding
    # errors divided (Var of slice means / Var) would give a share of about 0.25
    codes = np.full((64 * 64, 2), 7.7)
    np.testing.assert_array_equal(explained_variance(codes, SECTOR), np.zeros((2, 2)))
    result = alignment(codes, SECTOR)
    assert result["min_r2"] == result["mean_r2"] == result["axis0_r2"] == result["axis1_r2"] == 0.0


def test_noise_scores_near_zero():
    # with no relation, eta^2 on a factor of n classes over N rows averages (n - 1) / (N - 1) = 63 / 4095
    # (standard deviation about 0.003)
    codes = np.random.RandomState(0).randn(64 * 64, 2)
    eta = explained_variance(codes, SECTOR)
    np.testing.assert_allclose(eta, 63 / 4095, atol=0.012)
    assert alignment(codes, SECTOR)["min_r2"] < 0.03


def test_more_codes_than_factors(grid):
    # z2 = z0 + z1 explains half of itself by each factor; the best total pairs z0 and z1
    codes = polar_codes(grid)
    codes = np.concatenate([codes, codes.sum(1, keepdims=True)], axis=1)
    eta = explained_variance(codes, SECTOR)
    assert eta.shape == (3, 2)
    np.testing.assert_allclose(eta[2], [0.5, 0.5], atol=1e-12)
    result = alignment(codes, SECTOR)
    assert result["min_r2"] == pytest.approx(1.0, abs=1e-12)
    assert (result["axis0_factor"], result["axis1_factor"], result["axis2_factor"]) == (0.0, 1.0, -1.0)
    assert result["axis2_r2"] == 0.0


def test_fewer_codes_than_factors(grid):
    codes = polar_codes(grid)[:, 1:]  # only the angle axis
    result = alignment(codes, SECTOR)
    assert result == pytest.approx({"min_r2": 1.0, "mean_r2": 1.0, "axis0_r2": 1.0, "axis0_factor": 1.0},
                                   abs=1e-12)


def test_single_valued_factor_keeps_its_index(grid):
    # factor 0 has one value: a zero column, never assigned; indices refer to the given factor_sizes
    sizes = (1, 4, 5)
    codes = grid(sizes)[:, ::-1].astype(float)  # z0 = factor 2, z1 = factor 1, z2 = the constant factor 0
    eta = explained_variance(codes, sizes)
    np.testing.assert_allclose(eta, [[0, 0, 1], [0, 1, 0], [0, 0, 0]], atol=1e-12)
    result = alignment(codes, sizes)
    assert (result["axis0_factor"], result["axis1_factor"], result["axis2_factor"]) == (2.0, 1.0, -1.0)
    assert result["min_r2"] == pytest.approx(1.0, abs=1e-12)


def test_seed_is_accepted_and_changes_nothing(grid):
    codes = rotate(polar_codes(grid), 30)
    assert alignment(codes, SECTOR, seed=0) == alignment(codes, SECTOR, seed=5)


@pytest.mark.parametrize("codes, sizes, message", [
    (np.zeros((10, 2)), (4, 4), r"expected 16 rows .* got 10"),
    (np.zeros(16), (4, 4), r"expected a 2-D \(N, D\) array"),
    (np.full((16, 2), np.nan), (4, 4), "expected finite values"),
    (np.zeros((16, 2)), (1, 16, 0), "expected one or more positive ints"),
])
def test_bad_input_is_one_line_error(codes, sizes, message):
    with pytest.raises(GdraeError, match=message):
        alignment(codes, sizes)
    with pytest.raises(GdraeError, match=message):
        explained_variance(codes, sizes)
