"""seed_agreement on hand-built code tables whose answer is known."""
import math

import numpy as np
import pytest

from gdrae.metrics import seed_agreement
from gdrae.metrics.seed_agreement import correlation_matrix


def _square_grid(n: int = 21) -> np.ndarray:
    u = np.linspace(-1, 1, n)
    return np.stack(np.meshgrid(u, u, indexing="ij"), axis=-1).reshape(-1, 2)


def test_equal_up_to_permutation_sign_and_affine_rescaling_scores_one():
    a = np.random.RandomState(0).randn(500, 3)
    b = np.stack([-3.0 * a[:, 2] + 1.0, 0.5 * a[:, 0] - 2.0, 7.0 * a[:, 1]], axis=1)
    result = seed_agreement(a, b)
    assert result["pairs"] == [(0, 1), (1, 2), (2, 0)]
    assert result["min"] == pytest.approx(1.0, abs=1e-12)
    assert result["r2"] == pytest.approx([1.0, 1.0, 1.0], abs=1e-12)


@pytest.mark.parametrize("degrees", [0, 10, 30, 44])
def test_a_rotated_square_grid_scores_cos_squared(degrees):
    grid = _square_grid()
    t = math.radians(degrees)
    rotated = grid @ np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
    result = seed_agreement(grid, rotated)
    assert result["pairs"] == [(0, 0), (1, 1)]
    assert result["min"] == pytest.approx(math.cos(t) ** 2, abs=1e-12)


def test_beyond_45_degrees_the_other_pairing_wins():
    grid = _square_grid()
    t = math.radians(60)
    rotated = grid @ np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
    result = seed_agreement(grid, rotated)
    assert result["pairs"] == [(0, 1), (1, 0)]
    assert result["min"] == pytest.approx(math.sin(t) ** 2, abs=1e-12)


def test_a_constant_axis_scores_zero():
    a = np.random.RandomState(1).randn(100, 2)
    b = np.stack([a[:, 0], np.full(100, 3.0)], axis=1)
    assert correlation_matrix(a, b)[:, 1].tolist() == [0.0, 0.0]
    assert seed_agreement(a, b)["min"] == 0.0


def test_tables_of_different_points_are_refused():
    with pytest.raises(ValueError, match="same N"):
        seed_agreement(np.zeros((10, 2)), np.zeros((9, 2)))
