"""Open and validate a prepared dataset cache (docs/design.md section 3, the cache contract, schema version 2).

A cache is a zarr group ``<cache_dir>/<name>.zarr`` holding ``images``
(uint8 N, C, H, W) or ``points`` (float32 N, 2), ``factors`` (integer N, K:
the factor classes of each stored row) and attrs describing the factors and
the raw sources, as gdrae.data.schema states them. Rows are stored in a
seeded random permutation of the factor grid, so every chunk is a uniform
sample; :attr:`Cache.grid_index` maps each stored row to its grid cell and
:meth:`Cache.to_grid_order` brings per-row values (codes, say) into the
grid order the metrics expect. :func:`open_cache` checks all of that up
front, so code that gets a :class:`Cache` can trust its shapes and its
grid. Reads go through :class:`CheckedArray`, which turns a corrupt chunk
(checksum mismatch, bad compression) into a one-line :class:`GdraeError`
naming the cache and chunk; :func:`verify` reads every chunk. Reading
changes nothing on disk. :func:`open_run_cache` opens the cache of a run
and checks that it fits the run's config: the one place that rule is written.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from gdrae.data.grid import factors_to_index, grid_size
from gdrae.data.lifecycle import cache_path, dataset_name, restorable
from gdrae.data.schema import (ARRAY_KINDS, CACHE_VERSION, CODEC_CHAIN, FACTORS, REQUIRED_ATTRS, VERSION_KEY,
                               codec_chain)
from gdrae.errors import GdraeError
from gdrae.fastpaths import fast

if TYPE_CHECKING:
    from gdrae.config import RunConfig

# what zarr, blosc and the file system raise for a damaged or missing chunk (checksum: ValueError)
CORRUPTION_ERRORS = (ValueError, RuntimeError, OSError)


def rebuild_advice(path: str | Path) -> str:
    """What to run to rebuild the cache at ``path`` (the end of every message about a bad cache).

    A cache made from a YAML declaration (``prepare --spec``) needs that file again; its
    group metadata says so when it is still readable.
    """
    path = Path(path)
    spec = " --spec FILE.yaml" if _declared(path) else ""
    return f"rebuild with `gdrae-data prepare {dataset_name(path)}{spec} --cache-dir {path.parent} --force`"


def _declared(path: Path) -> bool:
    """Whether the cache's group metadata records a YAML declaration (False when it cannot be read)."""
    try:
        attrs = json.loads((path / "zarr.json").read_text())["attributes"]
        return "declaration" in attrs["pipeline"]
    except Exception:  # a damaged cache is what the advice is for: no advice must fail
        return False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


