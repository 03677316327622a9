import math

import pytest
import torch

from gdrae.config import LossConfig
from gdrae.errors import GdraeError
from gdrae.losses import (
    bce_recon, norm_sv, prior_penalty, spectral_loss, squared_error, sv_entropy, weighted_total,
)


def test_bce_recon_sums_pixels_and_averages_batch():
    logits = torch.tensor([[[[0.0, 2.0]]], [[[-1.0, 0.0]]]])
    x = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 0.5]]]])
    def bce(l, t):
        s = 1 / (1 + math.exp(-l))
        return -(t * math.log(s) + (1 - t) * math.log(1 - s))
    expected = (bce(0, 1) + bce(2, 0) + bce(-1, 0) + bce(0, 0.5)) / 2
    assert bce_recon(logits, x).item() == pytest.approx(expected, rel=1e-6)


def test_squared_error_sums_coordinates_and_averages_batch():
    x_hat = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    assert squared_error(x_hat, x).item() == pytest.approx((1 + 4 + 9) / 2)


def test_prior_penalty_counts_only_the_excess_outside_the_box():
    mu = torch.tensor([[0.5, -1.5, 2.0], [-0.9, 0.0, 1.0]])
    assert prior_penalty(mu, 1.0).item() == pytest.approx((0.5 + 1.0) / 2)
    assert prior_penalty(mu, 3.0).item() == 0


def test_spectral_loss_drops_non_finite_entries_without_nan_gradients():
    sn = torch.tensor([math.e, 1.0, float("nan"), float("inf"), 0.0, -2.0, math.e**2], requires_grad=True)
    loss = spectral_loss(sn)
    assert loss.item() == pytest.approx((1 + 0 + 4) / 3)
    (grad,) = torch.autograd.grad(loss, sn)
    assert torch.isfinite(grad).all()
    assert grad[2:6].abs().sum() == 0
    assert grad[0].item() == pytest.approx(2 * 1 / math.e / 3)


def test_spectral_loss_of_all_non_finite_is_zero():
    assert spectral_loss(torch.tensor([float("nan"), -1.0])).item() == 0


def test_sv_entropy():
    uniform = torch.zeros(3, 4)
    assert sv_entropy(uniform).item() == pytest.approx(math.log(4))
    peaked = torch.tensor([[50.0, 0.0, 0.0, -50.0]])
    assert sv_entropy(peaked).item() < 1e-15



def test_sv_entropy_is_that_of_softmax_of_log_sv_not_of_its_negation():
    """sv = (1, 2, 5) and (1, 1, 6): softmax(log sv) = sv / sum(sv) = (1, 2, 5)/8 and (1, 1, 6)/8."""
    def entropy(*probs):
        return -sum(q * math.log(q) for q in probs)

    logsv = torch.log(torch.tensor([[1.0, 2.0, 5.0], [1.0, 1.0, 6.0]], dtype=torch.float64))
    expected = (entropy(1 / 8, 2 / 8, 5 / 8) + entropy(1 / 8, 1 / 8, 6 / 8)) / 2
    assert sv_entropy(logsv).item() == pytest.approx(expected, rel=1e-14)
    # softmax(-log sv) = (1/sv) / sum(1/sv) has another entropy: these inputs tell them apart
    negated = (entropy(10 / 17, 5 / 17, 2 / 17) + entropy(6 / 13, 6 / 13, 1 / 13)) / 2
    assert sv_entropy(-logsv).item() == pytest.approx(negated, rel=1e-14)
    assert abs(expected - negated) > 0.05
    # a shift of all log sv leaves the softmax alone (the predictor's outputs sum to zero anyway)
    assert sv_entropy(logsv + 3.0).item() == pytest.approx(expected, rel=1e-14)


def test_norm_sv_is_mean_squared_singular_value():
    logsv = torch.log(torch.tensor([[1.0, 2.0], [3.0, 0.5]]))
    assert norm_sv(logsv).item() == pytest.approx((1 + 4 + 9 + 0.25) / 4)


