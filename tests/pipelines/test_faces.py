import re

import numpy as np
import pytest
import torch
import tripwire

from gdrae.errors import GdraeError
from pipelines.datasets import faces
from pipelines.checks import convert_raw
from pipelines.raw_writers import decode_index, write_3dfaces
from tripwire import PickleTripwire

SIZES = (2, 3, 2, 2)


def test_grid_comes_from_the_tensor_shape(raw_dir, convert_all):
    (path,) = write_3dfaces(raw_dir, SIZES, seed=4)
    converted, images = convert_all("faces", raw_dir)
    raw = torch.load(path, weights_only=True).numpy()
    assert converted.factor_names == ["face_id", "azimuth", "elevation", "lighting"]
    assert converted.factor_sizes == list(SIZES)
    assert converted.factor_values == [[0.0, 1.0], [0.0, 1.0, 2.0], [0.0, 1.0], [0.0, 1.0]]
    assert images.shape == (24, 1, 64, 64) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, raw.reshape(-1, 1, 64, 64))
    np.testing.assert_array_equal(decode_index("faces", images), np.arange(24))
    assert converted.pipeline["loader"] == "torch.load(weights_only=True)"


def test_missing_file_says_where_to_get_it(raw_dir):
    with pytest.raises(GdraeError, match=re.escape(str(raw_dir / faces.RAW.relpath)) + ".*beta-tcvae"):
        convert_raw(faces.SPEC, raw_dir)


def test_pickled_object_is_refused_and_never_run(raw_dir):
    path = raw_dir / faces.RAW.relpath
    path.parent.mkdir(parents=True)
    torch.save({"images": torch.zeros(2, 2, 2, 2, 64, 64, dtype=torch.uint8), "extra": PickleTripwire()}, path)
    tripwire.TRIPPED.clear()
    message = f"{path}: holds Python code (pickled objects), not only tensors: not loaded; do not trust this file"
    with pytest.raises(GdraeError, match=re.escape(message) + "$"):
        convert_raw(faces.SPEC, raw_dir)
    assert tripwire.TRIPPED == []


def test_truncated_file_is_refused(raw_dir):
    (path,) = write_3dfaces(raw_dir, SIZES)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(GdraeError, match=re.escape(str(path)) + ": expected a readable .pth file, got a corrupt or truncated"):
        convert_raw(faces.SPEC, raw_dir)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"images": torch.zeros(2, 2, 2, 2, 64, 64, dtype=torch.uint8)}, "expected one uint8 tensor, got dict"),
        (torch.zeros(2, 2, 2, 2, 64, 64), r"got torch.float32 \(2, 2, 2, 2, 64, 64\)"),
        (torch.zeros(2, 2, 2, 64, 64, dtype=torch.uint8), r"got torch.uint8 \(2, 2, 2, 64, 64\)"),
        (torch.zeros(2, 2, 2, 2, 32, 32, dtype=torch.uint8), r"got torch.uint8 \(2, 2, 2, 2, 32, 32\)"),
        (torch.zeros(2, 0, 2, 2, 64, 64, dtype=torch.uint8), r"expected a non-empty factor grid"),
    ],
)
def test_wrong_content_shape_dtype(raw_dir, content, message):
    path = raw_dir / faces.RAW.relpath
    path.parent.mkdir(parents=True)
    torch.save(content, path)
    with pytest.raises(GdraeError, match=re.escape(str(path)) + ": .*" + message):
        convert_raw(faces.SPEC, raw_dir)
