"""The factor grid: row index <-> factor indices, and sampling factor combinations.

A cache stores every combination of its factors exactly once, in row-major
("grid") order: row ``i`` holds the image whose factor indices are
``np.unravel_index(i, factor_sizes)`` (the last factor changes fastest).
These small pure functions are all the code that needs to know that.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

FactorSizes = Sequence[int]


def grid_size(factor_sizes: FactorSizes) -> int:
    """Number of rows of a complete grid: the product of the factor sizes."""
    return int(np.prod(np.asarray(factor_sizes, dtype=np.int64)))


def index_to_factors(index: np.ndarray | int, factor_sizes: FactorSizes) -> np.ndarray:
    """Factor indices of grid row(s) ``index``: shape ``index.shape + (K,)``, int64."""
    parts = np.unravel_index(np.asarray(index, dtype=np.int64), tuple(factor_sizes))
    return np.stack(parts, axis=-1).astype(np.int64)


def factors_to_index(factors: np.ndarray, factor_sizes: FactorSizes) -> np.ndarray:
    """Grid row(s) of factor indices ``factors`` (shape ``(..., K)``), int64."""
    factors = np.asarray(factors, dtype=np.int64)
    return np.ravel_multi_index(tuple(np.moveaxis(factors, -1, 0)), tuple(factor_sizes)).astype(np.int64)


def all_factors(factor_sizes: FactorSizes) -> np.ndarray:
    """The whole grid in grid order: ``(prod(factor_sizes), K)`` int64."""
    return index_to_factors(np.arange(grid_size(factor_sizes)), factor_sizes)


def sample_factors(n: int, factor_sizes: FactorSizes, rng: np.random.Generator) -> np.ndarray:
    """``n`` factor combinations drawn uniformly (with replacement): ``(n, K)`` int64."""
    sizes = np.asarray(factor_sizes, dtype=np.int64)
    return rng.integers(0, sizes, size=(n, len(sizes)), dtype=np.int64)


def sample_factors_fixed(
    n: int,
    factor_sizes: FactorSizes,
    fixed: int,
    rng: np.random.Generator,
    value: int | None = None,
) -> np.ndarray:
    """``n`` uniform factor combinations that all share one value of factor ``fixed``.

    The shared value is ``value`` or, when None, drawn uniformly. This is the
    sampling step of the beta-VAE and FactorVAE scores.
    Reference: Higgins et al., "beta-VAE", ICLR 2017; Kim & Mnih, "Disentangling by Factorising", ICML 2018.
    """
    factors = sample_factors(n, factor_sizes, rng)
    if value is None:
        value = int(rng.integers(0, factor_sizes[fixed]))
    factors[:, fixed] = value
    return factors