def test_weighted_total_uses_config_weights_and_skips_the_rest():
    terms = {
        "recon": torch.tensor(2.0), "prior": torch.tensor(3.0), "sn": torch.tensor(0.5),
        "sv": torch.tensor(1.0), "cap": torch.tensor(-0.1), "norm_sv": torch.tensor(7.0),
        "monitor/recon_l1": torch.tensor(100.0), "monitor/mu_abs": torch.ones(3),
    }
    cfg = LossConfig(recon=1, prior=10, sn=2, sv=0.5, cap=10, norm_sv=None)
    assert weighted_total(terms, cfg).item() == pytest.approx(2 + 30 + 1 + 0.5 - 1)
    assert weighted_total(terms, {"recon": 3.0}).item() == pytest.approx(6)
    del terms["norm_sv"]
    assert weighted_total(terms, LossConfig()).item() == pytest.approx(2 + 3000 + 500 + 0.01 - 1)
    with pytest.raises(GdraeError, match="weight"):
        weighted_total({"recon": torch.tensor(1.0)}, {"recon": None})


def test_spectral_terms_are_weighted_unless_sn_and_sv_are_both_off():
    from gdrae.losses import spectral_weighted

    assert spectral_weighted({"sn": 1000, "sv": 1})
    assert spectral_weighted({"sn": 0, "sv": 1}) and spectral_weighted({"sn": 1, "sv": None})
    assert not spectral_weighted({"sn": 0, "sv": 0}) and not spectral_weighted({"sn": None, "sv": 0})


# --- the baselines' loss pieces (disentanglement_lib's definitions)

import numpy as np

from gdrae.losses import (
    annealed_capacity, dip_covariance, dip_diagonal, dip_off_diagonal, dip_regularizer,
    discriminator_loss, factor_vae_tc, gaussian_kl, gaussian_log_density, permute_dims,
    total_correlation,
)

F64 = torch.float64


def test_gaussian_kl_hand_values_from_dlib():
    ones = torch.ones(1, 10, dtype=F64)
    assert gaussian_kl(ones, torch.zeros(1, 10, dtype=F64)).item() == pytest.approx(5.0, rel=1e-14)
    assert gaussian_kl(ones, ones).item() == pytest.approx(5 * (math.e - 1), rel=1e-14)
    assert gaussian_kl(ones, ones).item() == pytest.approx(8.5914, abs=1e-4)
    assert gaussian_kl(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0


def test_gaussian_kl_matches_torch_distributions_and_averages_the_batch():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(6, 5, generator=g, dtype=F64)
    logvar = torch.randn(6, 5, generator=g, dtype=F64)
    std = (0.5 * logvar).exp()
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, std), torch.distributions.Normal(0.0, 1.0)
    ).sum(1).mean()
    assert gaussian_kl(mu, logvar).item() == pytest.approx(expected.item(), rel=1e-12)
    # batch mean, not sum: doubling the batch with a copy leaves it alone
    doubled = gaussian_kl(torch.cat([mu, mu]), torch.cat([logvar, logvar]))
    assert doubled.item() == pytest.approx(expected.item(), rel=1e-12)


def test_gaussian_log_density_hand_values_and_broadcasting():
    one, zero = torch.tensor(1.0, dtype=F64), torch.tensor(0.0, dtype=F64)
    expected = -0.5 - 0.5 * math.log(2 * math.pi)
    assert gaussian_log_density(one, zero, zero).item() == pytest.approx(expected, rel=1e-14)
    assert gaussian_log_density(one, zero, zero).item() == pytest.approx(-1.4189, abs=1e-4)
    assert gaussian_log_density(one, one, zero).item() == pytest.approx(-0.9189, abs=1e-4)
    # against torch.distributions, broadcasting (3, 1, 2) with (1, 4, 2)
    g = torch.Generator().manual_seed(1)
    z, mu, logvar = (torch.randn(*s, generator=g, dtype=F64) for s in ((3, 1, 2), (1, 4, 2), (1, 4, 2)))
    out = gaussian_log_density(z, mu, logvar)
    assert out.shape == (3, 4, 2)
    expected = torch.distributions.Normal(mu, (0.5 * logvar).exp()).log_prob(z)
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d, n", [(1, 7), (10, 1000), (3, 2)])
def test_total_correlation_of_identical_standard_posteriors_is_one_minus_d_log_n(d, n):
    g = torch.Generator().manual_seed(2)
    z = 3 * torch.randn(n, d, generator=g, dtype=F64)
    zeros = torch.zeros(n, d, dtype=F64)
    tc = total_correlation(z, zeros, zeros)
    assert tc.shape == ()
    assert tc.item() == pytest.approx((1 - d) * math.log(n), abs=1e-9)
    if (d, n) == (10, 1000):
        assert tc.item() == pytest.approx(-62.17, abs=0.01)


