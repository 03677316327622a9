"""gdrae-data through click's CliRunner: exit codes and messages."""
import errno
import json
import os
import shutil

import pytest
from click.testing import CliRunner

from cli.data import main
from gdrae.data.lifecycle import this_host


@pytest.fixture
def run(tmp_path):
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(main, [str(a) for a in args])

    return invoke


def _one_line_error(result):
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1
    return lines[0]


def test_help_lists_commands_and_names(run):
    result = run("--help")
    assert result.exit_code == 0
    for word in ("prepare", "list", "info", "verify", "shapes2d-synth-small", "sector2dunif"):
        assert word in result.output
    result = run("prepare", "--help")
    assert result.exit_code == 0 and "--force" in result.output and "--raw-dir" in result.output


def test_prepare_info_verify_list(run, tmp_path):
    cache = tmp_path / "cache"
    result = run("prepare", "sector2dunif", "--cache-dir", cache)
    assert result.exit_code == 0, result.output
    assert "4,096 rows of (2,), factors radius 64 x angle 64" in result.output
    assert "on disk" in result.output
    result = run("info", "sector2dunif", "--cache-dir", cache)
    assert result.exit_code == 0
    assert "points: float32 (4096, 2)" in result.output and "BloscCodec, Crc32cCodec" in result.output
    assert "radius" in result.output and "angle" in result.output
    result = run("verify", "sector2dunif", "--cache-dir", cache)
    assert result.exit_code == 0 and "OK - 4,096 rows" in result.output
    result = run("list", "--cache-dir", cache, "--raw-dir", tmp_path / "none")
    assert result.exit_code == 0
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:] if line.strip()}
    assert "valid" in lines["sector2dunif"] and "4,096" in lines["sector2dunif"]
    assert "synthetic" in lines["sector2d"] and "missing" in lines["sector2d"]


def test_prepare_twice_needs_force(run, tmp_path):
    cache = tmp_path / "cache"
    assert run("prepare", "sector2d", "--cache-dir", cache).exit_code == 0
    line = _one_line_error(run("prepare", "sector2d", "--cache-dir", cache))
    assert "sector2d.zarr: cache exists" in line and "--force" in line
    assert run("prepare", "sector2d", "--cache-dir", cache, "--force").exit_code == 0


def test_missing_raw_file_names_the_expected_path_and_source(run, tmp_path):
    line = _one_line_error(run("prepare", "shapes2d", "--raw-dir", tmp_path / "Datasets", "--cache-dir", tmp_path))
    assert str(tmp_path / "Datasets" / "dsprites" / "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz") in line
    assert "github.com/deepmind/dsprites-dataset" in line
    assert not (tmp_path / "shapes2d.zarr").exists()


def test_missing_and_corrupt_caches_are_one_line_errors(run, tmp_path):
    cache = tmp_path / "cache"
    line = _one_line_error(run("info", "sector2d", "--cache-dir", cache))
    assert "run `gdrae-data prepare sector2d" in line
    assert run("prepare", "sector2d", "--cache-dir", cache).exit_code == 0
    chunk = cache / "sector2d.zarr" / "points" / "c" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    line = _one_line_error(run("verify", "sector2d", "--cache-dir", cache))
    assert "chunk 0 (rows 0..4095) of 'points' is corrupt" in line
    assert f"prepare sector2d --cache-dir {cache} --force" in line
    result = run("list", "--cache-dir", cache)
    assert result.exit_code == 0  # list reads no chunk: the cache still opens
    (cache / "sector2d.zarr" / "zarr.json").write_text("{")
    result = run("list", "--cache-dir", cache)
    assert result.exit_code == 0 and "INVALID" in result.output


def test_unknown_name_is_a_usage_error(run):
    result = run("prepare", "mnist")
    assert result.exit_code == 2 and "mnist" in result.output and "shapes2d" in result.output


