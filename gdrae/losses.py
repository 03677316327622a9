"""Every loss term of one GDRAE training step as a plain function, and their weighted sum.

Reference: Pan, Niu, Zhang, AAAI 2023 (GDRAE); docs/model.md section 6.
"""
from __future__ import annotations

import math
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


# --- Loss pieces of the six standard VAE baselines (beta-VAE, AnnealedVAE, beta-TCVAE, FactorVAE,
# DIP-VAE-I and DIP-VAE-II), as google-research/disentanglement_lib ("dlib") defines them.


def gaussian_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over latents, averaged over the batch.

    The closed form 0.5 * sum_j(mu^2 + exp(logvar) - logvar - 1): the prior term of every
    baseline (beta-VAE weights it, AnnealedVAE pulls it towards a capacity).

    Reference: Kingma & Welling, ICLR 2014 (appendix B); dlib methods/unsupervised/vae.py
    (compute_gaussian_kl).
    """
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1).sum(dim=1).mean()


def gaussian_log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise log N(z; mu, exp(logvar)), broadcasting its three inputs.

    The building block of the minibatch estimate of q(z) in :func:`total_correlation`.

    Reference: Chen et al., "Isolating Sources of Disentanglement in VAEs", NeurIPS 2018;
    dlib methods/unsupervised/vae.py (gaussian_log_density).
    """
    diff = z - mu
    return -0.5 * (diff.square() * torch.exp(-logvar) + logvar + math.log(2 * math.pi))


def total_correlation(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Minibatch-weighted estimate of TC(z) = KL(q(z) || prod_d q(z_d)), averaged over the batch.

    q(z_i) and q(z_i,d) are estimated by the mixture of the batch's posteriors (a logsumexp over
    the batch axis of the (B, B, D) log-densities); as in dlib the log(N*M) normalisers are left
    out, so the value is shifted by (D - 1) * log B, which the gradient does not see.

    Reference: Chen et al., "Isolating Sources of Disentanglement in VAEs", NeurIPS 2018 (beta-TCVAE);
    dlib methods/unsupervised/vae.py (total_correlation).
    """
    log_q = gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])  # (B, B, D)
    log_qz_product = torch.logsumexp(log_q, dim=1).sum(dim=1)
    log_qz = torch.logsumexp(log_q.sum(dim=2), dim=1)
    return (log_qz - log_qz_product).mean()


def dip_covariance(mu: Tensor, logvar: Tensor, kind: str) -> Tensor:
    """Covariance (D, D) that DIP-VAE pushes towards the identity.

    kind "i": the biased covariance of mu over the batch, E[mu mu^T] - E[mu] E[mu]^T (DIP-VAE-I);
    kind "ii": that plus diag(E[exp(logvar)]), the covariance of z under the aggregate
    posterior (DIP-VAE-II).

    Reference: Kumar, Sattigeri, Balakrishnan, "Variational Inference of Disentangled Latent
    Concepts from Unlabeled Observations", ICLR 2018; dlib methods/unsupervised/vae.py
    (compute_covariance_z_mean, DIPVAE.regularizer).
    """
    if kind not in ("i", "ii"):
        raise GdraeError(f"kind: expected 'i' or 'ii', got {kind!r}")
    mean = mu.mean(dim=0)
    cov = (mu[:, :, None] * mu[:, None, :]).mean(dim=0) - mean[:, None] * mean[None, :]
    if kind == "ii":
        cov = cov + torch.diag(logvar.exp().mean(dim=0))
    return cov


def dip_off_diagonal(cov: Tensor) -> Tensor:
    """Sum of squares of the off-diagonal entries of ``cov``: DIP-VAE's decorrelation term.

    Reference: Kumar et al., ICLR 2018 (DIP-VAE); dlib methods/unsupervised/vae.py
    (regularize_diag_off_diag_dip).
    """
    off = cov - torch.diag(torch.diagonal(cov))
    return off.square().sum()


def dip_diagonal(cov: Tensor) -> Tensor:
    """sum_i (cov_ii - 1)^2: DIP-VAE's unit-variance term.

    Reference: Kumar et al., ICLR 2018 (DIP-VAE); dlib methods/unsupervised/vae.py
    (regularize_diag_off_diag_dip).
    """
    return (torch.diagonal(cov) - 1).square().sum()


def dip_regularizer(cov: Tensor, lambda_od: float, lambda_d: float) -> Tensor:
    """lambda_od * dip_off_diagonal(cov) + lambda_d * dip_diagonal(cov): DIP-VAE's moment matching
    of ``cov`` to the identity (split into two helpers so each part can be logged unweighted).

    Reference: Kumar et al., ICLR 2018 (DIP-VAE); dlib methods/unsupervised/vae.py
    (regularize_diag_off_diag_dip).
    """
    return lambda_od * dip_off_diagonal(cov) + lambda_d * dip_diagonal(cov)


def annealed_capacity(c_max: float, step, steps: float) -> Tensor:
    """Capacity C = min(c_max, c_max * step / steps), linear from 0 to c_max over ``steps`` steps.

    AnnealedVAE penalises |KL - C|, so the KL budget grows during training. ``step`` may be a
    python number or a 0-d tensor (then no host sync, and the result is on its device; float32
    unless ``step`` is a floating tensor). ``steps`` is dlib's iteration_threshold.

    Reference: Burgess et al., "Understanding disentangling in beta-VAE", 2018 (AnnealedVAE);
    dlib methods/unsupervised/vae.py (anneal).
    """
    if isinstance(step, Tensor):
        s = step if step.is_floating_point() else step.to(torch.float32)
        return torch.clamp(c_max * s / steps, max=c_max)
    return torch.tensor(min(float(c_max), float(c_max) * step / steps), dtype=torch.float32)


def permute_dims(z: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Each column of ``z`` (B, D) permuted independently within the batch.

    Samples of prod_d q(z_d) (FactorVAE's "fake" codes for its discriminator), all D permutations
    drawn at once from ``generator`` (or torch's default one) as the argsort of uniform noise.

    Reference: Kim & Mnih, "Disentangling by Factorising", ICML 2018 (FactorVAE);
    dlib methods/unsupervised/vae.py (shuffle_codes).
    """
    index = torch.rand(z.shape[0], z.shape[1], generator=generator, device=z.device).argsort(dim=0)
    return torch.gather(z, 0, index)


