"""The cache schema, stated once: attrs, arrays, codecs and version.

The writer (pipelines.store) builds a cache from these names and the reader
(gdrae.data.cache) checks a cache against them; neither restates them. A
change of layout that older readers would misread raises
:data:`CACHE_VERSION`.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np

CACHE_VERSION = 2
VERSION_KEY = "gdrae_cache_version"
# every key of a cache's attrs; the reader refuses a cache that lacks one
REQUIRED_ATTRS = (VERSION_KEY, "dataset", "factor_names", "factor_sizes", "factor_values",
                  "row_order_seed", "source", "created", "pipeline")
FACTORS = "factors"  # the (N, K) array of each stored row's factor classes
FACTORS_DTYPE = "int32"  # as written; a reader accepts any integer type
# the codecs of every array, by name, in order: little-endian values, compressed, checksummed
CODEC_CHAIN = ("bytes", "blosc", "crc32c")


@dataclass(frozen=True)
class ArrayKind:
    """One kind of data array: its name in the group, its dtype and the shape of its rows."""

    name: str
    dtype: str
    shape: str  # the array's shape in words, for messages
    row_fits: Callable[[tuple[int, ...]], bool]  # whether one row of this shape is a row of this kind

    def fits(self, dtype: Any, row_shape: tuple[int, ...]) -> bool:
        """Whether rows of ``dtype`` and ``row_shape`` are rows of this kind."""
        return np.dtype(dtype) == np.dtype(self.dtype) and self.row_fits(tuple(row_shape))

    def describe(self) -> str:
        """E.g. "uint8 (N, C, H, W)"."""
        return f"{self.dtype} {self.shape}"


# a cache holds exactly one data array, of one of these kinds, beside FACTORS
ARRAY_KINDS = {kind.name: kind for kind in (
    ArrayKind("images", "uint8", "(N, C, H, W)", lambda row: len(row) == 3 and row[0] in (1, 3)),
    ArrayKind("points", "float32", "(N, 2)", lambda row: row == (2,)),
)}


def codecs_for(dtype: str) -> list:
    """The compressors of an array of ``dtype`` (after zarr's default little-endian ``bytes``:
    the chain :data:`CODEC_CHAIN`): Blosc, then a CRC32C checksum, so a damaged chunk fails on read.

    LZ4 inside Blosc decompresses about 2x faster than zstd here, which the
    streaming loader needs; byte-shuffling helps float32 points.
    """
    from zarr.codecs import BloscCodec, BloscShuffle, Crc32cCodec

    shuffle = BloscShuffle.shuffle if np.dtype(dtype).itemsize > 1 else BloscShuffle.noshuffle
    return [BloscCodec(cname="lz4", clevel=5, shuffle=shuffle), Crc32cCodec()]


def codec_chain(array: Any) -> list[str]:
    """The names of a zarr array's codecs in order ("bytes-big-endian" where it stores big-endian
    values), to compare with :data:`CODEC_CHAIN`."""
    chain = []
    for codec in getattr(array.metadata, "codecs", ()):
        spec = codec.to_dict()
        big = (spec.get("configuration") or {}).get("endian") == "big"
        chain.append(spec["name"] + ("-big-endian" if big else ""))
    return chain


def cache_attrs(*, dataset: str, factor_names: list[str], factor_sizes: list[int],
                factor_values: list[list[float]], row_order_seed: int, source: list[dict],
                pipeline: dict) -> dict:
    """The attrs of a new cache: the values given, the schema version and the time of writing
    (every key of :data:`REQUIRED_ATTRS`)."""
    return {
        VERSION_KEY: CACHE_VERSION,
        "dataset": dataset,
        "factor_names": list(factor_names),
        "factor_sizes": [int(s) for s in factor_sizes],
        "factor_values": [[float(v) for v in vals] for vals in factor_values],
        "row_order_seed": int(row_order_seed),
        "source": list(source),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "pipeline": dict(pipeline),
    }
