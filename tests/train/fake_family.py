"""A small fake model family for the trainer's tests: two parameter groups, Sector2D points, and a hook.

It meets the model contract (gdrae.models.contract) with a few linear maps, so
the trainer's behaviour is tested without GDRAE's cost or GDRAE's code: the
group "main" (encoder, decoder) minimises the squared error plus a critic's
score of its codes; the group "critic" fits that critic on detached codes.
``Fake.hook(call, terms)``, when set, runs on every ``loss_terms`` call
(1-based count) and may change the terms, raise, or send a signal.
"""
from __future__ import annotations

import torch
from torch import nn

from gdrae.models.contract import Model


class Fake(Model):
    family = "fake"
    groups = ("main", "critic")
    kind = "sector2d"
    latent_range = 1.0
    hook = None  # set by a test: hook(call, terms) -> None

    def __init__(self, nz: int = 2) -> None:
        super().__init__()
        self.nz = nz
        self.encoder, self.decoder, self.critic = nn.Linear(2, nz), nn.Linear(nz, 2), nn.Linear(nz, 1)
        self.weights = {"main": {"recon": 1.0, "score": 0.1}, "critic": {"fit": 1.0}}
        self.calls = 0

    def encode(self, x):
        return self.encoder(x)

    def data_logits(self, z):
        return self.decoder(z)

    def sample_prior(self, n, generator=None):
        ref = self.encoder.weight
        return torch.rand(n, self.nz, generator=generator, device=ref.device, dtype=ref.dtype) * 2 - 1

    def loss_terms(self, x, step):
        z = self.encode(x) + 0.01 * torch.randn(x.shape[0], self.nz, device=x.device)
        terms = {"main": {"recon": (self.decoder(z) - x).square().sum(1).mean(), "score": self.critic(z).mean(),
                          "monitor/step": step.detach().float()},
                 "critic": {"fit": (self.critic(z.detach()) - 1).square().mean()}}
        self.calls += 1
        if Fake.hook is not None:
            Fake.hook(self.calls, terms)
        return terms

    def parameter_groups(self):
        return {"main": [*self.encoder.parameters(), *self.decoder.parameters()],
                "critic": list(self.critic.parameters())}

    def optimizer_settings(self, cfg):
        return {**super().optimizer_settings(cfg), "critic": (1e-3, (0.5, 0.9), "critic.lr", "critic.betas")}


FAKE_CONFIG = ["model.family=beta_vae", "model.kind=sector2d", "model.nz=2",
               "data.name=sector2dunif", "data.batch_size=8", "train.diag_points=4", "train.device=cpu"]
