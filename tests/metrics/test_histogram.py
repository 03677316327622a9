import numpy as np
import pytest

from gdrae.metrics import histogram_family, histogram_mi
from gdrae.metrics.histogram import dcimig_from_mi, jemmig_from, mig_misum_from_mi, migsup_from_mi

KEYS = {"mig", "mig_misum", "jemmig", "migsup", "modularity", "dcimig"}


def test_tiny_grid_by_hand(grid):
    # Grid (2, 3): v0 in {0, 1}, v1 in {0, 1, 2}; N = 6, nbins = 2.
    # z0 = v0: mean 0.5, std 0.5, bins of width 1.5 from -1 -> 0 -> bin 0, 1 -> bin 1.
    # z1 = [v1 == 2]: mean 1/3, std 0.471, bins of width 1.414 from -1.081 -> 0 -> bin 0, 1 -> bin 1.
    f = grid((2, 3))
    codes = np.stack([f[:, 0], f[:, 1] == 2], axis=1).astype(float)
    h1 = np.log(3) - 2 / 3 * np.log(2)          # H(z1): bin counts (4, 2) of 6
    # H(z0) = ln 2, H(z0|v0) = 0, H(z0|v1) = ln 2 (each v1-slice holds v0 = 0 and 1)
    # H(z1|v0) = h1 (each v0-slice holds v1 = 0, 1, 2), H(z1|v1) = 0
    # => I = [[ln 2, 0], [0, h1]], H(v) = (ln 2, ln 3)
    mig = (1.0 + h1 / np.log(3)) / 2
    jemmig = (0.0 + (np.log(3) - h1) / (np.log(3) + np.log(2))) / 2   # factor 0: (ln2 - ln2)/..
    migsup = (1.0 + h1 / np.log(3)) / 2
    dcimig = (np.log(2) + h1) / (np.log(2) + np.log(3))
    assert np.allclose(histogram_mi(codes, (2, 3), nbins=2), [[np.log(2), 0.0], [0.0, h1]])
    scores = histogram_family(codes, (2, 3), nbins=2)
    assert scores == pytest.approx({"mig": mig, "mig_misum": 1.0, "jemmig": jemmig,
                                    "migsup": migsup, "modularity": 1.0, "dcimig": dcimig})


def test_score_maths_on_hand_written_matrices():
    mi = np.array([[0.6, 0.1], [0.2, 0.3], [0.0, 0.0]])
    h_v = np.array([1.0, 0.5])
    # factor 0: gap 0.4 over sum 0.8; factor 1: gap 0.2 over sum 0.4
    assert mig_misum_from_mi(mi) == pytest.approx(0.5)
    # per code normalised rows: (0.6, 0.2) gap 0.4; (0.2, 0.6) gap 0.4; (0, 0) gap 0
    assert migsup_from_mi(mi, h_v) == pytest.approx(0.8 / 3)
    # code 0 credits 0.5 to factor 0, code 1 credits 0.1 to factor 1
    assert dcimig_from_mi(mi, h_v) == pytest.approx(0.6 / 1.5)
    cond = np.array([[0.4, 0.4], [0.8, 0.2], [1.0, 0.5]])
    # factor 0: j* = 0, (1 + 0.4 - 0.6 + 0.2) / (1 + ln 4); factor 1: j* = 1, (0.5 + 0.2 - 0.3 + 0.1) / (0.5 + ln 4)
    expected = (1.0 / (1 + np.log(4)) + 0.5 / (0.5 + np.log(4))) / 2
    assert jemmig_from(mi, cond, h_v, 4) == pytest.approx(expected)


def test_perfect_codes_score_one_and_zero_codes_score_zero(perfect):
    codes, sizes = perfect
    scores = histogram_family(codes, sizes)
    assert set(scores) == KEYS
    for key in ("mig", "mig_misum", "migsup", "modularity", "dcimig"):
        assert scores[key] == pytest.approx(1.0)
    assert scores["jemmig"] == pytest.approx(0.0)
    zero = histogram_family(np.zeros_like(codes), sizes)
    for key in ("mig", "mig_misum", "migsup", "modularity", "dcimig"):
        assert zero[key] == 0.0
    # no code informs: JEMMIG = mean of H(v_k) / (H(v_k) + log nbins)
    h_v = np.log(sizes)
    assert zero["jemmig"] == pytest.approx(np.mean(h_v / (h_v + np.log(20))))


def test_duplicated_codes_kill_mig_but_keep_modularity(perfect):
    codes, sizes = perfect
    scores = histogram_family(np.repeat(codes, 2, axis=1), sizes)
    assert scores["mig"] == pytest.approx(0.0) and scores["mig_misum"] == pytest.approx(0.0)
    assert scores["modularity"] == pytest.approx(1.0)


def test_permuted_codes_score_low(permuted):
    codes, sizes = permuted
    scores = histogram_family(codes, sizes)
    # plug-in MI of independent columns is small but not 0, so modularity stays above 0
    assert scores["mig"] < 0.05 and scores["dcimig"] < 0.05 and scores["modularity"] < 0.4


def test_polar_grid_codes_give_mig_near_one(grid):
    sizes = (12, 16)
    f = grid(sizes)
    radius = np.linspace(0.5, 1.0, sizes[0])[f[:, 0]]
    angle = np.linspace(0, 2 * np.pi, sizes[1], endpoint=False)[f[:, 1]]
    scores = histogram_family(np.stack([radius, angle], 1), sizes, nbins=50)
    assert scores["mig"] > 0.95
    # the Cartesian point mixes both factors in each code
    xy = np.stack([radius * np.cos(angle), radius * np.sin(angle)], 1)
    assert histogram_family(xy, sizes, nbins=50)["mig"] < 0.5


def test_single_value_factor_and_constant_code_are_finite(grid):
    sizes = (3, 1, 4)
    f = grid(sizes)
    codes = np.stack([f[:, 0], np.zeros(12), f[:, 2] + 0.1 * f[:, 0]], 1).astype(float)
    scores = histogram_family(codes, sizes, nbins=5)
    assert all(np.isfinite(v) for v in scores.values())
    assert scores == pytest.approx(histogram_family(codes, (3, 4), nbins=5))


def test_sampled_estimate_is_seeded_and_close_to_exact(grid):
    sizes = (6, 8, 10)
    rng = np.random.RandomState(0)
    codes = grid(sizes) + 0.3 * rng.randn(480, 3)
    exact = histogram_family(codes, sizes, nbins=10)
    assert histogram_family(codes, sizes, nbins=10, max_samples=10**6) == exact
    a = histogram_family(codes, sizes, nbins=10, max_samples=40, seed=3)
    assert a == histogram_family(codes, sizes, nbins=10, max_samples=40, seed=3)
    assert a != histogram_family(codes, sizes, nbins=10, max_samples=40, seed=4)
    assert abs(a["mig"] - exact["mig"]) < 0.15
