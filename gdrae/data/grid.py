"""The factor grid: grid index <-> factor indices, and sampling factor combinations (the metrics' sampling).

The factor grid holds every combination of the factors once, in row-major
("grid") order: cell ``i`` is the combination whose factor indices are
``np.unravel_index(i, factor_sizes)`` (the last factor changes fastest).
Pipelines hand out rows and the metrics take code tables in that order; a
cache stores its rows shuffled, each with its factors
(:attr:`gdrae.data.cache.Cache.grid_index` maps a stored row to its cell).
These small pure functions are the code that knows the grid order.
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


def sample_factors(shape: int | tuple[int, ...], factor_sizes: FactorSizes, rng: np.random.RandomState) -> np.ndarray:
    """Factor combinations drawn uniformly (with replacement): ``shape + (K,)`` int.

    One ``rng.randint(size_k, size=shape)`` per factor, in factor order: the
    draws of disentanglement_lib's ``sample_factors``, so a metric's samples
    (and its value) for a seed match that library's. Hence a
    ``numpy.random.RandomState``, not a ``Generator``.
    """
    shape = (shape,) if np.isscalar(shape) else tuple(shape)
    return np.stack([rng.randint(s, size=shape) for s in factor_sizes], axis=-1)
