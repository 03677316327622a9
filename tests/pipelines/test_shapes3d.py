import re

import h5py
import numpy as np
import pytest

from gdrae.errors import GdraeError
from pipelines.datasets import shapes3d
from pipelines.checks import convert_raw
from pipelines.raw_writers import decode_index, shapes3d_values, write_3dshapes

SIZES = (2, 2, 2, 2, 2, 3)


def _rewrite(path, images, labels):
    path.unlink()
    with h5py.File(path, "w") as f:
        if images is not None:
            f["images"] = images
        if labels is not None:
            f["labels"] = labels


def _read(path):
    with h5py.File(path, "r") as f:
        return f["images"][()], f["labels"][()]


def test_converts_to_nchw_in_grid_order(raw_dir, convert_all):
    (path,) = write_3dshapes(raw_dir, SIZES, seed=3)
    converted, images = convert_all("shapes3d", raw_dir)
    raw_images, _ = _read(path)
    assert converted.factor_names == list(shapes3d.SPEC.factor_names)
    assert converted.factor_sizes == list(SIZES)
    for found, expected in zip(converted.factor_values, shapes3d_values(SIZES)):
        np.testing.assert_allclose(found, expected)
    assert images.shape == (96, 3, 64, 64) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, raw_images.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(decode_index("shapes3d", images), np.arange(96))
    # floor colour follows floor_hue: rows with the same floor hue share it, different hues differ
    floor = images[:, :, 63, 1].reshape(2, -1, 3)
    assert (floor[0] == floor[0, :1]).all() and (floor[0, 0] != floor[1, 0]).any()


def test_class_indices_come_from_sorted_label_values(raw_dir, convert_all):
    (path,) = write_3dshapes(raw_dir, (1, 1, 1, 1, 1, 3))
    images, labels = _read(path)
    labels[:, 5] = [-30.0, 10.0, 30.0]  # unevenly spaced values still rank 0, 1, 2
    _rewrite(path, images, labels)
    converted, _ = convert_all("shapes3d", raw_dir)
    assert converted.factor_values[5] == [-30.0, 10.0, 30.0]


def test_slices_are_streamed(raw_dir, monkeypatch):
    write_3dshapes(raw_dir, SIZES)
    monkeypatch.setattr(shapes3d, "BLOCK_ROWS", 7)
    blocks = list(convert_raw(shapes3d.SPEC, raw_dir).blocks)
    assert max(len(b) for b in blocks) == 7 and sum(len(b) for b in blocks) == 96
    np.testing.assert_array_equal(decode_index("shapes3d", np.concatenate(blocks)), np.arange(96))


def test_missing_file_says_where_to_get_it(raw_dir):
    with pytest.raises(GdraeError, match=re.escape(str(raw_dir / shapes3d.RAW.relpath)) + ".*github.com/deepmind/3d-shapes"):
        convert_raw(shapes3d.SPEC, raw_dir)


def test_truncated_file_is_refused(raw_dir):
    (path,) = write_3dshapes(raw_dir, SIZES)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(GdraeError, match=re.escape(str(path)) + ": expected a readable HDF5 file"):
        convert_raw(shapes3d.SPEC, raw_dir)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda im, lab: (im, None), r"expected a dataset named 'labels', got \['images'\]"),
        (lambda im, lab: (im.astype(np.float32), lab), r"images: expected uint8 \(N, 64, 64, 3\), got float32"),
        (lambda im, lab: (im[:, :32], lab), r"images: expected uint8 \(N, 64, 64, 3\), got uint8 \(96, 32, 64, 3\)"),
        (lambda im, lab: (im, lab[:, :5]), r"labels: expected float \(96, 6\), got float64 \(96, 5\)"),
        (lambda im, lab: (im, lab.astype(np.int64)), r"labels: expected float \(96, 6\), got int64"),
    ],
)
def test_wrong_keys_shapes_dtypes(raw_dir, change, message):
    (path,) = write_3dshapes(raw_dir, SIZES)
    _rewrite(path, *change(*_read(path)))
    with pytest.raises(GdraeError, match=re.escape(str(path)) + ": " + message):
        convert_raw(shapes3d.SPEC, raw_dir)


def test_missing_combination_is_named(raw_dir):
    (path,) = write_3dshapes(raw_dir, SIZES)
    images, labels = _read(path)
    _rewrite(path, images[1:], labels[1:])
    with pytest.raises(GdraeError, match=r"1 missing \(first: floor_hue=0, wall_hue=0, object_hue=0, scale=0, shape=0, orientation=0\)"):
        convert_raw(shapes3d.SPEC, raw_dir)


def test_rows_out_of_grid_order_are_refused(raw_dir):
    (path,) = write_3dshapes(raw_dir, SIZES)
    images, labels = _read(path)
    _rewrite(path, images[::-1], labels[::-1])
    with pytest.raises(GdraeError, match=re.escape(str(path)) + ": expected rows in factor-grid order, got row 0 holding grid index 95"):
        convert_raw(shapes3d.SPEC, raw_dir)


def test_writer_slices_do_not_change_the_file(tmp_path):
    (a,) = write_3dshapes(tmp_path / "a", SIZES, seed=2, slice_rows=5)
    (b,) = write_3dshapes(tmp_path / "b", SIZES, seed=2)
    for x, y in zip(_read(a), _read(b)):
        np.testing.assert_array_equal(x, y)
