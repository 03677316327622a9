import re

import numpy as np
import pytest

from gdrae.errors import GdraeError
from pipelines.datasets import small_norb
from pipelines.checks import convert_raw
from pipelines.raw_writers import decode_index, write_norb_matrix, write_small_norb

SIZES = (2, 4, 2, 3, 2)


def _path(raw_dir, split, kind):
    return raw_dir / small_norb.RAW[split, kind].relpath


def test_rows_are_reordered_into_grid_order(raw_dir, convert_all):
    write_small_norb(raw_dir, SIZES, seed=6)
    info = small_norb.read_matrix(_path(raw_dir, "training", "info"), np.dtype("<i4"), (None, 4))
    assert set(info[:, 0]) == {1, 3}  # odd instances in training, rows shuffled
    converted, images = convert_all("small_norb", raw_dir)
    assert converted.factor_names == ["category", "instance", "elevation", "azimuth", "lighting"]
    assert converted.factor_sizes == list(SIZES)
    assert converted.factor_values[3] == [0.0, 1.0, 2.0]  # raw azimuths 0, 2, 4 halved
    assert images.shape == (96, 1, 64, 64) and images.dtype == np.uint8
    np.testing.assert_array_equal(decode_index("small_norb", images), np.arange(96))  # camera 0, grid order
    assert converted.pipeline["camera"] == 0 and converted.pipeline["resize"]["filter"] == "PIL.Image.LANCZOS"
    assert len(converted.sources) == 6


def test_reorder_across_blocks(raw_dir, monkeypatch):
    write_small_norb(raw_dir, SIZES, seed=7)
    monkeypatch.setattr(small_norb, "BLOCK_ROWS", 10)
    blocks = list(convert_raw(small_norb.SPEC, raw_dir).blocks)
    assert [len(b) for b in blocks] == [10] * 9 + [6]
    np.testing.assert_array_equal(decode_index("small_norb", np.concatenate(blocks)), np.arange(96))


def test_real_instance_split_when_there_are_ten(raw_dir):
    write_small_norb(raw_dir, (1, 10, 1, 2, 1))
    for split, instances in (("training", {4, 6, 7, 8, 9}), ("testing", {0, 1, 2, 3, 5})):
        info = small_norb.read_matrix(_path(raw_dir, split, "info"), np.dtype("<i4"), (None, 4))
        assert set(info[:, 0]) == instances
    converted = convert_raw(small_norb.SPEC, raw_dir)
    assert converted.factor_sizes == [1, 10, 1, 2, 1]


@pytest.mark.parametrize("array, magic, offset", [
    (np.zeros((3, 2, 4, 5), np.uint8), 0x1E3D4C55, 24),
    (np.arange(3, dtype=np.int32), 0x1E3D4C54, 20),
    (np.ones((3, 4), np.float32), 0x1E3D4C51, 20),
    (np.ones((2, 2), np.float64), 0x1E3D4C53, 20),
    (np.ones((5,), np.int16), 0x1E3D4C56, 20),
])
def test_binary_matrix_header_layout(tmp_path, array, magic, offset):
    path = tmp_path / "m.mat"
    write_norb_matrix(path, array)
    header = np.frombuffer(path.read_bytes()[:offset], dtype="<i4")
    assert header[0] == magic and header[1] == array.ndim
    assert tuple(header[2:2 + array.ndim]) == array.shape and (header[2 + array.ndim:] == 1).all()
    dtype, dims, data_offset = small_norb.read_header(path)
    assert (dtype, dims, data_offset) == (array.dtype.newbyteorder("<"), array.shape, offset)
    np.testing.assert_array_equal(small_norb.read_matrix(path, dtype, array.shape), array)


def test_missing_file_says_where_to_get_it(raw_dir):
    write_small_norb(raw_dir, SIZES)
    path = _path(raw_dir, "testing", "cat")
    path.unlink()
    with pytest.raises(GdraeError, match=re.escape(str(path)) + ".*cs.nyu.edu/~ylclab/data/norb-v1.0-small"):
        convert_raw(small_norb.SPEC, raw_dir)


