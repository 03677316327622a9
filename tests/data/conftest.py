"""Fixtures for the data tests; helpers live in tiny_caches.py."""
import numpy as np
import pytest

from gdrae.data.cache import cache_path, open_cache
from pipelines.store import prepare, spec_from_array
from tiny_caches import index_images


@pytest.fixture
def make_cache(tmp_path):
    """make_cache(sizes, kind="images"|"points", chunk_rows=..) -> opened Cache of a small grid."""

    def make(sizes=(5, 4, 6), kind="images", chunk_rows=16, name="tiny"):
        n = int(np.prod(sizes))
        data = index_images(n) if kind == "images" else np.stack([np.arange(n), -np.arange(n)], 1).astype(np.float32)
        names = [f"f{k}" for k in range(len(sizes))]
        spec = spec_from_array(name, data, names, list(sizes), block_rows=7)
        prepare(spec, tmp_path / "raw", tmp_path / "cache", progress=False, chunk_rows=chunk_rows)
        return open_cache(cache_path(tmp_path / "cache", name))

    return make
