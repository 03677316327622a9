"""FactorVAE score: which factor was held fixed in a batch?

Reference: Kim & Mnih 2018, "Disentangling by Factorising"; Locatello et al.
2019 (study defaults: batch 64, 10000 train / 5000 eval points, 10000 points
for the variance estimate, prune threshold 0.05).
"""
from __future__ import annotations

import numpy as np

from gdrae.data.grid import factors_to_index, sample_factors
from gdrae.errors import GdraeError
from gdrae.metrics.sampling import check_count, check_inputs, sample_codes


def factor_votes(codes: np.ndarray, factor_sizes: tuple[int, ...], num: int, batch_size: int,
                 scale: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Votes (K, D'): how often fixing factor k left code j with the least variance.

    ``scale`` holds the global variances of the D' kept codes' columns
    (``codes`` already restricted to them); variances are divided by it.
    """
    k = len(factor_sizes)
    fixed = rng.randint(k, size=num)
    factors = sample_factors((num, batch_size), factor_sizes, rng)
    rows = np.arange(num)
    factors[rows, :, fixed] = factors[rows, 0, fixed][:, None]
    local = codes[factors_to_index(factors, factor_sizes)].var(axis=1, ddof=1)
    votes = np.zeros((k, codes.shape[1]), dtype=np.int64)
    np.add.at(votes, (fixed, np.argmin(local / scale, axis=1)), 1)
    return votes


def majority_accuracy(votes: np.ndarray, classifier: np.ndarray) -> float:
    """Share of votes (K, D') that the code -> factor classifier (D',) gets right."""
    right = votes[classifier, np.arange(votes.shape[1])].sum()
    return float(right / votes.sum())


def factor_vae(codes, factor_sizes, seed: int = 0, batch_size: int = 64, num_train: int = 10000,
               num_eval: int = 5000, num_variance_estimate: int = 10000,
               prune_threshold: float = 0.05) -> dict:
    """Majority-vote accuracy of the FactorVAE classifier.

    Codes whose global standard deviation (over ``num_variance_estimate``
    drawn cells) is below ``prune_threshold`` are dropped, as
    disentanglement_lib compares the scale, not the variance, to 0.05.
    ``num_active_dims`` is the number of codes kept (disentanglement_lib
    reports the code count there). No code kept scores 0.
    Returns ``{"train_accuracy", "eval_accuracy", "num_active_dims"}``.
    Reference: Kim & Mnih 2018; disentanglement_lib's ``factor_vae_score``.
    """
    codes, sizes = check_inputs(codes, factor_sizes)
    batch_size = check_count("batch_size", batch_size, 2)
    num_train = check_count("num_train", num_train)
    num_eval = check_count("num_eval", num_eval)
    num_variance_estimate = check_count("num_variance_estimate", num_variance_estimate, 2)
    if not float(prune_threshold) >= 0.0:
        raise GdraeError(f"prune_threshold: expected a number >= 0, got {prune_threshold!r}")
    rng = np.random.RandomState(seed)
    variance = sample_codes(codes, sizes, num_variance_estimate, rng)[0].var(axis=0, ddof=1)
    active = (np.sqrt(variance) >= prune_threshold) & (variance > 0)
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}
    kept = codes[:, active]
    train = factor_votes(kept, sizes, num_train, batch_size, variance[active], rng)
    classifier = np.argmax(train, axis=0)
    evaluation = factor_votes(kept, sizes, num_eval, batch_size, variance[active], rng)
    return {"train_accuracy": majority_accuracy(train, classifier),
            "eval_accuracy": majority_accuracy(evaluation, classifier),
            "num_active_dims": float(active.sum())}
