"""The one contract every model family meets: what the trainer, gdrae-eval, the code table, the pictures and
the benchmarks call, and nothing else (docs/design.md section 5).

A family is an ``nn.Module`` subclass of :class:`Model` with the submodules
``encoder`` and ``decoder`` and these members:

- ``encode(x)``: the posterior mean mu (B, nz), the representation every
  metric reads (disentanglement_lib's "mean" representation);
- ``data_logits(z)``: the decoder's output in data space: image logits
  (B, C, 64, 64) before the sigmoid, or Sector2D points (B, 2); ``decode(z)``
  is the data itself (images in [0, 1], points);
- ``sample_prior(n, generator)``: n draws of the prior; ``latent_range``: the
  span [-latent_range, latent_range] that traversals and charts sweep;
- ``loss_terms(x, step)``: the unweighted terms of one training step by
  parameter group, ``{group: {term: 0-d tensor}}``, keys starting with
  ``monitor/`` detached (``step`` is a 0-d tensor, so a compiled step is not
  recompiled each step); ``weights``: ``{group: {term: weight}}``, set from the
  config when the model is built (a term without a weight is left out of the
  total);
- ``parameter_groups()``: ``{group: [parameters]}``, disjoint and covering
  every parameter, the first group the main one; each group gets its own
  Adam with ``optimizer_settings(cfg)`` (``{group: (lr, betas, lr_key,
  betas_key)}``, the keys naming the config fields in train.log);
- ``evaluations``: the diagnostics the trainer evaluates besides
  ``train.metrics`` (every family: ``jacobian``; GDRAE also ``geometry``).

What only some families can do is a method only they have: the Gaussian
families' ``posterior(x) -> (mu, logvar)``; GDRAE's ``diagnostics()`` and
``predict_sv(z)`` (the singular-value bars). Code outside ``gdrae/models``
asks for such a method, never for a family's name.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn

Terms = dict[str, Tensor]


class Model(nn.Module):
    """Base class of the families: the members every family shares the same way."""

    family: str
    kind: str  # "image" or "sector2d"
    nz: int
    latent_range: float
    evaluations: tuple[str, ...] = ("jacobian",)
    weights: dict[str, dict[str, float | None]]

    @contextmanager
    def evaluating(self) -> Iterator["Model"]:
        """Eval mode inside, the previous mode restored after (a training model goes on training)."""
        was_training = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(was_training)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def decode(self, z: Tensor) -> Tensor:
        """Images in [0, 1] (B, C, H, W), or points (B, 2) for Sector2D."""
        out = self.data_logits(z)
        return torch.sigmoid(out) if self.kind == "image" else out

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """One group, ``self.groups[0]``, of every parameter (a family with more groups overrides this)."""
        return {self.groups[0]: list(self.parameters())}

    def optimizer_settings(self, cfg) -> dict[str, tuple[float, tuple[float, float], str, str]]:
        """The main group's Adam settings from ``train.lr`` and ``train.betas``."""
        return {self.groups[0]: (cfg.train.lr, tuple(cfg.train.betas), "train.lr", "train.betas")}
