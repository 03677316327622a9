"""End to end: raw files in their real formats -> prepare -> open_cache / gdrae-data."""
import ctypes
import os
import shutil
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
import yaml
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



def run_without_read_override(command):
    """``command()``, its file reads checked against permission bits even when the tests run as root.

    Root reads any file whatever its mode bits. Here the command runs in a
    thread of its own whose file-system user is 'nobody' (Linux setfsuid,
    which acts on the calling thread only and drops root's file-permission
    capabilities for it), so an open of a chmod-000 file is refused by the
    kernel as for any user. Other users run ``command()`` as they are.
    """
    if os.geteuid() != 0:
        return command()
    libc = ctypes.CDLL(None, use_errno=True)
    out = {}

    def as_nobody():
        libc.setfsgid(65534)
        libc.setfsuid(65534)
        try:
            out["result"] = command()
        finally:
            libc.setfsuid(0)
            libc.setfsgid(0)

    thread = threading.Thread(target=as_nobody)
    thread.start()
    thread.join()
    return out["result"]


@pytest.mark.parametrize("name", ["faces", "mine"])
def test_a_raw_file_without_read_permission_is_one_line(name):
    base = Path(tempfile.mkdtemp())  # not under pytest's tmp_path, whose parent only root may enter
    try:
        base.chmod(0o755)
        raw_dir, cache_dir = base / "Datasets", base / "cache"
        if name == "faces":
            (path,) = raw_writers.write_3dfaces(raw_dir)
            args = ["faces"]
        else:
            declaration = raw_writers.write_declared(raw_dir, "mine/data.h5")
            path = raw_dir / declaration["file"]
            (base / "mine.yaml").write_text(yaml.safe_dump(declaration))
            args = ["--spec", str(base / "mine.yaml")]
        args += ["--raw-dir", str(raw_dir), "--cache-dir", str(cache_dir)]
        runner = CliRunner()
        assert runner.invoke(gdrae_data, ["prepare", *args]).exit_code == 0
        good = open_cache(cache_path(cache_dir, name)).images[:]
        path.chmod(0o000)
        result = run_without_read_override(lambda: runner.invoke(gdrae_data, ["prepare", *args, "--force"]))
        if result.exit_code == 0 and os.geteuid() != 0:
            pytest.skip("this user reads files without read permission")
        assert result.exit_code == 1 and "Traceback" not in result.output
        assert result.output.strip().split("\r")[-1] == f"Error: {path}: expected a readable file, got Permission denied"
        np.testing.assert_array_equal(open_cache(cache_path(cache_dir, name)).images[:], good)  # earlier cache kept
    finally:
        shutil.rmtree(base)
