"""The training batch loader: seeded, resumable, shardable batches from a cache.

Row order. A cache stores its rows in a random permutation of the factor
grid, so every chunk is a uniform sample of the dataset. Streaming, epoch
``e`` shuffles at chunk granularity plus a shuffle buffer: the chunk order
is permuted, consecutive runs of ``window_chunks`` chunks form windows, and
the rows inside each window are permuted. Reading a window thus touches each
of its chunks once, and its batches are as mixed as uniform draws without
replacement. In memory, the whole epoch is one window: a uniform permutation
of all rows. The order is a pure function of ``(seed, epoch)`` and the window
size (:func:`epoch_order`); rank ``r`` of ``world_size`` takes
the ``r``-th contiguous slice of it, ``len(loader) * batch_size`` rows long,
so shards are disjoint and every rank has the same number of batches
(``drop_last``: every batch has the same shape).

Resume. :meth:`BatchLoader.batches` is an infinite stream over epochs;
batch ``s`` is the same whether the stream starts at 0 or at ``s``, and
starting at ``s`` reads no image data of the batches before it.

Reading. Streaming mode decompresses the chunks a window needs (each once,
two at a time, into a reused buffer) in a background thread while the
trainer works; blosc releases the GIL. ``in_memory`` mode loads the whole
array once and gathers each batch in the caller's thread. The two modes
draw different (equally mixed) orders from the same seed.
Batches are torch uint8 (B, C, H, W) images or float32 (B, 2) points; the
trainer converts them on its device.
"""
from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from gdrae.data.cache import Cache, open_cache
from gdrae.errors import GdraeError

MEMORY_LIMIT = 4 << 30  # in_memory="auto" loads caches up to this many uncompressed bytes
READ_THREADS = 2  # chunks decompressed in parallel (blosc and zarr release the GIL)


