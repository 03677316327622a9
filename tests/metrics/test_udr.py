"""UDR (Duan et al. 2020, disentanglement_lib's lasso variant) on code tables whose answer is known."""
import math

import numpy as np
import pytest

from gdrae.metrics import active_latents, udr_pair, udr_scores
from gdrae.metrics.udr import _lasso_strengths, _relative_strength, _standardise

N = 1500


def _codes(seed: int, nz: int = 5) -> np.ndarray:
    return np.random.RandomState(seed).randn(N, nz)


def test_identical_codes_score_one_minus_the_lasso_shrinkage():
    a = _codes(0)
    assert 0.88 <= udr_pair(a, a) <= 1.0
    assert udr_pair(a, a) == pytest.approx(0.9, abs=0.01)


def test_permuted_sign_flipped_rescaled_codes_score_as_high_as_identical_ones():
    a = _codes(1, nz=6)
    b = a[:, [3, 0, 5, 1, 4, 2]] * np.array([1.0, -1.0, 2.5, -0.3, 1.0, -7.0]) + 4.0
    for score in (udr_pair(a, b), udr_pair(b, a)):
        assert 0.88 <= score <= 1.0
    assert udr_pair(a, b) == pytest.approx(udr_pair(a, a), abs=1e-6)


def test_uniform_codes_reversed_and_negated_score_high():
    u = np.random.RandomState(2).rand(N, 4)
    assert 0.88 <= udr_pair(u, -u[:, ::-1]) <= 1.0


def test_independent_codes_score_near_zero():
    assert udr_pair(_codes(3), _codes(4)) < 0.2
    assert udr_pair(_codes(3, nz=8), _codes(4, nz=3)) < 0.2


def test_a_rotated_pair_of_latents_scores_below_an_aligned_one():
    a = _codes(5, nz=2)
    t = math.radians(45)
    rotated = a @ np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
    assert udr_pair(a, rotated) < udr_pair(a, a) - 0.3


def test_relative_strength_by_hand():
    r = np.array([[0.8, 0.2], [0.1, 0.4]])
    columns = (0.8 ** 2 / 0.9 + 0.4 ** 2 / 0.6) / 2
    rows = (0.8 ** 2 / 1.0 + 0.4 ** 2 / 0.5) / 2
    assert _relative_strength(r) == pytest.approx((columns + rows) / 2, abs=1e-12)
    assert _relative_strength(r) == pytest.approx(0.4844444444444444, abs=1e-12)
    # a zero row and column: their 0/0 terms count as 0 (dlib's nan_to_num)
    assert _relative_strength(np.array([[1.0, 0.0], [0.0, 0.0]])) == pytest.approx(0.5, abs=1e-12)
    assert _relative_strength(np.zeros((2, 2))) == 0.0


def test_relative_strength_on_dlibs_own_examples():
    assert _relative_strength(np.eye(3)) == 1.0
    assert _relative_strength(np.array([[1.0, 1, 0], [1, 1, 0], [0, 0, 1]])) == pytest.approx(2 / 3)
    assert _relative_strength(np.ones((3, 3))) == pytest.approx(1 / 3)


