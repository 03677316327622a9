"""The GDRAE module: encoder, injective flow decoder, singular-value predictor and capacity.

Reference: Pan, Niu, Zhang, "Geometric Inductive Biases for Identifiable
Unsupervised Learning of Disentangled Representations", AAAI 2023; docs/model.md.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from gdrae import losses
from gdrae.models.contract import Model, Terms
from gdrae.models.decoders import FlowDecoder
from gdrae.models.jacobian import (
    dense_jacobian, dense_rounds, geometry_diagnostics, inner, nmae, resolve_route, spectral_estimate, transpose_matrix,
)


class GDRAE(Model):
    """Autoencoder whose decoder sees p = exp(c)·z and whose Jacobian is pushed to be
    orthogonal with column norms given by the predicted singular values.

    kind "image": x (B, C, 64, 64) in [0, 1], stochastic posterior z = mu + sigma·eps, eps
    independent per latent dimension or shared by a sample's dimensions (``posterior_noise``).
    kind "sector2d": x (B, 2) points, deterministic z = mu. One parameter group, "model".
    ``spectral_route`` (``train.spectral_route``) and ``spectral`` (False for the ablation:
    both the sn and sv weights 0) are how :meth:`terms` computes by default.
    """

    family = "gdrae"
    groups = ("model",)
    evaluations = ("geometry", "jacobian")

    def __init__(
        self,
        kind: Literal["image", "sector2d"],
        encoder: nn.Module,
        decoder: FlowDecoder,
        sv_predictor: nn.Module,
        *,
        nz: int,
        data_channels: int,
        sigma: float,
        prior_radius: float,
        sn_power: int,
        posterior_noise: Literal["independent", "shared"] = "independent",
        spectral_route: str = "auto",
        spectral: bool = True,
    ):
        super().__init__()
        if posterior_noise not in ("independent", "shared"):
            raise ValueError(f"posterior_noise: expected 'independent' or 'shared', got {posterior_noise!r}")
        self.kind = kind
        self.encoder = encoder
        self.decoder = decoder
        self.sv_predictor = sv_predictor
        self.log_capacity = nn.Parameter(torch.zeros(()))
        self.nz = nz
        self.data_channels = data_channels  # image channels, or 2 coordinates for Sector2D
        self.sigma = sigma
        self.prior_radius = prior_radius
        self.sn_power = sn_power
        self.posterior_noise = posterior_noise
        self.spectral_route = spectral_route
        self.spectral = spectral
        self.weights = {"model": dict.fromkeys(losses.TERMS, 1.0)}  # build_model sets the config's

    @property
    def latent_range(self) -> float:
        """The prior box's half side r: traversals sweep [-r, r]."""
        return self.prior_radius

    def encode(self, x: Tensor) -> Tensor:
        """Posterior mean mu (B, nz)."""
        return self.encoder(x)

    def _to_p(self, z: Tensor) -> Tensor:
        return torch.exp(self.log_capacity) * z

    def data_logits(self, z: Tensor) -> Tensor:
        """Decoder output restricted to the data: image logits (before sigmoid) or 2-D points."""
        return self._as_data(self.decoder.pre_activation(self._to_p(z), self.data_channels))

    def _as_data(self, out: Tensor) -> Tensor:
        """The decoder's first data_channels outputs in the data's shape: images as they are, points (B, 2)."""
        return out if self.kind == "image" else out.flatten(1)

    def predict_sv(self, z: Tensor) -> Tensor:
        """Predicted singular values exp(logsv(exp(c)·z)), (B, nz), product 1 per sample."""
        return torch.exp(self.sv_predictor(self._to_p(z)))

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """z ~ U[-r, r]^(n x nz) on the model's device."""
        ref = self.log_capacity
        u = torch.rand(n, self.nz, device=ref.device, dtype=ref.dtype, generator=generator)
        return (2 * u - 1) * self.prior_radius

    def sample_posterior(self, mu: Tensor) -> Tensor:
        """z = mu + sigma·eps for images, z = mu for Sector2D; eps from torch's default generator.

        "independent": eps ~ N(0, I) per latent dimension, as the paper writes it.
        "shared": one eps per sample broadcast over its dimensions, as the
        original code draws it (its published runs were trained that way).
        """
        if self.kind != "image":
            return mu
        if self.posterior_noise == "shared":
            eps = torch.randn(mu.shape[0], 1, device=mu.device, dtype=mu.dtype)
        else:
            eps = torch.randn_like(mu)
        return mu + self.sigma * eps

    def loss_terms(self, x: Tensor, step: Tensor | None = None) -> dict[str, Terms]:
        """The contract's terms: :meth:`terms` as the one group "model" (GDRAE's terms do not depend on the step)."""
        return {"model": self.terms(x)}

    def terms(self, x: Tensor, spectral_route: str | None = None, spectral: bool | None = None) -> Terms:
        """Every loss term of docs/model.md section 6, unweighted, plus detached "monitor/" tensors.

        ``spectral_route`` (default: the model's ``spectral_route``) is how the power
        iteration is computed (:func:`gdrae.models.jacobian.spectral_estimate`);
        every route gives the same numbers. On route "dense" the last power
        product and the reconstruction run as one stacked pass
        (``FlowDecoder.pre_activation_and_jvp``). ``spectral=False`` (both
        the sn and sv weights 0: the ablation; default: the model's ``spectral``) leaves out the terms "sn" and
        "sv" and the power iteration. Draws (in this order, from torch's
        default generator, whatever ``spectral``): the posterior noise
        (images: B x nz values, or B when ``posterior_noise`` is "shared"),
        the prior batch z ~ U[-r, r]^(B x nz), the power iteration's u0. No
        host sync and static shapes, so the step can be compiled or captured.
        """
        spectral_route = self.spectral_route if spectral_route is None else spectral_route
        spectral = self.spectral if spectral is None else spectral
        c = self.log_capacity
        mu = self.encode(x)
        z = self.sample_posterior(mu)
        p = torch.exp(c) * self.sample_prior(x.shape[0])
        logsv = self.sv_predictor(p)
        u0 = torch.randn(x.shape[0], *self.decoder.out_shape, device=p.device, dtype=p.dtype)
        route = resolve_route(spectral_route, self.nz, self.sn_power)
        sn = None
        if spectral and route == "dense":  # the reconstruction shares the last power product's pass
            ctx, t, u_prev = dense_rounds(self.decoder, p, torch.exp(-logsv), self.sn_power, u0)
            out, u = self.decoder.pre_activation_and_jvp(self._to_p(z), t, ctx, self.data_channels)
            out, sn = self._as_data(out), inner(u, u_prev)
        else:
            out = self.data_logits(z)
            if spectral:
                sn = spectral_estimate(self.decoder, p, torch.exp(-logsv), self.sn_power, u0, route)
        if self.kind == "image":
            recon = losses.bce_recon(out, x)
            recon_l1 = (torch.sigmoid(out.detach()) - x).abs().mean()
        else:
            recon = losses.squared_error(out, x)
            recon_l1 = (out.detach() - x).abs().mean()

        terms = {"recon": recon, "prior": losses.prior_penalty(mu, self.prior_radius)}
        if spectral:
            terms["sn"] = losses.spectral_loss(sn)
            terms["sv"] = losses.sv_entropy(logsv)
        terms["cap"] = c
        if self.kind == "image":
            terms["norm_sv"] = losses.norm_sv(logsv)
        terms["monitor/recon_l1"] = recon_l1
        terms["monitor/mu_abs"] = mu.detach().abs().mean(dim=0)
        terms["monitor/sv_mean"] = torch.exp(logsv.detach()).mean(dim=0)
        if spectral:
            terms["monitor/sn_mean"] = sn.detach().mean()
        return terms

    def diagnostics(self, n_points: int = 64, seed: int = 0) -> dict[str, float]:
        """Geometric diagnostics of docs/model.md section 8 at n_points random latent points.

        Defined as the original computes them, so logged values compare. With
        J = J_Phi(p) (dense, autograd, unscaled), M = J^T J per sample and
        NMAE(a, b) = mean|a - b| / (mean|b| + 1e-8):

        - ortho_sign: mean over samples of mean|off-diagonal M| / (mean|diag M| + 1e-8);
        - sv_match_err: NMAE(sv, sqrt(diag M)) for images, NMAE(sqrt(diag M) / sv, 1) for Sector2D;
        - lt_err: NMAE(hand-written J^T, autograd J^T) over the whole matrices.

        Uses its own generator (``seed``), not torch's global one.
        """
        ref = self.log_capacity
        gen = torch.Generator(device=ref.device).manual_seed(seed)
        with torch.no_grad():
            p = self._to_p(self.sample_prior(n_points, generator=gen))
            sv = torch.exp(self.sv_predictor(p))
        jac = dense_jacobian(self.decoder, p).detach()
        values = geometry_diagnostics(jac, sv, self.kind)
        hand = transpose_matrix(self.decoder, p, self.decoder.out_shape)
        values["lt_err"] = nmae(hand, jac.transpose(1, 2)).item()
        return values


def _build(cfg) -> GDRAE:
    from gdrae.models import build_gdrae  # the factory sits beside the init it shares with the tests

    return build_gdrae(cfg)


FAMILIES = {"gdrae": _build}