def _tc_by_loops(z, mu, logvar):
    """dlib's estimator written out with python loops and math, sample by sample."""
    b, d = z.shape

    def log_n(x, m, lv):
        return -0.5 * ((x - m) ** 2 * math.exp(-lv) + lv + math.log(2 * math.pi))

    def lse(values):
        top = max(values)
        return top + math.log(sum(math.exp(v - top) for v in values))

    total = 0.0
    for i in range(b):
        joint = [sum(log_n(z[i, k], mu[j, k], logvar[j, k]) for k in range(d)) for j in range(b)]
        product = sum(lse([log_n(z[i, k], mu[j, k], logvar[j, k]) for j in range(b)]) for k in range(d))
        total += lse(joint) - product
    return total / b


def test_total_correlation_matches_explicit_loops():
    g = torch.Generator().manual_seed(3)
    mu = torch.randn(5, 3, generator=g, dtype=F64)
    logvar = 0.5 * torch.randn(5, 3, generator=g, dtype=F64)
    z = mu + (0.5 * logvar).exp() * torch.randn(5, 3, generator=g, dtype=F64)
    expected = _tc_by_loops(z.numpy(), mu.numpy(), logvar.numpy())
    assert total_correlation(z, mu, logvar).item() == pytest.approx(expected, rel=1e-12)
    # the estimator is not symmetric in its roles: swapping z and mu changes it
    assert total_correlation(mu, z, logvar).item() != pytest.approx(expected, rel=1e-6)


def test_total_correlation_and_kl_backpropagate():
    g = torch.Generator().manual_seed(4)
    mu = torch.randn(8, 4, generator=g, dtype=F64, requires_grad=True)
    logvar = (0.3 * torch.randn(8, 4, generator=g, dtype=F64)).requires_grad_()
    z = mu + (0.5 * logvar).exp() * torch.randn(8, 4, generator=g, dtype=F64)
    (total_correlation(z, mu, logvar) + gaussian_kl(mu, logvar)).backward()
    for leaf in (mu, logvar):
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all() and leaf.grad.abs().sum() > 0
    # KL's gradient alone, by hand: d/dmu = mu / B, d/dlogvar = (exp(logvar) - 1) / (2 B)
    mu.grad = logvar.grad = None
    gaussian_kl(mu, logvar).backward()
    torch.testing.assert_close(mu.grad, mu.detach() / 8)
    torch.testing.assert_close(logvar.grad, (logvar.detach().exp() - 1) / 16)


def test_dip_regularizer_hand_values_from_dlib():
    assert dip_regularizer(torch.ones(10, 10), 1.0, 1.0).item() == pytest.approx(90)
    assert dip_regularizer(torch.zeros(10, 10), 1.0, 1.0).item() == pytest.approx(10)
    assert dip_regularizer(torch.eye(10), 1.0, 1.0).item() == 0
    assert dip_regularizer(2 * torch.eye(10), 1.0, 1.0).item() == pytest.approx(10)


def test_dip_regularizer_weights_its_two_parts():
    cov = torch.tensor([[3.0, 0.5], [-1.0, 1.0]], dtype=F64)
    assert dip_off_diagonal(cov).item() == pytest.approx(0.25 + 1.0)
    assert dip_diagonal(cov).item() == pytest.approx(4.0)
    assert dip_regularizer(cov, 10.0, 0.1).item() == pytest.approx(10 * 1.25 + 0.1 * 4.0)
    assert dip_regularizer(cov, 0.0, 2.0).item() == pytest.approx(8.0)


def test_dip_covariance_matches_numpy_and_adds_mean_variances_for_ii():
    g = torch.Generator().manual_seed(5)
    mu = torch.randn(20, 4, generator=g, dtype=F64) + torch.tensor([0.0, 1.0, -2.0, 5.0], dtype=F64)
    logvar = torch.randn(20, 4, generator=g, dtype=F64)
    cov_i = dip_covariance(mu, logvar, "i")
    assert cov_i.shape == (4, 4)
    np.testing.assert_allclose(cov_i.numpy(), np.cov(mu.numpy().T, bias=True), rtol=1e-10, atol=1e-12)
    cov_ii = dip_covariance(mu, logvar, "ii")
    np.testing.assert_allclose(
        cov_ii.numpy(), cov_i.numpy() + np.diag(np.exp(logvar.numpy()).mean(axis=0)), rtol=1e-12, atol=1e-12
    )
    assert not torch.allclose(cov_i, cov_ii)
    with pytest.raises(ValueError, match=r"kind: expected 'i' or 'ii', got 'iii'"):
        dip_covariance(mu, logvar, "iii")


