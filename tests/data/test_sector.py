import math

import numpy as np
import torch

from gdrae.data.sector import sample_sector, sector_grid


def _polar(points):
    points = np.asarray(points, dtype=np.float64)
    return np.hypot(points[:, 0], points[:, 1]), np.arctan2(points[:, 1], points[:, 0])


def test_samples_lie_on_the_quarter_annulus_and_follow_the_generator():
    for uniform in (False, True):
        x = sample_sector(20000, uniform, torch.Generator().manual_seed(0))
        assert x.shape == (20000, 2) and x.dtype == torch.float32
        r, a = _polar(x)
        assert r.min() >= 1 - 1e-5 and r.max() <= 2 + 1e-5
        assert a.min() >= -1e-6 and a.max() <= math.pi / 2 + 1e-6
        again = sample_sector(20000, uniform, torch.Generator().manual_seed(0))
        assert torch.equal(x, again)
        assert not torch.equal(x, sample_sector(20000, uniform, torch.Generator().manual_seed(1)))


def test_radius_distribution_of_each_variant():
    r_lin, _ = _polar(sample_sector(40000, False, torch.Generator().manual_seed(1)))
    r_uni, _ = _polar(sample_sector(40000, True, torch.Generator().manual_seed(1)))
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        # sector2d: radius = 1 + u is uniform on [1, 2]
        assert abs(np.mean(r_lin <= 1 + q) - q) < 0.01
        # sector2dunif: uniform area density, P(r <= s) = (s^2 - 1) / 3
        s = 1 + q
        assert abs(np.mean(r_uni <= s) - (s * s - 1) / 3) < 0.01


def test_grid_is_regular_in_grid_order():
    points, radii, angles = sector_grid(4, 3, uniform=False)
    assert points.shape == (12, 2) and points.dtype == np.float32
    np.testing.assert_allclose(radii, 1 + (np.arange(4) + 0.5) / 4)
    r, a = _polar(points)
    np.testing.assert_allclose(r.reshape(4, 3), np.repeat(radii[:, None], 3, 1), rtol=1e-6)
    np.testing.assert_allclose(a.reshape(4, 3), np.repeat(angles[None, :], 4, 0), rtol=1e-6)
    _, radii_u, _ = sector_grid(4, 3, uniform=True)
    np.testing.assert_allclose(radii_u, np.sqrt(1 + 3 * (np.arange(4) + 0.5) / 4))
