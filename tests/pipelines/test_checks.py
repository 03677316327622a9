import hashlib
import re

import numpy as np
import pytest
from PIL import Image

from gdrae.errors import GdraeError
from pipelines import checks
from pipelines.base import RawFile
from pipelines.registry import get_spec


def test_require_file_names_the_expected_path_and_source(tmp_path):
    raw = RawFile(relpath="x/data.bin", source="https://example.org/data")
    with pytest.raises(GdraeError, match=re.escape(str(tmp_path / "x/data.bin")) + ".*https://example.org/data"):
        checks.require_file(tmp_path, raw)
    (tmp_path / "x").mkdir()
    (tmp_path / "x/data.bin").write_bytes(b"abc")
    assert checks.require_file(tmp_path, raw) == tmp_path / "x/data.bin"
    with pytest.raises(GdraeError, match="x/data.bin: expected a folder, got a file"):
        checks.require_file(tmp_path, RawFile(relpath="x/data.bin", source="s", unpack="untar"))
    assert checks.require_file(tmp_path, RawFile(relpath="x", source="s", unpack="untar")) == tmp_path / "x"
    with pytest.raises(GdraeError, match="x: expected a file, got a folder"):
        checks.require_file(tmp_path, RawFile(relpath="x", source="s"))


def test_source_entries_hash_each_file(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"hello" * 1000)
    digest = hashlib.sha256(b"hello" * 1000).hexdigest()
    assert checks.sha256_file(path, chunk=7) == digest
    assert checks.source_entries(tmp_path, [path]) == [{"name": "a.bin", "bytes": 5000, "sha256": digest}]


def test_class_indices_rank_sorted_distinct_values():
    labels = np.array([[0.5, -30.0], [0.0, 30.0], [0.5, 0.0], [0.0, -30.0]])
    classes, sizes, values = checks.class_indices(labels)
    np.testing.assert_array_equal(classes, [[1, 0], [0, 2], [1, 1], [0, 0]])
    assert sizes == [2, 3]
    assert values == [[0.0, 0.5], [-30.0, 0.0, 30.0]]


def test_grid_positions_accepts_a_complete_grid_in_any_order():
    sizes = (2, 3)
    classes = np.array([[1, 2], [0, 0], [1, 0], [0, 1], [0, 2], [1, 1]])
    positions = checks.grid_positions(classes, sizes, ("a", "b"), "f")
    np.testing.assert_array_equal(positions, [5, 0, 3, 1, 2, 4])
    with pytest.raises(GdraeError, match="f: expected rows in factor-grid order, got row 0 holding grid index 5"):
        checks.require_grid_order(positions, "f")
    checks.require_grid_order(np.sort(positions), "f")


def test_grid_positions_names_missing_and_duplicated_combinations():
    sizes = (2, 3)
    classes = np.array([[0, 0], [0, 1], [0, 1], [1, 0], [1, 1]])  # (0, 2) and (1, 2) missing, (0, 1) twice
    with pytest.raises(GdraeError) as info:
        checks.grid_positions(classes, sizes, ("a", "b"), "raw.bin")
    message = str(info.value)
    assert message.startswith("raw.bin: expected each of the 6 combinations")
    assert "2 missing (first: a=0, b=2; a=1, b=2)" in message
    assert "1 duplicated (first: a=0, b=1)" in message
    assert "\n" not in message


def test_grid_notes_only_when_the_grid_differs():
    spec = get_spec("cars3d")
    assert checks.grid_notes(spec, spec.factor_sizes) == []
    (note,) = checks.grid_notes(spec, (4, 24, 5))
    assert "object_type 5" in note and "object_type 183" in note


def test_downscale_matches_pil_lanczos_on_rgb_images():
    rng = np.random.default_rng(0)
    hwc = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    out = checks.downscale(np.ascontiguousarray(hwc.transpose(0, 3, 1, 2)), 16)
    assert out.shape == (2, 3, 16, 16) and out.dtype == np.uint8
    for i in range(2):
        expected = np.asarray(Image.fromarray(hwc[i]).resize((16, 16), Image.LANCZOS))
        np.testing.assert_array_equal(out[i].transpose(1, 2, 0), expected)
    grey = checks.downscale(np.ascontiguousarray(hwc[:, None, :, :, 0]), 16)
    for i in range(2):
        expected = np.asarray(Image.fromarray(np.ascontiguousarray(hwc[i, :, :, 0])).resize((16, 16), Image.LANCZOS))
        np.testing.assert_array_equal(grey[i, 0], expected)


def test_row_blocks_cover_the_range():
    assert list(checks.row_blocks(10, 4)) == [(0, 4), (4, 8), (8, 10)]
    assert list(checks.row_blocks(0, 4)) == []
    blocks = list(checks.array_blocks(np.arange(10), 4))
    assert [len(b) for b in blocks] == [4, 4, 2]
