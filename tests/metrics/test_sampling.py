import numpy as np
import pytest

from gdrae.errors import GdraeError
from gdrae.metrics.sampling import check_inputs, lookup, sample_factors


def test_lookup_matches_grid_order(grid):
    sizes = (2, 3, 4)
    codes = np.arange(24, dtype=float)[:, None] * 10
    factors = np.array([[1, 2, 3], [0, 0, 1], [1, 0, 0]])
    assert lookup(codes, sizes, factors)[:, 0].tolist() == [230.0, 10.0, 120.0]
    assert np.array_equal(lookup(grid(sizes), sizes, grid(sizes)), grid(sizes))


def test_sample_factors_in_range_and_seeded():
    a = sample_factors(np.random.RandomState(3), (2, 7), (50, 4))
    b = sample_factors(np.random.RandomState(3), (2, 7), (50, 4))
    assert a.shape == (50, 4, 2) and np.array_equal(a, b)
    assert a[..., 0].max() == 1 and a[..., 1].max() == 6 and a.min() == 0


def test_single_value_factor_is_dropped_without_reordering(grid):
    codes, sizes = check_inputs(np.zeros((6, 2)), (2, 1, 3))
    assert sizes == (2, 3)
    full = grid((2, 1, 3))
    assert np.array_equal(grid(sizes), full[:, [0, 2]])


@pytest.mark.parametrize("codes, sizes, message", [
    (np.zeros((5, 2)), (2, 3), "expected 6 rows"),
    (np.zeros(6), (2, 3), "2-D"),
    (np.full((6, 1), np.nan), (2, 3), "finite"),
    (np.zeros((6, 1)), (2, 0, 3), "positive"),
    (np.zeros((1, 1)), (1, 1), "two or more values"),
    (np.zeros((6, 1)), "ab", "ints"),
])
def test_bad_inputs_raise_gdrae_error(codes, sizes, message):
    with pytest.raises(GdraeError, match=message):
        check_inputs(codes, sizes)
