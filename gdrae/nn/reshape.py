"""Fixed reshapes of the flow decoder: space-to-depth, its inverse, zero padding.

Reference: docs/model.md section 4 (channel order c*s^2 + i*s + j, as
``torch.nn.functional.pixel_unshuffle``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gdrae.nn.base import LinearBlock, Tape


class Squeeze(LinearBlock):
    """(C, H, W) -> (C*s^2, H/s, W/s); input channel c, offset (i, j) -> channel c*s^2 + i*s + j."""

    def __init__(self, factor: int):
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_unshuffle(x, self.factor)

    def vjp(self, u: Tensor, ctx: None, tape: Tape | None = None) -> Tensor:
        return F.pixel_shuffle(u, self.factor)  # a permutation: transpose = inverse

    def inverse(self, y: Tensor) -> Tensor:
        return F.pixel_shuffle(y, self.factor)

    def extra_repr(self) -> str:
        return str(self.factor)


class Unsqueeze(LinearBlock):
    """(C*s^2, H, W) -> (C, H*s, W*s), the inverse of :class:`Squeeze`."""

    def __init__(self, factor: int):
        super().__init__()
        self.factor = factor

    def forward(self, x: Tensor) -> Tensor:
        return F.pixel_shuffle(x, self.factor)

    def vjp(self, u: Tensor, ctx: None, tape: Tape | None = None) -> Tensor:
        return F.pixel_unshuffle(u, self.factor)

    def inverse(self, y: Tensor) -> Tensor:
        return F.pixel_unshuffle(y, self.factor)

    def extra_repr(self) -> str:
        return str(self.factor)


class ConcatZero(LinearBlock):
    """(C, H, W) -> (2C, H, W): appends C zero channels (an isometry)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([x, torch.zeros_like(x)], dim=1)

    def vjp(self, u: Tensor, ctx: None, tape: Tape | None = None) -> Tensor:
        return u[:, : u.shape[1] // 2]

    def inverse(self, y: Tensor) -> Tensor:
        return y[:, : y.shape[1] // 2]
