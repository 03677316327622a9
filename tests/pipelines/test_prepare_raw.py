"""End to end: raw files in their real formats -> prepare -> open_cache / gdrae-data."""
import numpy as np
import pytest
from click.testing import CliRunner

from cli.data import main as gdrae_data
from gdrae.data.cache import cache_path, open_cache
from pipelines import raw_writers
from pipelines.store import prepare


@pytest.mark.parametrize("name", sorted(raw_writers.WRITERS))
def test_prepare_puts_every_image_in_its_grid_row(tmp_path, name):
    raw_dir, cache_dir = tmp_path / "Datasets", tmp_path / "cache"
    sizes = raw_writers.DEFAULT_SIZES[name]
    raw_writers.WRITERS[name](raw_dir, sizes, seed=11)
    prepare(name, raw_dir, cache_dir, progress=False)
    cache = open_cache(cache_path(cache_dir, name))
    assert cache.factor_sizes == tuple(sizes)
    images = cache.images[:]
    assert images.dtype == np.uint8 and images.shape[2:] == (64, 64)
    # stored row j holds the image of the grid cell its factors name
    np.testing.assert_array_equal(raw_writers.decode_index(name, images), cache.grid_index)
    np.testing.assert_array_equal(cache.factors, np.stack(np.unravel_index(cache.grid_index, sizes), axis=1))
    assert sorted(cache.grid_index.tolist()) == list(range(int(np.prod(sizes))))
    assert all(len(source["sha256"]) == 64 for source in cache.attrs["source"])


def test_command_line_prepares_and_refuses_a_truncated_file(tmp_path):
    raw_dir, cache_dir = tmp_path / "Datasets", tmp_path / "cache"
    (path,) = raw_writers.write_3dfaces(raw_dir)
    runner = CliRunner()
    args = ["prepare", "faces", "--raw-dir", str(raw_dir), "--cache-dir", str(cache_dir)]
    assert runner.invoke(gdrae_data, args).exit_code == 0
    good = open_cache(cache_path(cache_dir, "faces")).images[:]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result = runner.invoke(gdrae_data, [*args, "--force"])
    assert result.exit_code != 0
    assert str(path) in result.output and "corrupt or truncated" in result.output
    assert "Traceback" not in result.output
    np.testing.assert_array_equal(open_cache(cache_path(cache_dir, "faces")).images[:], good)  # earlier cache kept