def test_list_marks_a_bad_cache_and_lists_the_rest(run, tmp_path):
    cache = tmp_path / "cache"
    for name in ("sector2d", "sector2dunif"):
        assert run("prepare", name, "--cache-dir", cache).exit_code == 0
    group = cache / "sector2d.zarr" / "zarr.json"
    metadata = json.loads(group.read_text())
    metadata["attributes"]["factor_values"] = [["near"] * 64, ["left"] * 64]
    group.write_text(json.dumps(metadata))
    result = run("list", "--cache-dir", cache, "--raw-dir", tmp_path / "none")
    assert result.exit_code == 0 and "Traceback" not in result.output
    lines = result.output.splitlines()
    bad = next(i for i, line in enumerate(lines) if line.startswith("sector2d "))
    assert "INVALID" in lines[bad] and "factor_values expected 2 lists of numbers" in lines[bad + 1]
    assert any(line.startswith("sector2dunif") and "valid" in line and "4,096" in line for line in lines)
    line = _one_line_error(run("info", "sector2d", "--cache-dir", cache))
    assert "sector2d.zarr: factor_values expected 2 lists of numbers of lengths [64, 64], got [['near'" in line


def test_list_removes_temporaries_of_dead_processes_and_shows_the_rest(run, tmp_path, dead_pid):
    cache = tmp_path / "cache"
    assert run("prepare", "sector2d", "--cache-dir", cache).exit_code == 0
    host = this_host()
    leftovers = {f".sector2d.zarr.tmp-{host}-{dead_pid}-0badc0de": 5000,  # a killed prepare's
                 f".sector2dunif.zarr.tmp-{host}-{os.getpid()}-00c0ffee": 3000,  # a running prepare's
                 f".sector2d.zarr.old-{host}-{dead_pid}-0ddba11a": 2048}  # set aside by an interrupted --force
    for name, size in leftovers.items():
        (cache / name).mkdir()
        (cache / name / "chunk").write_bytes(b"x" * size)
    result = run("list", "--cache-dir", cache, "--raw-dir", tmp_path / "none")
    assert result.exit_code == 0, result.output
    removed = cache / f".sector2d.zarr.tmp-{host}-{dead_pid}-0badc0de"
    assert not removed.exists()
    assert result.output.splitlines()[0] == (f"{removed}: removed the temporary sector2d cache of process "
                                             f"{dead_pid}, which is no longer running")
    assert f".sector2dunif.zarr.tmp-{host}-{os.getpid()}-00c0ffee  2.9 KB  a sector2dunif cache being written by " \
           f"process {os.getpid()}" in result.output
    assert f".sector2d.zarr.old-{host}-{dead_pid}-0ddba11a  2.0 KB  an earlier sector2d cache set aside by an " \
           "interrupted `prepare --force`; remove it once sector2d.zarr is good" in result.output


def test_list_restores_the_newest_whole_copy_and_leaves_another_hosts_alone(run, tmp_path, dead_pid):
    cache = tmp_path / "cache"
    assert run("prepare", "sector2d", "--cache-dir", cache).exit_code == 0
    final, host = cache / "sector2d.zarr", this_host()
    older, newer = (cache / f".sector2d.zarr.old-{host}-{dead_pid}-{h}" for h in ("0000aaaa", "0000bbbb"))
    for seconds, copy in enumerate((older, newer), start=1):
        shutil.copytree(final, copy)
        os.utime(copy / "zarr.json", (seconds * 1000, seconds * 1000))
    shutil.rmtree(final)
    elsewhere = cache / f".sector2d.zarr.tmp-elsewhere-{dead_pid}-0000cccc"
    elsewhere.mkdir()
    result = run("list", "--cache-dir", cache, "--raw-dir", tmp_path / "none")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (f"{final}: restored from {newer.name}, where an interrupted "
                                             f"`gdrae-data prepare --force` had set it aside; left {older.name}")
    assert final.is_dir() and not newer.exists() and older.is_dir() and elsewhere.is_dir()
    assert any(line.startswith("sector2d ") and "valid" in line for line in result.output.splitlines())
    assert f"{elsewhere.name}  0 B  a sector2d cache being written by process {dead_pid} on host elsewhere, or " \
           "left by it (another host's: left alone)" in result.output


def test_prepare_on_a_full_disk_is_one_line_and_leaves_nothing(run, tmp_path, monkeypatch):
    from pipelines.row_order import PermutedRows

    def full(rows, block):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(rows.work_dir / "bucket-00000"))

    monkeypatch.setattr(PermutedRows, "add", full)
    cache = tmp_path / "cache"
    line = _one_line_error(run("prepare", "sector2d", "--cache-dir", cache))
    assert line == (f"Error: {cache}: expected room for the sector2d cache, got no space left on device; nothing was "
                    "left behind and any earlier cache is kept; free space or pass another --cache-dir")
    assert os.listdir(cache) == []
