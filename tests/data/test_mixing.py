import numpy as np
import pytest

from gdrae.data.mixing import balance_ratio, chi_square, distinct_ratio, expected_distinct


def test_expected_distinct_of_uniform_draws():
    assert expected_distinct(1, 5) == 1.0
    assert expected_distinct(4, 1) == 1.0
    assert expected_distinct(2, 2) == pytest.approx(1.5)  # both draws equal half the time
    assert expected_distinct(720, 64) == pytest.approx(720 * (1 - (719 / 720) ** 64))


def test_distinct_ratio_counts_combinations_of_the_given_factors():
    sizes = (2, 2)  # four combinations; two draws hold 4 (1 - (3/4)^2) = 1.75 of them on average
    same = np.array([[1, 0], [1, 0]])
    different = np.array([[1, 0], [0, 0]])
    assert distinct_ratio([same], sizes) == pytest.approx(1 / 1.75)
    assert distinct_ratio([different], sizes) == pytest.approx(2 / 1.75)
    assert distinct_ratio([same, different], sizes) == pytest.approx(1.5 / 1.75)


def test_chi_square_sums_the_factors():
    group = np.array([[0, 0], [0, 1], [0, 2], [1, 0]])
    # factor 0 counts (3, 1) against 2 each: 1/2 + 1/2; factor 1 counts (2, 1, 1) against 4/3 each
    expected = 1.0 + ((2 - 4 / 3) ** 2 + 2 * (1 - 4 / 3) ** 2) / (4 / 3)
    assert chi_square(group, (2, 3)) == pytest.approx(expected)


def test_balance_ratio_against_uniform_draws_without_replacement():
    # two draws from a grid of four rows, factor of size 2: E[chi2] = 1 * (4 - 2) / (4 - 1)
    skewed = np.array([[0], [0]])  # counts (2, 0) against 1 each: chi2 = 2
    assert balance_ratio([skewed], (2,), population=4) == pytest.approx((2 / 3) / 2)
    assert balance_ratio([np.array([[0], [1]])], (2,), population=4) == float("inf")  # perfectly balanced
