"""Additive coupling: (a, b) -> (a, b + NN(a)), invertible whatever NN is.

Reference: Dinh, Krueger, Bengio, "NICE: Non-linear Independent Components
Estimation", ICLR 2015 workshop; used by GDRAE's flow decoder (docs/model.md section 4).
"""
from __future__ import annotations

import torch
from torch import Tensor

from gdrae.nn.base import Chain, Ctx, Tape, Transposable


class AdditiveCoupling(Transposable):
    """Splits channels in halves (a, b) and returns (a, b + net(a)).

    Jacobian [[I, 0], [J_net, I]], transpose [[I, J_net^T], [0, I]].
    """

    def __init__(self, net: Chain):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return torch.cat([a, b + self.net(a)], dim=1)

    def linearize(self, x: Tensor) -> tuple[Tensor, Ctx]:
        a, b = x.chunk(2, dim=1)
        h, ctx = self.net.linearize(a)
        return torch.cat([a, b + h], dim=1), ctx

    def jvp(self, v: Tensor, ctx: Ctx, tape: Tape | None = None) -> Tensor:
        va, vb = v.chunk(2, dim=1)
        return torch.cat([va, vb + self.net.jvp(va, ctx, tape)], dim=1)

    def vjp(self, u: Tensor, ctx: Ctx, tape: Tape | None = None) -> Tensor:
        ua, ub = u.chunk(2, dim=1)
        return torch.cat([ua + self.net.vjp(ub, ctx, tape), ub], dim=1)

    def stacked(self, x: Tensor, n: int, ctx: Ctx = None) -> tuple[Tensor, Ctx]:
        a, b = x.chunk(2, dim=1)
        h, ctx = self.net.stacked(a, n, ctx)
        return torch.cat([a, b + h], dim=1), ctx

    def inverse(self, y: Tensor) -> Tensor:
        a, c = y.chunk(2, dim=1)
        return torch.cat([a, c - self.net(a)], dim=1)
