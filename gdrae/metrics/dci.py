"""DCI: disentanglement, completeness and informativeness from an importance matrix.

Reference: Eastwood & Williams 2018, "A Framework for the Quantitative
Evaluation of Disentangled Representations"; Locatello et al. 2019
(disentanglement_lib study defaults: gradient-boosted trees, 10000 train /
5000 test points).
"""
from __future__ import annotations

import numpy as np
from joblib import Parallel, delayed
from sklearn.ensemble import GradientBoostingClassifier
from threadpoolctl import threadpool_limits

from gdrae.fastpaths import fast
from gdrae.metrics import gbt
from gdrae.metrics.sampling import check_count, check_inputs, sample_codes

def _one_minus_normalised_entropy(p: np.ndarray) -> np.ndarray:
    """1 - H(row) / log(len(row)) for each row of non-negative weights.

    An all-zero row counts as uniform (score 0); a row of length 1 with any
    weight scores 1.
    """
    p = np.asarray(p, dtype=np.float64)
    total = p.sum(axis=1, keepdims=True)
    live = total[:, 0] > 0
    q = p / np.where(total > 0, total, 1.0)
    h = -(q * np.log(np.where(q > 0, q, 1.0))).sum(axis=1)
    n = p.shape[1]
    score = 1.0 - h / np.log(n) if n > 1 else np.ones(len(p))
    return np.where(live, score, 0.0)


def _weighted_by_share(scores: np.ndarray, weight: np.ndarray) -> float:
    """Average of ``scores`` weighted by each entry's share of ``weight`` (equal if all 0)."""
    if weight.sum() <= 0:
        return float(np.mean(scores))
    return float(np.sum(scores * weight / weight.sum()))


def dci_disentanglement(importance: np.ndarray) -> float:
    """Sum over codes of (code's share of importance) x (1 - entropy_K of its row).

    ``importance`` is (D, K): how much code j matters for predicting factor k.
    """
    importance = np.abs(np.asarray(importance, dtype=np.float64))
    return _weighted_by_share(_one_minus_normalised_entropy(importance), importance.sum(axis=1))


def dci_completeness(importance: np.ndarray) -> float:
    """Sum over factors of (factor's share of importance) x (1 - entropy_D of its column)."""
    importance = np.abs(np.asarray(importance, dtype=np.float64)).T
    return _weighted_by_share(_one_minus_normalised_entropy(importance), importance.sum(axis=1))


def _fit_factor(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int):
    """Importance column (D,), train and test accuracy of one factor's classifier.

    The classifier is ``GradientBoostingClassifier(random_state=seed)``,
    computed by :mod:`gdrae.metrics.gbt`, or fitted by scikit-learn itself
    when the fast path ``gbt`` is switched off (``GDRAE_PLAIN=gbt``,
    gdrae.fastpaths). A factor seen with one class only in training gets
    zero importance and is predicted as that class.
    """
    classes = np.unique(y_train)
    if len(classes) < 2:
        return np.zeros(x_train.shape[1]), 1.0, float(np.mean(y_test == classes[0]))
    if fast("gbt"):
        clf = gbt.fit(x_train, y_train, random_state=seed)
        importance = clf.feature_importances
    else:
        # one OpenMP thread per model: parallelism comes from n_jobs over factors
        with threadpool_limits(limits=1, user_api="openmp"):
            clf = GradientBoostingClassifier(random_state=seed).fit(x_train, y_train)
        importance = np.abs(clf.feature_importances_)
    return (importance, float(np.mean(clf.predict(x_train) == y_train)),
            float(np.mean(clf.predict(x_test) == y_test)))


def importance_matrix(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                      y_test: np.ndarray, seed: int = 0, n_jobs: int = 1):
    """Fit one boosted-tree classifier per factor (``n_jobs`` factors at a time).

    Returns the importance matrix (D, K) and the mean train / test accuracy;
    the result does not depend on ``n_jobs``.
    """
    fits = Parallel(n_jobs=n_jobs, prefer="threads")(
        delayed(_fit_factor)(x_train, y_train[:, i], x_test, y_test[:, i], seed)
        for i in range(y_train.shape[1]))
    importance = np.stack([f[0] for f in fits], axis=1)
    return (importance, float(np.mean([f[1] for f in fits])),
            float(np.mean([f[2] for f in fits])))


def dci(codes, factor_sizes, seed: int = 0, num_train: int = 10000, num_test: int = 5000,
        n_jobs: int = 1) -> dict:
    """DCI on uniformly drawn grid cells.

    The classifier is disentanglement_lib's, ``GradientBoostingClassifier()``,
    computed by ``gdrae.metrics.gbt``; ``GDRAE_PLAIN=gbt`` (gdrae.fastpaths)
    fits scikit-learn's own instead (slow; for cross-checking). ``n_jobs`` fits that many factors' classifiers at once (threads); the
    numbers do not depend on it.
    Returns ``{"disentanglement", "completeness", "informativeness_train",
    "informativeness_test"}``.
    Reference: Eastwood & Williams 2018.
    """
    codes, sizes = check_inputs(codes, factor_sizes)
    num_train = check_count("num_train", num_train, 2)
    num_test = check_count("num_test", num_test)
    n_jobs = check_count("n_jobs", n_jobs)
    rng = np.random.RandomState(seed)
    x_train, y_train = sample_codes(codes, sizes, num_train, rng)
    x_test, y_test = sample_codes(codes, sizes, num_test, rng)
    importance, train_acc, test_acc = importance_matrix(x_train, y_train, x_test, y_test, seed, n_jobs)
    return {"disentanglement": dci_disentanglement(importance),
            "completeness": dci_completeness(importance),
            "informativeness_train": train_acc, "informativeness_test": test_acc}
