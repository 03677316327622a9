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
    """Each code column is a factor column with its rows shuffled independently."""
    sizes = (4, 5, 6)
    rng = np.random.RandomState(1)
    codes = grid_factors(sizes).astype(float)
    for j in range(codes.shape[1]):
        codes[:, j] = rng.permutation(codes[:, j])
    return codes, sizes
