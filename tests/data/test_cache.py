import numpy as np
import pytest
import zarr

from gdrae.data.cache import cache_path, open_cache, verify
from gdrae.data.schema import CACHE_VERSION, codecs_for
from gdrae.errors import GdraeError
from pipelines.store import prepare, spec_from_array

from tiny_caches import chunk_file, corrupt, decode_index, edit_metadata


def test_round_trip_arrays_and_attrs(make_cache):
    cache = make_cache((5, 4, 6), chunk_rows=16)
    assert cache.n == 120 and cache.kind == "images" and cache.points is None
    assert cache.images.shape == (120, 3, 2, 2) and cache.images.dtype == np.uint8
    # each stored row holds the image of its grid cell, and the factors beside it say which
    np.testing.assert_array_equal(decode_index(cache.images[:]), cache.grid_index)
    np.testing.assert_array_equal(cache.factors, np.stack(np.unravel_index(cache.grid_index, (5, 4, 6)), 1))
    np.testing.assert_array_equal(decode_index(cache.to_grid_order(cache.images[:])), np.arange(120))
    assert cache.factor_names == ("f0", "f1", "f2") and cache.factor_sizes == (5, 4, 6)
    assert cache.factor_values[1] == (0.0, 1.0, 2.0, 3.0)
    attrs = cache.attrs
    assert attrs["gdrae_cache_version"] == CACHE_VERSION == 2 and attrs["dataset"] == "tiny"
    assert set(attrs) >= {"source", "created", "pipeline", "factor_values", "row_order_seed"}
    assert cache.data.chunk_rows == 16 and cache.data.nchunks == 8  # last chunk partial
    np.testing.assert_array_equal(decode_index(cache.data.read_chunk(7)), cache.grid_index[112:120])
    assert cache.data.zarr.chunks == (16, 3, 2, 2)  # chunked along N only
    assert cache.bytes_on_disk() > 0


def test_rows_are_stored_in_a_seeded_permutation_of_the_grid(make_cache):
    cache = make_cache((5, 4, 6), chunk_rows=16)
    assert cache.attrs["row_order_seed"] == 0
    assert sorted(cache.grid_index.tolist()) == list(range(120))
    assert not np.array_equal(cache.grid_index, np.arange(120))
    again = make_cache((5, 4, 6), chunk_rows=16, name="again")  # the same seed gives the same order
    np.testing.assert_array_equal(again.grid_index, cache.grid_index)
    # every chunk samples the slowest factor, not one of its values
    assert all(len(np.unique(cache.factors[lo:lo + 16, 0])) >= 3 for lo in range(0, 112, 16))


def test_points_cache(make_cache):
    cache = make_cache((8, 8), kind="points", name="pts")
    assert cache.images is None and cache.points.shape == (64, 2) and cache.points.dtype == np.float32
    np.testing.assert_array_equal(cache.points[:, 0], cache.grid_index)
    np.testing.assert_array_equal(cache.to_grid_order(cache.points[:])[:, 0], np.arange(64))


def test_missing_cache_names_the_prepare_command(tmp_path):
    with pytest.raises(GdraeError, match=r"run `gdrae-data prepare shapes3d --cache-dir .*`"):
        open_cache(tmp_path / "shapes3d.zarr")


def _edit_attr(cache, key, value):
    zarr.open_group(cache.path, mode="r+").attrs[key] = value


def test_wrong_schema_version(make_cache):
    cache = make_cache()
    _edit_attr(cache, "gdrae_cache_version", 99)
    with pytest.raises(GdraeError, match="gdrae_cache_version expected 2, got 99"):
        open_cache(cache.path)


def test_a_version_1_cache_is_refused_with_the_command_that_rebuilds_it(make_cache):
    cache = make_cache()
    group = zarr.open_group(cache.path, mode="r+")
    group.attrs["gdrae_cache_version"] = 1
    del group.attrs["row_order_seed"]  # version 1 had no row order: grid order
    with pytest.raises(GdraeError) as err:
        open_cache(cache.path)
    message = str(err.value)
    assert "gdrae_cache_version expected 2, got 1 (rows in grid order" in message
    assert f"gdrae-data prepare tiny --cache-dir {cache.path.parent} --force" in message and "\n" not in message


def test_factor_sizes_that_disagree_with_the_arrays(make_cache):
    cache = make_cache()
    _edit_attr(cache, "factor_sizes", [5, 4, 7])
    _edit_attr(cache, "factor_values", [[0] * 5, [0] * 4, [0] * 7])
    with pytest.raises(GdraeError, match=r"'images' expected uint8 \(N, C, H, W\) with N = prod\(factor_sizes\) = 140"):
        open_cache(cache.path)