def test_annealed_capacity_rises_linearly_then_stays():
    for step, expected in ((0, 0.0), (50, 12.5), (100, 25.0), (250, 25.0)):
        out = annealed_capacity(25.0, step, 100)
        assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == ()
        assert out.item() == pytest.approx(expected)
    out = annealed_capacity(25.0, torch.tensor(30), 100)
    assert out.dtype == torch.float32 and out.item() == pytest.approx(7.5)
    assert annealed_capacity(25.0, torch.tensor(300), 100).item() == pytest.approx(25.0)
    out = annealed_capacity(25.0, torch.tensor(30.0, dtype=F64), 100)
    assert out.dtype == F64 and out.item() == pytest.approx(7.5, rel=1e-14)


def test_permute_dims_shuffles_each_column_independently_and_reproducibly():
    g = torch.Generator().manual_seed(6)
    z = torch.randn(100, 4, generator=g, dtype=F64)
    before = z.clone()
    out = permute_dims(z, torch.Generator().manual_seed(7))
    assert out.shape == z.shape and out.dtype == z.dtype
    torch.testing.assert_close(z, before)  # the input is left alone
    torch.testing.assert_close(out.sort(dim=0).values, z.sort(dim=0).values)
    torch.testing.assert_close(out, permute_dims(z, torch.Generator().manual_seed(7)))
    assert not torch.equal(out, permute_dims(z, torch.Generator().manual_seed(8)))
    # rows are no longer the original tuples, and the columns were not moved together
    original_rows = {tuple(row) for row in z.tolist()}
    assert sum(tuple(row) in original_rows for row in out.tolist()) < 10
    assert not all(torch.equal(out[:, 0].argsort(), out[:, k].argsort()) for k in range(1, 4))
    # default generator: seeded globally, reproducible too
    torch.manual_seed(9)
    first = permute_dims(z)
    torch.manual_seed(9)
    torch.testing.assert_close(first, permute_dims(z))


def test_permute_dims_passes_gradients_to_the_permuted_entries():
    z = torch.arange(12, dtype=F64).reshape(6, 2).requires_grad_()
    weights = torch.arange(12, dtype=F64).reshape(6, 2)
    out = permute_dims(z, torch.Generator().manual_seed(0))
    (out * weights).sum().backward()
    # every entry is used exactly once, so the gradients are the weights, permuted within columns
    torch.testing.assert_close(z.grad.sort(dim=0).values, weights)


def test_factor_vae_tc_is_the_mean_logit_difference():
    logits = torch.tensor([[math.log(3), 0.0]], dtype=F64)
    assert factor_vae_tc(logits).item() == pytest.approx(math.log(3), rel=1e-14)
    logits = torch.tensor([[2.0, -1.0], [0.0, 4.0]], dtype=F64)
    assert factor_vae_tc(logits).item() == pytest.approx((3 - 4) / 2)


def test_discriminator_loss_hand_values_with_clipping():
    sure_real = torch.tensor([[100.0, 0.0]], dtype=F64)
    sure_perm = torch.tensor([[0.0, 100.0]], dtype=F64)
    # sure and right: both probabilities clip to 1 - 1e-6
    right = discriminator_loss(sure_real, sure_perm).item()
    assert right == pytest.approx(-math.log(1 - 1e-6), rel=1e-9)
    assert 0 < right < 1.1e-6
    # sure and wrong: both clip to 1e-6, so the loss stays finite
    assert discriminator_loss(sure_perm, sure_real).item() == pytest.approx(-math.log(1e-6), rel=1e-12)
    # p_real[:, 0] = 3/4 and p_perm[:, 1] = 1/4 (softmax of (log 3, 0) is (3/4, 1/4))
    three = torch.tensor([[math.log(3), 0.0]], dtype=F64)
    expected = -(0.5 * math.log(3 / 4) + 0.5 * math.log(1 / 4))
    assert discriminator_loss(three, three).item() == pytest.approx(expected, rel=1e-12)
    # batch means, taken separately for the two halves
    real = torch.tensor([[math.log(3), 0.0], [0.0, 0.0]], dtype=F64)
    expected = -(0.5 * (math.log(3 / 4) + math.log(1 / 2)) / 2 + 0.5 * math.log(1 / 4))
    assert discriminator_loss(real, three).item() == pytest.approx(expected, rel=1e-12)
