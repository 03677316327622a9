"""UDR: the Unsupervised Disentanglement Ranking score of a set of runs.

Runs trained with different seeds (or hyper-parameters) encode the same N
inputs; ``codes[k]`` (N, D_k) is run k's code table, rows aligned. A run whose
latents the other runs also find, up to permutation, sign and scale, ranks
high. Following disentanglement_lib's ``compute_udr_sklearn`` (lasso variant):

1. each latent of each run is standardised (mean 0, population std 1, as
   ``sklearn.preprocessing.StandardScaler``); inactive latents (KL <=
   threshold, dlib's ``kl_filter_threshold``) are zeroed;
2. for an ordered pair (a, b), ``sklearn.linear_model.Lasso(alpha=0.1)``
   (dlib's settings: intercept fitted, ``random_state`` passed) regresses every
   latent of b on all latents of a; R = |coef|.T, shape (D_a, D_b), R[i, j] the
   strength of a_i in predicting b_j (``lasso_correlation_matrix``);
3. rows and columns of inactive latents are dropped and the pair scores the
   relative strength (``relative_strength_disentanglement``)

       score = (mean_j max_i R_ij^2 / sum_i R_ij + mean_i max_j R_ij^2 / sum_j R_ij) / 2

   with 0/0 terms (an all-zero row or column) counted as 0;
4. run k's UDR is the median over the other runs l of the pair (l, k), i.e.
   the Lasso of run k's codes on run l's (dlib: median of column k of its
   pairwise matrix without the diagonal).

Identical codes score about 1 - alpha (0.9: the Lasso shrinks each
coefficient of a standardised copy by alpha); independent codes score 0
once every |coef| falls below alpha. Departures from dlib, all in edge cases:
a latent with zero variance is treated as inactive (dlib scales it to a zero
column and keeps it in R, where it only drags the mean down); a pair where
one side has no active latent scores 0 (dlib's reductions over an empty
matrix raise); one threshold serves for zeroing and dropping (dlib zeroes at
a fixed 0.01 and drops at ``kl_filter_threshold``, equal by default); code
tables may differ in width (dlib asserts equal shapes).

Reference: Duan et al. 2020, "Unsupervised Model Selection for Variational
Disentangled Representation Learning" (ICLR); google-research/
disentanglement_lib, evaluation/udr/metrics/udr.py.
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import Lasso


def active_latents(kl_per_latent, threshold: float = 0.01) -> np.ndarray:
    """Boolean mask of latents whose mean KL divergence exceeds ``threshold`` (strictly, as dlib).

    Reference: disentanglement_lib ``compute_udr_sklearn`` (``kl_filter_threshold``).
    """
    kl = np.asarray(kl_per_latent, dtype=np.float64)
    if kl.ndim != 1 or not np.all(np.isfinite(kl)):
        raise ValueError(f"active_latents: expected a 1-D array of finite KL values per latent, "
                         f"got shape {kl.shape}")
    if not np.isfinite(threshold):
        raise ValueError(f"active_latents: expected a finite threshold, got {threshold}")
    return kl > threshold


def _check_codes(codes, name: str) -> np.ndarray:
    c = np.asarray(codes, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] < 2 or c.shape[1] < 1:
        raise ValueError(f"udr: expected {name} to be an (N, D) code table with N >= 2 and D >= 1, "
                         f"got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError(f"udr: expected finite values in {name}, got NaN or inf")
    return c


def _check_mask(mask, width: int, name: str) -> np.ndarray:
    if mask is None:
        return np.ones(width, dtype=bool)
    m = np.asarray(mask)
    if m.dtype != bool or m.shape != (width,):
        raise ValueError(f"udr: expected {name} to be a boolean array of shape ({width},), "
                         f"got dtype {m.dtype} and shape {m.shape}")
    return m


def _standardise(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-latent (x - mean) / std (ddof 0) and the mask of non-constant latents (constant ones -> 0)."""
    mean = codes.mean(axis=0)
    std = codes.std(axis=0)
    varying = std > 1e-12 * np.maximum(1.0, np.abs(codes).max(axis=0))
    z = np.where(varying, (codes - mean) / np.where(varying, std, 1.0), 0.0)
    return z, varying


def _relative_strength(strengths: np.ndarray) -> float:
    """dlib's ``relative_strength_disentanglement`` of a non-negative (D_a, D_b) matrix R:
    (mean over columns of max^2 / sum + mean over rows of max^2 / sum) / 2, 0/0 terms -> 0;
    0 for an empty matrix."""
    r = np.asarray(strengths, dtype=np.float64)
    if r.ndim != 2 or np.any(r < 0) or not np.all(np.isfinite(r)):
        raise ValueError(f"udr: expected a finite non-negative 2-D strength matrix, got shape {r.shape}")
    if r.size == 0:
        return 0.0

    def one_side(axis: int) -> float:
        peak = r.max(axis=axis)
        total = r.sum(axis=axis)
        terms = np.divide(peak * peak, total, out=np.zeros_like(total), where=total > 0)
        return float(terms.mean())

    return (one_side(0) + one_side(1)) / 2.0


