"""The synthetic sets: Sector2D grids and the procedural dSprites-like images."""
import math

import numpy as np
import pytest

from gdrae.data.cache import cache_path, open_cache
from pipelines.registry import get_spec
from pipelines.datasets.shapes2d_synth import SIZES, render_sprite
from pipelines.store import prepare


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("cache")
    prepare("shapes2d-synth-small", cache_dir, cache_dir, progress=False)
    cache = open_cache(cache_path(cache_dir, "shapes2d-synth-small"))
    return cache, cache.to_grid_order(cache.images[:]).reshape(3, 6, 10, 16, 16, 64, 64)


@pytest.mark.parametrize("name,uniform", [("sector2d", False), ("sector2dunif", True)])
def test_sector_caches_hold_their_regular_grid(tmp_path, name, uniform):
    prepare(name, tmp_path, tmp_path, progress=False)
    cache = open_cache(cache_path(tmp_path, name))
    assert cache.kind == "points" and cache.points.shape == (4096, 2)
    assert cache.factor_names == ("radius", "angle") and cache.factor_sizes == (64, 64)
    points = cache.points[:].astype(np.float64)
    radius, angle = np.hypot(points[:, 0], points[:, 1]), np.arctan2(points[:, 1], points[:, 0])
    radii, angles = np.array(cache.factor_values[0]), np.array(cache.factor_values[1])
    np.testing.assert_allclose(radius, radii[cache.factors[:, 0]], rtol=1e-6)
    np.testing.assert_allclose(angle, angles[cache.factors[:, 1]], rtol=1e-5)
    assert 1 < radii[0] < radii[-1] < 2 and 0 < angles[0] < angles[-1] < math.pi / 2
    u = (np.arange(64) + 0.5) / 64
    np.testing.assert_allclose(radii, np.sqrt(1 + 3 * u) if uniform else 1 + u)


def test_full_procedural_set_has_the_dsprites_grid():
    spec = get_spec("shapes2d-synth")
    assert spec.factor_names == ("shape", "scale", "orientation", "pos_x", "pos_y")
    assert spec.factor_sizes == (3, 6, 40, 32, 32) and int(np.prod(spec.factor_sizes)) == 737280
    converted = spec.convert(None)
    values = converted.factor_values
    assert values[1][0] == 0.5 and values[1][-1] == 1.0 and len(values[2]) == 40
    assert values[2][0] == 0 and values[2][-1] == pytest.approx(2 * math.pi)
    first = next(converted.blocks)
    assert first.shape == (1024, 1, 64, 64) and first.dtype == np.uint8


def test_small_set_shape_and_values(small):
    cache, images = small
    assert cache.n == 46080 == int(np.prod(SIZES["shapes2d-synth-small"]))
    assert cache.factor_sizes == (3, 6, 10, 16, 16)
    assert set(np.unique(images[:, :, :, ::5, ::5])) == {0, 255}  # binary, stored 0/255
    assert (images.reshape(-1, 4096).max(axis=1) == 255).all()  # every image shows its sprite


def _centroid(image):
    rows, cols = np.nonzero(image)
    return rows.mean(), cols.mean()


def test_sprite_area_grows_with_scale(small):
    _, images = small
    for shape in range(3):
        areas = [(images[shape, s, 3, 7, 7] > 0).sum() for s in range(6)]
        assert all(a < b for a, b in zip(areas, areas[1:])), areas
        assert areas[-1] / areas[0] == pytest.approx(4, rel=0.2)  # area ~ scale^2, scale 0.5 -> 1


def test_position_moves_the_centroid(small):
    _, images = small
    shift = round(31 / 15 * 5)  # pixels between position classes 0 and 5 (16 positions over 0..31 pixels)
    base_r, base_c = _centroid(images[1, 2, 4, 0, 0])
    r, c = _centroid(images[1, 2, 4, 5, 0])  # pos_x: to the right
    assert c - base_c == pytest.approx(shift, abs=1) and r == pytest.approx(base_r, abs=0.01)
    r, c = _centroid(images[1, 2, 4, 0, 5])  # pos_y: down
    assert r - base_r == pytest.approx(shift, abs=1) and c == pytest.approx(base_c, abs=0.01)
    # the same sprite, only moved
    np.testing.assert_array_equal(images[1, 2, 4, 0, 0][:32, :32], images[1, 2, 4, 15, 15][31:63, 31:63])
    assert images[1, 2, 4, 0, 0][32:].sum() == 0 and images[1, 2, 4, 0, 0][:, 32:].sum() == 0


def test_shapes_and_orientations_differ():
    square, ellipse, heart = (render_sprite(s, 1.0, 0.0) for s in ("square", "ellipse", "heart"))
    assert len({square.tobytes(), ellipse.tobytes(), heart.tobytes()}) == 3
    np.testing.assert_array_equal(render_sprite("square", 1.0, math.pi / 2), square)  # 4-fold symmetry
    assert not np.array_equal(render_sprite("heart", 1.0, math.pi / 2), heart)
    assert not np.array_equal(render_sprite("ellipse", 1.0, 0.3), ellipse)
