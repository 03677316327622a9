"""SAP: Separated Attribute Predictability.

Reference: Kumar et al. 2018, "Variational Inference of Disentangled Latent
Concepts from Unlabeled Observations"; Locatello et al. 2019 (study defaults:
discrete factors, 10000 train / 5000 test points).
"""
from __future__ import annotations

import numpy as np
from sklearn.svm import LinearSVC

from gdrae.metrics.mig import top_two
from gdrae.metrics.sampling import check_count, check_inputs, sample_codes


def sap_from_scores(scores: np.ndarray) -> float:
    """Mean over factors of the gap between the two best codes' scores (D, K)."""
    first, second = top_two(scores, axis=0)
    return float(np.mean(first - second))


def _r_squared(z: np.ndarray, y: np.ndarray) -> float:
    """Squared correlation of one code and one factor (0 for a constant either)."""
    cov = np.cov(z, y, ddof=1)
    if cov[0, 0] <= 1e-12 or cov[1, 1] <= 0:
        return 0.0
    return float(cov[0, 1] ** 2 / (cov[0, 0] * cov[1, 1]))


def _svm_accuracy(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray,
                  y_test: np.ndarray, seed: int) -> float:
    """Test accuracy of a one-dimensional linear SVM (C = 0.01, balanced classes)."""
    classes = np.unique(y_train)
    if len(classes) < 2:
        return float(np.mean(y_test == classes[0]))
    clf = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
    clf.fit(z_train[:, None], y_train)
    return float(np.mean(clf.predict(z_test[:, None]) == y_test))


def sap_score_matrix(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                     y_test: np.ndarray, continuous_factors: bool = False,
                     seed: int = 0) -> np.ndarray:
    """Predictability (D, K) of each factor from each single code.

    Discrete factors: test accuracy of a 1-D linear SVM; continuous factors:
    squared correlation on the training points.
    """
    d, k = x_train.shape[1], y_train.shape[1]
    scores = np.zeros((d, k))
    for j in range(d):
        for i in range(k):
            if continuous_factors:
                scores[j, i] = _r_squared(x_train[:, j], y_train[:, i])
            else:
                scores[j, i] = _svm_accuracy(x_train[:, j], y_train[:, i], x_test[:, j],
                                             y_test[:, i], seed)
    return scores


def sap(codes, factor_sizes, seed: int = 0, num_train: int = 10000, num_test: int = 5000,
        continuous_factors: bool = False) -> dict:
    """SAP on uniformly drawn grid cells. Returns ``{"sap_score": float}``.

    Reference: Kumar et al. 2018; disentanglement_lib's ``sap_score``.
    """
    codes, sizes = check_inputs(codes, factor_sizes)
    num_train = check_count("num_train", num_train, 2)
    num_test = check_count("num_test", num_test)
    rng = np.random.RandomState(seed)
    x_train, y_train = sample_codes(codes, sizes, num_train, rng)
    x_test, y_test = sample_codes(codes, sizes, num_test, rng)
    scores = sap_score_matrix(x_train, y_train, x_test, y_test, bool(continuous_factors), seed)
    return {"sap_score": sap_from_scores(scores)}