@pytest.mark.parametrize("kind", ["dat", "cat", "info"])
def test_truncated_file_is_refused(raw_dir, kind):
    write_small_norb(raw_dir, SIZES)
    path = _path(raw_dir, "training", kind)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(GdraeError, match=re.escape(str(path)) + ": expected .* bytes .*got .*truncated or corrupt"):
        convert_raw(small_norb.SPEC, raw_dir)


def test_a_folder_where_a_file_belongs_is_refused(raw_dir):
    write_small_norb(raw_dir, SIZES)
    path = _path(raw_dir, "training", "info")
    path.unlink()
    path.mkdir()
    with pytest.raises(GdraeError, match=re.escape(str(path)) + ": expected a file, got a folder .*norb-v1.0-small"):
        convert_raw(small_norb.SPEC, raw_dir)


def test_corrupt_header_is_refused(raw_dir):
    write_small_norb(raw_dir, SIZES)
    path = _path(raw_dir, "testing", "dat")
    data = bytearray(path.read_bytes())
    data[0:4] = b"\x00\x00\x00\x00"
    path.write_bytes(bytes(data))
    with pytest.raises(GdraeError, match=re.escape(str(path)) + ": expected a NORB magic number .*got 0x0"):
        convert_raw(small_norb.SPEC, raw_dir)
    path.write_bytes(b"\x55\x4c")
    with pytest.raises(GdraeError, match="header of 8\\+ bytes, got 2"):
        convert_raw(small_norb.SPEC, raw_dir)


@pytest.mark.parametrize("kind, array, message", [
    ("dat", np.zeros((48, 2, 64, 64), np.uint8), r"expected uint8 matrix \(N, 2, 96, 96\), got uint8 \(48, 2, 64, 64\)"),
    ("cat", np.zeros(47, np.int32), r"expected int32 matrix \(48\), got int32 \(47,\)"),
    ("info", np.zeros((48, 4), np.float32), r"expected int32 matrix \(48, 4\), got float32 \(48, 4\)"),
])
def test_wrong_shapes_and_types(raw_dir, kind, array, message):
    write_small_norb(raw_dir, SIZES)
    path = _path(raw_dir, "training", kind)
    write_norb_matrix(path, array)
    with pytest.raises(GdraeError, match=re.escape(str(path)) + ": " + message):
        convert_raw(small_norb.SPEC, raw_dir)


def test_odd_azimuth_is_refused(raw_dir):
    write_small_norb(raw_dir, SIZES)
    path = _path(raw_dir, "testing", "info")
    info = np.array(small_norb.read_matrix(path, np.dtype("<i4"), (None, 4)))
    info[0, 2] = 3
    write_norb_matrix(path, info)
    with pytest.raises(GdraeError, match=re.escape(str(path)) + ": expected even azimuth values"):
        convert_raw(small_norb.SPEC, raw_dir)


def test_changed_label_names_the_missing_and_duplicated_combinations(raw_dir):
    write_small_norb(raw_dir, SIZES)
    path = _path(raw_dir, "testing", "info")
    info = np.array(small_norb.read_matrix(path, np.dtype("<i4"), (None, 4)))
    instance, elevation, azimuth, lighting = (int(v) for v in info[0])
    category = int(small_norb.read_matrix(_path(raw_dir, "testing", "cat"), np.dtype("<i4"), (None,))[0])
    info[0, 3] = 1 - lighting  # now a copy of another row's labels
    write_norb_matrix(path, info)
    with pytest.raises(GdraeError) as error:
        convert_raw(small_norb.SPEC, raw_dir)
    message = str(error.value)
    combination = f"category={category}, instance={instance}, elevation={elevation}, azimuth={azimuth // 2}"
    assert message.startswith(str(raw_dir / "small_norb/raw") + ": expected each of the 96 combinations")
    assert f"1 missing (first: {combination}, lighting={lighting})" in message
    assert f"1 duplicated (first: {combination}, lighting={1 - lighting})" in message