def test_wrong_dtype_is_refused(make_cache):
    cache = make_cache()
    group = zarr.open_group(cache.path, mode="r+")
    del group["images"]
    group.create_array("images", shape=(120, 3, 2, 2), chunks=(16, 3, 2, 2), dtype="float32",
                       compressors=codecs_for("float32"))[:] = 0
    with pytest.raises(GdraeError, match=r"expected uint8 .* got float32"):
        open_cache(cache.path)


@pytest.mark.parametrize("key, value, message", [
    ("factor_values", "abc", r"factor_values expected 3 lists of numbers of lengths \[5, 4, 6\], got 'abc'"),
    ("factor_values", [list("abcde"), list("abcd"), list("abcdef")],
     r"factor_values expected 3 lists of numbers .*, got \[\['a', 'b', .*\.\.\."),
    ("factor_values", [1, 2, 3], r"factor_values expected .*, got \[1, 2, 3\]"),
    ("factor_names", ["f0", "f1"], r"factor_names expected 3 strings, got \['f0', 'f1'\]"),
    ("factor_sizes", "5,4,6", r"factor_sizes expected a list of positive integers, got '5,4,6'"),
    ("source", "raw.npz", r"source expected a list of \{name, bytes, sha256\} records, got 'raw.npz'"),
])
def test_malformed_attrs_are_one_line_errors(make_cache, key, value, message):
    cache = make_cache()
    _edit_attr(cache, key, value)
    with pytest.raises(GdraeError, match=message + r"; rebuild with `gdrae-data prepare tiny --cache-dir .* --force`$"):
        open_cache(cache.path)


@pytest.mark.parametrize("key, edit, message", [
    ("images", "{", r"images/zarr.json: expected readable zarr array metadata, got JSONDecodeError"),
    ("factors", "{", r"factors/zarr.json: expected readable zarr array metadata, got JSONDecodeError"),
    ("images", lambda m: m.update(shape=[120, 3, 2]), r"images/zarr.json: .*same number of dimensions"),
    ("images", lambda m: (m.update(shape=[120, 12]), m["chunk_grid"]["configuration"].update(chunk_shape=[16, 12])),
     r"'images' expected uint8 \(N, C, H, W\) .* got uint8 \(120, 12\)"),
    ("images", lambda m: m.update(data_type="uint9"),
     r"images/zarr.json: .*No Zarr data type found that matches 'uint9'"),
    ("images", lambda m: m["codecs"].insert(1, {"name": "numcodecs.pickle"}), r"images/zarr.json: .*Unknown codec"),
    ("images", lambda m: m["codecs"].insert(1, {"name": "gzip", "configuration": {"level": 1}}),
     r"images/zarr.json: codecs expected bytes -> blosc -> crc32c, got bytes -> gzip -> blosc -> crc32c; "),
    ("images", lambda m: m["codecs"].pop(),
     r"images/zarr.json: codecs expected .*, got bytes -> blosc \(no checksum: not a cache gdrae wrote\); "),
    ("factors", lambda m: m["codecs"].pop(), r"factors/zarr.json: codecs .*\(no checksum: not a cache gdrae wrote\)"),
    ("factors", lambda m: m["codecs"][0].update(configuration={"endian": "big"}),
     r"factors/zarr.json: codecs expected .*, got bytes-big-endian -> blosc -> crc32c"),
    ("images", lambda m: m["chunk_grid"]["configuration"].update(chunk_shape=[0, 3, 2, 2]),
     r"images/zarr.json: chunks expected along N only, got chunks \(0, 3, 2, 2\)"),
])
def test_edited_array_metadata_is_a_one_line_error(make_cache, key, edit, message):
    cache = make_cache()
    edit_metadata(cache.path, key, edit)
    with pytest.raises(GdraeError, match=message) as err:
        open_cache(cache.path)
    assert "rebuild with `gdrae-data prepare tiny --cache-dir" in str(err.value) and "\n" not in str(err.value)


def test_factors_that_are_not_a_permutation_of_the_grid(make_cache):
    cache = make_cache()
    factors = zarr.open_group(cache.path, mode="r+")["factors"]
    rows = factors[:]
    factors[:] = rows[::-1]  # another order of the grid is still a valid cache
    np.testing.assert_array_equal(open_cache(cache.path).grid_index, cache.grid_index[::-1])
    for bad in (np.concatenate([rows[:1], rows[:-1]]),  # one cell twice, one missing
                np.where(np.arange(len(rows))[:, None] == 5, [5, 0, 0], rows)):  # a class outside its factor
        factors[:] = bad
        with pytest.raises(GdraeError, match=r"'factors' expected every cell of the grid \(5, 4, 6\) exactly once"):
            open_cache(cache.path)


