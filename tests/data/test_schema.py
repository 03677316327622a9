"""The cache schema: what the writer writes is what the reader checks, both from gdrae.data.schema."""
import numpy as np
import pytest
import zarr

from gdrae.data.schema import (ARRAY_KINDS, CACHE_VERSION, CODEC_CHAIN, FACTORS, REQUIRED_ATTRS, VERSION_KEY,
                               cache_attrs, codec_chain)
from gdrae.errors import GdraeError
from pipelines.store import prepare, spec_from_array


def test_a_written_cache_has_the_schemas_attrs_arrays_and_codecs(make_cache):
    for kind in ARRAY_KINDS:
        cache = make_cache(kind=kind, name=kind)
        assert set(cache.attrs) == set(REQUIRED_ATTRS) and cache.attrs[VERSION_KEY] == CACHE_VERSION
        assert cache.kind == kind and ARRAY_KINDS[kind].fits(cache.data.dtype, cache.row_shape)
        factors = zarr.open_array(cache.path / FACTORS, mode="r")
        assert codec_chain(cache.data.zarr) == codec_chain(factors) == list(CODEC_CHAIN)


def test_cache_attrs_gives_every_required_key():
    attrs = cache_attrs(dataset="toy", factor_names=["a"], factor_sizes=[np.int64(2)], factor_values=[[0, 1]],
                        row_order_seed=0, source=[], pipeline={})
    assert tuple(attrs) == REQUIRED_ATTRS
    assert attrs["factor_sizes"] == [2] and type(attrs["factor_sizes"][0]) is int  # JSON-ready
    assert attrs["factor_values"] == [[0.0, 1.0]] and attrs[VERSION_KEY] == CACHE_VERSION


@pytest.mark.parametrize("kind, dtype, row_shape, fits", [
    ("images", "uint8", (1, 4, 4), True), ("images", "uint8", (3, 4, 4), True),
    ("images", "uint8", (4, 4, 4), False), ("images", "float32", (1, 4, 4), False), ("images", "uint8", (4, 4), False),
    ("points", "float32", (2,), True), ("points", "float32", (3,), False), ("points", "float64", (2,), False),
])
def test_array_kinds(kind, dtype, row_shape, fits):
    assert ARRAY_KINDS[kind].fits(dtype, row_shape) is fits


def test_the_writer_refuses_rows_the_reader_would_refuse(tmp_path):
    spec = spec_from_array("rgba", np.zeros((4, 4, 2, 2), np.uint8), ["a"], [4])  # four channels
    with pytest.raises(GdraeError, match=r"^pipeline rgba: expected images uint8 \(N, C, H, W\) or points float32 "
                                         r"\(N, 2\), got images uint8 \(N, 4, 2, 2\)$"):
        prepare(spec, tmp_path, tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []
