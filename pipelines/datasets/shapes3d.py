"""3DShapes (``shapes3d``): 480,000 RGB 64x64 renders on a 6-factor grid.

The HDF5 file holds ``images`` (N, 64, 64, 3) uint8 and ``labels`` (N, 6)
float64 factor *values*; class indices are the ranks among the sorted
distinct values of each column. Images are read in slices of
:data:`pipelines.checks.BLOCK_ROWS` rows, so memory stays bounded whatever
the file size (the full file is about 5.9 GB).

The file is documented to be in grid order: that is verified from the labels
(a GdraeError names the file otherwise) rather than repaired, since
reordering would need random access across the whole file.

Reference: Burgess and Kim, "3D Shapes Dataset",
https://github.com/deepmind/3d-shapes (2018).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from gdrae.errors import GdraeError
from pipelines.base import Converted, DatasetSpec, RawFile
from pipelines.checks import BLOCK_ROWS, class_indices, grid_positions, require_grid_order, row_blocks

# size and sha256: tensorflow/datasets url_checksums/shapes3d.txt (267573662 bytes, sha256 0a0f6ed9...) and,
# independently, a public Shapes3D audit loader (SHAPES3D_SIZE_BYTES, SHAPES3D_SHA256); md5: the same loader and
# nmichlo/disent _groundtruth__shapes3d.py (uri_hash "full" 099a2078...).
RAW = RawFile(
    relpath="3dshapes/raw/3dshapes.h5",
    source="https://github.com/deepmind/3d-shapes",
    url="https://storage.googleapis.com/3d-shapes/3dshapes.h5",
    size=267_573_662,
    sha256="0a0f6ed98baff276a50f3a081a7434d788da63cb135a98189b2a5b5769be1785",
    md5="099a2078d58cec4daad0702c55d06868",
)
_FACTORS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")


def convert(raw_dir: Path) -> Converted:
    """Check the 3DShapes ``.h5`` and stream its images in grid order as (B, 3, 64, 64)."""
    path = Path(raw_dir) / RAW.relpath
    try:
        with h5py.File(path, "r") as f:
            images, labels = _dataset(f, path, "images"), _dataset(f, path, "labels")
            n = images.shape[0]
            if images.shape[1:] != (64, 64, 3) or images.dtype != np.uint8:
                raise GdraeError(f"{path}: images: expected uint8 (N, 64, 64, 3), got {images.dtype} {images.shape}")
            if labels.shape != (n, 6) or labels.dtype.kind != "f":
                raise GdraeError(f"{path}: labels: expected float ({n}, 6), got {labels.dtype} {labels.shape}")
            values = labels[()]
    except OSError as e:
        raise GdraeError(f"{path}: expected a readable HDF5 file, got a corrupt or truncated file ({e})") from None
    if not np.isfinite(values).all():
        raise GdraeError(f"{path}: labels: expected finite factor values, got NaN or inf")
    classes, sizes, factor_values = class_indices(values)
    require_grid_order(grid_positions(classes, sizes, _FACTORS, path), path)
    return Converted(factor_sizes=sizes, factor_values=factor_values, row_shape=(3, 64, 64), blocks=_blocks(path, n),
                     pipeline={"layout": "NHWC -> NCHW"})


def _dataset(f: h5py.File, path: Path, name: str) -> h5py.Dataset:
    if not isinstance(f.get(name), h5py.Dataset):
        raise GdraeError(f"{path}: expected a dataset named {name!r}, got {sorted(f.keys())}")
    return f[name]


def _blocks(path: Path, n: int) -> Iterator[np.ndarray]:
    """Slices of ``images`` transposed to (B, 3, 64, 64), one slice in memory at a time."""
    try:
        with h5py.File(path, "r") as f:
            images = f["images"]
            for start, stop in row_blocks(n, BLOCK_ROWS):
                yield np.ascontiguousarray(images[start:stop].transpose(0, 3, 1, 2))
    except OSError as e:
        raise GdraeError(f"{path}: images: expected readable data, got a corrupt or truncated file ({e})") from None


SPEC = DatasetSpec(
    name="shapes3d",
    description="3DShapes: 3D object in a room, 64x64 RGB renders",
    factor_names=_FACTORS,
    factor_sizes=(10, 10, 10, 8, 4, 15),
    raw_files=(RAW,),
    convert=convert,
)
