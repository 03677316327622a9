"""Input checks shared by every metric, and drawing codes from a code table.

A code table is in grid order: ``codes[i]`` is the representation of the
image whose factor classes are ``np.unravel_index(i, factor_sizes)``. The
sampling metrics draw factor combinations uniformly from the grid
(:mod:`gdrae.data.grid` owns the grid, its sampling included) and look their
codes up in the table; nothing is re-encoded.
"""
from __future__ import annotations

import numpy as np

from gdrae.data.grid import factors_to_index, sample_factors
from gdrae.errors import GdraeError


def check_inputs(codes, factor_sizes) -> tuple[np.ndarray, tuple[int, ...]]:
    """Validate a code table against its factor grid.

    Returns the codes as a float64 (N, D) array and the sizes of the factors
    that vary. A factor with a single value is no factor of variation (it
    carries no information and would only add 0/0 terms; disentanglement_lib
    likewise leaves dSprites' one colour out); dropping its size-1 axis leaves
    the grid order of the rows unchanged. Raises GdraeError naming what is
    wrong otherwise.
    """
    try:
        sizes = tuple(int(s) for s in factor_sizes)
    except (TypeError, ValueError):
        raise GdraeError(f"factor_sizes: expected a sequence of ints, got {factor_sizes!r}") from None
    if not sizes or any(s < 1 for s in sizes):
        raise GdraeError(f"factor_sizes: expected one or more positive ints, got {sizes}")
    if all(s == 1 for s in sizes):
        raise GdraeError(f"factor_sizes: expected at least one factor with two or more values, got {sizes}")
    codes = np.asarray(codes)
    if codes.ndim != 2 or codes.shape[1] < 1:
        raise GdraeError(f"codes: expected a 2-D (N, D) array with D >= 1, got shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.number) or np.issubdtype(codes.dtype, np.complexfloating):
        raise GdraeError(f"codes: expected real numbers, got dtype {codes.dtype}")
    n = int(np.prod(sizes))
    if codes.shape[0] != n:
        raise GdraeError(f"codes: expected {n} rows (prod of factor_sizes {sizes}), got {codes.shape[0]}")
    codes = codes.astype(np.float64, copy=False)
    if not np.all(np.isfinite(codes)):
        raise GdraeError("codes: expected finite values, got NaN or inf")
    return codes, tuple(s for s in sizes if s > 1)


def check_count(name: str, value, minimum: int = 1) -> int:
    """Validate a sample count keyword argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise GdraeError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def sample_codes(codes: np.ndarray, factor_sizes: tuple[int, ...], num: int,
                 rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """``num`` uniformly drawn grid cells (:func:`gdrae.data.grid.sample_factors`): their codes (num, D) and factors (num, K)."""
    factors = sample_factors(num, factor_sizes, rng)
    return codes[factors_to_index(factors, factor_sizes)], factors
