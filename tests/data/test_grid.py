import numpy as np
import pytest

from gdrae.data import grid

SIZES = (3, 4, 5)


def test_index_and_factors_are_inverse_and_follow_unravel_index():
    idx = np.arange(60)
    factors = grid.index_to_factors(idx, SIZES)
    np.testing.assert_array_equal(factors, np.stack(np.unravel_index(idx, SIZES), axis=1))
    np.testing.assert_array_equal(grid.factors_to_index(factors, SIZES), idx)
    np.testing.assert_array_equal(grid.all_factors(SIZES), factors)
    assert grid.grid_size(SIZES) == 60
    assert grid.index_to_factors(59, SIZES).tolist() == [2, 3, 4]  # last factor changes fastest


def test_out_of_range_factors_are_refused():
    with pytest.raises(ValueError):
        grid.factors_to_index(np.array([[3, 0, 0]]), SIZES)


def test_uniform_sampling_covers_each_factor_evenly():
    rng = np.random.default_rng(0)
    f = grid.sample_factors(30000, SIZES, rng)
    assert f.shape == (30000, 3) and f.min() == 0
    for k, size in enumerate(SIZES):
        counts = np.bincount(f[:, k], minlength=size)
        assert len(counts) == size
        np.testing.assert_allclose(counts / 30000, 1 / size, atol=0.02)


def test_sampling_with_a_fixed_factor_shares_its_value_and_is_seeded():
    f = grid.sample_factors_fixed(500, SIZES, fixed=1, rng=np.random.default_rng(3))
    assert len(np.unique(f[:, 1])) == 1
    assert len(np.unique(f[:, 2])) == 5  # the others still vary
    again = grid.sample_factors_fixed(500, SIZES, fixed=1, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(f, again)
    g = grid.sample_factors_fixed(10, SIZES, fixed=0, rng=np.random.default_rng(3), value=2)
    assert (g[:, 0] == 2).all()
