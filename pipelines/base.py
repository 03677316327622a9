"""The contract between a dataset pipeline and the cache writer.

A pipeline is declarative: a :class:`DatasetSpec` names the dataset, its
expected raw files (where to get them, size, sha256 where known), how
``gdrae-data download`` fetches them (a :class:`pipelines.download.Manifest`),
its canonical factor grid, and one ``convert`` function. ``convert(raw_dir)``
checks the raw files and returns a :class:`Converted`: the factor grid it
found in the data and an iterator of row blocks *in grid order* (row i has
factor indices ``np.unravel_index(i, factor_sizes)``). The generic writer in
``pipelines/store.py`` does the rest: factors table, attrs, checksums,
chunking, the temporary name and the final rename.

``convert`` raises :class:`gdrae.errors.GdraeError` (one line naming the file
and the problem) for every bad input, before or while blocks are produced.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from pipelines.download import Manifest


@dataclass(frozen=True)
class RawFile:
    """One file a user downloads and places under the raw directory."""

    relpath: str  # path under --raw-dir, e.g. "dsprites/dsprites_ndarray_...npz"
    source: str  # where to get it (a web page), shown when the file is missing
    size: int | None = None  # bytes, where known
    sha256: str | None = None  # where known
    folder: bool = False  # a folder of files rather than one file


@dataclass
class Converted:
    """What a pipeline hands to the cache writer."""

    factor_names: list[str]
    factor_sizes: list[int]  # as found in the raw data (may differ from canonical)
    factor_values: list[list[float]]  # physical value of each class, or class indices
    array_name: str  # "images" (uint8 N,C,H,W) or "points" (float32 N,2)
    row_shape: tuple[int, ...]  # (C, H, W) or (2,)
    dtype: str  # "uint8" or "float32"
    blocks: Iterator[np.ndarray]  # consecutive rows in grid order, prod(factor_sizes) in total
    sources: list[dict] = field(default_factory=list)  # {"name", "bytes", "sha256"} per raw file
    pipeline: dict = field(default_factory=dict)  # parameters recorded in attrs (e.g. resize filter)
    notes: list[str] = field(default_factory=list)  # said to the user, e.g. grid differs from canonical

    @property
    def n(self) -> int:
        return int(np.prod(self.factor_sizes))


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the generic code needs to know about one dataset."""

    name: str  # CLI name, e.g. "shapes2d"
    description: str
    factor_names: tuple[str, ...]  # canonical, grid order
    factor_sizes: tuple[int, ...]  # canonical
    raw_files: tuple[RawFile, ...]  # empty for synthetic sets
    convert: Callable[[Path], Converted]  # raw_dir -> Converted; raises GdraeError
    download: Manifest | None = None  # how `gdrae-data download` fetches raw_files; None for synthetic sets
