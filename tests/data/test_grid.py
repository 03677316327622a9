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
    f = grid.sample_factors(30000, SIZES, np.random.RandomState(0))
    assert f.shape == (30000, 3) and f.min() == 0
    for k, size in enumerate(SIZES):
        counts = np.bincount(f[:, k], minlength=size)
        assert len(counts) == size
        np.testing.assert_allclose(counts / 30000, 1 / size, atol=0.02)


def test_sample_factors_in_range_and_seeded():
    a = grid.sample_factors((50, 4), (2, 7), np.random.RandomState(3))
    b = grid.sample_factors((50, 4), (2, 7), np.random.RandomState(3))
    assert a.shape == (50, 4, 2) and np.array_equal(a, b)
    assert a[..., 0].max() == 1 and a[..., 1].max() == 6 and a.min() == 0


def test_sample_factors_draws_as_disentanglement_lib():
    """One randint per factor, in factor order: the metrics' samples for a seed are that library's."""
    rng = np.random.RandomState(5)
    expected = np.stack([rng.randint(s, size=7) for s in SIZES], axis=-1)
    np.testing.assert_array_equal(grid.sample_factors(7, SIZES, np.random.RandomState(5)), expected)
