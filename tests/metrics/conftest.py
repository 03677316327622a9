"""Shared helpers for the metric tests: small factor grids in grid order."""
import numpy as np
import pytest


def grid_factors(sizes):
    """Factor classes (N, K) of every grid cell, row i = unravel_index(i, sizes)."""
    return np.stack(np.unravel_index(np.arange(int(np.prod(sizes))), sizes), axis=1)


@pytest.fixture
def grid():
    """The grid_factors helper, for tests that build their own grids."""
    return grid_factors


@pytest.fixture
def perfect():
    """Codes equal to the factors on a small grid."""
    sizes = (4, 5, 6)
    return grid_factors(sizes).astype(float), sizes


@pytest.fixture
def permuted():
    """Codes independent of the factors: each column is a (jittered) factor
    column with its rows shuffled independently.

    Equal factor sizes give every factor the same estimation bias of the MI
    and ten values x 20 bins keep its relative spread small, so the plug-in
    MI shows no strong spurious favourite factor.
    """
    sizes = (10, 10, 10)
    rng = np.random.RandomState(1)
    codes = grid_factors(sizes) + rng.rand(1000, 3)
    return np.stack([rng.permutation(c) for c in codes.T], axis=1), sizes
