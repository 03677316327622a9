"""The contract between a dataset pipeline and the cache writer.

A pipeline is declarative: a :class:`DatasetSpec` names the dataset, its raw
files (:class:`RawFile`: where each lives under ``--raw-dir``, where to get
it, what is published of it - size, hashes, how it unpacks), its canonical
factor grid, and one ``convert`` function. ``convert(raw_dir)`` reads the
raw files and returns a :class:`Converted` holding only what it computed:
the factor grid found in the data, the class values, and an iterator of
row blocks *in grid order* (row i has factor indices
``np.unravel_index(i, factor_sizes)``). The generic code does the rest once
for every dataset: presence and readability of the raw files, comparison
with what is published of them, source entries and grid notes
(:func:`pipelines.checks.convert_raw`); factors table, attrs, chunking, the
temporary name and the final rename (``pipelines/store.py``); fetching
(``pipelines/download/``).

``convert`` raises :class:`gdrae.errors.GdraeError` (one line naming the file
and the problem) for every bad input, before or while blocks are produced.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

if TYPE_CHECKING:
    from pipelines.download.manifest import Manifest

UNPACK = ("none", "gunzip", "untar")


@dataclass(frozen=True)
class RawFile:
    """One raw file of a dataset, declared once: where prepare reads it, where to get it, what is published of it.

    ``size``, ``sha256`` and ``md5`` are those of the *published* file: the
    file itself for ``unpack="none"``, else the archive it is unpacked from.
    """

    relpath: str  # under --raw-dir, what the pipeline reads (a folder of files for unpack "untar")
    source: str = field(default="", compare=False)  # a web page where a user gets it, shown when it is missing
    # (default: url; not part of a manifest, so not compared)
    url: str | None = None  # http(s) URL that `gdrae-data download` fetches; None: not downloadable
    name: str = ""  # the published file's name (default: the URL's last part); with --mirror BASE: BASE/<name>
    size: int | None = None  # bytes of the published file, where public sources agree
    sha256: str | None = None  # of the published file, where public sources agree
    md5: str | None = None  # of the published file, where public sources agree (often all that is published)
    unpack: str = "none"  # "none": the file itself; "gunzip": relpath is the unzipped file; "untar": see members
    members: str | None = None  # untar: glob of the members to take, e.g. "data/cars/car_*_mesh.mat"
    count: int | None = None  # untar: how many members the glob must match

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", PurePosixPath(self.url or self.relpath).name)
        if not self.source:
            object.__setattr__(self, "source", self.url or "")

    @property
    def folder(self) -> bool:
        """A folder of files (unpacked from a tar archive) rather than one file."""
        return self.unpack == "untar"


@dataclass
class Converted:
    """What the cache writer takes. A pipeline's ``convert`` sets what it computed (sizes, values, blocks and,
    where they are not the 64x64 uint8 images of ``row_shape``, the row kind); the generic code the rest."""

    factor_sizes: list[int]  # as found in the raw data (may differ from canonical)
    factor_values: list[list[float]]  # physical value of each class, or class indices
    blocks: Iterator[np.ndarray]  # consecutive rows in grid order, prod(factor_sizes) in total
    row_shape: tuple[int, ...]  # (C, H, W) or (2,)
    array_name: str = "images"  # "images" (uint8 N,C,H,W) or "points" (float32 N,2)
    dtype: str = "uint8"  # "uint8" or "float32"
    pipeline: dict = field(default_factory=dict)  # parameters recorded in attrs (e.g. resize filter)
    files: list[Path] | None = None  # the raw files read, where not exactly the spec's (e.g. a folder's members)
    factor_names: list[str] = field(default_factory=list)  # the spec's (set by the generic code)
    sources: list[dict] = field(default_factory=list)  # {"name", "bytes", "sha256", ...} per raw file (generic)
    notes: list[str] = field(default_factory=list)  # said to the user, e.g. grid differs from canonical (generic)

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
    unavailable: str | None = None  # why the raw files cannot be downloaded, and where they come from instead

    @property
    def download(self) -> Manifest | None:
        """What `gdrae-data download` fetches: the raw files that have a URL; None for synthetic sets."""
        from pipelines.download.manifest import Manifest

        if not self.raw_files:
            return None
        return Manifest(dataset=self.name, files=tuple(r for r in self.raw_files if r.url), unavailable=self.unavailable)
