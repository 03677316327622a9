"""Every loss term of one GDRAE training step as a plain function, and their weighted sum.

Reference: Pan, Niu, Zhang, AAAI 2023 (GDRAE); docs/model.md section 6.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from gdrae.errors import GdraeError

TERMS = ("recon", "prior", "sn", "sv", "cap", "norm_sv")


def bce_recon(logits: Tensor, x: Tensor) -> Tensor:
    """BCE-with-logits summed over pixels, averaged over the batch."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]


def squared_error(x_hat: Tensor, x: Tensor) -> Tensor:
    """Squared error summed over coordinates, averaged over the batch (Sector2D)."""
    return (x_hat - x).square().sum() / x.shape[0]


def prior_penalty(mu: Tensor, radius: float) -> Tensor:
    """Mean over the batch of sum_j relu(|mu_j| - r): codes outside the prior box [-r, r]^nz."""
    return torch.relu(mu.abs() - radius).sum(dim=1).mean()


def spectral_loss(sn: Tensor) -> Tensor:
    """Mean of (log sn)^2 over the entries where it is finite (no host sync).

    Non-finite entries are replaced by 1 *before* the log, so they add neither
    value nor NaN gradients.
    """
    sn_const = sn.detach()
    finite = torch.isfinite(sn_const) & (sn_const > 0)
    sq = torch.log(torch.where(finite, sn, torch.ones_like(sn))).square()
    return sq.sum() / finite.sum().clamp_min(1)


def sv_entropy(logsv: Tensor) -> Tensor:
    """Mean over the batch of the entropy (nats) of softmax(log sv); small = distinct singular values.

    Uses ``log_softmax`` where the original takes log(softmax + 1e-8): the
    entropies differ by at most nz·1e-8 nats (1e-7 at nz = 10), no more
    than 1e-6 relative while the entropy stays above 0.1.
    """
    logp = torch.log_softmax(logsv, dim=1)
    return -(logp.exp() * logp).sum(dim=1).mean()


def norm_sv(logsv: Tensor) -> Tensor:
    """Mean of sv^2 over batch and dimensions, sv = exp(log sv)."""
    return torch.exp(2 * logsv).mean()


def spectral_weighted(loss_cfg) -> bool:
    """False when the weights of "sn" and "sv" are both 0 or null (the ablation): ``GDRAE.loss_terms``
    then leaves both terms, and the power iteration, out."""
    weights = loss_cfg.model_dump() if hasattr(loss_cfg, "model_dump") else dict(loss_cfg)
    return any(weights.get(name) for name in ("sn", "sv"))


def weighted_total(terms: Mapping[str, Tensor], loss_cfg) -> Tensor:
    """Sum of weight * term over the terms that have a weight (``LossConfig`` or a mapping).

    Keys starting with "monitor/" and terms whose weight is None or absent are skipped.
    """
    weights = loss_cfg.model_dump() if hasattr(loss_cfg, "model_dump") else dict(loss_cfg)
    parts = [
        weights[name] * value
        for name, value in terms.items()
        if not name.startswith("monitor/") and weights.get(name) is not None
    ]
    if not parts:
        raise GdraeError(f"loss: expected a weight for at least one of {sorted(terms)}, got none")
    return torch.stack(parts).sum()
