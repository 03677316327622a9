"""Axis alignment: how much of each latent axis one factor explains, exactly over the grid.

For code dimension j and factor k the correlation ratio

    eta^2_jk = Var_k(E[z_j | v_k]) / Var(z_j)

is the share of z_j's variance explained by factor k alone, through any
function of it (monotone or not). On a complete grid every slice v_k = c is a
fixed set of rows, so the conditional means are exact averages and all
variances are population variances over the grid. A constant code dimension
scores 0 against every factor; a factor with a single value gets a zero
column (it explains nothing) and takes no part in the assignment.

Code dimensions are then paired with factors one to one so that the total
explained share is largest (``scipy.optimize.linear_sum_assignment`` on the
D x K matrix); with D codes and K varying factors min(D, K) pairs are made,
and the rest get no score. The headline ``min_r2`` is the smallest
share over the pairs: for Sector2D (factors radius, angle), ``min_r2 >= 0.95``
reads as "each latent axis runs along one polar coordinate of the sector"
(docs/model.md section 7). A rotation by theta of an otherwise perfect map with
independent, equal-variance factor functions gives cos^2(theta) per axis.

Reference: K. Pearson, "On the General Theory of Skew Correlation and
Non-linear Regression", 1905 (the correlation ratio); H. W. Kuhn, "The
Hungarian Method for the Assignment Problem", 1955 (the pairing).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from gdrae.metrics.sampling import check_inputs


def explained_variance(codes, factor_sizes) -> np.ndarray:
    """The correlation ratios eta^2_jk (D, K), one column per entry of ``factor_sizes``.

    Entry (j, k) is Var_k(E[z_j | v_k]) / Var(z_j) in [0, 1]; 0 for a
    constant code dimension and for a factor with a single value.
    """
    codes, _ = check_inputs(codes, factor_sizes)
    sizes = tuple(int(s) for s in factor_sizes)
    dims = codes.shape[1]
    grid = codes.reshape(*sizes, dims)  # grid order: axis k of the grid is factor k
    between = np.empty((dims, len(sizes)))
    for k in range(len(sizes)):
        others = tuple(a for a in range(len(sizes)) if a != k)
        slice_means = grid.mean(axis=others)  # (n_k, D): E[z | v_k = c] for each class c
        between[:, k] = slice_means.var(axis=0)
    total = codes.var(axis=0)
    varies = codes.max(axis=0) > codes.min(axis=0)  # exact test: rounding cannot fake a variance
    ratio = np.zeros_like(between)
    ratio[varies] = between[varies] / total[varies, None]
    return np.clip(ratio, 0.0, 1.0)


def alignment(codes, factor_sizes, seed: int = 0) -> dict[str, float]:
    """Each code dimension's share of variance explained by its one assigned factor.

    Returns ``min_r2`` and ``mean_r2`` over the assigned pairs, then per code
    dimension j ``axis{j}_r2`` (its assigned share, 0 if unassigned) and
    ``axis{j}_factor`` (the factor's index in ``factor_sizes``, -1 if
    unassigned). Exact and deterministic: ``seed`` is accepted, like every
    metric's, and unused.
    """
    eta = explained_variance(codes, factor_sizes)
    factors = np.flatnonzero([int(s) > 1 for s in factor_sizes])  # check_inputs ensured one at least
    rows, cols = linear_sum_assignment(eta[:, factors], maximize=True)
    share = np.zeros(eta.shape[0])
    factor = np.full(eta.shape[0], -1.0)
    share[rows] = eta[rows, factors[cols]]
    factor[rows] = factors[cols]
    results = {"min_r2": float(share[rows].min()), "mean_r2": float(share[rows].mean())}
    for j in range(eta.shape[0]):
        results[f"axis{j}_r2"] = float(share[j])
        results[f"axis{j}_factor"] = float(factor[j])
    return results
