import numpy as np
import pytest

from gdrae.errors import GdraeError
from gdrae.data.grid import factors_to_index
from gdrae.metrics.sampling import check_inputs, sample_codes


def test_sample_codes_look_up_the_grid_order(grid):
    sizes = (2, 3, 4)
    codes = np.arange(24, dtype=float)[:, None] * 10
    factors = np.array([[1, 2, 3], [0, 0, 1], [1, 0, 0]])
    assert codes[factors_to_index(factors, sizes)][:, 0].tolist() == [230.0, 10.0, 120.0]
    z, f = sample_codes(grid(sizes), sizes, 50, np.random.RandomState(3))
    assert np.array_equal(z, f) and f.shape == (50, 3)  # the grid's code of a cell is its factors


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
