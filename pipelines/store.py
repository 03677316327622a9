"""Write a pipeline's rows into a cache, atomically.

:func:`prepare` runs a dataset spec's ``convert`` and streams its row blocks
into a temporary directory beside ``<cache_dir>/<name>.zarr``; only a
complete, checked cache takes that name. Any failure or interruption
(Ctrl-C, SIGTERM) removes the temporary directory and leaves an earlier
cache as it was; what a kill leaves behind the next prepare removes or
restores. The directories' life cycle is gdrae.data.lifecycle's, the
layout gdrae.data.schema's; :func:`gdrae.data.cache.verify` re-reads a cache.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from gdrae.data.cache import dir_bytes, open_cache
from gdrae.data.grid import index_to_factors
from gdrae.data.lifecycle import cache_path, tidy, written_aside
from gdrae.data.schema import ARRAY_KINDS, FACTORS, FACTORS_DTYPE, cache_attrs, codecs_for
from gdrae.errors import GdraeError
from pipelines.base import Converted, DatasetSpec
from pipelines.checks import convert_raw, missing_raw_files
from pipelines.download import with_download_provenance
from pipelines.registry import get_spec
from pipelines.row_order import PermutedRows, row_order

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 << 20  # uncompressed bytes per chunk: large enough that per-chunk overhead vanishes
CHUNKS_PER_WRITE = 8  # chunks handed to zarr at once, so it compresses them in parallel
FACTOR_CHUNK_ROWS = 1 << 16
ROW_ORDER_SEED = 0  # seed of the stored row order (recorded in the cache's attrs)


@dataclass
class PrepareSummary:
    """What :func:`prepare` did, for the command line's closing lines."""

    name: str
    path: Path
    n: int
    factor_names: list[str]
    factor_sizes: list[int]
    row_shape: tuple[int, ...]
    bytes_on_disk: int
    seconds: float
    notes: list[str] = field(default_factory=list)


