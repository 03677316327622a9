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