class CheckedArray:
    """A read-only zarr array whose read errors become a GdraeError naming the chunk.

    Indexing along the first axis works as on the zarr array (``a[i]``,
    ``a[lo:hi]``, ``a[[i, j]]``) and returns numpy arrays. ``read_chunk(i)``
    reads one stored chunk. ``zarr`` is the underlying array for anything else.
    """

    def __init__(self, array: Any, cache: Path, name: str):
        self.zarr = array
        self.cache = cache
        self.name = name
        self.shape: tuple[int, ...] = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.chunk_rows: int = int(array.chunks[0])
        self.nchunks: int = -(-self.shape[0] // self.chunk_rows) if self.shape[0] else 0
        self._chunk_file = _direct_chunk_files(array)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """Uncompressed size in bytes."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def chunk_range(self, i: int) -> tuple[int, int]:
        """Rows ``[lo, hi)`` stored in chunk ``i``."""
        lo = i * self.chunk_rows
        return lo, min(lo + self.chunk_rows, self.shape[0])

    def read_chunk(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """The rows of chunk ``i`` (decompressed, checksum verified), written into ``out`` if given."""
        if not 0 <= i < self.nchunks:
            raise GdraeError(f"{self.cache}: chunk {i} of '{self.name}' does not exist: "
                             f"expected 0..{self.nchunks - 1}, got {i}")
        lo, hi = self.chunk_range(i)
        if out is None:
            out = np.empty((hi - lo, *self.shape[1:]), dtype=self.dtype)
        out = out[:hi - lo]
        try:
            if self._chunk_file is not None and fast("chunk_files"):
                _decode_blosc_crc32c(self._chunk_file(i), out, self.chunk_rows)
            else:  # zarr's own read
                out[...] = self.zarr[lo:hi]
        except CORRUPTION_ERRORS as exc:
            raise self.corrupt_error([i], exc) from exc
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            return self.zarr[key]
        except CORRUPTION_ERRORS as exc:
            raise self.corrupt_error(self._bad_chunks(key), exc) from exc

    def corrupt_error(self, chunks: list[int], exc: BaseException | None = None) -> GdraeError:
        """The one-line error for corrupt chunk(s) ``chunks``."""
        shown = ", ".join(str(c) for c in chunks[:10]) + (", ..." if len(chunks) > 10 else "")
        lo, hi = self.chunk_range(chunks[0]) if chunks else (0, 0)
        what = f"chunk {shown} (rows {lo}..{hi - 1})" if len(chunks) == 1 else f"{len(chunks)} chunks ({shown})"
        cause = f" [{_one_line(exc)}]" if exc is not None else ""
        return GdraeError(f"{self.cache}: {what} of '{self.name}' is corrupt: expected data matching its "
                          f"checksum and chunk shape{cause}; {rebuild_advice(self.cache)}")

    def _bad_chunks(self, key: Any) -> list[int]:
        """Chunks touched by ``key`` that fail to read on their own (for the error message)."""
        first = key[0] if isinstance(key, tuple) else key
        rows = np.atleast_1d(np.arange(self.shape[0])[first])
        bad = []
        for i in np.unique(rows // self.chunk_rows):
            lo, hi = self.chunk_range(int(i))
            try:
                self.zarr[lo:hi]
            except CORRUPTION_ERRORS:
                bad.append(int(i))
        return bad


def _direct_chunk_files(array: Any) -> Callable[[int], Path] | None:
    """Chunk index -> file, when chunks can be decoded without zarr's (slower, asyncio) pipeline.

    That is the layout the writer produces: a local store, chunks along the
    first axis, the codec chain CODEC_CHAIN (bytes little-endian -> blosc ->
    crc32c) on a little-endian machine. Anything else
    returns None and reads go through zarr, as they do with the fast path
    ``chunk_files`` switched off (gdrae.fastpaths; what it relies on of zarr:
    docs/internals.md).
    """
    from zarr.storage import LocalStore

    if not (isinstance(array.store, LocalStore) and sys.byteorder == "little"
            and codec_chain(array) == list(CODEC_CHAIN)):
        return None
    root = Path(array.store.root) / array.path
    tail = (0,) * (array.ndim - 1)
    return lambda i: root / array.metadata.encode_chunk_key((i, *tail))


def _decode_blosc_crc32c(path: Path, out: np.ndarray, chunk_rows: int) -> None:
    """Check the CRC32C trailer of one chunk file and blosc-decompress it into ``out``."""
    import google_crc32c
    from numcodecs import blosc

    raw = path.read_bytes()
    body = np.frombuffer(raw, dtype=np.uint8)[:-4]
    if len(raw) < 4 or google_crc32c.value(body) != int.from_bytes(raw[-4:], "little"):
        raise ValueError("stored and computed CRC32C checksums differ")
    expected = chunk_rows * int(np.prod(out.shape[1:], dtype=np.int64)) * out.itemsize
    stored = _blosc_nbytes(raw)
    if stored != expected:  # else blosc fills part of the buffer and leaves the rest as it was
        raise ValueError(f"the chunk holds {stored} bytes, expected {expected} for {chunk_rows} rows "
                         f"(the chunk_shape in zarr.json)")
    if len(out) == chunk_rows and out.flags.c_contiguous:
        blosc.decompress(body, out)
    else:  # the last chunk is stored full size; a caller's view may be strided
        full = np.empty((chunk_rows, *out.shape[1:]), dtype=out.dtype)
        blosc.decompress(body, full)
        out[...] = full[:len(out)]


def _blosc_nbytes(frame: bytes) -> int:
    """The decompressed size a blosc frame declares: its 16-byte header holds it (uint32 LE) at byte 4."""
    return int.from_bytes(frame[4:8], "little") if len(frame) >= 16 else -1


@dataclass(frozen=True)
class Cache:
    """A validated cache. ``images`` or ``points`` is the data array (the other is None)."""

    path: Path
    attrs: dict
    data: CheckedArray  # the images or points array
    factors: np.ndarray  # (N, K) integer class indices of each stored row
    grid_index: np.ndarray  # (N,) int64 grid cell of each stored row: ravel_multi_index(factors.T, sizes)
    factor_names: tuple[str, ...]
    factor_sizes: tuple[int, ...]
    factor_values: tuple[tuple[float, ...], ...]

    @property
    def name(self) -> str:
        return str(self.attrs["dataset"])

    @property
    def n(self) -> int:
        return self.data.shape[0]

    @property
    def kind(self) -> str:
        """"images" or "points"."""
        return self.data.name

    @property
    def images(self) -> CheckedArray | None:
        return self.data if self.data.name == "images" else None

    @property
    def points(self) -> CheckedArray | None:
        return self.data if self.data.name == "points" else None

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.data.shape[1:]

    def to_grid_order(self, values: np.ndarray) -> np.ndarray:
        """Per-stored-row ``values`` (N, ...) reordered so that entry ``i`` belongs to grid cell ``i``
        (row ``i`` = ``unravel_index(i, factor_sizes)``), the order of the metrics' code tables."""
        values = np.asarray(values)
        if len(values) != self.n:
            raise GdraeError(f"{self.path}: expected {self.n} values (one per row), got {len(values)}")
        out = np.empty_like(values)
        out[self.grid_index] = values
        return out

    def bytes_on_disk(self) -> int:
        """Total size of the cache's files."""
        return dir_bytes(self.path)


def dir_bytes(path: Path) -> int:
    """Total size of the files under ``path``."""
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def open_cache(path: str | Path) -> Cache:
    """Open the cache at ``path`` and validate schema version, arrays, dtypes, shapes and the grid.

    Raises GdraeError when it is missing (naming the command to run:
    ``gdrae-data list``, which restores it, where an interrupted replace set
    an earlier copy aside, else ``gdrae-data prepare``), incomplete or
    invalid. Renames, removes and writes nothing.
    """
    import zarr  # deferred: importing zarr costs time the CLI's --help does not need

    path = Path(path)
    name = dataset_name(path)
    rebuild = rebuild_advice(path)
    if not path.exists():
        kept, _ = restorable(path)
        if kept is not None:
            raise GdraeError(f"cache {path} not found: expected a prepared cache, got an earlier one set aside as "
                             f"{kept.name} by an interrupted `gdrae-data prepare --force`; run "
                             f"`gdrae-data list --cache-dir {path.parent}` to restore it")
        raise GdraeError(f"cache {path} not found: expected a prepared cache; "
                         f"run `gdrae-data prepare {name} --cache-dir {path.parent}`")
    try:
        group = zarr.open_group(path, mode="r")
        attrs = dict(group.attrs)
    except Exception as exc:
        raise GdraeError(f"{path}: expected a zarr group (a gdrae cache), got an unreadable directory "
                         f"[{_one_line(exc)}]; {rebuild}") from exc

    version = attrs.get(VERSION_KEY)
    if VERSION_KEY in attrs and version != CACHE_VERSION:  # checked first: older caches lack newer keys
        old = " (rows in grid order, written by an earlier gdrae)" if version == 1 else ""
        raise GdraeError(f"{path}: {VERSION_KEY} expected {CACHE_VERSION}, got {version!r}{old}; {rebuild}")
    missing = [k for k in REQUIRED_ATTRS if k not in attrs]
    if missing:
        raise GdraeError(f"{path}: attrs lack {', '.join(missing)}: expected a gdrae cache; {rebuild}")

    names, sizes, values = _factor_attrs(attrs, path, rebuild)
    source = attrs["source"]
    if not (isinstance(source, list) and all(isinstance(s, dict) for s in source)):
        raise GdraeError(f"{path}: source expected a list of {{name, bytes, sha256}} records, "
                         f"got {_clip(source)}; {rebuild}")
    n = grid_size(sizes)

    arrays = {key: _open_array(group, key, path, rebuild) for key in (*ARRAY_KINDS, FACTORS)}
    kinds = [k for k in ARRAY_KINDS if arrays[k] is not None]
    if len(kinds) != 1 or arrays[FACTORS] is None:
        raise GdraeError(f"{path}: arrays expected '{FACTORS}' and one of {'/'.join(map(repr, ARRAY_KINDS))}, "
                         f"got {sorted(k for k, a in arrays.items() if a is not None)}; {rebuild}")
    data = arrays[kinds[0]]
    _check_data_array(data, n, path, rebuild)

    fz = arrays[FACTORS]
    if fz.shape != (n, len(sizes)) or fz.dtype.kind not in "iu":
        raise GdraeError(f"{path}: '{FACTORS}' expected integer ({n}, {len(sizes)}), "
                         f"got {fz.dtype} {fz.shape}; {rebuild}")
    factors = fz[:]
    grid_index = _grid_index(factors, sizes)
    if grid_index is None:
        raise GdraeError(f"{path}: '{FACTORS}' expected every cell of the grid {tuple(sizes)} exactly once, "
                         f"got missing, repeated or out-of-range factor classes; {rebuild}")

    return Cache(path=path, attrs=attrs, data=data, factors=factors, grid_index=grid_index, factor_names=tuple(names),
                 factor_sizes=tuple(int(s) for s in sizes),
                 factor_values=tuple(tuple(float(x) for x in v) for v in values))


def _factor_attrs(attrs: dict, path: Path, rebuild: str) -> tuple[list, list, list]:
    """factor_names, factor_sizes and factor_values: K names, K positive sizes, K lists of numbers of those sizes."""
    names, sizes, values = attrs["factor_names"], attrs["factor_sizes"], attrs["factor_values"]
    if not (isinstance(sizes, list) and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes)):
        key, expected, got = "factor_sizes", "a list of positive integers", sizes
    elif not (isinstance(names, list) and len(names) == len(sizes) and all(isinstance(x, str) for x in names)):
        key, expected, got = "factor_names", f"{len(sizes)} strings", names
    elif not (isinstance(values, list) and [len(v) if isinstance(v, list) else None for v in values] == sizes
              and all(_is_number(x) for v in values for x in v)):
        key, expected, got = "factor_values", f"{len(sizes)} lists of numbers of lengths {sizes}", values
    else:
        return names, sizes, values
    raise GdraeError(f"{path}: {key} expected {expected}, got {_clip(got)}; {rebuild}")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _clip(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (attrs can hold long lists)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _open_array(group: Any, key: str, path: Path, rebuild: str) -> CheckedArray | None:
    """Array ``key`` of the cache, or None if there is none; its metadata must be readable and describe
    the layout the writer stores: chunks along the first axis, codecs CODEC_CHAIN (checksums on)."""
    import zarr

    meta = path / key / "zarr.json"
    try:
        array = group[key]
    except KeyError:
        return None
    except Exception as exc:  # zarr raises many types for bad metadata (JSON, rank, dtype, unknown codec)
        raise GdraeError(f"{meta}: expected readable zarr array metadata, got {_one_line(exc)}; {rebuild}") from exc
    if not isinstance(array, zarr.Array):
        return None
    chain = codec_chain(array)
    if chain != list(CODEC_CHAIN):
        unchecked = "" if CODEC_CHAIN[-1] in chain else " (no checksum: not a cache gdrae wrote)"
        raise GdraeError(f"{meta}: codecs expected {' -> '.join(CODEC_CHAIN)}, got {' -> '.join(chain) or 'none'}"
                         f"{unchecked}; {rebuild}")
    if not array.shape or array.chunks[0] < 1 or tuple(array.chunks[1:]) != tuple(array.shape[1:]):
        raise GdraeError(f"{meta}: chunks expected along N only, got chunks {array.chunks} "
                         f"for shape {array.shape}; {rebuild}")
    return CheckedArray(array, path, key)


def _grid_index(factors: np.ndarray, sizes: list[int]) -> np.ndarray | None:
    """The grid cell of each row, or None unless the rows hold every cell exactly once."""
    try:
        index = factors_to_index(factors, sizes)
    except ValueError:  # a class outside its factor's range
        return None
    if len(index) and not np.all(np.bincount(index, minlength=len(index)) == 1):
        return None
    return index


def _check_data_array(data: CheckedArray, n: int, path: Path, rebuild: str) -> None:
    """Dtype, shape and completeness of the images/points array."""
    shape, kind = data.shape, ARRAY_KINDS[data.name]
    if not kind.fits(data.dtype, shape[1:]) or shape[0] != n:
        raise GdraeError(f"{path}: '{kind.name}' expected {kind.describe()} with N = prod(factor_sizes) = {n}, "
                         f"got {data.dtype} {shape}; {rebuild}")
    stored = data.zarr.nchunks_initialized
    if stored != data.nchunks:
        raise GdraeError(f"{path}: '{kind.name}' expected {data.nchunks} stored chunks, got {stored} "
                         f"(incomplete cache); {rebuild}")


# ----------------------------------------------------------------------------- every chunk


@dataclass
class VerifySummary:
    """What :func:`verify` checked."""

    path: Path
    n: int
    nchunks: int
    bytes_on_disk: int
    seconds: float


def verify(path: str | Path, progress: bool = True) -> VerifySummary:
    """Re-read every chunk of the cache at ``path`` (checksums) and check its schema and grid.

    Raises GdraeError listing the corrupt chunk(s), if any.
    """
    from tqdm import tqdm

    start = time.perf_counter()
    cache = open_cache(path)
    data = cache.data
    bad = []
    for i in tqdm(range(data.nchunks), unit="chunk", desc=f"verify {cache.name}", disable=not progress, leave=False):
        try:
            data.read_chunk(i)
        except GdraeError:
            bad.append(i)
    if bad:
        raise data.corrupt_error(bad)
    return VerifySummary(path=cache.path, n=cache.n, nchunks=data.nchunks, bytes_on_disk=cache.bytes_on_disk(),
                         seconds=time.perf_counter() - start)


# ----------------------------------------------------------------------------- a run's cache


def open_run_cache(cfg: RunConfig, cache_dir: str | Path | None = None, source: str = "config") -> Cache:
    """Open the cache a run trains or is evaluated on (``data.name`` in ``cache_dir``, default
    ``data.cache_dir``) and check that it fits the run's config (:func:`check_compatible`)."""
    cache = open_cache(cache_path(cfg.data.cache_dir if cache_dir is None else cache_dir, cfg.data.name))
    check_compatible(cfg, cache, source)
    return cache


def check_compatible(cfg: RunConfig, cache: Cache, source: str = "config") -> None:
    """GdraeError unless ``cache`` fits the run config ``cfg``: dataset name, images or points, channels, image size.

    The one check of this rule, for the trainer and the evaluator alike;
    ``source`` names where the config comes from (e.g. "checkpoint runs/x/checkpoints/latest.pt").
    """
    m = cfg.model
    where = f"{source} and cache {cache.path}"
    if cache.name != cfg.data.name:
        raise GdraeError(f"{where} do not belong together: dataset expected {cfg.data.name!r} "
                         f"(data.name), got {cache.name!r}")
    expected_kind = "points" if m.kind == "sector2d" else "images"
    if cache.kind != expected_kind:
        raise GdraeError(f"{where} do not belong together: expected {expected_kind} for model.kind={m.kind}, "
                         f"got {cache.kind}")
    if m.kind == "sector2d":
        return
    channels, height, width = cache.row_shape
    if channels != m.channels:
        raise GdraeError(f"{where} do not belong together: channels expected {m.channels} (model.channels), "
                         f"got {channels}")
    if (height, width) != (m.image_size, m.image_size):
        raise GdraeError(f"{where} do not belong together: image size expected {m.image_size}x{m.image_size} "
                         f"(the encoders' input), got {height}x{width}")
