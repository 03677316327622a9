"""Writers of small raw files in each dataset's real format (tests, demos, benchmarks).

Each ``write_<dataset>(raw_dir, sizes, seed)`` writes the file(s) at the
path the pipeline expects under ``raw_dir``, on a factor grid of the given
sizes (grid order as in docs/data-formats.md), and returns the paths written. Images
carry real, factor-dependent content, and every image encodes its flat grid
index ``ravel_multi_index(factors, sizes)`` in a few pixels so that
:func:`decode_index` can check, after conversion, that row i of a cache
holds the image of grid index i.

From a shell, a small raw set to try ``gdrae-data prepare`` without downloads::

    python -m pipelines.raw_writers shapes3d --raw-dir Datasets
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np
import scipy.io
import torch

from gdrae.data.grid import all_factors, index_to_factors
from gdrae.errors import GdraeError
from pipelines.datasets import cars3d, faces, shapes2d, shapes3d, small_norb
from pipelines.checks import row_blocks

DEFAULT_SIZES = {  # small grids, fast to write and convert
    "shapes2d": (2, 2, 3, 2, 2),
    "shapes3d": (2, 2, 2, 2, 2, 3),
    "faces": (2, 3, 2, 2),
    "cars3d": (2, 3, 3),
    "small_norb": (2, 4, 2, 3, 2),
}


def write_dsprites(raw_dir: Path, sizes: Sequence[int] = DEFAULT_SIZES["shapes2d"], seed: int = 0,
                   metadata: object = None) -> list[Path]:
    """dSprites ``.npz``: imgs 0/1, latents_classes/values with the colour column, pickled metadata.

    Each image shows a square placed by (pos_x, pos_y), sized by scale, with
    a centred hole set by shape; row 0 holds the grid index as 20 bits. ``metadata`` defaults to a dict like the
    real file's (the tests pass an object that records being unpickled).
    """
    rng = np.random.default_rng(seed)
    n = int(np.prod(sizes))
    factors = all_factors(sizes)
    imgs = np.zeros((n, 64, 64), dtype=np.uint8)
    jitter = int(rng.integers(0, 4))
    for i, (shape, scale, _, x, y) in enumerate(factors):
        side = 6 + scale
        top = 4 + jitter + 36 * y // max(sizes[4] - 1, 1)
        left = 4 + jitter + 36 * x // max(sizes[3] - 1, 1)
        imgs[i, top : top + side, left : left + side] = 1
        hole = shape % (side // 2)  # shape 0: filled square, others: a centred hole
        row, col = top + (side - hole) // 2, left + (side - hole) // 2
        imgs[i, row : row + hole, col : col + hole] = 0
    imgs[:, 0, :20] = (np.arange(n)[:, None] >> np.arange(20)) & 1
    classes = np.column_stack([np.zeros(n, dtype=np.int64), factors]).astype(np.int64)
    if metadata is None:
        metadata = {"title": "dSprites dataset (small test copy)",
                    "latents_names": ("color", "shape", "scale", "orientation", "posX", "posY"),
                    "latents_sizes": np.array([1, *sizes])}
    path = Path(raw_dir) / shapes2d.RAW.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, imgs=imgs, latents_classes=classes, latents_values=classes.astype(np.float64),
                        metadata=np.array(metadata, dtype=object))
    return [path]


def shapes3d_values(sizes: Sequence[int]) -> list[np.ndarray]:
    """The physical label values of each 3DShapes factor class (hues, scale, shape, orientation)."""
    hues = [np.linspace(0.0, 1.0, s, endpoint=False) for s in sizes[:3]]
    return [*hues, np.linspace(0.75, 1.25, sizes[3]), np.arange(sizes[4], dtype=float), np.linspace(-30.0, 30.0, sizes[5])]


def write_3dshapes(raw_dir: Path, sizes: Sequence[int] = DEFAULT_SIZES["shapes3d"], seed: int = 0,
                   slice_rows: int = 10_000) -> list[Path]:
    """3DShapes ``.h5``: images (N, 64, 64, 3) uint8 and labels (N, 6) float64 factor values.

    Written ``slice_rows`` at a time, so even the full 480,000-image grid
    (about 5.9 GB) never sits in memory. Wall, floor and a centred square
    take colours from the three hues, the square's side from scale; pixels
    (0, 0..2) of the red channel hold the grid index in base 256.
    """
    rng = np.random.default_rng(seed)
    n = int(np.prod(sizes))
    values = shapes3d_values(sizes)
    tint = rng.integers(0, 64, size=3).astype(np.uint8)
    path = Path(raw_dir) / shapes3d.RAW.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", shape=(n, 64, 64, 3), dtype=np.uint8)
        labels = f.create_dataset("labels", shape=(n, 6), dtype=np.float64)
        for start, stop in row_blocks(n, slice_rows):
            factors = index_to_factors(np.arange(start, stop), sizes)
            block = np.empty((stop - start, 64, 64, 3), dtype=np.uint8)
            block[:, 40:] = _hue_rgb(values[0][factors[:, 0]], tint)[:, None, None]  # floor
            block[:, :40] = _hue_rgb(values[1][factors[:, 1]], tint)[:, None, None]  # wall
            for scale in range(sizes[3]):
                side = 8 + 2 * scale
                rows = factors[:, 3] == scale
                colour = _hue_rgb(values[2][factors[rows, 2]], tint)[:, None, None]
                block[rows, 32 - side // 2 : 32 + side // 2, 32 - side // 2 : 32 + side // 2] = colour
            block[:, 0, 0:3, 0] = _base256(np.arange(start, stop))
            images[start:stop] = block
            labels[start:stop] = np.stack([values[k][factors[:, k]] for k in range(6)], axis=1)
    return [path]


def write_3dfaces(raw_dir: Path, sizes: Sequence[int] = DEFAULT_SIZES["faces"], seed: int = 0) -> list[Path]:
    """3DFaces ``.pth``: one uint8 tensor (*sizes, 64, 64) saved with ``torch.save``.

    Each image is seeded noise plus a horizontal ramp set by azimuth and a
    vertical one by elevation; pixels (0, 0..2) hold the grid index in base 256.
    """
    rng = np.random.default_rng(seed)
    n = int(np.prod(sizes))
    factors = all_factors(sizes)
    ramp = np.arange(64, dtype=np.int64)
    images = (
        rng.integers(0, 32, size=(n, 64, 64))
        + (factors[:, 1, None, None] * ramp[None, None, :]) % 96
        + (factors[:, 2, None, None] * ramp[None, :, None]) % 96
        + 8 * factors[:, 3, None, None]
    ).clip(0, 255).astype(np.uint8)
    images[:, 0, 0:3] = _base256(np.arange(n))
    path = Path(raw_dir) / faces.RAW.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torch.from_numpy(images.reshape(*sizes, 64, 64)), path)
    return [path]


def write_cars3d(raw_dir: Path, sizes: Sequence[int] = DEFAULT_SIZES["cars3d"], seed: int = 0) -> list[Path]:
    """Cars3D ``car_NNN_mesh.mat`` files (MATLAB v5), ``im`` = (128, 128, 3, azimuth, elevation).

    ``sizes`` = (elevation, azimuth, objects). File numbers are drawn from
    1..199 with gaps and written in shuffled order; the object index of a
    file is its position in sorted name order. Each view is a flat colour:
    red + 256 * green = grid index, blue = the file number.
    """
    n_elevation, n_azimuth, n_objects = sizes
    rng = np.random.default_rng(seed)
    numbers = np.sort(rng.choice(np.arange(1, 200), size=n_objects, replace=False))
    folder = Path(raw_dir) / cars3d.RAW.relpath
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for obj in rng.permutation(n_objects):
        im = np.empty((128, 128, 3, n_azimuth, n_elevation), dtype=np.uint8)
        for elevation in range(n_elevation):
            for azimuth in range(n_azimuth):
                index = np.ravel_multi_index((elevation, azimuth, obj), tuple(sizes))
                im[:, :, :2, azimuth, elevation] = _base256(np.array([index]))[0, :2]
                im[:, :, 2, azimuth, elevation] = numbers[obj] % 256
        path = folder / f"car_{numbers[obj]:03d}_mesh.mat"
        scipy.io.savemat(path, {"im": im}, do_compression=True)
        paths.append(path)
    return paths


def write_norb_matrix(path: Path, array: np.ndarray) -> None:
    """One NORB binary matrix: magic, ndim, max(3, ndim) dims (padded with 1), little-endian data."""
    dtype = array.dtype.newbyteorder("<")
    magic = {t: m for m, t in small_norb.MAGIC.items()}[dtype]
    dims = list(array.shape) + [1] * (3 - array.ndim)
    header = np.array([magic, array.ndim, *dims], dtype="<i4")
    with open(path, "wb") as f:
        f.write(header.tobytes())
        np.ascontiguousarray(array, dtype=dtype).tofile(f)


def write_small_norb(raw_dir: Path, sizes: Sequence[int] = DEFAULT_SIZES["small_norb"], seed: int = 0) -> list[Path]:
    """SmallNORB training/testing ``dat``/``cat``/``info`` binary matrices, rows shuffled.

    Instances split between the files like the real set ({4, 6, 7, 8, 9}
    training) when there are 10, else odd instances go to training. Camera 0
    shows the grid index as two flat halves (top = index % 256, bottom =
    index // 256), camera 1 the inverse, so a test sees which camera was kept.
    """
    if sizes[1] < 2:
        raise GdraeError(f"small_norb writer: expected at least 2 instances to split training/testing, got {sizes[1]}")
    rng = np.random.default_rng(seed)
    factors = all_factors(sizes)
    training = np.isin(factors[:, 1], [4, 6, 7, 8, 9]) if sizes[1] == 10 else factors[:, 1] % 2 == 1
    paths = []
    for split, in_split in (("training", training), ("testing", ~training)):
        rows = rng.permutation(np.flatnonzero(in_split))
        dat = np.empty((len(rows), 2, 96, 96), dtype=np.uint8)
        dat[:, 0, :48] = (rows % 256)[:, None, None]
        dat[:, 0, 48:] = (rows // 256 % 256)[:, None, None]
        dat[:, 1] = 255 - dat[:, 0]
        f = factors[rows]
        info = np.column_stack([f[:, 1], f[:, 2], 2 * f[:, 3], f[:, 4]]).astype(np.int32)
        for kind, array in (("dat", dat), ("cat", f[:, 0].astype(np.int32)), ("info", info)):
            path = Path(raw_dir) / small_norb.RAW[split, kind].relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            write_norb_matrix(path, array)
            paths.append(path)
    return paths


def save_arrays(path: Path, arrays: dict[str, np.ndarray], compressed: bool = False) -> Path:
    """Named arrays in the format of ``path``'s suffix, read back by NumPy with the same shapes.

    ``.npz`` (``np.savez``, or ``np.savez_compressed`` when ``compressed``);
    ``.h5``/``.hdf5``; ``.mat`` as MATLAB v5 (``scipy.io.savemat``), or, with
    ``compressed``, as MATLAB v7.3 (HDF5 behind MATLAB's 512-byte header);
    ``.pt``/``.pth`` a dict of tensors (``torch.save``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        (np.savez_compressed if compressed else np.savez)(path, **arrays)
    elif suffix in (".h5", ".hdf5") or (suffix == ".mat" and compressed):
        with h5py.File(path, "w", userblock_size=512 if suffix == ".mat" else 0) as f:
            for key, array in arrays.items():
                f.create_dataset(key, data=array)
        if suffix == ".mat":
            with open(path, "r+b") as f:
                f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema "
                        b"1.00 .".ljust(116) + bytes(8) + b"\x00\x02IM")
    elif suffix == ".mat":
        scipy.io.savemat(path, arrays, do_compression=True)
    elif suffix in (".pt", ".pth"):
        torch.save({key: torch.from_numpy(np.ascontiguousarray(a)) for key, a in arrays.items()}, path)
    else:
        raise GdraeError(f"{path}: expected a suffix .npz, .h5, .hdf5, .mat, .pt or .pth, got {suffix!r}")
    return path


def write_declared(raw_dir: Path, file: str, sizes: Sequence[int] = (2, 3, 2), layout: str = "NHWC",
                   side: int = 64, dtype: str = "uint8", shuffled: bool = False, label_base: int = 0,
                   compressed: bool = False, seed: int = 0) -> dict:
    """A data file of one's own under ``raw_dir`` and the declaration of it (a dict, as in the YAML).

    Image i of the grid shows two flat halves, top = i % 256 and bottom =
    i // 256 (over every channel; ``decode_index("small_norb", ...)`` reads
    it back), so resizing keeps it. ``layout`` gives the axes as NumPy reads
    them (``C`` absent: one channel, else 3); ``dtype`` float32 stores x / 255.
    ``shuffled`` writes the rows in a seeded random order with a ``labels``
    array (1-based with ``label_base`` 1) that says where each belongs.
    """
    n = int(np.prod(sizes))
    channels = 3 if "C" in layout else 1
    nchw = np.empty((n, channels, side, side), dtype=np.uint8)
    nchw[:, :, : side // 2] = (np.arange(n) % 256)[:, None, None, None]
    nchw[:, :, side // 2 :] = (np.arange(n) // 256 % 256)[:, None, None, None]
    labels = all_factors(sizes).astype(np.int64) + label_base
    rows = np.random.default_rng(seed).permutation(n) if shuffled else np.arange(n)
    images = nchw[rows] if "C" in layout else nchw[rows, 0]
    images = images.transpose([("NCHW" if "C" in layout else "NHW").index(a) for a in layout])
    arrays = {"images": images.astype(np.float32) / 255 if dtype == "float32" else np.ascontiguousarray(images)}
    if shuffled:
        arrays["labels"] = labels[rows]
    save_arrays(Path(raw_dir) / file, arrays, compressed=compressed)
    return {"name": "mine", "file": file, "images": "images", "layout": layout,
            "factors": [{"name": f"f{k}", "size": int(s)} for k, s in enumerate(sizes)],
            "labels": "labels" if shuffled else None, "label_base": label_base, "sha256": None}


WRITERS: dict[str, Callable[..., list[Path]]] = {
    "shapes2d": write_dsprites,
    "shapes3d": write_3dshapes,
    "faces": write_3dfaces,
    "cars3d": write_cars3d,
    "small_norb": write_small_norb,
}


def decode_index(name: str, images: np.ndarray) -> np.ndarray:
    """The grid index each converted (N, C, 64, 64) image carries, as written by ``WRITERS[name]``."""
    images = images.astype(np.int64)
    if name == "shapes2d":
        return ((images[:, 0, 0, :20] // 255) << np.arange(20)).sum(axis=1)
    if name in ("shapes3d", "faces"):
        return images[:, 0, 0, 0] + 256 * images[:, 0, 0, 1] + 65536 * images[:, 0, 0, 2]
    if name == "cars3d":
        return images[:, 0, 32, 32] + 256 * images[:, 1, 32, 32]
    if name == "small_norb":
        return images[:, 0, 16, 32] + 256 * images[:, 0, 48, 32]
    raise GdraeError(f"decode_index: expected one of {', '.join(WRITERS)}, got {name!r}")


def _base256(index: np.ndarray) -> np.ndarray:
    """(n,) indices < 2**24 -> (n, 3) uint8 little-endian base-256 digits."""
    return np.stack([(index >> shift) & 255 for shift in (0, 8, 16)], axis=1).astype(np.uint8)


def _hue_rgb(hue: np.ndarray, tint: np.ndarray) -> np.ndarray:
    """A simple hue -> RGB colour (n, 3) uint8, shifted by a seeded tint."""
    rgb = np.stack([hue, (hue + 1 / 3) % 1.0, (hue + 2 / 3) % 1.0], axis=1)
    return (rgb * 191).astype(np.uint8) + tint


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m pipelines.raw_writers NAME --raw-dir DIR [--sizes 2,2,...] [--seed S]``."""
    parser = argparse.ArgumentParser(description="Write a small raw dataset in its real format.")
    parser.add_argument("name", choices=sorted(WRITERS))
    parser.add_argument("--raw-dir", default="Datasets", type=Path, help="where gdrae-data prepare looks (default Datasets)")
    parser.add_argument("--sizes", default=None, help="factor sizes in grid order, comma-separated (default: a small grid)")
    parser.add_argument("--seed", default=0, type=int)
    args = parser.parse_args(argv)
    sizes = DEFAULT_SIZES[args.name] if args.sizes is None else tuple(int(s) for s in args.sizes.split(","))
    if len(sizes) != len(DEFAULT_SIZES[args.name]) or min(sizes) < 1:
        parser.error(f"--sizes: expected {len(DEFAULT_SIZES[args.name])} positive integers, got {args.sizes}")
    for path in WRITERS[args.name](args.raw_dir, sizes, seed=args.seed):
        print(path)


if __name__ == "__main__":
    main()
