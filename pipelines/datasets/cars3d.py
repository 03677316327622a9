"""Cars3D (``cars3d``): 183 car models rendered at 4 elevations x 24 azimuths.

Each MATLAB v5 file ``car_NNN_mesh.mat`` holds ``im`` (128, 128, 3, 24, 4)
uint8 = (H, W, RGB, azimuth, elevation). The object index is the position of
the file in *sorted* file-name order (reproducible, unlike directory order);
the file numbers (which have gaps) are kept as the object factor's values.
Images are downscaled to 64x64 with PIL's antialiasing LANCZOS filter. All
files are read and downscaled up front (about 220 MB at 64x64), because the
grid order (elevation, azimuth, object) interleaves every file in every block.

Reference: Reed et al., "Deep Visual Analogy-Making" (NeurIPS 2015).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gdrae.errors import GdraeError
from pipelines.base import Converted, DatasetSpec, RawFile
from pipelines.checks import RESIZE_FILTER, array_blocks, downscale, require_readable

# md5: nmichlo/disent _groundtruth__cars3d.py (uri_hash "full") and the latte project's cars3d.py (MD5_CHECKSUM)
# agree. Size and sha256: no public source found: unknown. The tarball also holds data/sprites and
# data/shapes48.mat; only the 183 car files are unpacked.
RAW = RawFile(
    relpath="cars3d/raw",  # a folder of car_NNN_mesh.mat files
    source="http://www.scottreed.info/files/nips2015-analogy-data.tar.gz (Reed et al. 2015, folder data/cars)",
    url="http://www.scottreed.info/files/nips2015-analogy-data.tar.gz",
    md5="4e866a7919c1beedf53964e6f7a23686",
    unpack="untar",
    members="data/cars/car_*_mesh.mat",
    count=183,
)
_FACTORS = ("elevation", "azimuth", "object_type")
_NAME = re.compile(r"car_(\d+)_mesh\.mat")
_SIZE = 64


def convert(raw_dir: Path) -> Converted:
    """Read every car file in sorted order, downscale, and hand out rows in grid order."""
    folder = Path(raw_dir) / RAW.relpath
    paths = sorted(p for p in folder.iterdir() if _NAME.fullmatch(p.name))
    if not paths:
        raise GdraeError(f"{folder}: expected files car_NNN_mesh.mat, got none (get them from {RAW.source})")
    first = _read_car(paths[0])  # (elevation, azimuth, 3, 64, 64)
    n_elevation, n_azimuth = first.shape[:2]
    grid = np.empty((n_elevation, n_azimuth, len(paths), 3, _SIZE, _SIZE), dtype=np.uint8)  # grid order
    grid[:, :, 0] = first
    for obj, path in enumerate(paths[1:], start=1):
        car = _read_car(path)
        if car.shape != first.shape:
            raise GdraeError(
                f"{path}: im: expected {n_azimuth} azimuths x {n_elevation} elevations like {paths[0].name}, "
                f"got {car.shape[1]} x {car.shape[0]}"
            )
        grid[:, :, obj] = car
    sizes = [n_elevation, n_azimuth, len(paths)]
    return Converted(
        factor_sizes=sizes,
        factor_values=[
            [float(i) for i in range(n_elevation)],
            [float(i) for i in range(n_azimuth)],
            [float(_NAME.fullmatch(p.name).group(1)) for p in paths],
        ],
        row_shape=(3, _SIZE, _SIZE),
        blocks=array_blocks(grid.reshape(-1, 3, _SIZE, _SIZE)),
        files=paths,
        pipeline={
            "resize": {"from": [128, 128], "to": [_SIZE, _SIZE], "filter": RESIZE_FILTER},
            "object_order": "sorted file names; factor values are the file numbers",
        },
    )


def _read_car(path: Path) -> np.ndarray:
    """``im`` of one file as (elevation, azimuth, 3, 64, 64) uint8."""
    import scipy.io  # here, so the dataset registry starts without it

    require_readable(path)
    try:
        content = scipy.io.loadmat(path, variable_names=["im"])
    except Exception as e:  # scipy raises many types (MatReadError, ValueError, OSError, zlib.error) for damaged files
        raise GdraeError(f"{path}: expected a readable MATLAB v5 file, got a corrupt or truncated file ({e})") from None
    if "im" not in content:
        raise GdraeError(f"{path}: expected a variable named 'im', got {sorted(name for name, _, _ in scipy.io.whosmat(path))}")
    im = content["im"]
    if im.dtype != np.uint8 or im.ndim != 5 or im.shape[:3] != (128, 128, 3):
        raise GdraeError(f"{path}: im: expected uint8 (128, 128, 3, azimuth, elevation), got {im.dtype} {im.shape}")
    n_azimuth, n_elevation = im.shape[3:]
    images = np.ascontiguousarray(im.transpose(4, 3, 2, 0, 1)).reshape(-1, 3, 128, 128)
    return downscale(images, _SIZE).reshape(n_elevation, n_azimuth, 3, _SIZE, _SIZE)


SPEC = DatasetSpec(
    name="cars3d",
    description="Cars3D: car CAD models, 128x128 RGB renders downscaled to 64x64",
    factor_names=_FACTORS,
    factor_sizes=(4, 24, 183),
    raw_files=(RAW,),
    convert=convert,
)
