"""SmallNORB (``small_norb``): toy objects, 96x96 stereo grey, on a 5-factor grid.

The raw files are NORB binary matrices (not MATLAB despite ``.mat``): an
int32 magic number giving the element type, int32 ndim, max(3, ndim) int32
dims, then little-endian data. ``dat`` is (N, 2, 96, 96) uint8 stereo pairs
(camera 0 is used), ``cat`` (N,) int32 the category, ``info`` (N, 4) int32 =
instance, elevation, azimuth (0, 2, ..., 34, halved here), lighting.

The training and testing files hold disjoint instances and together fill
the grid (category, instance, elevation, azimuth, lighting) exactly once, in
no particular order: rows are REORDERED into grid order here (the labels
give a permutation; images are gathered from the files block by block),
then downscaled 96 -> 64 with PIL's antialiasing LANCZOS filter.

Reference: LeCun, Huang and Bottou, "Learning Methods for Generic Object
Recognition with Invariance to Pose and Lighting" (CVPR 2004).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from gdrae.errors import GdraeError
from pipelines.base import Converted, DatasetSpec, RawFile
from pipelines.checks import BLOCK_ROWS, RESIZE_FILTER, class_indices, downscale, grid_positions, row_blocks

SOURCE = "https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/"
SPLITS = {
    "training": "small_norb/raw/smallnorb-5x46789x9x18x6x2x96x96-training-{}.mat",
    "testing": "small_norb/raw/smallnorb-5x01235x9x18x6x2x96x96-testing-{}.mat",
}
# md5 of each .mat.gz: nmichlo/disent _groundtruth__norb.py (uri_hash "full") and independent torchvision-style
# smallNORB loaders ("md5_gz" / urls_train entries) agree. Sizes and sha256: only tensorflow/datasets
# url_checksums/smallnorb.txt lists them (one source): unknown here.
_MD5_GZ = {
    ("training", "dat"): "66054832f9accfe74a0f4c36a75bc0a2",
    ("training", "cat"): "23c8b86101fbf0904a000b43d3ed2fd9",
    ("training", "info"): "51dee1210a742582ff607dfd94e332e3",
    ("testing", "dat"): "e4ad715691ed5a3a5f138751a4ceb071",
    ("testing", "cat"): "5aa791cd7e6016cf957ce9bdb93b8603",
    ("testing", "info"): "a9454f3864d7fd4bb3ea7fc3eb84924e",
}
RAW = {  # each unzipped from the published <name>.gz
    (split, kind): RawFile(relpath=pattern.format(kind), source=SOURCE, md5=_MD5_GZ[split, kind], unpack="gunzip",
                           url=f"{SOURCE}{Path(pattern.format(kind)).name}.gz")
    for split, pattern in SPLITS.items() for kind in ("dat", "cat", "info")
}
MAGIC = {  # magic number -> element type
    0x1E3D4C55: np.dtype("u1"),
    0x1E3D4C54: np.dtype("<i4"),
    0x1E3D4C51: np.dtype("<f4"),
    0x1E3D4C53: np.dtype("<f8"),
    0x1E3D4C56: np.dtype("<i2"),
}
_FACTORS = ("category", "instance", "elevation", "azimuth", "lighting")
_SIZE = 64
_CAMERA_BYTES = 96 * 96  # one camera's image
_ROW_BYTES = 2 * _CAMERA_BYTES  # one stereo pair


def read_header(path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """(element type, dims, data offset) of a NORB binary matrix; checks the file length."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise GdraeError(f"{path}: expected a NORB binary matrix header of 8+ bytes, got {len(head)} (truncated file)")
        magic, ndim = (int(v) for v in np.frombuffer(head, dtype="<i4"))
        if magic not in MAGIC:
            raise GdraeError(f"{path}: expected a NORB magic number ({', '.join(hex(m) for m in MAGIC)}), got {magic:#x}")
        if not 0 < ndim <= 16:
            raise GdraeError(f"{path}: expected 1..16 dimensions in the header, got {ndim}")
        stored = max(3, ndim)
        raw_dims = f.read(4 * stored)
        if len(raw_dims) < 4 * stored:
            raise GdraeError(f"{path}: expected {stored} header dims, got a truncated header")
    dims = tuple(int(d) for d in np.frombuffer(raw_dims, dtype="<i4")[:ndim])
    offset = 8 + 4 * stored
    want = offset + int(np.prod(dims)) * MAGIC[magic].itemsize
    got = Path(path).stat().st_size
    if min(dims) < 0 or got != want:
        raise GdraeError(f"{path}: expected {want} bytes for a {MAGIC[magic]} matrix {dims}, got {got} (truncated or corrupt file)")
    return MAGIC[magic], dims, offset


