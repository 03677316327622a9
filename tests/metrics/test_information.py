import numpy as np
from sklearn.metrics import mutual_info_score

from gdrae.metrics.information import (bins_mean_std, bins_sample_range, entropy_from_counts,
                                       label_entropy, mi_matrix, mutual_information)


def test_entropy_from_counts():
    h = entropy_from_counts(np.array([[1, 1, 0, 0], [4, 0, 0, 0], [0, 0, 0, 0]]))
    assert np.allclose(h, [np.log(2), 0.0, 0.0])


def test_bins_mean_std_by_hand():
    # column 0: mean 0.5, std 0.5 -> range [-1, 2], 3 bins of width 1: edges -1, 0, 1, 2
    # column 1: constant -> everything in bin 0
    codes = np.array([[0.0, 7.0], [1.0, 7.0], [0.0, 7.0], [1.0, 7.0]])
    bins = bins_mean_std(codes, 3)
    assert bins[:, 0].tolist() == [1, 2, 1, 2]
    assert bins[:, 1].tolist() == [0, 0, 0, 0]
    # values beyond mean +- 3 std clamp to the end bins
    far = bins_mean_std(np.array([[-100.0], [100.0]]), 4, mean=np.zeros(1), std=np.ones(1))
    assert far[:, 0].tolist() == [0, 3]


def test_bins_sample_range_matches_digitize_on_histogram_edges():
    x = np.random.RandomState(0).randn(200, 3)
    bins = bins_sample_range(x, 7)
    for j in range(3):
        expected = np.digitize(x[:, j], np.histogram(x[:, j], 7)[1][:-1]) - 1
        assert np.array_equal(bins[:, j], expected)
    assert bins.min() == 0 and bins.max() == 6


def test_mutual_information_matches_sklearn():
    rng = np.random.RandomState(0)
    a = rng.randint(5, size=300)
    b = (a + rng.randint(2, size=300)) % 4
    assert np.isclose(mutual_information(a, b), mutual_info_score(a, b))
    assert np.isclose(mutual_information(a, a), label_entropy(a[:, None])[0])
    assert mutual_information(np.repeat([0, 1], 4), np.tile([0, 1], 4)) == 0.0
    m = mi_matrix(np.stack([a, b], 1), np.stack([b], 1))
    assert m.shape == (2, 1) and np.isclose(m[1, 0], label_entropy(b[:, None])[0])
