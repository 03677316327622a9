"""The qualitative pictures of a model (docs/model.md section 8), for the trainer and the evaluator alike.

:func:`model_pictures` runs the model (decoding, and encoding unless the
codes are given) and hands the numbers to :mod:`gdrae.viz`, which draws.
The trainer shows a fixed sample of its data with the prior's pictures; the
evaluator shows one stored image (or the whole Sector2D grid) with the codes
of its code table.
"""
from __future__ import annotations

import numpy as np
import torch

from gdrae import viz

TRAVERSAL_STEPS = 10  # values per latent in a traversal, from -r to r
SV_DRAWS = 10000  # prior draws behind the singular-value bars


@torch.no_grad()
def model_pictures(model, real: torch.Tensor, mu: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> dict[str, np.ndarray]:
    """Pictures of ``model`` for the real data ``real`` (images (N, C, H, W) in [0, 1], or points (N, 2)),
    as RGB uint8 arrays by name.

    ``mu`` are the codes of ``real`` (default: encoded here). Images:
    ``reconstruction`` (real / reconstruction pairs) and ``traversal_real``
    (one row per latent: real[0], its reconstruction, the latent swept over
    the latent range). Sector2D: ``sector_grid`` (a latent grid on the data
    plane) and ``sector_mu`` (the codes coloured by the data's radius). With
    ``generator`` (the trainer's pictures, drawn in this order from it):
    ``sv_bars`` (mean predicted singular values over 10000 prior draws; only
    for a model that predicts them, GDRAE) and, for images,
    ``traversal_random`` (sweeps from a prior draw). Traversals and the latent
    grid span the model's ``latent_range`` (GDRAE's prior box, +-2 for a
    Gaussian prior). The model is in eval mode inside; its mode is restored after.
    """
    device, r = model.device, model.latent_range
    real = real.to(device)
    with model.evaluating():
        pictures = {}
        if generator is not None and hasattr(model, "predict_sv"):
            z_many = model.sample_prior(SV_DRAWS, generator=generator)
            sv_mean = torch.cat([model.predict_sv(z) for z in z_many.split(2000)]).mean(0)
            pictures["sv_bars"] = viz.figure_to_array(viz.sv_bars(sv_mean.cpu().numpy()))
        mu = model.encode(real) if mu is None else mu.to(device)
        if model.kind == "sector2d":
            codes = torch.from_numpy(viz.sector_grid_codes(r)).to(device)
            fig = viz.sector_correspondence(codes.cpu().numpy(), model.decode(codes).cpu().numpy(), lines=11)
            pictures["sector_grid"] = viz.figure_to_array(fig)
            fig = viz.mu_scatter(mu.cpu().numpy(), real.norm(dim=1).cpu().numpy(), r)
            pictures["sector_mu"] = viz.figure_to_array(fig)
            return pictures
        recon = model.decode(mu)
        pictures["reconstruction"] = viz.reconstruction_grid(real.cpu().numpy(), recon.cpu().numpy())

        def sweep(z: torch.Tensor) -> np.ndarray:  # (nz,) code -> (nz, steps, C, H, W) decoded traversal
            codes = torch.from_numpy(viz.traversal_codes(z.cpu().numpy(), r, TRAVERSAL_STEPS)).to(device)
            return model.decode(codes).cpu().numpy().reshape(model.nz, TRAVERSAL_STEPS, *real.shape[1:])

        pictures["traversal_real"] = viz.traversal_grid(sweep(mu[0]), real[0].cpu().numpy(), recon[0].cpu().numpy())
        if generator is not None:
            pictures["traversal_random"] = viz.traversal_grid(sweep(model.sample_prior(1, generator=generator)[0]))
    return pictures