def _lasso_strengths(z_a: np.ndarray, z_b: np.ndarray, alpha: float, seed) -> np.ndarray:
    """|coef| of a Lasso of every column of ``z_b`` on all columns of ``z_a``, shape (D_a, D_b)
    (dlib's ``lasso_correlation_matrix``)."""
    model = Lasso(alpha=alpha, random_state=seed)
    model.fit(z_a, z_b)
    coef = np.asarray(model.coef_, dtype=np.float64).reshape(z_b.shape[1], z_a.shape[1])
    return np.abs(coef).T


def udr_pair(codes_a, codes_b, active_a=None, active_b=None, alpha: float = 0.1, seed=0) -> float:
    """The pairwise UDR of run a against run b: relative strength of the Lasso of b's standardised
    codes on a's (module docstring, steps 1-3), over the active latents only.

    ``codes_a`` (N, D_a) and ``codes_b`` (N, D_b) encode the same N inputs, rows aligned;
    ``active_a`` / ``active_b`` are optional boolean masks over latents (default: all).
    Constant latents count as inactive. 0.0 when either side has no active latent.
    ``seed`` is Lasso's ``random_state`` (as dlib passes it; inert for cyclic coordinate descent).

    Reference: disentanglement_lib ``lasso_correlation_matrix`` and
    ``relative_strength_disentanglement``.
    """
    a = _check_codes(codes_a, "codes_a")
    b = _check_codes(codes_b, "codes_b")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"udr: expected code tables of the same N inputs, "
                         f"got {a.shape[0]} and {b.shape[0]} rows")
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"udr: expected alpha > 0, got {alpha}")
    z_a, varying_a = _standardise(a)
    z_b, varying_b = _standardise(b)
    keep_a = _check_mask(active_a, a.shape[1], "active_a") & varying_a
    keep_b = _check_mask(active_b, b.shape[1], "active_b") & varying_b
    if not keep_a.any() or not keep_b.any():
        return 0.0
    # dlib zeroes inactive latents before the fit and drops them after; a zero predictor gets a zero
    # coefficient and a zero target zero coefficients, so fitting on the active columns is the same.
    strengths = _lasso_strengths(z_a[:, keep_a], z_b[:, keep_b], alpha, seed)
    return _relative_strength(strengths)


def udr_scores(code_tables, kls=None, threshold: float = 0.01, alpha: float = 0.1) -> dict:
    """UDR of each of n >= 2 runs' code tables of the same inputs (module docstring).

    ``kls[k]`` (D_k,) is run k's mean KL per latent; latents with KL <= ``threshold`` are ignored
    (``kls=None``: all latents count). Returns ``{"pairwise": n x n list, entry [l][k] =
    udr_pair(codes[l], codes[k]) and nan on the diagonal, "scores": [median over l != k of
    pairwise[l][k] for each run k], "active": [each run's mask of counted latents]}``.

    Reference: disentanglement_lib ``compute_udr_sklearn`` (``model_scores``).
    """
    tables = [_check_codes(c, f"code_tables[{k}]") for k, c in enumerate(code_tables)]
    n = len(tables)
    if n < 2:
        raise ValueError(f"udr: expected at least 2 runs' code tables, got {n}")
    rows = {t.shape[0] for t in tables}
    if len(rows) != 1:
        raise ValueError(f"udr: expected code tables of the same N inputs, "
                         f"got row counts {[t.shape[0] for t in tables]}")
    if kls is None:
        masks = [np.ones(t.shape[1], dtype=bool) for t in tables]
    else:
        if len(kls) != n:
            raise ValueError(f"udr: expected one KL vector per run ({n}), got {len(kls)}")
        masks = []
        for k, (kl, t) in enumerate(zip(kls, tables)):
            mask = active_latents(kl, threshold)
            if mask.shape != (t.shape[1],):
                raise ValueError(f"udr: expected kls[{k}] of shape ({t.shape[1]},), got {mask.shape}")
            masks.append(mask)
    masks = [m & _standardise(t)[1] for m, t in zip(masks, tables)]
    pairwise = np.full((n, n), np.nan)
    for i in range(n):
        for j in range(n):
            if i != j:
                pairwise[i, j] = udr_pair(tables[i], tables[j], masks[i], masks[j], alpha=alpha)
    scores = [float(np.median(np.delete(pairwise[:, k], k))) for k in range(n)]
    return {"pairwise": pairwise.tolist(), "scores": scores,
            "active": [m.tolist() for m in masks]}
