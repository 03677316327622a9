import numpy as np
import pytest

from gdrae.metrics import modularity_explicitness
from gdrae.metrics.modularity import mean_one_vs_rest_auc, modularity_from_mi

SMALL = dict(num_train=1000, num_test=500)


def test_modularity_closed_forms():
    assert modularity_from_mi(np.eye(3)) == pytest.approx(1.0)
    # duplicated rows: each code still informs about one factor only
    assert modularity_from_mi(np.array([[1.0, 0.0], [1.0, 0.0]])) == pytest.approx(1.0)
    # code 0: 1 - 0.5^2 / (2 * 1) = 0.875; code 1 informs about nothing -> 0
    mi = np.array([[1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    assert modularity_from_mi(mi) == pytest.approx(0.875 / 2)
    assert modularity_from_mi(np.ones((2, 4))) == pytest.approx(0.0)
    assert modularity_from_mi(np.array([[0.3], [0.0]])) == pytest.approx(0.5)


def test_auc_leaves_out_classes_without_both_outcomes():
    labels = np.array([0, 0, 1, 1])
    proba = np.array([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.3, 0.7, 0.0], [0.2, 0.8, 0.0]])
    assert mean_one_vs_rest_auc(labels, proba, np.array([0, 1, 2])) == pytest.approx(1.0)
    assert mean_one_vs_rest_auc(np.zeros(3), proba[:3], np.array([0, 1, 2])) == 0.5


def test_perfect_permuted_and_duplicated(perfect, permuted):
    codes, sizes = perfect
    scores = modularity_explicitness(codes, sizes, **SMALL)
    assert scores["modularity_score"] > 0.999
    assert scores["explicitness_score_test"] > 0.9
    assert modularity_explicitness(np.repeat(codes, 2, 1), sizes, **SMALL)["modularity_score"] > 0.99
    codes, sizes = permuted
    scores = modularity_explicitness(codes, sizes, **SMALL)
    assert scores["modularity_score"] < 0.3
    assert scores["explicitness_score_test"] < 0.6
    assert scores == modularity_explicitness(codes, sizes, **SMALL)
