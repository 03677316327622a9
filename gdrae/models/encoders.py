"""Encoders x -> mu (docs/model.md section 3).

Reference: Pan, Niu, Zhang, AAAI 2023 (GDRAE), encoder architectures.
"""
from __future__ import annotations

from torch import Tensor, nn


class ImageEncoder(nn.Module):
    """64x64 image -> mu (B, nz): four k4 s2 convs, a k4 conv to 1x1 of ``width`` channels, a 1x1 conv.

    width 128 is the shapes2d (dSprites) encoder, 256 the faces / small_norb /
    shapes3d / cars3d one.
    """

    def __init__(self, channels: int, nz: int, width: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(64, width, 4, 1, 0), nn.ReLU(),
            nn.Conv2d(width, nz, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten(1)


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers of the given sizes with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class PointEncoder(nn.Module):
    """Sector2D encoder: MLP 2 -> hidden -> hidden -> nz with ReLU, deterministic."""

    def __init__(self, nz: int, hidden: int = 1024, in_dim: int = 2):
        super().__init__()
        self.net = mlp([in_dim, hidden, hidden, nz])

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