def test_missing_chunk_file_is_an_incomplete_cache(make_cache):
    cache = make_cache()
    chunk_file(cache, 3).unlink()
    with pytest.raises(GdraeError, match="expected 8 stored chunks, got 7"):
        open_cache(cache.path)


def test_corrupt_chunk_fails_on_read_naming_cache_and_chunk(make_cache):
    cache = make_cache()
    corrupt(chunk_file(cache, 2))
    cache = open_cache(cache.path)  # opening reads no image chunk
    np.testing.assert_array_equal(decode_index(cache.images[:32]), cache.grid_index[:32])  # good chunks still read
    for read in (lambda: cache.data.read_chunk(2), lambda: cache.images[40], lambda: cache.images[:],
                 lambda: cache.images[[1, 33, 50]]):
        with pytest.raises(GdraeError) as err:
            read()
        message = str(err.value)
        assert str(cache.path) in message and "chunk 2 (rows 32..47) of 'images' is corrupt" in message
        assert f"gdrae-data prepare tiny --cache-dir {cache.path.parent} --force" in message and "\n" not in message


@pytest.mark.parametrize("kind", ["images", "points"])
def test_chunk_files_decode_as_zarr_reads_them(make_cache, monkeypatch, kind):
    """The fast path chunk_files (gdrae.fastpaths) against zarr's own read, chunk by chunk, the short last one too."""
    cache = make_cache(kind=kind, name=kind)
    assert cache.data._chunk_file is not None  # the layout the fast path decodes
    monkeypatch.delenv("GDRAE_PLAIN", raising=False)
    fast = [cache.data.read_chunk(i) for i in range(cache.data.nchunks)]
    monkeypatch.setenv("GDRAE_PLAIN", "chunk_files")
    plain = [cache.data.read_chunk(i) for i in range(cache.data.nchunks)]
    assert len(plain[-1]) == 120 - 7 * 16
    for a, b in zip(fast, plain):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.concatenate(plain), cache.data.zarr[:])


@pytest.mark.parametrize("plain", ["", "chunk_files"])
def test_a_corrupt_chunk_is_refused_by_either_reader(make_cache, monkeypatch, plain):
    cache = make_cache()
    corrupt(chunk_file(cache, 2))
    monkeypatch.setenv("GDRAE_PLAIN", plain)
    with pytest.raises(GdraeError, match=r"chunk 2 \(rows 32..47\) of 'images' is corrupt"):
        cache.data.read_chunk(2)


@pytest.mark.parametrize("rows", [32, 15])
def test_a_chunk_shape_that_disagrees_with_the_stored_chunks_is_corrupt(make_cache, rows):
    cache = make_cache()  # 120 rows in chunks of 16 (192 bytes each): 8 chunk files
    edit_metadata(cache.path, "images", lambda m: m["chunk_grid"]["configuration"].update(
        chunk_shape=[rows, 3, 2, 2]))
    cache = open_cache(cache.path)  # as many chunks as files either way
    with pytest.raises(GdraeError, match=f"chunk 0 \\(rows 0..{rows - 1}\\) of 'images' is corrupt: .*"
                                         f"the chunk holds 192 bytes, expected {rows * 12} for {rows} rows"):
        cache.data.read_chunk(0)
    for read in (lambda: cache.images[:], lambda: verify(cache.path, progress=False)):
        with pytest.raises(GdraeError, match="of 'images' is corrupt: expected data matching its checksum and chunk"):
            read()


def test_verify_passes_and_names_corrupt_chunks(tmp_path):
    data = np.arange(60, dtype=np.float32).reshape(30, 2)
    spec = spec_from_array("pts", data, ["a", "b"], [5, 6])
    prepare(spec, tmp_path, tmp_path / "cache", progress=False, chunk_rows=4)
    path = cache_path(tmp_path / "cache", "pts")
    summary = verify(path, progress=False)
    assert summary.n == 30 and summary.nchunks == 8
    for i in (1, 6):
        chunk = path / "points" / "c" / str(i) / "0"
        raw = bytearray(chunk.read_bytes())
        raw[-6] ^= 0x01
        chunk.write_bytes(bytes(raw))
    with pytest.raises(GdraeError, match=r"pts.zarr: 2 chunks \(1, 6\) of 'points' is corrupt"):
        verify(path, progress=False)
