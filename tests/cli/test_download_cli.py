"""gdrae-data download and prepare --download through CliRunner, against a loopback server or a mirror folder."""
import json

import pytest
from click.testing import CliRunner

from loopback import guard_network, manifest_for, published

from cli.data import main
from gdrae.data.cache import cache_path, open_cache
from pipelines import download as dl
from pipelines.download import fetch as fetching
from pipelines.download import manifest_dict


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    guard_network(monkeypatch)
    monkeypatch.setattr(fetching, "RETRY_WAIT_S", 0.0)
    monkeypatch.setattr(fetching, "TIMEOUT_S", 5.0)


@pytest.fixture
def run():
    runner = CliRunner()
    return lambda *args: runner.invoke(main, [str(a) for a in args])


def _one_line_error(result):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    return lines[0]


def _manifest_file(tmp_path, manifest):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(manifest_dict([manifest])))
    return path


def test_download_then_prepare_download_fetches_nothing_more(run, server, tmp_path):
    files = published("small_norb", tmp_path)
    server.files.update(files)
    manifest = _manifest_file(tmp_path, manifest_for("small_norb", files, server.url, hashes=False))
    raw_dir, cache_dir = tmp_path / "Datasets", tmp_path / "cache"
    result = run("download", "small_norb", "--raw-dir", raw_dir, "--manifest", manifest)
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]  # progress bars: carriage returns
    archive = raw_dir / "small_norb" / "downloads" / "smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat.gz"
    assert any(line.startswith(f"{archive}: downloaded (") and line.endswith(
        "; no published hash to check: trust on first use") for line in lines)
    assert sum("no published hash to compare with, so this one is trusted on first use" in line
               for line in lines) == 6
    assert lines[-1].startswith("small_norb: 6 of 6 file(s) fetched (") and "0 already there" in lines[-1]
    assert lines[-1].endswith(f"record: {raw_dir / 'small_norb' / 'download.json'}")

    before = len(server.requests)
    result = run("prepare", "small_norb", "--download", "--raw-dir", raw_dir, "--cache-dir", cache_dir,
                 "--manifest", manifest)
    assert result.exit_code == 0, result.output
    assert len(server.requests) == before
    assert "small_norb: 0 of 6 file(s) fetched (0 B in" in result.output and "6 already there" in result.output
    assert "rows of (1, 64, 64)" in result.output
    sources = open_cache(cache_path(cache_dir, "small_norb")).attrs["source"]
    assert sum(1 for s in sources if s["name"].startswith("small_norb/downloads/")) == 6
    info = run("info", "small_norb", "--cache-dir", cache_dir)
    assert f"downloaded from {server.url}/smallnorb-5x01235x9x18x6x2x96x96-testing-cat.mat.gz: no published " \
           "hash to check: trust on first use" in info.output


def test_download_from_a_mirror_folder(run, tmp_path):
    files = published("shapes2d", tmp_path)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, data in files.items():
        (mirror / name).write_bytes(data)
    manifest = _manifest_file(tmp_path, manifest_for("shapes2d", files, "http://127.0.0.1:9"))  # never asked
    raw_dir = tmp_path / "Datasets"
    result = run("download", "shapes2d", "--raw-dir", raw_dir, "--manifest", manifest, "--mirror", mirror)
    assert result.exit_code == 0, result.output
    assert "size and sha256 and md5 match the manifest" in result.output
    assert (raw_dir / "dsprites" / next(iter(files))).read_bytes() == next(iter(files.values()))
    line = _one_line_error(run("download", "shapes2d", "--raw-dir", tmp_path / "D2", "--manifest", manifest,
                               "--mirror", tmp_path / "empty"))
    assert line == f"Error: {tmp_path / 'empty'}: mirror folder not found: expected a folder holding {next(iter(files))}"


def test_bad_cases_are_one_line(run, server, tmp_path):
    files = published("shapes3d", tmp_path)
    server.files.update(files)
    raw_dir = tmp_path / "Datasets"
    manifest = manifest_for("shapes3d", files, server.url)
    server.status["3dshapes.h5"] = 404
    line = _one_line_error(run("download", "shapes3d", "--raw-dir", raw_dir, "--manifest",
                               _manifest_file(tmp_path, manifest)))
    assert line == f"Error: {server.url}/3dshapes.h5: HTTP 404 Not Found: expected the file 3dshapes.h5; nothing was kept"
    del server.status["3dshapes.h5"]
    bad = json.loads(_manifest_file(tmp_path, manifest).read_text())
    bad["datasets"]["shapes3d"]["files"][0]["sha256"] = "1" * 64
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    line = _one_line_error(run("prepare", "shapes3d", "--download", "--raw-dir", raw_dir, "--cache-dir",
                               tmp_path / "cache", "--manifest", tmp_path / "bad.json"))
    assert f"3dshapes.h5: sha256 mismatch: expected {'1' * 64}, got " in line
    assert not (raw_dir / "3dshapes" / "raw" / "3dshapes.h5").exists() and not (tmp_path / "cache").exists()


def test_names_without_a_download(run, tmp_path):
    line = _one_line_error(run("download", "faces", "--raw-dir", tmp_path))
    assert line.startswith("Error: faces: the 3DFaces renders are not public and cannot be downloaded")
    result = run("download", "sector2d", "--raw-dir", tmp_path)
    assert result.exit_code == 0 and "sector2d is synthetic: nothing to download" in result.output


def test_prepare_fetches_nothing_without_download(run, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("prepare downloaded without --download")

    monkeypatch.setattr(dl, "download", no_network)
    line = _one_line_error(run("prepare", "shapes3d", "--raw-dir", tmp_path / "Datasets", "--cache-dir", tmp_path))
    assert "raw file of dataset shapes3d not found" in line
    result = run("prepare", "shapes3d", "--mirror", tmp_path, "--raw-dir", tmp_path)
    assert result.exit_code == 2 and "--mirror" in result.output and "add --download" in result.output
    result = run("download", "--help")
    assert result.exit_code == 0 and "--mirror BASE" in result.output and "--manifest FILE" in result.output
