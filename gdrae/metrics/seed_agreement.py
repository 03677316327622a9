"""Seed agreement: do two runs learn the same chart, up to a permutation, signs and rescaling of its axes?

The identifiability claim of GDRAE is that different initialisations reach
the same representation up to a permutation of the latent axes and a
monotone rescaling of each; without the geometric terms the rotation of the
latent space is arbitrary. Given the codes of the same points from two runs,
``codes_a`` (N, D) and ``codes_b`` (N, D'), the squared Pearson correlation

    r^2_ij = corr(a_i, b_j)^2

of every axis of one with every axis of the other is 1 when b_j is an affine
function of a_i (any sign, any scale). Axes are paired one to one so that
the sum of r^2 over the pairs is largest (``scipy.optimize.linear_sum_assignment``);
min(D, D') pairs are made. An axis with zero variance scores 0 with every
axis. The headline ``min`` is the smallest matched r^2: 1 for charts equal up
to permutation, sign and affine rescaling of each axis; for codes uniform on
a square grid and the same grid rotated by theta in [0, 45] degrees it is
cos^2(theta) (beyond 45 degrees the other pairing wins).

Reference: H. W. Kuhn, "The Hungarian Method for the Assignment Problem",
1955 (the pairing); the metric is docs/metrics.md's "seed agreement".
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def correlation_matrix(codes_a: np.ndarray, codes_b: np.ndarray) -> np.ndarray:
    """r^2 of every axis of ``codes_a`` (N, D) with every axis of ``codes_b`` (N, D'), (D, D'); 0 where
    either axis is constant."""
    a = np.asarray(codes_a, dtype=np.float64)
    b = np.asarray(codes_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0] or a.shape[0] < 2:
        raise ValueError(f"seed_agreement: expected two (N, D) code tables of the same N >= 2 points, "
                         f"got {a.shape} and {b.shape}")
    a = a - a.mean(axis=0)
    b = b - b.mean(axis=0)
    norm_a = np.sqrt((a * a).sum(axis=0))
    norm_b = np.sqrt((b * b).sum(axis=0))
    cross = a.T @ b
    denom = np.outer(norm_a, norm_b)
    r = np.divide(cross, denom, out=np.zeros_like(cross), where=denom > 0)
    return np.clip(r * r, 0.0, 1.0)


def seed_agreement(codes_a: np.ndarray, codes_b: np.ndarray) -> dict:
    """The matched r^2 of two runs' codes of the same points (module docstring).

    Returns ``{"pairs": [(i, j), ...], "r2": [r^2 of each pair], "min": smallest r^2}``,
    pairs in the order of ``codes_a``'s axes.
    """
    r2 = correlation_matrix(codes_a, codes_b)
    rows, cols = linear_sum_assignment(r2, maximize=True)
    matched = [float(r2[i, j]) for i, j in zip(rows, cols)]
    return {"pairs": [(int(i), int(j)) for i, j in zip(rows, cols)], "r2": matched,
            "min": min(matched) if matched else 0.0}
