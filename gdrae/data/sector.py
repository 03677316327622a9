"""The Sector2D data: points on a quarter annulus 1 <= r <= 2, 0 <= angle <= pi/2.

u, v ~ U[0, 1]; radius = 1 + F(u); angle = v * pi / 2;
x = (radius * cos(angle), radius * sin(angle)).
``sector2d`` uses F(u) = u (denser near the inner rim); ``sector2dunif`` uses
radius = sqrt(1 + 3u), the inverse radial CDF of the annulus, so the points
are uniform on the sector.
Reference: Pan, Niu and Zhang, "Geometric Inductive Biases for Identifiable
Unsupervised Learning of Disentangled Representations", AAAI 2023 (Sector2D).
"""
from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where points are drawn, so the dataset registry starts without it
    import torch

DATASETS = {"sector2d": False, "sector2dunif": True}  # the Sector2D dataset names -> uniform density


def sector_radius(u: np.ndarray | torch.Tensor, uniform: bool):
    """Radius for u in [0, 1]: 1 + u, or sqrt(1 + 3u) for the uniform-density variant."""
    if uniform:
        return (1.0 + 3.0 * u) ** 0.5
    return 1.0 + u


def sector_points(u: np.ndarray | torch.Tensor, v: np.ndarray | torch.Tensor, uniform: bool):
    """Map (u, v) in [0, 1]^2 to points (..., 2) on the sector (numpy or torch in, same out)."""
    radius = sector_radius(u, uniform)
    angle = v * (math.pi / 2)
    torch = sys.modules.get("torch")  # a tensor exists only once torch is imported
    if torch is not None and isinstance(u, torch.Tensor):
        return torch.stack((radius * torch.cos(angle), radius * torch.sin(angle)), dim=-1)
    return np.stack((radius * np.cos(angle), radius * np.sin(angle)), axis=-1)


def sample_sector(n: int, uniform: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` fresh Sector2D points, float32 (n, 2), drawn with ``generator`` (CPU generator or None)."""
    import torch

    uv = torch.rand(n, 2, generator=generator, dtype=torch.float32)
    return sector_points(uv[:, 0], uv[:, 1], uniform).to(torch.float32)


def sector_grid(n_radius: int, n_angle: int, uniform: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A regular (radius, angle) grid of the sector, in grid order (radius slow, angle fast).

    The grid is regular in (u, v): cell centres (i + 0.5) / n, so for
    ``sector2dunif`` each cell holds the same probability mass. Returns
    ``(points (n_radius * n_angle, 2) float32, radii (n_radius,), angles (n_angle,))``.
    """
    u = (np.arange(n_radius) + 0.5) / n_radius
    v = (np.arange(n_angle) + 0.5) / n_angle
    uu, vv = np.meshgrid(u, v, indexing="ij")
    points = sector_points(uu.ravel(), vv.ravel(), uniform).astype(np.float32)
    return points, np.asarray(sector_radius(u, uniform), dtype=np.float64), v * (math.pi / 2)
