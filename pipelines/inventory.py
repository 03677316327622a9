"""What a raw-data folder and a cache folder hold: each dataset's raw files and cache, and what else
lies beside the caches (for ``gdrae-data list``).

:func:`inventory` only reads: it opens each cache (no chunk is read) and
lists the staging directories gdrae.data.lifecycle names, renaming and
removing nothing; ``list`` tidies first (:func:`gdrae.data.lifecycle.tidy`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gdrae.data.cache import dir_bytes, open_cache
from gdrae.data.lifecycle import cache_path, staged
from gdrae.errors import GdraeError
from pipelines.checks import missing_raw_files
from pipelines.registry import NAMES, get_spec


@dataclass(frozen=True)
class DatasetState:
    """One dataset: its raw files and its cache."""

    name: str
    raw: str  # "present", "synthetic", "declared", "<k>/<n> files", or "(pipeline not installed)"
    cache: str  # "valid", "missing" or "INVALID" ("" when the pipeline is not installed)
    rows: int | None = None  # of a valid cache
    bytes_on_disk: int | None = None  # of a valid cache
    problem: str = ""  # why the cache is INVALID, in one line


@dataclass(frozen=True)
class Leftover:
    """A staging directory beside the caches, its size, and what it is."""

    path: Path
    bytes_on_disk: int
    note: str


@dataclass(frozen=True)
class Inventory:
    datasets: list[DatasetState]
    leftovers: list[Leftover]


def inventory(raw_dir: str | Path, cache_dir: str | Path) -> Inventory:
    """The state of every registered dataset in ``raw_dir`` and ``cache_dir``, then of every other cache
    there (a declared dataset's, ``prepare --spec``), and the leftovers."""
    declared = sorted(p.name[: -len(".zarr")] for p in Path(cache_dir).glob("*.zarr") if p.name[: -len(".zarr")] not in NAMES)
    datasets = [_dataset_state(name, Path(raw_dir), Path(cache_dir)) for name in (*NAMES, *declared)]
    leftovers = [Leftover(s.path, dir_bytes(s.path), s.describe()) for s in staged(cache_dir)]
    return Inventory(datasets, leftovers)


def _dataset_state(name: str, raw_dir: Path, cache_dir: Path) -> DatasetState:
    try:
        spec = get_spec(name) if name in NAMES else None
    except ImportError:
        return DatasetState(name, "(pipeline not installed)", "")
    if spec is None:
        raw = "declared"
    elif not spec.raw_files:
        raw = "synthetic"
    else:
        have = len(spec.raw_files) - len(missing_raw_files(raw_dir, spec.raw_files))
        raw = "present" if have == len(spec.raw_files) else f"{have}/{len(spec.raw_files)} files"
    path = cache_path(cache_dir, name)
    if not path.exists():
        return DatasetState(name, raw, "missing")
    try:
        cache = open_cache(path)
    except GdraeError as exc:
        return DatasetState(name, raw, "INVALID", problem=str(exc))
    return DatasetState(name, raw, "valid", rows=cache.n, bytes_on_disk=cache.bytes_on_disk())