def read_matrix(path: Path, dtype: np.dtype, shape: tuple[int | None, ...]) -> np.memmap:
    """Memory-map a NORB matrix after checking its type and shape (None = any size)."""
    found, dims, offset = read_header(path)
    if found != dtype or len(dims) != len(shape) or any(w is not None and w != d for w, d in zip(shape, dims)):
        want = "(" + ", ".join("N" if w is None else str(w) for w in shape) + ")"
        raise GdraeError(f"{path}: expected {dtype} matrix {want}, got {found} {dims}")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=dims)


def convert(raw_dir: Path) -> Converted:
    """Check the six NORB files, order all rows by grid index, and stream them downscaled."""
    paths = {key: Path(raw_dir) / raw.relpath for key, raw in RAW.items()}
    labels, counts = [], []
    for split in SPLITS:
        dat = read_matrix(paths[split, "dat"], np.dtype("u1"), (None, 2, 96, 96))
        n = dat.shape[0]
        category = read_matrix(paths[split, "cat"], np.dtype("<i4"), (n,))
        info = np.array(read_matrix(paths[split, "info"], np.dtype("<i4"), (n, 4)))
        if (info[:, 2] % 2).any():
            raise GdraeError(f"{paths[split, 'info']}: expected even azimuth values 0, 2, ..., 34, got an odd one")
        labels.append(np.column_stack([category, info[:, 0], info[:, 1], info[:, 2] // 2, info[:, 3]]))
        counts.append(n)
    classes, sizes, values = class_indices(np.concatenate(labels))
    where = Path(raw_dir) / "small_norb/raw"
    order = np.argsort(grid_positions(classes, sizes, _FACTORS, where))  # source row of each grid row
    return Converted(
        factor_sizes=sizes,
        factor_values=values,
        row_shape=(1, _SIZE, _SIZE),
        blocks=_blocks([paths[split, "dat"] for split in SPLITS], counts, order),
        pipeline={
            "camera": 0,
            "azimuth": "raw value / 2",
            "row_order": "training and testing rows reordered into grid order",
            "resize": {"from": [96, 96], "to": [_SIZE, _SIZE], "filter": RESIZE_FILTER},
        },
    )


def _blocks(dat_paths: list[Path], counts: list[int], order: np.ndarray) -> Iterator[np.ndarray]:
    """Camera-0 images gathered in ``order`` from the split files, downscaled, block by block.

    Rows are read with plain seeks rather than a memory map, so memory stays
    bounded by one block however large the files are.
    """
    first_row = np.cumsum([0] + counts)  # global row index where each split starts
    offsets = [read_header(path)[2] for path in dat_paths]
    files = [open(path, "rb") for path in dat_paths]
    try:
        for start, stop in row_blocks(len(order), BLOCK_ROWS):
            images = np.empty((stop - start, 1, 96, 96), dtype=np.uint8)
            for k, row in enumerate(order[start:stop]):
                split = int(np.searchsorted(first_row, row, side="right")) - 1
                files[split].seek(offsets[split] + (int(row) - first_row[split]) * _ROW_BYTES)
                images[k, 0] = np.frombuffer(files[split].read(_CAMERA_BYTES), dtype=np.uint8).reshape(96, 96)
            yield downscale(images, _SIZE)
    finally:
        for f in files:
            f.close()


SPEC = DatasetSpec(
    name="small_norb",
    description="SmallNORB: toy objects under varying pose and lighting, 96x96 grey downscaled to 64x64",
    factor_names=_FACTORS,
    factor_sizes=(5, 10, 9, 18, 6),
    raw_files=tuple(RAW.values()),
    convert=convert,
)