def chunk_rows_for(row_shape: tuple[int, ...], dtype: str) -> int:
    """Rows per chunk: about CHUNK_BYTES uncompressed, a multiple of 64 (a batch size)."""
    row_bytes = int(np.prod(row_shape)) * np.dtype(dtype).itemsize
    return max(64, (CHUNK_BYTES // row_bytes) // 64 * 64)


def check_raw_files(spec: DatasetSpec, raw_dir: Path) -> None:
    """GdraeError naming the first missing raw file of ``spec`` and where to get it."""
    missing = missing_raw_files(raw_dir, spec.raw_files)
    if missing:
        more = f" (and {len(missing) - 1} more file(s) of {spec.name})" if len(missing) > 1 else ""
        raise GdraeError(f"{raw_dir / missing[0].relpath}: raw file of dataset {spec.name} not found{more}: "
                         f"expected it there; get it from {missing[0].source}")


def spec_from_array(name: str, data: np.ndarray, factor_names: list[str], factor_sizes: list[int],
                    factor_values: list[list[float]] | None = None, block_rows: int = 4096) -> DatasetSpec:
    """A spec for rows already in memory (uint8 images N,C,H,W or float32 points N,2) in grid order.

    For one's own data, small demos and tests; ``prepare(spec, ...)`` writes it like any dataset.
    """
    data = np.asarray(data)
    values = factor_values or [list(map(float, range(s))) for s in factor_sizes]

    def convert(raw_dir: Path) -> Converted:
        return Converted(factor_names=list(factor_names), factor_sizes=list(factor_sizes), factor_values=values,
                         array_name="images" if data.ndim == 4 else "points", row_shape=tuple(data.shape[1:]),
                         dtype=str(data.dtype), blocks=(data[i:i + block_rows] for i in range(0, len(data), block_rows)),
                         pipeline={"from": "in-memory array"})

    return DatasetSpec(name=name, description=f"{name}: rows from an in-memory array", factor_names=tuple(factor_names),
                       factor_sizes=tuple(factor_sizes), raw_files=(), convert=convert)


def prepare(name: str | DatasetSpec, raw_dir: str | Path, cache_dir: str | Path,
            force: bool = False, progress: bool = True, chunk_rows: int | None = None) -> PrepareSummary:
    """Convert dataset ``name`` from ``raw_dir`` into ``<cache_dir>/<name>.zarr``.

    An existing cache is an error unless ``force``; with ``force`` it is
    replaced only once the new cache is complete. ``chunk_rows`` overrides
    the rows per chunk (default: about CHUNK_BYTES per chunk).
    """
    spec = name if isinstance(name, DatasetSpec) else get_spec(name)
    raw_dir, cache_dir = Path(raw_dir), Path(cache_dir)
    final = cache_path(cache_dir, spec.name)
    for line in tidy(cache_dir, spec.name):  # what an earlier, killed prepare left
        log.warning(line)
    if final.exists() and not force:
        raise GdraeError(f"{final}: cache exists: expected no cache, got one; "
                         f"pass --force to replace it (kept until the new one is complete)")
    check_raw_files(spec, raw_dir)
    start = time.perf_counter()
    converted = convert_raw(spec, raw_dir)
    converted.sources = with_download_provenance(raw_dir, converted.sources)  # URLs, archives, first-use hashes
    try:
        with written_aside(final) as tmp:
            write_cache(converted, tmp, spec.name, progress=progress, chunk_rows=chunk_rows)
    except BaseException as exc:
        close = getattr(converted.blocks, "close", None)
        if close is not None:  # a generator may hold the raw file open
            close()
        unwritable = _unwritable_error(exc, cache_dir, spec.name)
        if unwritable is not None:
            raise unwritable from exc
        raise
    return PrepareSummary(name=spec.name, path=final, n=converted.n, factor_names=list(converted.factor_names),
                          factor_sizes=list(converted.factor_sizes), row_shape=tuple(converted.row_shape),
                          bytes_on_disk=dir_bytes(final), seconds=time.perf_counter() - start,
                          notes=list(converted.notes))


# errno of a write to a full or read-only cache directory -> (what was expected, what was found, advice)
_UNWRITABLE = {
    errno.ENOSPC: ("room for", "no space left on device", "free space"),
    errno.EDQUOT: ("room for", "no space left (disk quota exceeded)", "free space"),
    errno.EROFS: ("a writable directory for", "a read-only file system", "remount it read-write"),
    errno.EACCES: ("a writable directory for", "a read-only directory (permission denied)", "make it writable"),
    errno.EPERM: ("a writable directory for", "a read-only directory (operation not permitted)", "make it writable"),
}


def _unwritable_error(exc: BaseException, cache_dir: Path, dataset: str) -> GdraeError | None:
    """The one line for a write into ``cache_dir`` that failed for want of space or permission, else None
    (other errors, and errors about other files such as the raw ones, pass through)."""
    if not (isinstance(exc, OSError) and exc.errno in _UNWRITABLE):
        return None
    if exc.filename is not None:
        where, folder = Path(os.path.abspath(exc.filename)), Path(os.path.abspath(cache_dir))
        if not (where.is_relative_to(folder) or folder.is_relative_to(where)):
            return None
    expected, got, advice = _UNWRITABLE[exc.errno]
    return GdraeError(f"{cache_dir}: expected {expected} the {dataset} cache, got {got}; nothing was left "
                      f"behind and any earlier cache is kept; {advice} or pass another --cache-dir")


def write_cache(converted: Converted, path: Path, dataset: str, progress: bool = True,
                chunk_rows: int | None = None, row_order_seed: int = ROW_ORDER_SEED) -> None:
    """Write ``converted`` as a complete cache at ``path`` (a new directory), then re-open it to check it.

    Rows are stored in the seeded permutation :func:`pipelines.row_order.row_order`
    of the grid, with each row's factors beside them; the grid-order stream is
    reordered through bucket files under ``path`` (memory stays bounded).
    """
    import zarr

    _check_converted(converted, dataset)
    n, sizes = converted.n, list(converted.factor_sizes)
    rows = chunk_rows or chunk_rows_for(converted.row_shape, converted.dtype)
    perm = row_order(n, row_order_seed)
    group = zarr.open_group(path, mode="w-")
    array = group.create_array(converted.array_name, shape=(n, *converted.row_shape), dtype=converted.dtype,
                               chunks=(rows, *converted.row_shape), compressors=codecs_for(converted.dtype))
    factor_rows = min(FACTOR_CHUNK_ROWS, max(n, 1))
    factors = group.create_array(FACTORS, shape=(n, len(sizes)), dtype=FACTORS_DTYPE,
                                 chunks=(factor_rows, len(sizes)), compressors=codecs_for(FACTORS_DTYPE))
    factors[:] = index_to_factors(perm, sizes).astype(FACTORS_DTYPE)

    permuted = PermutedRows(perm, tuple(converted.row_shape), converted.dtype, path / ".row-order", align=rows)
    try:
        with tqdm(total=n, unit="row", desc=f"prepare {dataset}", disable=not progress, leave=False) as bar:
            for block in _rebatch(converted.blocks, rows * CHUNKS_PER_WRITE, converted, dataset):
                permuted.add(block)
                bar.update(len(block))
        if permuted.added != n:
            raise GdraeError(f"pipeline {dataset}: rows expected prod(factor_sizes {tuple(sizes)}) = {n}, "
                             f"got {permuted.added}")
        with tqdm(total=n, unit="row", desc=f"write {dataset}", disable=not progress, leave=False) as bar:
            for lo, block in permuted.stored():
                array[lo:lo + len(block)] = block
                bar.update(len(block))
    finally:
        permuted.close()
        shutil.rmtree(permuted.work_dir, ignore_errors=True)
    group.attrs.update(cache_attrs(dataset=dataset, factor_names=converted.factor_names, factor_sizes=sizes,
                                   factor_values=converted.factor_values, row_order_seed=row_order_seed,
                                   source=converted.sources, pipeline=converted.pipeline))
    open_cache(path)  # the schema and permutation checks a reader will make


def _check_converted(c: Converted, dataset: str) -> None:
    kind = ARRAY_KINDS.get(c.array_name)
    if kind is None or not kind.fits(c.dtype, tuple(c.row_shape)):
        kinds = " or ".join(f"{k.name} {k.describe()}" for k in ARRAY_KINDS.values())
        raise GdraeError(f"pipeline {dataset}: expected {kinds}, "
                         f"got {c.array_name} {c.dtype} (N, {', '.join(map(str, c.row_shape))})")
    k = len(c.factor_sizes)
    if len(c.factor_names) != k or [len(v) for v in c.factor_values] != list(c.factor_sizes):
        raise GdraeError(f"pipeline {dataset}: expected {k} factor names and value lists of sizes "
                         f"{list(c.factor_sizes)}, got {len(c.factor_names)} names and sizes "
                         f"{[len(v) for v in c.factor_values]}")


def _rebatch(blocks: Iterator[np.ndarray], size: int, c: Converted, dataset: str) -> Iterator[np.ndarray]:
    """Regroup row blocks of any length into consecutive pieces of ``size`` rows (the last may be
    shorter), checking each block. A piece may be a reused buffer: consume it before the next."""
    n, row_shape = c.n, tuple(c.row_shape)
    buf = np.empty((size, *row_shape), dtype=c.dtype)
    filled = lo = 0
    for block in blocks:
        block = np.asarray(block)
        if block.dtype != np.dtype(c.dtype) or tuple(block.shape[1:]) != row_shape:
            raise GdraeError(f"pipeline {dataset}: block at row {lo + filled} expected {c.dtype} (B, "
                             f"{', '.join(map(str, row_shape))}), got {block.dtype} {block.shape}")
        if lo + filled + len(block) > n:
            raise GdraeError(f"pipeline {dataset}: rows expected prod(factor_sizes "
                             f"{tuple(c.factor_sizes)}) = {n}, got more")
        pos = 0
        while pos < len(block):
            if filled == 0 and len(block) - pos >= size:  # a whole piece: no copy
                yield block[pos:pos + size]
                lo, pos = lo + size, pos + size
                continue
            take = min(size - filled, len(block) - pos)
            buf[filled:filled + take] = block[pos:pos + take]
            filled, pos = filled + take, pos + take
            if filled == size:
                yield buf
                lo, filled = lo + size, 0
    if filled:
        yield buf[:filled]
