"""Elementwise nonlinearities; their Jacobian is diagonal, held as detached slopes."""
from __future__ import annotations

import torch
from torch import Tensor

from gdrae.fastpaths import fast
from gdrae.nn.base import Tape, Transposable, compiling, tile_ctx


def positive_mask(x: Tensor) -> Tensor:
    """1 where x > 0, else 0, detached, in x's dtype and memory layout.

    Written by the comparison straight into a float tensor: one pass, about
    twice as fast on CPU as ``(x > 0).to(x.dtype)``, the plain form, taken
    when compiling (the compiler fuses it, and cannot trace ``out=`` into
    channels-last) or with the fast path ``positive_mask`` switched off
    (gdrae.fastpaths).
    """
    x = x.detach()
    if compiling() or not fast("positive_mask"):
        return (x > 0).to(x.dtype)
    return torch.gt(x, 0, out=torch.empty_like(x))


class ReLU(Transposable):
    """max(x, 0); slope 1 where x > 0, else 0."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(x)

    def linearize(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.relu(x), positive_mask(x)

    def jvp(self, v: Tensor, ctx: Tensor, tape: Tape | None = None) -> Tensor:
        return v * ctx

    def vjp(self, u: Tensor, ctx: Tensor, tape: Tape | None = None) -> Tensor:
        return u * ctx

    def stacked(self, x: Tensor, n: int, ctx: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One product with the slopes for all rows: max(x, 0) is x times its own mask, whose gradient
        is that mask too."""
        live = positive_mask(x[:n])
        ctx = live if ctx is None else ctx
        return x * torch.cat([live, tile_ctx(ctx, x.shape[0] // n - 1)]), ctx


class Sigmoid(Transposable):
    """1 / (1 + exp(-x)); slope s(1 - s). Injective, inverse is the logit."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(x)

    def linearize(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s = torch.sigmoid(x)
        return s, (s * (1 - s)).detach()

    def jvp(self, v: Tensor, ctx: Tensor, tape: Tape | None = None) -> Tensor:
        return v * ctx

    def vjp(self, u: Tensor, ctx: Tensor, tape: Tape | None = None) -> Tensor:
        return u * ctx

    def inverse(self, y: Tensor) -> Tensor:
        return torch.logit(y)
