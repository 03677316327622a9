"""Sector2D (docs/model.md section 7): a regular (radius, angle) grid of points on the quarter annulus.

Training draws fresh points every step (``gdrae.data.sector.sample_sector``);
the cache holds a fixed regular grid so that evaluation knows the factors of
every point. The grid is 64 x 64 = 4,096 points, regular in (u, v) at cell
centres: for ``sector2d`` that is regular in radius, for ``sector2dunif``
each cell carries the same probability mass (radius = sqrt(1 + 3u)).
factor_values hold the radius and the angle (radians) of each class.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from gdrae.data.sector import DATASETS, sector_grid
from pipelines.base import Converted, DatasetSpec

GRID = (64, 64)  # (radius, angle) classes
DESCRIPTIONS = {False: "radius 1 + u (non-uniform density)", True: "uniform density"}


def convert(raw_dir: Path, uniform: bool, grid: tuple[int, int] = GRID) -> Converted:
    """The regular grid as one block of points; ``raw_dir`` is unused (synthetic)."""
    points, radii, angles = sector_grid(grid[0], grid[1], uniform)
    return Converted(
        factor_names=["radius", "angle"],
        factor_sizes=list(grid),
        factor_values=[radii.tolist(), angles.tolist()],
        array_name="points",
        row_shape=(2,),
        dtype="float32",
        blocks=iter([points]),
        pipeline={"grid": "regular in (u, v) at cell centres",
                  "radius": "sqrt(1 + 3u)" if uniform else "1 + u", "angle": "v * pi / 2"},
    )


SPECS = {
    name: DatasetSpec(
        name=name,
        description=f"Sector2D: quarter annulus, {DESCRIPTIONS[uniform]}; synthetic",
        factor_names=("radius", "angle"),
        factor_sizes=GRID,
        raw_files=(),
        convert=partial(convert, uniform=uniform),
    )
    for name, uniform in DATASETS.items()
}
