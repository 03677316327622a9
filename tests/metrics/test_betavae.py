import numpy as np
import pytest

from gdrae.metrics import beta_vae
from gdrae.metrics.betavae import pair_features

SMALL = dict(batch_size=16, num_train=600, num_eval=300)


def test_pair_features_share_the_labelled_factor(perfect):
    codes, sizes = perfect
    features, labels = pair_features(codes, sizes, 50, 8, np.random.RandomState(0))
    # with codes equal to the factors, the shared factor's code never differs
    assert np.all(features[np.arange(50), labels] == 0.0)
    assert features.shape == (50, 3)


def test_perfect_zero_and_seeded(perfect, permuted):
    codes, sizes = perfect
    scores = beta_vae(codes, sizes, **SMALL)
    assert scores["train_accuracy"] == pytest.approx(1.0) and scores["eval_accuracy"] > 0.98
    zero = beta_vae(np.zeros_like(codes), sizes, **SMALL)
    assert zero["eval_accuracy"] < 0.45
    codes, sizes = permuted
    assert beta_vae(codes, sizes, seed=3, **SMALL) == beta_vae(codes, sizes, seed=3, **SMALL)
    assert beta_vae(codes, sizes, **SMALL)["eval_accuracy"] < 0.45
