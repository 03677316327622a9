import numpy as np
import pytest
import torch

from gdrae.data.loader import BatchLoader, epoch_order
from gdrae.data.mixing import balance_ratio, distinct_ratio
from gdrae.errors import GdraeError
from tiny_caches import chunk_file, corrupt, decode_index

SIZES = (7, 5, 9)  # 315 rows: not a multiple of the chunk size or the batch size


def _rows(loader, epoch):
    return loader.epoch_rows(epoch)[0]


def test_epoch_order_is_a_permutation_shuffled_by_chunk_windows():
    order, starts = epoch_order(315, 16, 4, seed=3, epoch=0)
    assert sorted(order.tolist()) == list(range(315))
    assert starts[0] == 0 and len(starts) == 5  # 20 chunks in windows of 4
    for lo, hi in zip(starts, list(starts[1:]) + [315]):  # each window holds whole chunks
        chunks = np.unique(order[lo:hi] // 16)
        assert len(chunks) <= 4
        assert sum(min(16, 315 - 16 * c) for c in chunks) == hi - lo
    again, _ = epoch_order(315, 16, 4, seed=3, epoch=0)
    np.testing.assert_array_equal(order, again)


def test_every_row_once_per_epoch_and_seeded_orders(make_cache):
    cache = make_cache(SIZES, chunk_rows=16)
    loader = BatchLoader(cache, batch_size=35, seed=5, window_chunks=3, prefetch=0)
    assert len(loader) == 9
    stream = loader.batches(with_indices=True)
    seen = []
    for _ in range(len(loader)):
        batch, rows = next(stream)
        assert batch.shape == (35, 3, 2, 2) and batch.dtype == torch.uint8
        np.testing.assert_array_equal(decode_index(batch.numpy()), cache.grid_index[rows])
        seen.append(rows)
    assert sorted(np.concatenate(seen).tolist()) == list(range(315))  # 315 = 9 * 35: nothing dropped
    assert not np.array_equal(_rows(loader, 0), _rows(loader, 1))  # a new order every epoch
    same = BatchLoader(cache, batch_size=35, seed=5, window_chunks=3, prefetch=0)
    other = BatchLoader(cache, batch_size=35, seed=6, window_chunks=3, prefetch=0)
    np.testing.assert_array_equal(_rows(loader, 4), _rows(same, 4))
    assert not np.array_equal(_rows(loader, 4), _rows(other, 4))
    assert not np.array_equal(_rows(loader, 0), np.arange(315))


def test_drop_last_gives_equal_shapes(make_cache):
    cache = make_cache(SIZES, chunk_rows=16)
    loader = BatchLoader(cache, batch_size=64, seed=0, prefetch=0)
    assert len(loader) == 4  # 315 // 64
    shapes = {tuple(b.shape) for b, _ in zip(loader.batches(), range(12))}
    assert shapes == {(64, 3, 2, 2)}
    rows = _rows(loader, 0)
    assert len(rows) == 256 and len(np.unique(rows)) == 256


def test_shards_are_disjoint_cover_and_have_equal_batch_counts(make_cache):
    cache = make_cache(SIZES, chunk_rows=16)
    loaders = [BatchLoader(cache, batch_size=10, seed=2, rank=r, world_size=3, prefetch=0) for r in range(3)]
    assert {len(x) for x in loaders} == {10}  # 315 // 3 = 105 rows per rank -> 10 batches
    for epoch in (0, 1):
        shards = [_rows(x, epoch) for x in loaders]
        assert all(len(s) == 100 for s in shards)
        union = np.concatenate(shards)
        assert len(np.unique(union)) == 300  # disjoint
        full = BatchLoader(cache, batch_size=105, seed=2, prefetch=0)
        order = _rows(full, epoch)  # the shards are slices of the one global order
        for r, s in enumerate(shards):
            np.testing.assert_array_equal(s, order[105 * r:105 * r + 100])


@pytest.mark.parametrize("world_size,rank", [(1, 0), (2, 1)])
def test_starting_the_stream_late_gives_the_same_batches(make_cache, world_size, rank):
    cache = make_cache(SIZES, chunk_rows=16)
    make = lambda: BatchLoader(cache, batch_size=12, seed=9, rank=rank, world_size=world_size,  # noqa: E731
                               window_chunks=2, prefetch=0)
    loader = make()
    steps = 3 * len(loader) + 2  # crosses epoch boundaries
    full = [(b.clone(), r) for (b, r), _ in zip(loader.batches(with_indices=True), range(steps))]
    for start in (1, 5, len(loader), 2 * len(loader) + 3):
        late = make()
        for s, (b, r) in zip(range(start, steps), late.batches(start_step=start, with_indices=True)):
            assert torch.equal(b, full[s][0])
            np.testing.assert_array_equal(r, full[s][1])
            np.testing.assert_array_equal(r, late.batch_indices(s))


def test_skipping_reads_no_data_of_skipped_batches(make_cache):
    cache = make_cache(SIZES, chunk_rows=16)
    loader = BatchLoader(cache, batch_size=12, seed=9, in_memory=False, window_chunks=2, prefetch=0)
    reads = []
    read_chunk = cache.data.read_chunk
    cache.data.read_chunk = lambda i, out=None: (reads.append(i), read_chunk(i, out))[1]
    start = 2 * len(loader) + 5
    next(loader.batches(start_step=start))
    needed = np.unique(loader.batch_indices(start) // 16)
    assert len(reads) <= 2 * 2 and set(needed) <= set(reads)  # at most the two windows the batch spans


@pytest.mark.parametrize("kind", ["images", "points"])
def test_in_memory_and_streaming_batches_hold_the_rows_they_name(make_cache, kind):
    cache = make_cache(SIZES, kind=kind, chunk_rows=16)
    kw = dict(batch_size=20, seed=4, window_chunks=3)
    streaming = BatchLoader(cache, in_memory=False, prefetch=3, **kw)
    memory = BatchLoader(cache, in_memory=True, **kw)
    auto_small = BatchLoader(cache, in_memory="auto", **kw)
    auto_tiny_limit = BatchLoader(cache, in_memory="auto", memory_limit=10, **kw)
    assert memory.in_memory and auto_small.in_memory and not auto_tiny_limit.in_memory
    assert memory.window_chunks == cache.data.nchunks and streaming.window_chunks == 3
    n = 2 * len(streaming) + 3
    for loader in (streaming, memory):
        for (batch, rows), _ in zip(loader.batches(with_indices=True), range(n)):
            grid = cache.grid_index[rows]
            got = decode_index(batch.numpy()) if kind == "images" else batch[:, 0].numpy()
            np.testing.assert_array_equal(got, grid)
    if kind == "points":
        batch = next(memory.batches())
        assert batch.dtype == torch.float32 and batch.shape == (20, 2)


def test_in_memory_epochs_are_uniform_permutations_not_chunk_windows():
    order, starts = epoch_order(315, 16, window_chunks=20, seed=3, epoch=0)  # 20 chunks: one window
    assert sorted(order.tolist()) == list(range(315)) and starts.tolist() == [0]
    np.testing.assert_array_equal(order, np.random.default_rng([3, 0]).permutation(315))


@pytest.mark.parametrize("in_memory", [False, True])
def test_batches_are_as_mixed_as_uniform_draws(make_cache, in_memory):
    """A grid whose two slow factors are constant over whole chunks in grid order: each 64-row
    chunk is one (f0, f1) combination there. Read chunk window by chunk window, a batch of 32
    held at most 4 of the 30 combinations (a ratio of 0.2 to uniform draws) and consecutive
    batches repeated them; stored in a random order, batches mix like uniform draws."""
    sizes = (6, 5, 8, 8)
    cache = make_cache(sizes, chunk_rows=64)
    loader = BatchLoader(cache, batch_size=32, seed=0, window_chunks=4, in_memory=in_memory, prefetch=0)
    batches = [cache.factors[rows] for _, (_, rows) in zip(range(120), loader.batches(with_indices=True))]
    tens = [np.concatenate(batches[i:i + 10]) for i in range(0, 120, 10)]
    # measured on the grid-order layout: 0.19, 0.26 and 0.05
    assert distinct_ratio([b[:, :2] for b in batches], sizes[:2]) > 0.9
    assert distinct_ratio([t[:, :2] for t in tens], sizes[:2]) > 0.9
    assert balance_ratio(tens, sizes, cache.n) > 0.5


def test_corrupt_chunk_surfaces_from_the_loader(make_cache):
    cache = make_cache(SIZES, chunk_rows=16)
    corrupt(chunk_file(cache, 4))
    for kw in (dict(in_memory=False, prefetch=2), dict(in_memory=False, prefetch=0)):
        stream = BatchLoader(cache, batch_size=15, seed=0, **kw).batches()
        with pytest.raises(GdraeError, match=r"chunk 4 \(rows 64\.\.79\) of 'images' is corrupt"):
            for _ in range(21):
                next(stream)
    with pytest.raises(GdraeError, match="chunk 4"):
        BatchLoader(cache, batch_size=15, in_memory=True)


def test_bad_arguments(make_cache):
    cache = make_cache(SIZES, chunk_rows=16)
    with pytest.raises(GdraeError, match="batch_size expected at most 315"):
        BatchLoader(cache, batch_size=400)
    with pytest.raises(GdraeError, match="rank: expected an integer in 0..1"):
        BatchLoader(cache, batch_size=4, rank=2, world_size=2)
    with pytest.raises(GdraeError, match="in_memory"):
        BatchLoader(cache, batch_size=4, in_memory="yes")
    with pytest.raises(GdraeError, match="not found"):
        BatchLoader(cache.path.parent / "nothing.zarr", batch_size=4)
