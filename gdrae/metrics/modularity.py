"""Modularity (from an MI matrix) and explicitness (from linear probes).

Reference: Ridgeway & Mozer 2018, "Learning Deep Disentangled Embeddings With
the F-Statistic Loss"; Locatello et al. 2019 (disentanglement_lib defaults).
"""
from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from gdrae.metrics.information import bins_sample_range, mi_matrix
from gdrae.metrics.sampling import check_count, check_inputs, sample_codes


def modularity_from_mi(mi: np.ndarray) -> float:
    """Mean over codes of 1 - sum_{k != k*} I_jk^2 / ((K - 1) I_jk*^2).

    ``mi`` is (D, K). A code with I = 0 everywhere scores 0; with a single
    factor every informative code is perfectly modular (scores 1).
    """
    squared = np.square(np.asarray(mi, dtype=np.float64))
    top = squared.max(axis=1)
    rest = squared.sum(axis=1) - top
    k = squared.shape[1]
    live = top > 0
    delta = np.zeros_like(top)
    if k > 1:
        delta[live] = rest[live] / (top[live] * (k - 1))
    return float(np.mean(np.where(live, 1.0 - delta, 0.0)))


def mean_one_vs_rest_auc(labels: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> float:
    """Macro ROC-AUC of each class's probability column against the rest.

    Classes without both positives and negatives among ``labels`` are left
    out; if none is left the result is 0.5 (chance).
    """
    aucs = []
    for column, c in enumerate(classes):
        positive = labels == c
        if 0 < positive.sum() < len(labels):
            aucs.append(roc_auc_score(positive, proba[:, column]))
    return float(np.mean(aucs)) if aucs else 0.5


def explicitness(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                 y_test: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Mean one-vs-rest ROC-AUC (train, test) of a logistic regression per factor.

    Codes are standardised with the training mean and std (a zero std is
    left unscaled). A factor seen with one class only in training scores 0.5.
    """
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    train, test = [], []
    for k in range(y_train.shape[1]):
        if len(np.unique(y_train[:, k])) < 2:
            train.append(0.5)
            test.append(0.5)
            continue
        clf = LogisticRegression(random_state=seed).fit(x_train, y_train[:, k])
        train.append(mean_one_vs_rest_auc(y_train[:, k], clf.predict_proba(x_train), clf.classes_))
        test.append(mean_one_vs_rest_auc(y_test[:, k], clf.predict_proba(x_test), clf.classes_))
    return float(np.mean(train)), float(np.mean(test))


def modularity_explicitness(codes, factor_sizes, seed: int = 0, num_train: int = 10000,
                            num_test: int = 5000, num_bins: int = 20) -> dict:
    """Modularity (MI from codes binned over the sample range) and explicitness.

    Returns ``{"modularity_score", "explicitness_score_train",
    "explicitness_score_test"}``.
    Reference: Ridgeway & Mozer 2018; disentanglement_lib's
    ``modularity_explicitness``.
    """
    codes, sizes = check_inputs(codes, factor_sizes)
    num_train = check_count("num_train", num_train, 2)
    num_test = check_count("num_test", num_test)
    num_bins = check_count("num_bins", num_bins, 2)
    rng = np.random.RandomState(seed)
    z_train, y_train = sample_codes(codes, sizes, num_train, rng)
    z_test, y_test = sample_codes(codes, sizes, num_test, rng)
    modularity = modularity_from_mi(mi_matrix(bins_sample_range(z_train, num_bins), y_train))
    train, test = explicitness(z_train, y_train, z_test, y_test, seed)
    return {"modularity_score": modularity, "explicitness_score_train": train,
            "explicitness_score_test": test}
