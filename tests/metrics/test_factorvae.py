import numpy as np
import pytest

from gdrae.metrics import factor_vae
from gdrae.metrics.factorvae import majority_accuracy

SMALL = dict(batch_size=16, num_train=500, num_eval=300, num_variance_estimate=1000)


def test_majority_accuracy_by_hand():
    votes = np.array([[8, 1, 0], [2, 0, 5]])
    classifier = np.argmax(votes, axis=0)       # codes vote for factors 0, 0, 1
    assert majority_accuracy(votes, classifier) == pytest.approx((8 + 1 + 5) / 16)


def test_perfect_zero_pruned_and_seeded(perfect, permuted):
    codes, sizes = perfect
    scores = factor_vae(codes, sizes, **SMALL)
    assert scores == {"train_accuracy": 1.0, "eval_accuracy": 1.0, "num_active_dims": 3.0}
    # a fourth code with std 0.01 < 0.05 is pruned and does not change the votes
    tiny = np.concatenate([codes, 0.01 * np.random.RandomState(0).randn(len(codes), 1)], 1)
    assert factor_vae(tiny, sizes, **SMALL) == scores
    assert factor_vae(np.zeros_like(codes), sizes, **SMALL) == {
        "train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0.0}
    codes, sizes = permuted
    a = factor_vae(codes, sizes, seed=2, **SMALL)
    assert a == factor_vae(codes, sizes, seed=2, **SMALL)
    assert a["eval_accuracy"] < 0.5
