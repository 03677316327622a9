"""``import gdrae.config`` and the gdrae-data commands load no torch (about 2 s a command); a .pth file does.

Each case runs in a fresh interpreter (the test process has torch loaded
already): it runs the command in-process through click, then prints whether
``torch`` is in ``sys.modules``. The raw files and caches are written here,
in the test process. Of the built-in datasets only ``faces`` (one .pth file)
needs torch to prepare; training's Sector2D sampling needs it too, but the
Sector2D caches (a numpy grid) do not.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loopback import PROXY_VARIABLES, manifest_for, published

from pipelines import raw_writers
from pipelines.download import manifest_dict
from pipelines.store import prepare

ROOT = Path(__file__).resolve().parents[2]
MARK = "torch loaded: "


def fresh(code: str) -> tuple[str, bool]:
    """Run ``code`` in a new interpreter at the repository root: (its stdout, whether it loaded torch)."""
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARIABLES}  # loopback only, never a proxy
    probe = f"{code}\nimport sys\nprint({MARK!r} + str('torch' in sys.modules))\n"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    *output, last = result.stdout.splitlines()
    assert last.startswith(MARK), result.stdout
    return "\n".join(output), last == MARK + "True"


def gdrae_data(*args) -> tuple[str, bool]:
    """`gdrae-data ARGS` in a fresh interpreter (a failed command raises there: a non-zero exit)."""
    return fresh(f"import cli.data\ncli.data.main({[str(a) for a in args]!r}, standalone_mode=False)")


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory) -> Path:
    """A small raw set of every built-in dataset that has raw files, in its real format."""
    raw = tmp_path_factory.mktemp("Datasets")
    for name, write in raw_writers.WRITERS.items():
        write(raw, raw_writers.DEFAULT_SIZES[name], seed=3)
    return raw


@pytest.fixture(scope="module")
def cache_dir(raw_dir, tmp_path_factory) -> Path:
    """A prepared shapes2d cache (48 rows), built in this process."""
    cache = tmp_path_factory.mktemp("cache")
    prepare("shapes2d", raw_dir, cache, progress=False)
    return cache


def test_import_config_loads_no_torch():
    assert fresh("import gdrae.config") == ("", False)


@pytest.mark.parametrize("args, expected", [
    (("info", "shapes2d"), "images: uint8 (48, 1, 64, 64)"),
    (("verify", "shapes2d"), "OK - 48 rows"),
    (("list",), "shapes2d"),
], ids=["info", "verify", "list"])
def test_info_verify_list_load_no_torch(args, expected, raw_dir, cache_dir):
    where = ["--cache-dir", cache_dir] + (["--raw-dir", raw_dir] if args[0] == "list" else [])
    output, torch_loaded = gdrae_data(*args, *where)
    assert expected in output
    if args[0] == "list":
        assert "valid" in next(line for line in output.splitlines() if line.startswith("shapes2d "))
    assert not torch_loaded


def test_download_loads_no_torch(server, tmp_path):
    files = published("shapes2d", tmp_path)
    server.files.update(files)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(manifest_dict([manifest_for("shapes2d", files, server.url)])))
    output, torch_loaded = gdrae_data("download", "shapes2d", "--raw-dir", tmp_path / "Datasets",
                                      "--manifest", manifest)
    assert "shapes2d: 1 of 1 file(s) fetched" in output and len(server.requests) == 1
    assert not torch_loaded


@pytest.mark.parametrize("name", ["shapes2d", "shapes3d", "small_norb", "cars3d", "sector2dunif"])
def test_prepare_without_pth_loads_no_torch(name, raw_dir, tmp_path):
    """.npz, .h5, .mat (scipy.io) and the synthetic Sector2D grid."""
    output, torch_loaded = gdrae_data("prepare", name, "--raw-dir", raw_dir, "--cache-dir", tmp_path)
    assert f"{tmp_path / name}.zarr: " in output and " rows of " in output
    assert not torch_loaded


def test_prepare_of_faces_loads_torch(raw_dir, tmp_path):
    """The probe can fail: reading the .pth file of faces does load torch."""
    output, torch_loaded = gdrae_data("prepare", "faces", "--raw-dir", raw_dir, "--cache-dir", tmp_path)
    assert f"{tmp_path / 'faces'}.zarr: 24 rows of (1, 64, 64)" in output
    assert torch_loaded