def factor_vae_tc(logits: Tensor) -> Tensor:
    """FactorVAE's TC estimate, mean over the batch of logits[:, 0] - logits[:, 1].

    With class 0 = real codes, the logit difference is the density-ratio estimate
    log(D(z) / (1 - D(z))) of log(q(z) / prod_d q(z_d)).

    Reference: Kim & Mnih, ICML 2018 (FactorVAE); dlib methods/unsupervised/vae.py (FactorVAE.model_fn).
    """
    return (logits[:, 0] - logits[:, 1]).mean()


def discriminator_loss(logits_real: Tensor, logits_permuted: Tensor) -> Tensor:
    """FactorVAE's discriminator loss: -(0.5 * mean log p_real[:, 0] + 0.5 * mean log p_perm[:, 1]).

    p = softmax(logits) clipped to [1e-6, 1 - 1e-6] before the log (as dlib's discriminator does),
    class 0 = real codes, class 1 = permuted ones. The discriminator minimises this, i.e.
    maximises dlib's discr_loss.

    Reference: Kim & Mnih, ICML 2018 (FactorVAE); dlib methods/unsupervised/vae.py (FactorVAE.model_fn)
    and methods/shared/architectures.py (make_discriminator, which clips).
    """
    p_real = torch.softmax(logits_real, dim=1).clamp(1e-6, 1 - 1e-6)
    p_perm = torch.softmax(logits_permuted, dim=1).clamp(1e-6, 1 - 1e-6)
    return -(0.5 * torch.log(p_real[:, 0]).mean() + 0.5 * torch.log(p_perm[:, 1]).mean())
