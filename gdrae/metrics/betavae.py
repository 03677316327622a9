"""BetaVAE score: which factor did a batch of pairs share?

Reference: Higgins et al. 2017, "beta-VAE: Learning Basic Visual Concepts
with a Constrained Variational Framework"; Locatello et al. 2019 (study
defaults: batch 64, 10000 train / 5000 eval points).
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from gdrae.data.grid import factors_to_index, sample_factors
from gdrae.metrics.sampling import check_count, check_inputs


def pair_features(codes: np.ndarray, factor_sizes: tuple[int, ...], num: int, batch_size: int,
                  rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    """``num`` features (num, D) and their labels: the factor the pairs share.

    Each feature is the mean over ``batch_size`` pairs of |z1 - z2|, where the
    two cells of a pair are drawn uniformly except for the shared factor.
    """
    labels = rng.randint(len(factor_sizes), size=num)
    first = sample_factors((num, batch_size), factor_sizes, rng)
    second = sample_factors((num, batch_size), factor_sizes, rng)
    rows = np.arange(num)
    second[rows, :, labels] = first[rows, :, labels]
    diff = np.abs(codes[factors_to_index(first, factor_sizes)] - codes[factors_to_index(second, factor_sizes)])
    return diff.mean(axis=1), labels


def beta_vae(codes, factor_sizes, seed: int = 0, batch_size: int = 64, num_train: int = 10000,
             num_eval: int = 5000) -> dict:
    """Accuracy of a logistic regression predicting the shared factor.

    Returns ``{"train_accuracy", "eval_accuracy"}``.
    Reference: Higgins et al. 2017; disentanglement_lib's ``beta_vae_sklearn``.
    """
    codes, sizes = check_inputs(codes, factor_sizes)
    batch_size = check_count("batch_size", batch_size)
    num_train = check_count("num_train", num_train)
    num_eval = check_count("num_eval", num_eval)
    rng = np.random.RandomState(seed)
    x_train, y_train = pair_features(codes, sizes, num_train, batch_size, rng)
    x_eval, y_eval = pair_features(codes, sizes, num_eval, batch_size, rng)
    if len(np.unique(y_train)) < 2:
        predict = np.full_like(y_eval, y_train[0])
        return {"train_accuracy": 1.0, "eval_accuracy": float(np.mean(predict == y_eval))}
    clf = LogisticRegression(random_state=seed).fit(x_train, y_train)
    return {"train_accuracy": float(clf.score(x_train, y_train)),
            "eval_accuracy": float(clf.score(x_eval, y_eval))}
