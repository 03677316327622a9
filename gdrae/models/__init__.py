"""The model families: GDRAE (encoders, flow decoders, singular-value predictor, the GDRAE module) and the six
baselines (gdrae.models.vae), behind one contract (gdrae.models.contract) and one factory, :func:`build_model`."""
from __future__ import annotations

from torch import nn

from gdrae.models.decoders import FlowDecoder, image_decoder, sector2d_decoder
from gdrae.models.encoders import ImageEncoder, PointEncoder
from gdrae.models.gdrae import GDRAE
from gdrae.models.registry import build_model
from gdrae.models.sv_predictor import SingularValuePredictor

__all__ = [
    "GDRAE", "FlowDecoder", "ImageEncoder", "PointEncoder", "SingularValuePredictor", "build_model",
    "image_decoder", "init_weights_", "sector2d_decoder",
]


def init_weights_(module: nn.Module, std: float = 0.02) -> None:
    """Every Linear and Conv2d: weight ~ N(0, std), bias 0. ConvTranspose2d keeps PyTorch's default.

    Reference: docs/model.md section 3 (the transposed convs are not re-initialised, a quirk of the original).
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def build_gdrae(cfg) -> GDRAE:
    """The GDRAE module described by ``cfg`` (a ``RunConfig`` or its ``model`` section).

    With a RunConfig, the loss weights, ``train.spectral_route`` and whether
    the spectral terms are computed at all (not for the ablation) come from it;
    with a model section alone, the published image weights.
    """
    from gdrae.config import LossConfig
    from gdrae.losses import spectral_weighted

    m = getattr(cfg, "model", cfg)
    loss = getattr(cfg, "loss", LossConfig())
    route = cfg.train.spectral_route if hasattr(cfg, "train") else "auto"
    if m.kind == "image":
        encoder = ImageEncoder(m.channels, m.nz, m.encoder_width)
        decoder = image_decoder(m.nz, m.init_size, m.ncs, m.hidden_ncs, m.middle_ns_flows)
        data_channels = m.channels
    else:
        encoder = PointEncoder(m.nz)
        decoder = sector2d_decoder(m.nz, m.sector2d.input_nc, m.sector2d.hidden_nc, m.sector2d.n_flows)
        data_channels = 2
    model = GDRAE(
        m.kind, encoder, decoder, SingularValuePredictor(m.nz, m.sv_hidden),
        nz=m.nz, data_channels=data_channels, sigma=m.sigma, prior_radius=m.prior_radius, sn_power=m.sn_power,
        posterior_noise=m.posterior_noise, spectral_route=route, spectral=spectral_weighted(loss),
    )
    init_weights_(model)
    model.weights = {"model": loss.model_dump()}
    return model
