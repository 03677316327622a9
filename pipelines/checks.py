"""Small checks and transforms shared by the raw-format pipelines.

Each function does one thing a pipeline needs: find a raw file (or say where
to get it), hash it, turn label columns into class indices, check that rows
cover a factor grid exactly once (naming what is missing or duplicated),
and downscale images with an antialiasing filter. All raise
:class:`gdrae.errors.GdraeError` with one line naming the file.
:func:`convert_raw` runs a dataset's ``convert`` with what the generic code
does around it for every dataset.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from gdrae.errors import GdraeError
from pipelines.base import Converted, DatasetSpec, RawFile

BLOCK_ROWS = 4096  # rows per block handed to the cache writer (~50 MB of 64x64x3 images)
RESIZE_FILTER = "PIL.Image.LANCZOS"  # recorded in the cache's `pipeline` attrs
_SHOW = 3  # how many missing/duplicated combinations an error message lists


def missing_raw_files(raw_dir: Path, raw_files: Sequence[RawFile]) -> list[RawFile]:
    """Those of ``raw_files`` absent under ``raw_dir``: the one test of raw-file presence (prepare, list, pipelines)."""
    return [raw for raw in raw_files if not (Path(raw_dir) / raw.relpath).exists()]


def require_file(raw_dir: Path, raw: RawFile) -> Path:
    """The path of ``raw`` under ``raw_dir``; a GdraeError says where to get it if absent or of the wrong kind."""
    path = Path(raw_dir) / raw.relpath
    if missing_raw_files(raw_dir, [raw]):
        raise GdraeError(f"{path}: raw file not found: expected {raw.relpath} under {raw_dir} (get it from {raw.source})")
    if path.is_dir() != raw.folder:
        want, got = ("a folder", "a file") if raw.folder else ("a file", "a folder")
        raise GdraeError(f"{path}: expected {want}, got {got} (get it from {raw.source})")
    if not raw.folder:
        require_readable(path)
    return path


def require_readable(path: Path) -> None:
    """A GdraeError naming ``path`` when it exists but cannot be opened for reading (no read permission...)."""
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise GdraeError(f"{path}: expected a readable file, got {e.strerror or e}") from None


def read_text(path: Path, what: str, expected: str) -> str:
    """The UTF-8 text of ``path`` (a manifest, a declaration); a GdraeError says it is missing or unreadable."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GdraeError(f"{path}: {what} not found: expected {expected}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise GdraeError(f"{path}: expected a readable UTF-8 {what}, got {getattr(e, 'strerror', None) or e}") from None


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks (raw files can be several GB)."""
    digest = hashlib.sha256()
    require_readable(path)
    with open(path, "rb") as f:
        while data := f.read(chunk):
            digest.update(data)
    return digest.hexdigest()


def source_entries(raw_dir: Path, paths: Sequence[Path]) -> list[dict]:
    """``{"name", "bytes", "sha256"}`` per raw file (name relative to ``raw_dir``)."""
    return [{"name": Path(path).relative_to(raw_dir).as_posix(), "bytes": Path(path).stat().st_size,
             "sha256": sha256_file(path)} for path in paths]


def convert_raw(spec: DatasetSpec, raw_dir: Path) -> Converted:
    """``spec.convert(raw_dir)`` with what the generic code does once for every dataset around it.

    Before: each raw file present, of the right kind, readable. After: the
    spec's factor names, the source entries (size and sha256 of every file
    read) compared with what is published of each file, and a note when the
    factor grid found differs from the canonical one.
    """
    from pipelines.download.record import check_hand_placed

    raw_dir = Path(raw_dir)
    paths = [require_file(raw_dir, raw) for raw in spec.raw_files]
    converted = spec.convert(raw_dir)
    converted.factor_names = list(spec.factor_names)
    read = paths if converted.files is None else converted.files
    converted.sources, published = check_hand_placed(spec.raw_files, raw_dir, source_entries(raw_dir, read))
    converted.notes += published + grid_notes(spec, converted.factor_sizes)
    return converted


def class_indices(labels: np.ndarray) -> tuple[np.ndarray, list[int], list[list[float]]]:
    """Per column, class index = rank among the sorted distinct values.

    Returns (classes (N, K) int64, factor sizes, factor values per factor).
    """
    columns = [np.unique(labels[:, k], return_inverse=True) for k in range(labels.shape[1])]
    classes = np.stack([inverse.reshape(-1) for _, inverse in columns], axis=1).astype(np.int64)
    return classes, [len(values) for values, _ in columns], [values.astype(float).tolist() for values, _ in columns]


def grid_positions(classes: np.ndarray, sizes: Sequence[int], names: Sequence[str], where: Path) -> np.ndarray:
    """Flat grid index of each row; a GdraeError names missing/duplicated combinations.

    The rows must cover the grid exactly once, otherwise the cache would be
    a silently shifted dataset.
    """
    n = int(np.prod(sizes))
    positions = np.ravel_multi_index(tuple(classes.T), tuple(sizes))
    counts = np.bincount(positions, minlength=n)
    missing, duplicated = np.flatnonzero(counts == 0), np.flatnonzero(counts > 1)
    if len(missing) or len(duplicated):
        problems = []
        for label, flat in (("missing", missing), ("duplicated", duplicated)):
            if len(flat):
                shown = "; ".join(_combination(i, sizes, names) for i in flat[:_SHOW])
                problems.append(f"{len(flat)} {label} (first: {shown})")
        raise GdraeError(
            f"{where}: expected each of the {n} combinations of the factor grid "
            f"{_grid(names, sizes)} exactly once, got {', '.join(problems)}"
        )
    return positions


def require_grid_order(positions: np.ndarray, where: Path) -> None:
    """A GdraeError unless row i holds grid index i (files documented to be in grid order)."""
    wrong = np.flatnonzero(positions != np.arange(len(positions)))
    if len(wrong):
        raise GdraeError(f"{where}: expected rows in factor-grid order, got row {wrong[0]} holding grid index {positions[wrong[0]]}")


def grid_notes(spec: DatasetSpec, sizes: Sequence[int]) -> list[str]:
    """A note for the user when the grid found differs from the canonical one."""
    if tuple(sizes) == tuple(spec.factor_sizes):
        return []
    return [
        f"{spec.name}: factor grid found in the raw data {_grid(spec.factor_names, sizes)} "
        f"differs from the canonical {_grid(spec.factor_names, spec.factor_sizes)}"
    ]


def downscale(images: np.ndarray, size: int) -> np.ndarray:
    """(N, C, H, W) uint8 -> (N, C, size, size) uint8 with PIL's antialiasing LANCZOS filter.

    RGB images are resized as one PIL image, other channel counts one channel at a time.
    """
    n, c = images.shape[:2]
    out = np.empty((n, c, size, size), dtype=np.uint8)
    for i in range(n):
        if c == 3:
            rgb = Image.fromarray(np.ascontiguousarray(images[i].transpose(1, 2, 0)))
            out[i] = np.asarray(rgb.resize((size, size), Image.LANCZOS)).transpose(2, 0, 1)
            continue
        for j in range(c):
            out[i, j] = np.asarray(Image.fromarray(images[i, j]).resize((size, size), Image.LANCZOS))
    return out


def row_blocks(n: int, block: int = BLOCK_ROWS) -> Iterator[tuple[int, int]]:
    """(start, stop) ranges covering ``range(n)`` in steps of ``block``."""
    for start in range(0, n, block):
        yield start, min(start + block, n)


def array_blocks(images: np.ndarray, block: int = BLOCK_ROWS) -> Iterator[np.ndarray]:
    """Consecutive contiguous row blocks of an in-memory array."""
    for start, stop in row_blocks(len(images), block):
        yield np.ascontiguousarray(images[start:stop])


def _combination(flat: int, sizes: Sequence[int], names: Sequence[str]) -> str:
    index = np.unravel_index(int(flat), tuple(sizes))
    return ", ".join(f"{name}={int(i)}" for name, i in zip(names, index))


def _grid(names: Sequence[str], sizes: Sequence[int]) -> str:
    return "(" + ", ".join(f"{name} {size}" for name, size in zip(names, sizes)) + ")"
