"""gdrae.metrics.gbt against scikit-learn's GradientBoostingClassifier() on small data."""
import importlib

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from gdrae.metrics import dci, gbt


def _data(n, d, k, seed):
    """Continuous features; the class depends on feature 0 plus noise."""
    rng = np.random.RandomState(seed)
    x = rng.randn(n, d)
    y = (rng.randint(0, k, n) + (x[:, 0] > 0.3)) % k
    return x, y, rng.randn(n // 2, d)


@pytest.mark.parametrize("n, d, k, seed", [(500, 6, 3, 1), (2000, 5, 3, 3)])
def test_matches_sklearn_on_continuous_features(n, d, k, seed):
    x, y, x_new = _data(n, d, k, seed)
    ours = gbt.fit(x, y, random_state=0)
    theirs = GradientBoostingClassifier(random_state=0).fit(x, y)
    assert np.array_equal(ours.init, theirs._raw_predict_init(x[:1])[0])
    assert np.array_equal(ours.predict(x_new), theirs.predict(x_new))
    np.testing.assert_allclose(ours.predict_proba(x_new), theirs.predict_proba(x_new), atol=0.1)
    np.testing.assert_allclose(ours.feature_importances, theirs.feature_importances_, atol=2e-3)


def test_first_round_trees_equal_sklearn_where_splits_are_unique():
    x, y, _ = _data(500, 6, 3, 1)
    ours = gbt.fit(x, y, random_state=0)
    theirs = GradientBoostingClassifier(random_state=0).fit(x, y)
    x32 = x.astype(np.float32)
    for t in range(3):
        node = np.zeros(len(x), dtype=int)
        for depth in range(gbt.MAX_DEPTH):
            h = node + 2 ** depth - 1
            node = 2 * node + (x32[np.arange(len(x)), ours.feature[0, t, h]] > ours.threshold[0, t, h])
        np.testing.assert_allclose(ours.value[0, t, node], theirs.estimators_[0, t].predict(x32),
                                   rtol=1e-10)


def test_binary_and_degenerate_inputs():
    x, _, x_new = _data(300, 4, 2, 0)
    y = (x[:, 0] + 0.5 * np.random.RandomState(0).randn(300) > 0).astype(int)
    ours = gbt.fit(x, y, random_state=0)
    assert ours.init.shape == (1,) and set(ours.predict(x_new)) <= {0, 1}
    assert ours.feature_importances.sum() == pytest.approx(1.0)
    assert np.argmax(ours.feature_importances) == 0
    # a constant feature set: no tree splits, importances are zeros
    flat = gbt.fit(np.zeros((50, 3)), np.arange(50) % 3)
    assert np.array_equal(flat.feature_importances, np.zeros(3))
    with pytest.raises(ValueError, match="2 classes"):
        gbt.fit(x, np.zeros(len(x)))


def test_dci_gbt_agrees_with_sklearn(grid, monkeypatch):
    sizes = (3, 40)  # continuous codes: 120 distinct rows, 3 and 40 classes
    codes = grid(sizes) / np.array(sizes) + 0.05 * np.random.RandomState(0).randn(120, 2)
    codes = np.concatenate([codes, np.random.RandomState(1).randn(120, 1)], axis=1)
    kw = dict(num_train=300, num_test=100, seed=0)
    ours = dci(codes, sizes, **kw)
    monkeypatch.setenv("GDRAE_PLAIN", "gbt")  # scikit-learn's own GradientBoostingClassifier
    theirs = dci(codes, sizes, **kw)
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert ours[key] == pytest.approx(theirs[key], abs=0.02), key


def test_switching_the_gbt_fast_path_off_fits_scikit_learn_itself(grid, monkeypatch):
    """GDRAE_PLAIN=gbt (gdrae.fastpaths): dci then fits scikit-learn's GradientBoostingClassifier."""
    dci_module = importlib.import_module("gdrae.metrics.dci")  # the module, not the function of that name

    fitted = []
    original = dci_module.GradientBoostingClassifier.fit

    def fit(self, x, y):
        fitted.append(len(y))
        return original(self, x, y)

    monkeypatch.setattr(dci_module.GradientBoostingClassifier, "fit", fit)
    sizes = (3, 4)
    codes = grid(sizes) / np.array(sizes) + 0.1 * np.random.RandomState(0).randn(12, 2)
    kw = dict(num_train=100, num_test=50, seed=0)
    dci(codes, sizes, **kw)
    assert fitted == []
    monkeypatch.setenv("GDRAE_PLAIN", "gbt")
    dci(codes, sizes, **kw)
    assert fitted == [100, 100]