def epoch_order(n: int, chunk_rows: int, window_chunks: int, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """All ``n`` rows of epoch ``epoch`` in their shuffled order, and where each window starts.

    Returns ``(order (n,) int64, window_starts)``: positions in ``order`` at
    which a new window of ``window_chunks`` chunks begins. When one window
    holds every chunk the order is a uniform permutation of all rows.
    """
    rng = np.random.default_rng([seed, epoch])
    nchunks = -(-n // chunk_rows)
    if window_chunks >= nchunks:
        return rng.permutation(n).astype(np.int64), np.zeros(1, dtype=np.int64)
    chunks = rng.permutation(nchunks)
    pieces, starts, pos = [], [], 0
    for w in range(0, nchunks, window_chunks):
        rows = np.concatenate([np.arange(c * chunk_rows, min((c + 1) * chunk_rows, n)) for c in chunks[w:w + window_chunks]])
        pieces.append(rng.permutation(rows))
        starts.append(pos)
        pos += len(rows)
    return np.concatenate(pieces).astype(np.int64), np.asarray(starts, dtype=np.int64)


class BatchLoader:
    """Seeded batches of one cache for one rank; see the module docstring for the order."""

    def __init__(
        self,
        cache: Cache | str | Path,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        in_memory: bool | str = "auto",
        memory_limit: int = MEMORY_LIMIT,
        window_chunks: int = 16,
        prefetch: int = 8,
    ):
        self.cache = cache if isinstance(cache, Cache) else open_cache(cache)
        self.data = self.cache.data
        _check_int("batch_size", batch_size, 1)
        _check_int("seed", seed, 0)
        _check_int("world_size", world_size, 1)
        _check_int("window_chunks", window_chunks, 1)
        _check_int("prefetch", prefetch, 0)
        if not (isinstance(rank, int) and 0 <= rank < world_size):
            raise GdraeError(f"loader rank: expected an integer in 0..{world_size - 1}, got {rank!r}")
        if in_memory not in (True, False, "auto"):
            raise GdraeError(f"data.in_memory: expected true, false or \"auto\", got {in_memory!r}")
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.prefetch = prefetch
        self.rows_per_rank = self.cache.n // world_size
        self.batches_per_epoch = self.rows_per_rank // batch_size
        if self.batches_per_epoch == 0:
            raise GdraeError(f"{self.cache.path}: batch_size expected at most {self.rows_per_rank} "
                             f"(rows per rank of {self.cache.n} rows over {world_size} rank(s)), got {batch_size}")
        self.in_memory = self.data.nbytes <= memory_limit if in_memory == "auto" else in_memory
        if self.in_memory:  # every row is at hand: one window, a uniform permutation per epoch
            window_chunks = self.data.nchunks
        self.window_chunks = window_chunks
        self._array = self._load_all() if self.in_memory else None
        self._last_epoch: tuple[int, np.ndarray, np.ndarray] | None = None
        self._pool = None if self.in_memory else ThreadPoolExecutor(READ_THREADS, thread_name_prefix="gdrae-read")

    def __len__(self) -> int:
        """Batches per epoch (the same on every rank)."""
        return self.batches_per_epoch

    def epoch_rows(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """This rank's rows of ``epoch`` in batch order (``len(self) * batch_size`` of them) and the
        positions where a new window begins (reading boundaries)."""
        cached = self._last_epoch  # batch_indices(step) is called step after step: keep one epoch
        if cached is not None and cached[0] == epoch:
            return cached[1], cached[2]
        order, starts = epoch_order(self.cache.n, self.data.chunk_rows, self.window_chunks, self.seed, epoch)
        lo = self.rank * self.rows_per_rank
        hi = lo + self.batches_per_epoch * self.batch_size
        cuts = starts[(starts > lo) & (starts < hi)] - lo
        rows, cuts = order[lo:hi], np.concatenate(([0], cuts, [hi - lo]))
        self._last_epoch = (epoch, rows, cuts)
        return rows, cuts

    def batch_indices(self, step: int) -> np.ndarray:
        """Rows of batch ``step`` of the infinite stream."""
        epoch, b = divmod(step, self.batches_per_epoch)
        rows, _ = self.epoch_rows(epoch)
        return rows[b * self.batch_size:(b + 1) * self.batch_size].copy()

    def batches(self, start_step: int = 0, with_indices: bool = False) -> Iterator:
        """Infinite stream of batches from ``start_step``: tensors, or ``(tensor, rows)`` pairs."""
        _check_int("start_step", start_step, 0)
        produced = self._produce(start_step)
        # in memory a batch costs one gather, cheaper than handing it over from a thread
        stream = produced if self.prefetch == 0 or self.in_memory else _prefetched(produced, self.prefetch)
        try:
            for batch, rows in stream:
                yield (batch, rows) if with_indices else batch
        finally:
            stream.close()

    def _produce(self, step: int) -> Iterator[tuple[torch.Tensor, np.ndarray]]:
        """(batch, rows) from batch ``step`` on, window by window. An epoch holds a whole number of
        batches, so a batch that spans two windows (the ``carry``) never spans two epochs."""
        size = self.batch_size
        buf = None  # streaming: the chunks of the current window, decompressed; reused
        while True:
            epoch, b = divmod(step, self.batches_per_epoch)
            rows, cuts = self.epoch_rows(epoch)
            pos = b * size
            carry = None  # the first rows of a batch that spans two windows
            for lo, hi in zip(cuts[:-1], cuts[1:]):
                if hi <= pos:
                    continue
                lo = max(lo, pos)
                src, at_rows, buf = self._locate(rows[lo:hi], buf)
                at = 0
                if carry is not None:
                    need = size - len(carry)
                    more = np.take(src, at_rows[:need], axis=0)
                    if need > len(at_rows):  # the window is smaller than what the batch lacks
                        carry = np.concatenate((carry, more))
                        continue
                    yield _tensor(np.concatenate((carry, more))), rows[lo - len(carry):lo + need]
                    carry, at = None, need
                while at + size <= len(at_rows):
                    yield _tensor(np.take(src, at_rows[at:at + size], axis=0)), rows[lo + at:lo + at + size]
                    at += size
                if at < len(at_rows):
                    carry = np.take(src, at_rows[at:], axis=0)
            step = (epoch + 1) * self.batches_per_epoch

    def _locate(self, rows: np.ndarray, buf: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """An array holding ``rows``, their positions in it, and the buffer to reuse next time: the
        whole array in memory, or ``buf`` into which the chunks these rows need are decompressed."""
        if self._array is not None:
            return self._array, rows, None
        cr = self.data.chunk_rows
        chunk_of = rows // cr
        needed = np.unique(chunk_of)
        if buf is None or len(buf) < len(needed) * cr:
            buf = np.empty((len(needed) * cr, *self.data.shape[1:]), dtype=self.data.dtype)
        list(self._pool.map(lambda j: self.data.read_chunk(int(needed[j]), out=buf[j * cr:(j + 1) * cr]),
                            range(len(needed))))
        return buf, np.searchsorted(needed, chunk_of) * cr + rows % cr, buf

    def _load_all(self) -> np.ndarray:
        out = np.empty(self.data.shape, dtype=self.data.dtype)
        for c in range(self.data.nchunks):
            lo, hi = self.data.chunk_range(c)
            self.data.read_chunk(c, out=out[lo:hi])
        return out


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array))


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise GdraeError(f"loader {name}: expected an integer >= {minimum}, got {value!r}")


_DONE = object()


def _prefetched(items: Iterator, depth: int) -> Iterator:
    """Run the generator ``items`` in a background thread, ``depth`` items ahead; errors re-raise here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put((_DONE, exc))
        finally:
            items.close()

    thread = threading.Thread(target=work, name="gdrae-loader-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if isinstance(item, tuple) and len(item) == 2 and item[0] is _DONE:
                raise item[1]
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
