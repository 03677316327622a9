import numpy as np
import pytest

from gdrae.metrics import sap
from gdrae.metrics.sap import sap_from_scores

SMALL = dict(num_train=1000, num_test=500)


def test_gap_of_hand_written_score_matrix():
    scores = np.array([[0.9, 0.2], [0.5, 0.25], [0.1, 0.3]])
    assert sap_from_scores(scores) == pytest.approx(((0.9 - 0.5) + (0.3 - 0.25)) / 2)


def test_continuous_perfect_codes_score_one(perfect):
    codes, sizes = perfect
    assert sap(codes, sizes, continuous_factors=True, **SMALL)["sap_score"] == pytest.approx(1.0, abs=0.01)


def test_discrete_perfect_duplicated_zero(grid):
    sizes = (2, 2, 2)
    codes = grid(sizes).astype(float)
    # the matching code predicts its binary factor perfectly, any other is at chance
    assert sap(codes, sizes, **SMALL)["sap_score"] == pytest.approx(0.5, abs=0.05)
    assert sap(np.repeat(codes, 2, 1), sizes, **SMALL)["sap_score"] == pytest.approx(0.0)
    assert sap(np.zeros_like(codes), sizes, **SMALL)["sap_score"] == 0.0
    a = sap(codes + np.random.RandomState(0).rand(8, 3), sizes, seed=1, **SMALL)
    assert a == sap(codes + np.random.RandomState(0).rand(8, 3), sizes, seed=1, **SMALL)
