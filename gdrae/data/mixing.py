"""How well mixed a stream of batches is, against uniform sampling: pure functions of factor labels.

Two figures, each a ratio that is about 1 for batches drawn uniformly
without replacement and far below 1 for batches that dwell on a few factor
combinations (for example rows read in grid order, chunk by chunk):

- :func:`distinct_ratio`: distinct combinations of some factors in a group
  of ``n`` rows, divided by ``K (1 - (1 - 1/K)^n)``, the number that ``n``
  uniform draws among ``K`` combinations hold on average.
- :func:`balance_ratio`: how far the frequency of each factor value is from
  uniform (Pearson's chi-square summed over factors), expected value for
  uniform draws without replacement divided by the measured value.

``bench/data.py`` prints both for the training loader; the loader's tests
use them too.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def expected_distinct(k: int, n: int) -> float:
    """Distinct values among ``n`` uniform draws (with replacement) from ``k``, on average."""
    return k * (1.0 - (1.0 - 1.0 / k) ** n)


def distinct_ratio(groups: Sequence[np.ndarray], sizes: Sequence[int]) -> float:
    """Mean over ``groups`` of distinct factor combinations / :func:`expected_distinct`.

    Each group is an integer array (n, len(sizes)) of factor classes (for
    example one batch, or ten consecutive batches); ``sizes`` are those
    factors' sizes, so there are ``K = prod(sizes)`` combinations.
    """
    k = int(np.prod(sizes, dtype=np.int64))
    ratios = []
    for group in groups:
        combos = np.ravel_multi_index(tuple(np.asarray(group, dtype=np.int64).T), tuple(sizes))
        ratios.append(len(np.unique(combos)) / expected_distinct(k, len(group)))
    return float(np.mean(ratios))


def chi_square(group: np.ndarray, sizes: Sequence[int]) -> float:
    """Pearson's chi-square of each factor's value counts against uniform, summed over the factors."""
    group = np.asarray(group, dtype=np.int64)
    n, total = len(group), 0.0
    for k, size in enumerate(sizes):
        counts = np.bincount(group[:, k], minlength=size)
        expected = n / size
        total += float(np.sum((counts - expected) ** 2) / expected)
    return total


def balance_ratio(groups: Sequence[np.ndarray], sizes: Sequence[int], population: int) -> float:
    """Expected over measured chi-square of the factor values, summed over ``groups``.

    For ``n`` uniform draws without replacement from a complete grid of
    ``population`` rows, the chi-square of a factor of size ``s`` has mean
    ``(s - 1) (population - n) / (population - 1)``. The ratio is about 1 for
    uniform batches; 1/17 means the values are 17 times further from uniform.
    """
    expected = sum((sum(sizes) - len(sizes)) * (population - len(g)) / (population - 1) for g in groups)
    measured = sum(chi_square(g, sizes) for g in groups)
    return float(expected / measured) if measured > 0 else float("inf")
