import hashlib
import re

import numpy as np
import pytest
import tripwire

from gdrae.errors import GdraeError
from pipelines.datasets import shapes2d
from pipelines.checks import convert_raw
from pipelines.raw_writers import decode_index, write_dsprites
from tripwire import PickleTripwire

SIZES = (2, 2, 3, 2, 2)


def _rewrite(path, **changes):
    """Re-save the .npz with some arrays replaced (None drops one); no pickles."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in ("imgs", "latents_classes", "latents_values")}
    arrays.update(changes)
    np.savez_compressed(path, **{k: v for k, v in arrays.items() if v is not None})


def test_converts_to_grid_order_with_0_255_pixels(raw_dir, convert_all):
    (path,) = write_dsprites(raw_dir, SIZES, seed=1)
    converted, images = convert_all("shapes2d", raw_dir)
    assert converted.factor_names == ["shape", "scale", "orientation", "pos_x", "pos_y"]
    assert converted.factor_sizes == list(SIZES)
    assert converted.factor_values[2] == [0.0, 1.0, 2.0]
    assert images.shape == (48, 1, 64, 64) and images.dtype == np.uint8
    assert set(np.unique(images)) == {0, 255}
    np.testing.assert_array_equal(decode_index("shapes2d", images), np.arange(48))
    with np.load(path, allow_pickle=False) as f:
        np.testing.assert_array_equal(images[:, 0], f["imgs"] * 255)
    # the square grows with scale and shape 1 has a hole: compare rows that differ in one factor
    area = (images[:, 0, 1:] > 0).sum(axis=(1, 2)).reshape(SIZES)
    assert (area[:, 1] > area[:, 0]).all() and (area[1] < area[0]).all()
    (source,) = converted.sources
    assert source["name"] == shapes2d.RAW.relpath and source["bytes"] == path.stat().st_size
    assert source["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert source["published"].startswith(f"md5 mismatch: expected {shapes2d.RAW.md5}")  # a small stand-in
    assert any("differs from the canonical" in note for note in converted.notes)


def test_pickled_metadata_is_never_unpickled(raw_dir, convert_all):
    (path,) = write_dsprites(raw_dir, SIZES, metadata=PickleTripwire())
    tripwire.TRIPPED.clear()
    with pytest.raises(RuntimeError, match="unpickled"):  # the tripwire works ...
        np.load(path, allow_pickle=True)["metadata"]
    assert tripwire.TRIPPED
    tripwire.TRIPPED.clear()
    converted, images = convert_all("shapes2d", raw_dir)  # ... and conversion never sets it off
    assert tripwire.TRIPPED == []
    assert images.shape[0] == converted.n == 48


def test_missing_file_says_where_to_get_it(raw_dir):
    with pytest.raises(GdraeError, match=re.escape(str(raw_dir / shapes2d.RAW.relpath)) + ".*github.com/deepmind/dsprites"):
        convert_raw(shapes2d.SPEC, raw_dir)


def test_truncated_file_is_refused(raw_dir):
    (path,) = write_dsprites(raw_dir, SIZES)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(GdraeError, match=re.escape(str(path)) + ".*corrupt or truncated"):
        convert_raw(shapes2d.SPEC, raw_dir)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"latents_classes": None}, "expected an array named 'latents_classes'"),
        ({"imgs": np.zeros((48, 64, 64), np.float32)}, "imgs: expected dtype uint8, got float32"),
        ({"imgs": np.zeros((48, 32, 32), np.uint8)}, r"imgs: expected shape \(48, 64, 64\), got \(48, 32, 32\)"),
        ({"latents_classes": np.zeros((48, 5), np.int64)}, r"latents_classes: expected integer array \(N, 6\)"),
        ({"imgs": np.array([None] * 48, dtype=object)}, "imgs: expected a numeric array, got pickled Python objects"),
    ],
)
def test_wrong_keys_shapes_dtypes(raw_dir, changes, message):
    (path,) = write_dsprites(raw_dir, SIZES)
    _rewrite(path, **changes)
    with pytest.raises(GdraeError, match=re.escape(str(path)) + ": " + message):
        convert_raw(shapes2d.SPEC, raw_dir)


def test_colour_must_be_constant(raw_dir):
    (path,) = write_dsprites(raw_dir, SIZES)
    with np.load(path) as f:
        classes = f["latents_classes"].copy()
    classes[0, 0] = 1
    _rewrite(path, latents_classes=classes)
    with pytest.raises(GdraeError, match="expected one colour value"):
        convert_raw(shapes2d.SPEC, raw_dir)


def test_rows_out_of_grid_order_are_refused(raw_dir):
    (path,) = write_dsprites(raw_dir, SIZES)
    with np.load(path) as f:
        imgs, classes = f["imgs"], f["latents_classes"]
    order = np.arange(48)
    order[[3, 4]] = [4, 3]
    _rewrite(path, imgs=imgs[order], latents_classes=classes[order])
    with pytest.raises(GdraeError, match="expected rows in factor-grid order, got row 3 holding grid index 4"):
        convert_raw(shapes2d.SPEC, raw_dir)


def test_duplicated_combination_is_named(raw_dir):
    (path,) = write_dsprites(raw_dir, SIZES)
    with np.load(path) as f:
        classes = f["latents_classes"].copy()
    classes[5] = classes[4]  # grid index 5 = (0, 0, 2, 1, 1) replaced by a copy of 4
    _rewrite(path, latents_classes=classes)
    with pytest.raises(GdraeError, match=r"1 missing \(first: shape=0, scale=0, orientation=1, pos_x=0, pos_y=1\), "
                                         r"1 duplicated \(first: shape=0, scale=0, orientation=1, pos_x=0, pos_y=0\)"):
        convert_raw(shapes2d.SPEC, raw_dir)


def test_pixel_values_other_than_0_1_are_refused_while_streaming(raw_dir):
    (path,) = write_dsprites(raw_dir, SIZES)
    with np.load(path) as f:
        imgs = f["imgs"].copy()
    imgs[7, 10, 10] = 255
    _rewrite(path, imgs=imgs)
    converted = convert_raw(shapes2d.SPEC, raw_dir)
    with pytest.raises(GdraeError, match="imgs: expected pixel values 0/1, got 255"):
        list(converted.blocks)


def test_blocks_are_streamed(raw_dir, monkeypatch):
    write_dsprites(raw_dir, SIZES)
    monkeypatch.setattr(shapes2d, "BLOCK_ROWS", 5)
    blocks = list(convert_raw(shapes2d.SPEC, raw_dir).blocks)
    assert [len(b) for b in blocks] == [5] * 9 + [3]
    np.testing.assert_array_equal(decode_index("shapes2d", np.concatenate(blocks)), np.arange(48))