def test_lasso_strengths_are_indexed_predictor_by_target():
    a = _codes(6, nz=3)
    b = np.stack([2.0 * a[:, 1], -a[:, 0]], axis=1)
    z_a, _ = _standardise(a)
    z_b, _ = _standardise(b)
    r = _lasso_strengths(z_a, z_b, alpha=0.1, seed=0)
    assert r.shape == (3, 2)
    expected = np.array([[0.0, 0.9], [0.9, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(r, expected, atol=0.03)


def test_median_rule_on_three_runs():
    a = _codes(7)
    b = -a[:, [4, 3, 2, 1, 0]] + 0.05 * _codes(8)
    c = _codes(9)
    result = udr_scores([a, b, c])
    pairwise = np.array(result["pairwise"])
    assert np.all(np.isnan(np.diag(pairwise)))
    for k in range(3):
        assert result["scores"][k] == pytest.approx(np.median(np.delete(pairwise[:, k], k)))
    assert pairwise[0, 1] > 0.85 and pairwise[1, 0] > 0.85
    assert pairwise[0, 2] < 0.2 and pairwise[2, 1] < 0.2
    assert min(result["scores"][:2]) > result["scores"][2] + 0.3


def test_a_runs_score_is_the_median_of_the_regressions_of_its_codes_on_the_others():
    # dlib: model k's score is the median of column k, the Lasso of run k's codes on each other run's
    rng = np.random.RandomState(18)
    a = rng.randn(N, 4)
    runs = [np.concatenate([a, a[:, :1]], axis=1), -a[:, ::-1], a[:, [1, 0, 2, 3]] + 0.3 * rng.randn(N, 4)]
    result = udr_scores(runs)
    pairwise = np.array(result["pairwise"])
    assert abs(pairwise[0, 1] - pairwise[1, 0]) > 0.02
    columns = [np.median(np.delete(pairwise[:, k], k)) for k in range(3)]
    rows = [np.median(np.delete(pairwise[k, :], k)) for k in range(3)]
    assert result["scores"] == pytest.approx(columns, abs=1e-12)
    assert abs(result["scores"][0] - rows[0]) > 0.02
    assert pairwise[0, 1] == pytest.approx(udr_pair(runs[0], runs[1]), abs=1e-12)


def test_median_rule_with_a_majority_agreeing():
    base = _codes(10)
    runs = [base, base[:, ::-1], -base, _codes(11)]
    scores = udr_scores(runs)["scores"]
    assert all(s > 0.85 for s in scores[:3])
    assert scores[3] < 0.2


def test_a_duplicated_latent_with_low_kl_is_ignored():
    a = _codes(12, nz=4)
    b = a[:, [1, 0, 3, 2]]
    duplicated = np.concatenate([a, a[:, :1]], axis=1)
    kl_dup = np.array([1.0, 1.0, 1.0, 1.0, 0.001])
    kl_b = np.ones(4)
    unfiltered = udr_scores([duplicated, b])["pairwise"]
    filtered = udr_scores([duplicated, b], kls=[kl_dup, kl_b])
    assert unfiltered[0][1] < udr_pair(a, b) - 0.03
    assert filtered["pairwise"][0][1] == pytest.approx(udr_pair(a, b), abs=1e-9)
    assert filtered["pairwise"][1][0] == pytest.approx(udr_pair(b, a), abs=1e-9)
    assert filtered["active"][0] == [True, True, True, True, False]


def test_a_noise_latent_with_low_kl_is_ignored_and_counts_against_the_pair_otherwise():
    a = _codes(13, nz=3)
    with_noise_a = np.concatenate([a, _codes(14, nz=1)], axis=1)
    with_noise_b = np.concatenate([-a[:, ::-1], _codes(15, nz=1)], axis=1)
    kl = np.array([0.5, 0.5, 0.5, 0.0])
    unfiltered = udr_pair(with_noise_a, with_noise_b)
    filtered = udr_pair(with_noise_a, with_noise_b, active_latents(kl), active_latents(kl))
    # the noise latents give an all-zero row and column: 3 of 4 terms on each side survive
    assert unfiltered == pytest.approx(0.75 * filtered, abs=0.02)
    assert 0.88 <= filtered <= 1.0
    scores = udr_scores([with_noise_a, with_noise_b], kls=[kl, kl])["scores"]
    assert scores == pytest.approx([filtered, filtered], abs=1e-9)


def test_active_latents_is_a_strict_threshold():
    mask = active_latents([0.0, 0.01, 0.0100001, 2.0])
    assert mask.dtype == bool
    assert mask.tolist() == [False, False, True, True]
    assert active_latents([0.5, 0.2], threshold=0.3).tolist() == [True, False]


def test_a_constant_latent_counts_as_inactive():
    a = _codes(16, nz=3)
    with_constant = np.concatenate([a, np.full((N, 1), 2.0)], axis=1)
    assert udr_pair(with_constant, a) == pytest.approx(udr_pair(a, a), abs=1e-9)
    assert udr_scores([with_constant, a])["active"][0] == [True, True, True, False]


def test_no_active_latent_scores_zero():
    a = _codes(17, nz=3)
    assert udr_pair(a, a, active_a=np.zeros(3, dtype=bool)) == 0.0
    assert udr_pair(np.ones((N, 2)), a) == 0.0
    result = udr_scores([a, a[:, ::-1], a], kls=[np.ones(3), np.ones(3), np.zeros(3)])
    assert result["scores"][2] == 0.0
    assert result["pairwise"][0][2] == 0.0 and result["pairwise"][2][0] == 0.0


def test_different_row_counts_are_refused():
    with pytest.raises(ValueError, match="same N"):
        udr_pair(_codes(0), _codes(1)[:-1])
    with pytest.raises(ValueError, match="same N"):
        udr_scores([_codes(0), _codes(1), _codes(2)[:10]])


def test_fewer_than_two_runs_are_refused():
    with pytest.raises(ValueError, match="at least 2 runs"):
        udr_scores([_codes(0)])
    with pytest.raises(ValueError, match="at least 2 runs"):
        udr_scores([])


def test_bad_shapes_masks_and_kls_are_refused():
    a = _codes(0, nz=3)
    with pytest.raises(ValueError, match=r"expected codes_a to be an \(N, D\)"):
        udr_pair(a[:, 0], a)
    with pytest.raises(ValueError, match="expected finite"):
        udr_pair(np.where(a > 2, np.nan, a), a)
    with pytest.raises(ValueError, match="boolean array of shape"):
        udr_pair(a, a, active_a=np.ones(2, dtype=bool))
    with pytest.raises(ValueError, match="boolean array of shape"):
        udr_pair(a, a, active_b=np.ones(3))
    with pytest.raises(ValueError, match="alpha > 0"):
        udr_pair(a, a, alpha=0.0)
    with pytest.raises(ValueError, match="one KL vector per run"):
        udr_scores([a, a], kls=[np.ones(3)])
    with pytest.raises(ValueError, match=r"kls\[1\] of shape \(3,\)"):
        udr_scores([a, a], kls=[np.ones(3), np.ones(4)])
    with pytest.raises(ValueError, match="1-D array of finite KL"):
        active_latents(np.ones((2, 2)))
