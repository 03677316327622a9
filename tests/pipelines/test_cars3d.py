import re

import numpy as np
import pytest
import scipy.io
from PIL import Image

from gdrae.errors import GdraeError
from pipelines.datasets import cars3d
from pipelines.checks import convert_raw
from pipelines.raw_writers import decode_index, write_cars3d

SIZES = (2, 3, 3)


def test_objects_follow_sorted_file_names(raw_dir, convert_all):
    paths = write_cars3d(raw_dir, SIZES, seed=5)
    numbers = sorted(int(p.name[4:7]) for p in paths)
    assert [int(p.name[4:7]) for p in paths] != numbers  # written out of order
    (raw_dir / cars3d.RAW.relpath / "readme.txt").write_text("not a car")  # ignored
    converted, images = convert_all("cars3d", raw_dir)
    assert converted.factor_names == ["elevation", "azimuth", "object_type"]
    assert converted.factor_sizes == list(SIZES)
    assert converted.factor_values[2] == [float(n) for n in numbers]
    assert images.shape == (18, 3, 64, 64) and images.dtype == np.uint8
    np.testing.assert_array_equal(decode_index("cars3d", images), np.arange(18))
    blue = images[:, 2, 32, 32].reshape(SIZES)  # the writer paints the file number in blue
    np.testing.assert_array_equal(blue, np.broadcast_to(np.array(numbers) % 256, SIZES))
    assert converted.pipeline["resize"]["filter"] == "PIL.Image.LANCZOS"
    assert [s["name"] for s in converted.sources] == [f"cars3d/raw/car_{n:03d}_mesh.mat" for n in numbers]


def test_downscale_is_lanczos_on_each_view(raw_dir, convert_all):
    rng = np.random.default_rng(0)
    im = rng.integers(0, 256, size=(128, 128, 3, 2, 1), dtype=np.uint8)  # 2 azimuths, 1 elevation
    folder = raw_dir / cars3d.RAW.relpath
    folder.mkdir(parents=True)
    scipy.io.savemat(folder / "car_007_mesh.mat", {"im": im})
    _, images = convert_all("cars3d", raw_dir)
    for azimuth in range(2):
        expected = np.asarray(Image.fromarray(im[:, :, :, azimuth, 0]).resize((64, 64), Image.LANCZOS))
        np.testing.assert_array_equal(images[azimuth].transpose(1, 2, 0), expected)


def test_missing_folder_or_files_say_where_to_get_them(raw_dir):
    with pytest.raises(GdraeError, match=re.escape(str(raw_dir / "cars3d/raw")) + ".*scottreed"):
        convert_raw(cars3d.SPEC, raw_dir)
    (raw_dir / "cars3d/raw").mkdir(parents=True)
    with pytest.raises(GdraeError, match=r"expected files car_NNN_mesh.mat, got none"):
        convert_raw(cars3d.SPEC, raw_dir)


def test_a_file_where_the_folder_belongs_is_refused(raw_dir):
    folder = raw_dir / "cars3d/raw"
    folder.parent.mkdir()
    folder.write_bytes(b"a tar file, say")
    with pytest.raises(GdraeError, match=re.escape(str(folder)) + ": expected a folder, got a file .*scottreed"):
        convert_raw(cars3d.SPEC, raw_dir)


def test_truncated_file_is_refused(raw_dir):
    paths = write_cars3d(raw_dir, SIZES)
    path = sorted(paths)[1]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(GdraeError, match=re.escape(str(path)) + ": expected a readable MATLAB v5 file"):
        convert_raw(cars3d.SPEC, raw_dir)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"img": np.zeros((128, 128, 3, 3, 2), np.uint8)}, r"expected a variable named 'im', got \['img'\]"),
        ({"im": np.zeros((128, 128, 3, 3, 2), np.float64)}, r"im: expected uint8 \(128, 128, 3, azimuth, elevation\), got float64"),
        ({"im": np.zeros((64, 64, 3, 3, 2), np.uint8)}, r"im: expected .* got uint8 \(64, 64, 3, 3, 2\)"),
        ({"im": np.zeros((128, 128, 3, 4, 2), np.uint8)}, r"im: expected 3 azimuths x 2 elevations like car_\d+_mesh.mat, got 4 x 2"),
    ],
)
def test_wrong_keys_shapes_dtypes(raw_dir, content, message):
    write_cars3d(raw_dir, SIZES)
    path = raw_dir / cars3d.RAW.relpath / "car_200_mesh.mat"  # sorts last
    scipy.io.savemat(path, content)
    with pytest.raises(GdraeError, match=re.escape(str(path)) + ": " + message):
        convert_raw(cars3d.SPEC, raw_dir)
