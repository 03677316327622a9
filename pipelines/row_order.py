"""The stored row order of a cache, and writing a grid-order stream into it with bounded memory.

A cache stores its rows in a seeded random permutation of the factor grid
(docs/design.md section 3): stored row ``j`` holds grid row ``perm[j]``.
Every chunk is then a uniform sample of the dataset, so a loader that
shuffles chunk windows gives batches as mixed as uniform draws.

Pipelines hand out rows in grid order, and a dataset may be far larger than
memory (3DShapes: 5.9 GB). :class:`PermutedRows` is a two-pass external
shuffle: pass one appends each incoming row to the *bucket* file of its
destination (a bucket is a run of consecutive stored rows, ``bucket_rows``
long, compressed with LZ4); pass two reads one bucket at a time, puts its
rows in stored order and hands them out. Memory holds two buckets at most,
whatever the dataset's size.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

BUCKET_BYTES = 128 << 20  # uncompressed bytes per bucket; pass two holds two of them
_FRAME_HEADER = struct.Struct("<qq")  # (compressed bytes, rows) before each compressed frame


def row_order(n: int, seed: int) -> np.ndarray:
    """The stored order of a grid of ``n`` rows: ``perm[j]`` is the grid row stored at row ``j``."""
    return np.random.default_rng(seed).permutation(n).astype(np.int64)


class PermutedRows:
    """Rows arriving in grid order, handed out in the stored order ``perm``, memory-bounded.

    ``add(block)`` takes consecutive grid rows (every row exactly once, in
    order); then ``stored()`` yields ``(first stored row, rows)`` pieces that
    cover the stored order once, each a whole number of ``align`` rows (a
    chunk) except the last. The bucket files live in ``work_dir``, which the
    caller removes.
    """

    def __init__(self, perm: np.ndarray, row_shape: tuple[int, ...], dtype: str, work_dir: Path,
                 align: int = 1, bucket_bytes: int = BUCKET_BYTES):
        self.perm = np.asarray(perm, dtype=np.int64)
        self.n = len(self.perm)
        self.row_shape, self.dtype = tuple(row_shape), np.dtype(dtype)
        row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.bucket_rows = max(1, bucket_bytes // row_bytes // align) * align
        self.nbuckets = max(1, -(-self.n // self.bucket_rows))
        self.destination = np.empty(self.n, dtype=np.int64)  # grid row -> stored row
        self.destination[self.perm] = np.arange(self.n)
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=False)
        self.files: list[BinaryIO] = [open(self._path(b), "wb") for b in range(self.nbuckets)]
        self.added = 0

    def _path(self, bucket: int) -> Path:
        return self.work_dir / f"bucket-{bucket:05d}"

    def add(self, block: np.ndarray) -> None:
        """Grid rows ``added .. added + len(block)``: each goes to the bucket of its stored row."""
        lo = self.added
        bucket = self.destination[lo:lo + len(block)] // self.bucket_rows
        order = np.argsort(bucket, kind="stable")  # stable: rows stay in grid order inside a bucket
        grouped = np.ascontiguousarray(block[order])
        counts = np.bincount(bucket, minlength=self.nbuckets)
        start = 0
        for b in np.flatnonzero(counts):
            _write_frame(self.files[b], grouped[start:start + counts[b]])
            start += counts[b]
        self.added += len(block)

    def stored(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(lo, rows)``: stored rows ``lo .. lo + len(rows)``, bucket by bucket."""
        if self.added != self.n:
            raise ValueError(f"rows expected {self.n}, got {self.added}")
        for f in self.files:
            f.close()
        for b in range(self.nbuckets):
            lo, hi = b * self.bucket_rows, min((b + 1) * self.bucket_rows, self.n)
            arrived = np.empty((hi - lo, *self.row_shape), dtype=self.dtype)  # in increasing grid row
            filled = 0
            with open(self._path(b), "rb") as f:
                for frame in _read_frames(f, arrived):
                    filled += frame
            if filled != hi - lo:
                raise ValueError(f"{self._path(b)}: rows expected {hi - lo}, got {filled}")
            self._path(b).unlink()
            # arrived[k] is the k-th smallest grid row of this bucket, which belongs at stored row
            # lo + order[k] where order sorts perm[lo:hi]
            out = np.empty_like(arrived)
            out[np.argsort(self.perm[lo:hi], kind="stable")] = arrived
            del arrived
            yield lo, out

    def close(self) -> None:
        """Close the bucket files (the caller removes ``work_dir``)."""
        for f in self.files:
            f.close()


def _write_frame(f: BinaryIO, rows: np.ndarray) -> None:
    from numcodecs import blosc

    body = blosc.compress(rows, b"lz4", 1, blosc.NOSHUFFLE)
    f.write(_FRAME_HEADER.pack(len(body), len(rows)))
    f.write(body)


def _read_frames(f: BinaryIO, out: np.ndarray) -> Iterator[int]:
    """Decompress the frames of a bucket file one after another into ``out``; yields rows per frame."""
    from numcodecs import blosc

    at = 0
    while header := f.read(_FRAME_HEADER.size):
        nbytes, rows = _FRAME_HEADER.unpack(header)
        if at + rows > len(out):
            raise ValueError(f"{f.name}: more rows than the bucket holds")
        blosc.decompress(f.read(nbytes), out[at:at + rows])
        at += rows
        yield rows
