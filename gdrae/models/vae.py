"""The six baselines of the field's standard study, as disentanglement_lib defines them (docs/model.md section 10).

Each is a Gaussian VAE: the encoder gives the posterior N(mu, exp(logvar)),
z = mu + exp(logvar / 2)·eps, the prior is N(0, I), and the loss is the data
term (:func:`gdrae.losses.bce_recon` for images, the squared error for
Sector2D points, weighted by ``loss.recon``) plus the family's regulariser,
whose weights are the family's model keys:

- beta-VAE: beta·KL;
- AnnealedVAE: gamma·|KL - C(step)|, C growing linearly to c_max over ``iteration_threshold`` steps;
- FactorVAE: KL + gamma·TC, TC estimated by a discriminator trained beside it (its own parameter group);
- DIP-VAE-I / -II: KL + lambda_od·sum_{i!=j} C_ij^2 + lambda_d·sum_i (C_ii - 1)^2, C the covariance of mu
  (I) or of z under the aggregate posterior (II), lambda_d = lambda_d_factor·lambda_od;
- beta-TCVAE: KL + (beta - 1)·TC, TC by the minibatch-weighted estimator.

Every term is returned unweighted; ``weights`` (set by :func:`build`) say how
the trainer sums them.

Reference: Locatello et al., "Challenging Common Assumptions in the Unsupervised Learning of Disentangled
Representations", ICML 2019, and disentanglement_lib's methods/unsupervised/vae.py; the papers of each
family are named in docs/model.md section 10.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from gdrae import losses
from gdrae.models.architectures import ConvEncoder, DeconvDecoder, Discriminator, FCDecoder, FCEncoder, glorot_init_
from gdrae.models.contract import Model, Terms

POINT_DIM = 2  # Sector2D points


class GaussianVAE(Model):
    """The shared part of the six: posterior, prior, data term, KL and the monitors; one group, "vae".

    A family overrides :meth:`regularizer` (its terms beside "recon") and :meth:`term_weights`.
    """

    groups = ("vae",)
    latent_range = 2.0  # traversals and charts sweep +-2 prior standard deviations

    def __init__(self, kind: str, encoder: nn.Module, decoder: nn.Module, *, nz: int) -> None:
        super().__init__()
        self.kind = kind
        self.encoder = encoder
        self.decoder = decoder
        self.nz = nz
        self.weights = {}

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mu, logvar) of the Gaussian posterior, each (B, nz)."""
        return self.encoder(x)

    def encode(self, x: Tensor) -> Tensor:
        return self.posterior(x)[0]

    def data_logits(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """z ~ N(0, I)^(n x nz) on the model's device."""
        ref = next(self.parameters())
        return torch.randn(n, self.nz, device=ref.device, dtype=ref.dtype, generator=generator)

    def data_term(self, out: Tensor, x: Tensor) -> Tensor:
        """Bernoulli log-loss of the image logits, or the squared error of the points (mean over the batch)."""
        return losses.bce_recon(out, x) if self.kind == "image" else losses.squared_error(out, x)

    def vae_terms(self, x: Tensor, step: Tensor) -> tuple[Terms, Tensor, Tensor, Tensor]:
        """The "vae" group's terms, and (z, mu, logvar) for a family that needs them further.

        Draws from torch's default generator: the posterior noise (B x nz values), then what the
        regulariser draws.
        """
        mu, logvar = self.posterior(x)
        z = mu + torch.exp(logvar / 2) * torch.randn_like(mu)
        out = self.data_logits(z)
        kl = losses.gaussian_kl(mu, logvar)
        terms = {"recon": self.data_term(out, x), **self.regularizer(z, mu, logvar, kl, step)}
        data = torch.sigmoid(out.detach()) if self.kind == "image" else out.detach()
        terms["monitor/recon_l1"] = (data - x).abs().mean()
        terms["monitor/kl"] = kl.detach()
        terms["monitor/kl_per_dim"] = (0.5 * (mu.square() + logvar.exp() - logvar - 1)).detach().mean(dim=0)
        terms["monitor/mu_abs"] = mu.detach().abs().mean(dim=0)
        return terms, z, mu, logvar

    def loss_terms(self, x: Tensor, step: Tensor) -> dict[str, Terms]:
        return {"vae": self.vae_terms(x, step)[0]}

    def regularizer(self, z: Tensor, mu: Tensor, logvar: Tensor, kl: Tensor, step: Tensor) -> Terms:
        """The family's terms beside "recon" (unweighted)."""
        raise NotImplementedError

    @staticmethod
    def term_weights(m, recon: float) -> dict[str, dict[str, float]]:
        """{group: {term: weight}} from the model section ``m`` and ``loss.recon``."""
        raise NotImplementedError


class BetaVAE(GaussianVAE):
    """recon + beta·KL (Higgins et al., ICLR 2017)."""

    family = "beta_vae"

    def regularizer(self, z, mu, logvar, kl, step):
        return {"kl": kl}

    @staticmethod
    def term_weights(m, recon):
        return {"vae": {"recon": recon, "kl": m.beta}}


class AnnealedVAE(GaussianVAE):
    """recon + gamma·|KL - C(step)|, C = min(c_max, c_max·step / iteration_threshold) (Burgess et al., 2018)."""

    family = "annealed_vae"

    def __init__(self, *args, c_max: float, iteration_threshold: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.c_max = c_max
        self.iteration_threshold = iteration_threshold

    def regularizer(self, z, mu, logvar, kl, step):
        capacity = losses.annealed_capacity(self.c_max, step, self.iteration_threshold).to(kl)
        return {"kl_gap": (kl - capacity).abs(), "monitor/capacity": capacity.detach()}

    @staticmethod
    def term_weights(m, recon):
        return {"vae": {"recon": recon, "kl_gap": m.gamma}}


class DIPVAE(GaussianVAE):
    """recon + KL + lambda_od·sum_{i!=j} C_ij^2 + lambda_d·sum_i (C_ii - 1)^2 (Kumar et al., ICLR 2018).

    ``dip_type`` "i": C = Cov(mu); "ii": C = Cov(mu) + diag(mean exp(logvar)).
    """

    def __init__(self, *args, dip_type: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dip_type = dip_type

    def regularizer(self, z, mu, logvar, kl, step):
        cov = losses.dip_covariance(mu, logvar, self.dip_type)
        return {"kl": kl, "dip_off_diagonal": losses.dip_off_diagonal(cov), "dip_diagonal": losses.dip_diagonal(cov)}

    @staticmethod
    def term_weights(m, recon):
        return {"vae": {"recon": recon, "kl": 1.0, "dip_off_diagonal": m.lambda_od,
                        "dip_diagonal": m.lambda_d_factor * m.lambda_od}}


class DIPVAEI(DIPVAE):
    family = "dip_vae_i"


class DIPVAEII(DIPVAE):
    family = "dip_vae_ii"


class BetaTCVAE(GaussianVAE):
    """recon + KL + (beta - 1)·TC, TC the minibatch-weighted estimate (Chen et al., NeurIPS 2018)."""

    family = "beta_tc_vae"

    def regularizer(self, z, mu, logvar, kl, step):
        return {"kl": kl, "tc": losses.total_correlation(z, mu, logvar)}

    @staticmethod
    def term_weights(m, recon):
        return {"vae": {"recon": recon, "kl": 1.0, "tc": m.beta - 1.0}}


class FactorVAE(GaussianVAE):
    """recon + KL + gamma·TC, TC = mean(logits_0 - logits_1) of a discriminator of z (Kim and Mnih, ICML 2018).

    The discriminator learns to tell z (class 0) from z with every latent
    column permuted within the batch (class 1), on detached codes, in its own
    parameter group "discriminator" with its own Adam. The VAE's terms never
    reach the discriminator's parameters (the trainer backpropagates each
    group's total into that group alone), nor the discriminator's loss the
    encoder's (it reads detached codes).
    """

    family = "factor_vae"
    groups = ("vae", "discriminator")

    def __init__(self, *args, discriminator: nn.Module, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.discriminator = discriminator

    def regularizer(self, z, mu, logvar, kl, step):
        return {"kl": kl, "tc": losses.factor_vae_tc(self.discriminator(z))}

    def loss_terms(self, x: Tensor, step: Tensor) -> dict[str, Terms]:
        """Draws the posterior noise, then the permutation of the codes."""
        vae, z, _, _ = self.vae_terms(x, step)
        codes = z.detach()
        real, permuted = self.discriminator(codes), self.discriminator(losses.permute_dims(codes))
        accuracy = ((real[:, 0] > real[:, 1]).float().mean() + (permuted[:, 1] > permuted[:, 0]).float().mean()) / 2
        return {"vae": vae, "discriminator": {"loss": losses.discriminator_loss(real, permuted),
                                              "monitor/accuracy": accuracy.detach()}}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        own = [*self.encoder.parameters(), *self.decoder.parameters()]
        return {"vae": own, "discriminator": list(self.discriminator.parameters())}

    def optimizer_settings(self, cfg):
        m = cfg.model
        return {**super().optimizer_settings(cfg),
                "discriminator": (m.discriminator_lr, tuple(m.discriminator_betas), "model.discriminator_lr",
                                  "model.discriminator_betas")}

    @staticmethod
    def term_weights(m, recon):
        return {"vae": {"recon": recon, "kl": 1.0, "tc": m.gamma}, "discriminator": {"loss": 1.0}}


CLASSES: dict[str, type[GaussianVAE]] = {
    c.family: c for c in (BetaVAE, AnnealedVAE, FactorVAE, DIPVAEI, DIPVAEII, BetaTCVAE)
}


def build(cfg) -> GaussianVAE:
    """The baseline of ``cfg`` (a RunConfig, or its model section: then ``loss.recon`` is 1), Glorot-initialised.

    Images: dlib's conv encoder and deconv decoder; Sector2D: its fc pair.
    Random draws come from torch's default generator.
    """
    m = getattr(cfg, "model", cfg)
    recon = cfg.loss.recon if hasattr(cfg, "loss") else 1.0
    if m.kind == "image":
        encoder, decoder = ConvEncoder(m.channels, m.nz), DeconvDecoder(m.nz, m.channels)
    else:
        encoder, decoder = FCEncoder(POINT_DIM, m.nz), FCDecoder(m.nz, POINT_DIM)
    extra = {
        "annealed_vae": lambda: dict(c_max=m.c_max, iteration_threshold=m.iteration_threshold),
        "factor_vae": lambda: dict(discriminator=Discriminator(m.nz)),
        "dip_vae_i": lambda: dict(dip_type="i"),
        "dip_vae_ii": lambda: dict(dip_type="ii"),
    }.get(m.family, dict)()
    cls = CLASSES[m.family]
    model = cls(m.kind, encoder, decoder, nz=m.nz, **extra)
    glorot_init_(model)
    model.weights = cls.term_weights(m, recon)
    return model


FAMILIES = {name: build for name in CLASSES}
