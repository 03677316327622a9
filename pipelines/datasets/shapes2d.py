"""dSprites (``shapes2d``): 737,280 binary 64x64 sprites on a 5-factor grid.

The ``.npz`` holds ``imgs`` (N, 64, 64) uint8 0/1, ``latents_classes`` (N, 6)
(colour, shape, scale, orientation, pos_x, pos_y), ``latents_values`` and a
*pickled* ``metadata`` object. Only ``imgs`` and ``latents_classes`` are read,
straight from the zip members with numpy's ``.npy`` header reader, so no
pickle is ever loaded and the 3 GB image array is streamed in blocks rather
than decompressed whole. The constant colour column is dropped and pixels
0/1 become 0/255.

The file is documented to be in grid order: that is verified from the labels
(a GdraeError names the file otherwise) rather than repaired, since
reordering would need random access into a compressed stream.

Reference: Matthey et al., "dSprites: Disentanglement testing Sprites
dataset", https://github.com/deepmind/dsprites-dataset (2017).
"""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from gdrae.errors import GdraeError
from pipelines.arrays import npy_header
from pipelines.base import Converted, DatasetSpec, RawFile
from pipelines.checks import BLOCK_ROWS, class_indices, grid_positions, require_grid_order, row_blocks

# md5: the same value pinned by several independent public loaders, e.g. the vaetc project's DSprites
# (md5_true) and the latte project's dsprites.py (MD5_CHECKSUM).
# Size and sha256: no two public sources found (TFDS pins the .hdf5 variant, not this .npz): unknown.
RAW = RawFile(
    relpath="dsprites/dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
    source="https://github.com/deepmind/dsprites-dataset",
    url="https://raw.githubusercontent.com/deepmind/dsprites-dataset/master/"
        "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz",
    md5="7da33b31b13a06f4b04a70402ce90c2e",
)
_FACTORS = ("shape", "scale", "orientation", "pos_x", "pos_y")
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)


def convert(raw_dir: Path) -> Converted:
    """Check the dSprites ``.npz`` and stream its images in grid order as 0/255."""
    path = Path(raw_dir) / RAW.relpath
    shape, _ = _member_header(path, "imgs", np.uint8)
    classes_raw = _read_member(path, "latents_classes", None)
    if classes_raw.ndim != 2 or classes_raw.shape[1] != 6 or classes_raw.dtype.kind not in "iu":
        raise GdraeError(f"{path}: latents_classes: expected integer array (N, 6), got {classes_raw.dtype} {classes_raw.shape}")
    if len(shape) != 3 or shape[1:] != (64, 64) or shape[0] != len(classes_raw):
        raise GdraeError(f"{path}: imgs: expected shape ({len(classes_raw)}, 64, 64), got {shape}")
    if len(np.unique(classes_raw[:, 0])) != 1:
        raise GdraeError(f"{path}: latents_classes: expected one colour value (column 0), got {len(np.unique(classes_raw[:, 0]))}")
    classes, sizes, values = class_indices(classes_raw[:, 1:])
    require_grid_order(grid_positions(classes, sizes, _FACTORS, path), path)
    return Converted(factor_sizes=sizes, factor_values=values, row_shape=(1, 64, 64),
                     blocks=_blocks(path, len(classes)),
                     pipeline={"pixels": "0/1 -> 0/255", "dropped_factors": ["color"]})


def _blocks(path: Path, n: int) -> Iterator[np.ndarray]:
    """Blocks of (B, 1, 64, 64) uint8 0/255 read from the ``imgs`` member in order."""
    with zipfile.ZipFile(path) as archive, archive.open("imgs.npy") as member:
        _read_header(member, path, "imgs")
        for start, stop in row_blocks(n, BLOCK_ROWS):
            block = _read_rows(member, path, "imgs", np.uint8, (stop - start, 64, 64))
            if block.max(initial=0) > 1:
                raise GdraeError(f"{path}: imgs: expected pixel values 0/1, got {int(block.max())} near row {start}")
            yield (block * np.uint8(255))[:, None]


def _member_header(path: Path, name: str, dtype: type | None) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of member ``name`` from its ``.npy`` header (no data read)."""
    try:
        with zipfile.ZipFile(path) as archive:
            if f"{name}.npy" not in archive.namelist():
                raise GdraeError(f"{path}: expected an array named {name!r}, got {sorted(n[:-4] for n in archive.namelist())}")
            with archive.open(f"{name}.npy") as member:
                shape, found = _read_header(member, path, name)
    except GdraeError:
        raise
    except _CORRUPT as e:
        raise GdraeError(f"{path}: expected a readable .npz archive, got a corrupt or truncated file ({e})") from None
    if dtype is not None and found != np.dtype(dtype):
        raise GdraeError(f"{path}: {name}: expected dtype {np.dtype(dtype)}, got {found}")
    return shape, found


def _read_member(path: Path, name: str, dtype: type | None) -> np.ndarray:
    """Member ``name`` read whole (small arrays only), never unpickling anything."""
    shape, found = _member_header(path, name, dtype)
    try:
        with zipfile.ZipFile(path) as archive, archive.open(f"{name}.npy") as member:
            _read_header(member, path, name)
            return _read_rows(member, path, name, found, shape)
    except GdraeError:
        raise
    except _CORRUPT as e:
        raise GdraeError(f"{path}: {name}: expected a readable array, got a corrupt or truncated file ({e})") from None


def _read_header(member: BinaryIO, path: Path, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Parse a ``.npy`` header; object (pickled) and Fortran-order arrays are refused."""
    shape, fortran, dtype = npy_header(member, path, name)
    if fortran:
        raise GdraeError(f"{path}: {name}: expected a C-order array, got Fortran order")
    return shape, dtype


def _read_rows(member: BinaryIO, path: Path, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """The next ``prod(shape)`` elements of an open member as an array of ``shape``."""
    dtype = np.dtype(dtype)
    want = int(np.prod(shape)) * dtype.itemsize
    try:
        data = member.read(want)
    except _CORRUPT as e:
        raise GdraeError(f"{path}: {name}: expected a readable array, got a corrupt or truncated file ({e})") from None
    if len(data) != want:
        raise GdraeError(f"{path}: {name}: expected {want} more bytes, got {len(data)} (truncated file)")
    return np.frombuffer(data, dtype=dtype).reshape(shape).copy()


SPEC = DatasetSpec(
    name="shapes2d",
    description="dSprites: 2D shapes (square, ellipse, heart), 64x64 binary images",
    factor_names=_FACTORS,
    factor_sizes=(3, 6, 40, 32, 32),
    raw_files=(RAW,),
    convert=convert,
)
