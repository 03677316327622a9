"""A user's own dataset, declared in YAML: one data file becomes a cache with no Python.

::

    name: mpi3d-toy          # the cache is <cache-dir>/<name>.zarr; data.name in a run config
    file: mpi3d_toy.npz      # under --raw-dir: .npz, .h5/.hdf5, .mat (v5 and v7.3), .pt/.pth
    images: images           # key (h5: dataset path) of the image array, uint8 or float in [0, 1]
    layout: NHWC             # the image array's axes as NumPy reads them: N, H, W and, optionally, C
    factors:                 # the factor grid, slowest first
      - {name: color, size: 6}
      - {name: shape, size: 6}
    labels: null             # optional key of an (N, F) integer array of factor classes; without it,
                             #   rows are in grid order (last factor fastest)
    label_base: 0            # 1 for MATLAB's 1-based classes
    sha256: null             # checked when given, recorded when not

:func:`load_declaration` checks the YAML (one line naming the file and the
key for any problem); :func:`declared_spec` turns it into a
:class:`pipelines.base.DatasetSpec` that ``prepare`` writes like any other.
Rows are reordered into grid order from the labels, images become uint8
(N, C, 64, 64): floats by x * 255 rounded to nearest, other sizes resized
with :data:`pipelines.checks.RESIZE_FILTER`. The declaration is recorded in
the cache's ``pipeline`` attrs. See docs/datasets.md, "Your own dataset".
"""
from __future__ import annotations

import re
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

import numpy as np
import yaml

from gdrae.config import DATASET_NAME, IMAGE_SIZE
from gdrae.errors import GdraeError
from pipelines.arrays import FORMATS, StoredArray, open_arrays
from pipelines.base import Converted, DatasetSpec, RawFile
from pipelines.checks import RESIZE_FILTER, downscale, grid_positions, read_text, row_blocks, sha256_file

KEYS = ("name", "file", "images", "layout", "factors", "labels", "label_base", "sha256")
REQUIRED = ("name", "file", "images", "layout", "factors")
BLOCK_BYTES = 64 << 20  # bytes of the stored image array read per block: bounds memory whatever the image size
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Declaration:
    """A checked declaration (the module docstring says what each key means)."""

    name: str
    file: str
    images: str
    layout: str
    factors: tuple[tuple[str, int], ...]  # (name, size), slowest first
    labels: str | None = None
    label_base: int = 0
    sha256: str | None = None

    @property
    def factor_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.factors)

    @property
    def factor_sizes(self) -> tuple[int, ...]:
        return tuple(size for _, size in self.factors)

    def as_dict(self) -> dict:
        """The YAML form, as recorded in the cache's attrs."""
        out = asdict(self)
        out["factors"] = [{"name": name, "size": size} for name, size in self.factors]
        return out


def load_declaration(path: str | Path) -> Declaration:
    """Read and check the YAML declaration at ``path``; GdraeError naming the file and the key otherwise."""
    path = Path(path)
    text = read_text(path, "declaration", "a YAML file declaring a dataset")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise GdraeError(f"{path}: expected YAML, got invalid YAML{where} ({getattr(e, 'problem', e)})") from None
    return parse_declaration(data, str(path))


def parse_declaration(data: Any, where: str) -> Declaration:
    """Check the parsed YAML of a declaration; ``where`` names it in errors."""
    if not isinstance(data, dict):
        raise GdraeError(f"{where}: expected a mapping with keys {', '.join(REQUIRED)}, got {_clip(data)}")
    unknown = sorted(str(k) for k in data if k not in KEYS)
    if unknown:
        raise GdraeError(f"{where}: {unknown[0]}: unknown key: expected keys among {', '.join(KEYS)}")
    for key in REQUIRED:
        if data.get(key) is None:
            raise GdraeError(f"{where}: {key}: expected a value, got none (missing key)")
    name = _text(data, "name", where)
    if not DATASET_NAME.fullmatch(name) or ".." in name:
        raise GdraeError(f"{where}: name: expected a dataset name like my-set (letters, digits, '_', '.', '-'; "
                         f"no '/' or '..'), got {name!r}")
    from pipelines.registry import NAMES

    if name in NAMES:
        raise GdraeError(f"{where}: name: expected a name of your own, got {name!r}, a built-in dataset's")
    file = _text(data, "file", where)
    parts = PurePosixPath(file).parts
    if file.startswith(("/", "\\")) or "\\" in file or ".." in parts or ":" in file:
        raise GdraeError(f"{where}: file: expected a path relative to --raw-dir, got {file!r}")
    if PurePosixPath(file).suffix.lower() not in FORMATS:
        raise GdraeError(f"{where}: file: expected a file ending in {', '.join(FORMATS)}, got {file!r}")
    layout = _text(data, "layout", where)
    if sorted(layout) not in (sorted("NHW"), sorted("NHWC")):
        raise GdraeError(f"{where}: layout: expected the image axes as letters N, H, W and optionally C, each once "
                         f"(e.g. NHWC, NCHW, NHW), got {layout!r}")
    labels = data.get("labels")
    if labels is not None:
        labels = _text(data, "labels", where)
    label_base = data.get("label_base", 0)
    if label_base not in (0, 1) or isinstance(label_base, bool):
        raise GdraeError(f"{where}: label_base: expected 0 or 1 (MATLAB's classes start at 1), got {_clip(label_base)}")
    sha256 = data.get("sha256")
    if sha256 is not None and not (isinstance(sha256, str) and _SHA256.fullmatch(sha256)):
        raise GdraeError(f"{where}: sha256: expected 64 lowercase hex digits or null, got {_clip(sha256)}")
    return Declaration(name=name, file=file, images=_text(data, "images", where), layout=layout,
                       factors=_factors(data["factors"], where), labels=labels, label_base=label_base, sha256=sha256)


def _text(data: dict, key: str, where: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        raise GdraeError(f"{where}: {key}: expected a non-empty text, got {_clip(value)}")
    return value


def _factors(factors: Any, where: str) -> tuple[tuple[str, int], ...]:
    if not isinstance(factors, list) or not factors:
        raise GdraeError(f"{where}: factors: expected a list of {{name: ..., size: ...}}, slowest first, "
                         f"got {_clip(factors)}")
    out = []
    for i, factor in enumerate(factors):
        key = f"factors[{i}]"
        if not isinstance(factor, dict) or set(factor) != {"name", "size"}:
            raise GdraeError(f"{where}: {key}: expected {{name: ..., size: ...}}, got {_clip(factor)}")
        name, size = factor["name"], factor["size"]
        if not isinstance(name, str) or not name:
            raise GdraeError(f"{where}: {key}.name: expected a non-empty text, got {_clip(name)}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise GdraeError(f"{where}: {key}.size: expected a positive integer, got {_clip(size)}")
        out.append((name, size))
    names = [name for name, _ in out]
    if len(set(names)) != len(names):
        raise GdraeError(f"{where}: factors: expected distinct names, got {names}")
    return tuple(out)


def _clip(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- the declared data file -> rows


def declared_spec(declaration: Declaration, where: str = "the declaration") -> DatasetSpec:
    """The :class:`DatasetSpec` of a declaration (``where`` names the YAML file in messages)."""
    raw = RawFile(relpath=declaration.file, source=f"the file named by 'file' in {where}")
    return DatasetSpec(
        name=declaration.name,
        description=f"{declaration.name}: declared in {where}",
        factor_names=declaration.factor_names,
        factor_sizes=declaration.factor_sizes,
        raw_files=(raw,),
        convert=lambda raw_dir: convert(declaration, Path(raw_dir)),
    )


def convert(declaration: Declaration, raw_dir: Path) -> Converted:
    """Check the data file against the declaration and hand out its images in grid order."""
    path = Path(raw_dir) / declaration.file
    if declaration.sha256 is not None and (digest := sha256_file(path)) != declaration.sha256:
        raise GdraeError(f"{path}: expected sha256 {declaration.sha256} (declared), got {digest} (a different or "
                         "damaged file)")
    stack = ExitStack()
    try:
        f = stack.enter_context(open_arrays(path))
        images = f.array(declaration.images, "images")
        n = _rows(images, declaration)
        if declaration.labels is None:
            if n != int(np.prod(declaration.factor_sizes)):
                raise GdraeError(f"{path}: images {declaration.images!r}: expected prod(factor sizes "
                                 f"{declaration.factor_sizes}) = {int(np.prod(declaration.factor_sizes))} rows "
                                 f"(the factor grid, in grid order), got {n}")
            order = None
        else:
            order = _grid_order(f.array(declaration.labels, "labels"), n, declaration)
        height, width = (images.shape[declaration.layout.index(axis)] for axis in "HW")
        channels = images.shape[declaration.layout.index("C")] if "C" in declaration.layout else 1
        blocks = _blocks(stack, images, declaration, order)
    except BaseException:
        stack.close()
        raise
    pipeline = {"declaration": declaration.as_dict(), "layout": f"{declaration.layout} -> NCHW",
                "rows": "in grid order" if order is None else "reordered into grid order by the labels"}
    if images.dtype.kind == "f":
        pipeline["pixels"] = "float [0, 1] -> uint8 by x * 255 rounded to nearest (ties to even)"
    if (height, width) != (IMAGE_SIZE, IMAGE_SIZE):
        pipeline["resize"] = {"from": [height, width], "to": [IMAGE_SIZE, IMAGE_SIZE], "filter": RESIZE_FILTER}
    return Converted(factor_sizes=list(declaration.factor_sizes),
                     factor_values=[[float(i) for i in range(size)] for size in declaration.factor_sizes],
                     row_shape=(channels, IMAGE_SIZE, IMAGE_SIZE), blocks=blocks, pipeline=pipeline)


def _rows(images: StoredArray, declaration: Declaration) -> int:
    """The number of images; a GdraeError when the array does not fit the declared layout."""
    where, layout = f"{images.path}: images {images.key!r}", declaration.layout
    if len(images.shape) != len(layout):
        raise GdraeError(f"{where}: expected {len(layout)} axes for layout {layout}, got shape {images.shape}")
    if "C" in layout and images.shape[layout.index("C")] not in (1, 3):
        raise GdraeError(f"{where}: expected 1 or 3 channels on axis C of layout {layout}, got shape {images.shape}")
    if images.dtype != np.uint8 and images.dtype.kind != "f":
        raise GdraeError(f"{where}: expected uint8, or float in [0, 1], got {images.dtype}")
    if min(images.shape) < 1:
        raise GdraeError(f"{where}: expected a non-empty array, got shape {images.shape}")
    return images.shape[layout.index("N")]


def _grid_order(labels: StoredArray, n: int, declaration: Declaration) -> np.ndarray | None:
    """The data row of each grid row (None when the rows already are in grid order), from the labels."""
    where, k = f"{labels.path}: labels {labels.key!r}", len(declaration.factors)
    if labels.shape == (k, n) and n != k:
        raise GdraeError(f"{where}: expected shape ({n}, {k}) (rows, factors), got {labels.shape}: transposed? "
                         "(h5py reads a v7.3 .mat's N x F array as F x N; save its transpose)")
    if labels.shape != (n, k):
        raise GdraeError(f"{where}: expected shape ({n}, {k}) (one row of factor classes per image), got {labels.shape}")
    values = labels.whole()
    if values.dtype.kind == "f" and np.isfinite(values).all() and (values == np.round(values)).all():
        values = values.astype(np.int64)  # MATLAB stores whole numbers as doubles
    if values.dtype.kind not in "iu":
        raise GdraeError(f"{where}: expected an integer array of factor classes, got {values.dtype} with "
                         "values that are not whole numbers" if values.dtype.kind == "f" else
                         f"{where}: expected an integer array of factor classes, got {values.dtype}")
    classes = values.astype(np.int64) - declaration.label_base
    for column, (name, size) in enumerate(declaration.factors):
        bad = np.flatnonzero((classes[:, column] < 0) | (classes[:, column] >= size))
        if len(bad):
            row = int(bad[0])
            raise GdraeError(f"{where}: column {column} ({name}): expected classes {declaration.label_base}.."
                             f"{size - 1 + declaration.label_base} (label_base {declaration.label_base}), got "
                             f"{int(values[row, column])} at row {row} ({len(bad)} rows out of range)")
    positions = grid_positions(classes, declaration.factor_sizes, declaration.factor_names, where)
    order = np.argsort(positions)
    return None if (order == np.arange(n)).all() else order


def _blocks(stack: ExitStack, images: StoredArray, declaration: Declaration,
            order: np.ndarray | None) -> Iterator[np.ndarray]:
    """(B, C, 64, 64) uint8 blocks in grid order; the file (held by ``stack``) is closed at the end."""
    layout = declaration.layout
    axis = layout.index("N")
    transpose = [layout.index(a) for a in "NCHW" if a in layout]
    n = images.shape[axis]
    row_bytes = int(np.prod(images.shape)) // n * images.dtype.itemsize
    with stack:
        for start, stop in row_blocks(n, max(1, BLOCK_BYTES // row_bytes)):
            if order is None:
                block = images.take(slice(start, stop), axis)
            else:
                rows = order[start:stop]
                ascending = np.argsort(rows)  # formats read increasing rows only (h5py)
                read = images.take(rows[ascending], axis)
                block = np.empty_like(read)
                block[(slice(None),) * axis + (ascending,)] = read
            block = block.transpose(transpose)
            if "C" not in layout:
                block = block[:, None]
            yield _to_uint8_64(np.ascontiguousarray(block), images, start)


def _to_uint8_64(block: np.ndarray, images: StoredArray, start: int) -> np.ndarray:
    """(B, C, H, W) of the file's dtype -> (B, C, 64, 64) uint8."""
    if block.dtype.kind == "f":
        if not np.isfinite(block).all() or block.min(initial=0) < 0 or block.max(initial=0) > 1:
            raise GdraeError(f"{images.path}: images {images.key!r}: expected float values in [0, 1], got "
                             f"{float(np.nanmin(block)):.4g}..{float(np.nanmax(block)):.4g} in grid rows "
                             f"{start}..{start + len(block) - 1}")
        block = np.rint(block * 255.0).astype(np.uint8)
    if block.shape[2:] != (IMAGE_SIZE, IMAGE_SIZE):
        block = downscale(block, IMAGE_SIZE)
    return block
