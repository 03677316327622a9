"""Downloads against a loopback server: fetch, resume, restart, verify, unpack, mirror, and every bad case.

Every socket goes to 127.0.0.1 (a guard fails the test otherwise); the raw
files are small sets in their real formats written by pipelines/raw_writers.py.
"""
import dataclasses
import errno
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from loopback import closed_port, guard_network, manifest_for, published, tarball

from gdrae.data.cache import cache_path, open_cache
from gdrae.errors import GdraeError
from pipelines import raw_writers
from pipelines.base import RawFile
from pipelines.download import Manifest, download, load_manifest, manifest_dict, parse_manifests
from pipelines.download import fetch as fetching
from pipelines.registry import NAMES, get_spec
from pipelines.store import prepare

TIMEOUT = 5.0
FETCHABLE = ("shapes2d", "shapes3d", "cars3d", "small_norb")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    guard_network(monkeypatch)
    monkeypatch.setattr(fetching, "RETRY_WAIT_S", 0.0)


@pytest.fixture
def raw_dir(tmp_path):
    return tmp_path / "Datasets"


def _serve(server, tmp_path, name, hashes=True):
    files = published(name, tmp_path)
    server.files.update(files)
    return files, manifest_for(name, files, server.url, hashes=hashes)


def _run(manifest, raw_dir, **kwargs):
    return download(manifest, raw_dir, progress=False, timeout=TIMEOUT, **kwargs)


def _leftovers(folder: Path) -> list[str]:
    """Partial or temporary files anywhere under ``folder``."""
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith((".part", ".unpacking", ".tmp")))


# --------------------------------------------------------------------------- the good path


@pytest.mark.parametrize("name", FETCHABLE)
def test_download_then_prepare_then_nothing_to_fetch(server, tmp_path, raw_dir, name):
    files, manifest = _serve(server, tmp_path, name)
    summary = _run(manifest, raw_dir)
    assert [f.status for f in summary.files] == ["downloaded"] * len(files)
    assert all(f.checked == "size and sha256 and md5 match the manifest" for f in summary.files)
    assert summary.fetched == sum(len(b) for b in files.values())
    assert [r[1] for r in server.requests] == [None] * len(files)  # no Range needed

    prepare(name, raw_dir, tmp_path / "cache", progress=False)
    cache = open_cache(cache_path(tmp_path / "cache", name))
    np.testing.assert_array_equal(raw_writers.decode_index(name, cache.images[:]), cache.grid_index)
    sources = cache.attrs["source"]
    fetched = [s for s in sources if s.get("url")]
    assert {s["url"] for s in fetched} == {f"{server.url}/{n}" for n in files}
    assert all(s["checked"] == "size and sha256 and md5 match the manifest" for s in fetched)
    if manifest.files[0].unpack != "none":  # the archives are on record beside the files unpacked from them
        archives = {s["name"]: s for s in fetched}
        for n, data in files.items():
            entry = archives[f"{Path(manifest.files[0].relpath).parts[0]}/downloads/{n}"]
            assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
            assert entry["unpacked_to"] and all(u in {s["name"] for s in sources} for u in entry["unpacked_to"])

    before = len(server.requests)
    again = _run(manifest, raw_dir)
    assert len(server.requests) == before and again.fetched == 0
    assert [f.status for f in again.files] == ["present"] * len(files)
    assert _leftovers(raw_dir) == []


def test_first_use_hash_is_printed_recorded_and_checked_later(server, tmp_path, raw_dir):
    files, manifest = _serve(server, tmp_path, "shapes3d", hashes=False)
    (result,) = _run(manifest, raw_dir).files
    (data,) = files.values()
    assert result.first_use and result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.checked == "no published hash to check: trust on first use"
    record = json.loads((raw_dir / "3dshapes" / "download.json").read_text())["files"]["3dshapes.h5"]
    assert record["sha256"] == result.sha256 and record["url"] == f"{server.url}/3dshapes.h5"

    prepare("shapes3d", raw_dir, tmp_path / "cache", progress=False)
    (source,) = open_cache(cache_path(tmp_path / "cache", "shapes3d")).attrs["source"]
    assert source["sha256"] == result.sha256 and source["checked"].startswith("no published hash")

    (again,) = _run(manifest, raw_dir).files
    assert again.status == "present" and again.checked.startswith("matches the sha256 recorded at its first")
    target = raw_dir / manifest.files[0].relpath
    target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # changed since: refused, not replaced
    with pytest.raises(GdraeError, match=r"3dshapes.h5: already present but sha256 mismatch with its first "
                                         rf"download: expected {result.sha256} \(recorded in download.json\)"):
        _run(manifest, raw_dir)


def test_present_file_that_differs_from_the_manifest_is_refused(server, tmp_path, raw_dir):
    files, manifest = _serve(server, tmp_path, "shapes2d")
    target = raw_dir / manifest.files[0].relpath
    target.parent.mkdir(parents=True)
    target.write_bytes(b"something else")
    with pytest.raises(GdraeError, match=rf"{target}: already present but size mismatch: expected "
                                         rf"{manifest.files[0].size} bytes, got 14; move it aside"):
        _run(manifest, raw_dir)
    assert server.requests == [] and target.read_bytes() == b"something else"


def test_an_archive_already_downloaded_is_unpacked_not_fetched(server, tmp_path, raw_dir):
    files, manifest = _serve(server, tmp_path, "cars3d")
    _run(manifest, raw_dir)
    for car in (raw_dir / "cars3d" / "raw").iterdir():
        car.unlink()
    before = len(server.requests)
    (result,) = _run(manifest, raw_dir).files
    assert result.status == "unpacked" and len(server.requests) == before
    assert len(list((raw_dir / "cars3d" / "raw").iterdir())) == raw_writers.DEFAULT_SIZES["cars3d"][2]


# --------------------------------------------------------------------------- interruptions


def test_resume_after_the_server_cuts_the_connection(server, tmp_path, raw_dir):
    files, manifest = _serve(server, tmp_path, "shapes3d")
    (name, data), = files.items()
    server.cut(name, at=len(data) // 3)
    (result,) = _run(manifest, raw_dir).files
    assert result.status == "downloaded" and result.checked == "size and sha256 and md5 match the manifest"
    assert server.requests == [(name, None), (name, f"bytes={len(data) // 3}-")]
    assert any("interrupted" in note and f"from byte {len(data) // 3:,}" in note for note in result.notes)
    assert (raw_dir / manifest.files[0].relpath).read_bytes() == data


def test_a_truncated_transfer_keeps_the_part_and_the_next_run_resumes(server, tmp_path, raw_dir):
    files, manifest = _serve(server, tmp_path, "shapes2d")
    (name, data), = files.items()
    half = len(data) // 2
    server.cut(name, at=half, times=99)
    target = raw_dir / manifest.files[0].relpath
    with pytest.raises(GdraeError) as e:
        _run(manifest, raw_dir, retries=1)
    assert str(e.value) == (f"{server.url}/{name}: truncated transfer of {name}: the connection closed after "
                            f"{half:,} of {len(data):,} bytes (gave up after 2 tries); the {half:,} bytes received "
                            f"are kept in {target}.part and the next run resumes from there")
    assert not target.exists() and (target.parent / f"{name}.part").stat().st_size == half

    server.cuts.clear()
    server.requests.clear()
    (result,) = _run(manifest, raw_dir).files
    assert result.status == "resumed" and result.fetched == len(data) - half
    assert server.requests == [(name, f"bytes={half}-")]
    assert target.read_bytes() == data and _leftovers(raw_dir) == []


def test_a_stalled_transfer_times_out(server, tmp_path, raw_dir):
    files, manifest = _serve(server, tmp_path, "shapes2d")
    (name,) = files
    server.stall[name] = 2.0
    with pytest.raises(GdraeError) as e:
        download(manifest, raw_dir, progress=False, timeout=0.3, retries=0)
    assert str(e.value) == (f"{server.url}/{name}: truncated transfer of {name}: no data for 0.3 s after byte 0 "
                            "(gave up after 1 try); nothing was kept")
    assert _leftovers(raw_dir) == []


def test_a_server_without_range_support_restarts_cleanly(server, tmp_path, raw_dir):
    files, manifest = _serve(server, tmp_path, "shapes3d")
    (name, data), = files.items()
    server.ranges = False
    server.cut(name, at=len(data) // 2)
    (result,) = _run(manifest, raw_dir).files
    assert any("does not resume (no Range support): restarted from the first byte" in n for n in result.notes)
    assert (raw_dir / manifest.files[0].relpath).read_bytes() == data

    # the same from a .part left by an earlier run
    target = raw_dir / manifest.files[0].relpath
    target.unlink()
    (target.parent / f"{name}.part").write_bytes(data[:1000])
    (result,) = _run(manifest, raw_dir).files
    assert result.status == "downloaded" and target.read_bytes() == data and _leftovers(raw_dir) == []


def test_a_part_longer_than_the_file_is_discarded_and_a_complete_one_renamed(server, tmp_path, raw_dir):
    files, manifest = _serve(server, tmp_path, "shapes2d")
    (name, data), = files.items()
    target = raw_dir / manifest.files[0].relpath
    target.parent.mkdir(parents=True)
    (target.parent / f"{name}.part").write_bytes(data)  # complete but never renamed: a 416 tells
    (result,) = _run(manifest, raw_dir).files
    assert result.status == "resumed" and result.fetched == 0 and target.read_bytes() == data
    target.unlink()
    (target.parent / f"{name}.part").write_bytes(data + b"junk")
    (result,) = _run(manifest, raw_dir).files
    assert result.status == "downloaded" and target.read_bytes() == data


# --------------------------------------------------------------------------- bad cases: one line, nothing left


def test_checksum_and_size_mismatches_give_both_values(server, tmp_path, raw_dir):
    files, manifest = _serve(server, tmp_path, "shapes2d")
    (name, data), = files.items()
    item = manifest.files[0]
    wrong = "0" * 64
    with pytest.raises(GdraeError) as e:
        _run(Manifest("shapes2d", (dataclasses.replace(item, sha256=wrong),)), raw_dir)
    assert str(e.value) == (f"{name}: sha256 mismatch: expected {wrong}, got {hashlib.sha256(data).hexdigest()} "
                            f"(from {server.url}/{name}); the download was removed")
    with pytest.raises(GdraeError, match=rf"{name}: md5 mismatch: expected {'f' * 32}, got "
                                         rf"{hashlib.md5(data).hexdigest()}"):
        _run(Manifest("shapes2d", (dataclasses.replace(item, md5="f" * 32),)), raw_dir)
    with pytest.raises(GdraeError) as e:
        _run(Manifest("shapes2d", (dataclasses.replace(item, size=len(data) + 1),)), raw_dir)
    assert str(e.value) == (f"{server.url}/{name}: size mismatch for {name}: expected {len(data) + 1} bytes, the "
                            f"server offers {len(data)}; nothing was kept")
    assert not (raw_dir / item.relpath).exists() and _leftovers(raw_dir) == []


@pytest.mark.parametrize("status, words", [(404, "HTTP 404 Not Found"), (500, "HTTP 500 Internal Server Error")])
def test_http_errors(server, tmp_path, raw_dir, status, words):
    files, manifest = _serve(server, tmp_path, "shapes2d")
    (name,) = files
    server.status[name] = status
    with pytest.raises(GdraeError) as e:
        _run(manifest, raw_dir)
    assert str(e.value) == f"{server.url}/{name}: {words}: expected the file {name}; nothing was kept"
    assert not (raw_dir / manifest.files[0].relpath).exists() and _leftovers(raw_dir) == []


def test_unreachable_server(tmp_path, raw_dir):
    files = published("shapes2d", tmp_path)
    manifest = manifest_for("shapes2d", files, f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(GdraeError, match=r"http://127.0.0.1:\d+/dsprites_\S+\.npz: server unreachable "
                                         r"\(Connection refused\) while fetching dsprites_\S+; nothing was kept"):
        _run(manifest, raw_dir)
    assert _leftovers(raw_dir) == []


def test_a_disk_that_fills_up(server, tmp_path, raw_dir, monkeypatch):
    files, manifest = _serve(server, tmp_path, "shapes3d")
    (name, data), = files.items()

    class Full:
        def __init__(self, path, mode):
            self.f, self.written = open(path, mode), 0

        def write(self, chunk):
            if self.written + len(chunk) > 1000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.written += len(chunk)
            return self.f.write(chunk)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr(fetching, "CHUNK", 1000)
    monkeypatch.setattr(fetching, "_open_part", Full)
    part = raw_dir / "3dshapes" / "raw" / f"{name}.part"
    with pytest.raises(GdraeError) as e:
        _run(manifest, raw_dir)
    assert str(e.value) == (f"{part}: no space left on device while writing {name}; the first 1,000 bytes are "
                            "kept in it; free space and run again to resume")
    assert not (raw_dir / manifest.files[0].relpath).exists() and part.stat().st_size == 1000

    monkeypatch.setattr(fetching, "_free_bytes", lambda folder: 10)  # known size: refused before a byte is fetched
    part.unlink()
    server.requests.clear()
    with pytest.raises(GdraeError, match=rf"expected room for {len(data):,} more bytes of {name}, got 10 free"):
        _run(manifest, raw_dir)
    assert not part.exists()


def test_truncated_gzip_and_tar_archives(server, tmp_path, raw_dir):
    files, manifest = _serve(server, tmp_path, "small_norb", hashes=False)  # unverified: the archive is the test
    item = manifest.files[0]
    server.files[item.name] = files[item.name][: len(files[item.name]) // 2]
    archive = raw_dir / "small_norb" / "downloads" / item.name
    with pytest.raises(GdraeError) as e:
        _run(Manifest("small_norb", (item,)), raw_dir)
    assert str(e.value).startswith(f"{archive}: expected a gzip file that unpacks to {Path(item.relpath).name}, "
                                   "got a damaged one (Compressed file ended before the end-of-stream marker")
    assert str(e.value).endswith("the archive was removed; run the command again to fetch it anew")
    assert not archive.exists() and not (raw_dir / item.relpath).exists() and _leftovers(raw_dir) == []

    files, manifest = _serve(server, tmp_path, "cars3d", hashes=False)
    (item,) = manifest.files
    server.files[item.name] = files[item.name][: len(files[item.name]) // 2]
    with pytest.raises(GdraeError, match=r"nips2015-analogy-data.tar.gz: expected a tar archive holding "
                                         r"data/cars/car_\*_mesh.mat, got a damaged one"):
        _run(manifest, raw_dir)
    assert not (raw_dir / "cars3d" / "raw").exists() and _leftovers(raw_dir) == []


def test_archives_without_the_expected_files(server, tmp_path, raw_dir):
    files, manifest = _serve(server, tmp_path, "cars3d")
    (item,) = manifest.files
    cars = {f"data/cars/car_{i:03d}_mesh.mat": b"x" for i in (1, 2)}

    def serve(data):
        server.files[item.name] = data
        return Manifest("cars3d", (dataclasses.replace(item, size=None, sha256=None, md5=None),))

    with pytest.raises(GdraeError, match=r"expected 3 members matching data/cars/car_\*_mesh.mat, got 2; the "
                                         "archive was removed"):
        _run(serve(tarball(cars)), raw_dir)
    with pytest.raises(GdraeError, match=r"member data/cars/car_003_mesh.mat: expected a regular file, got a link"):
        _run(serve(tarball(cars, links={"data/cars/car_003_mesh.mat": "/etc/passwd"})), raw_dir)
    with pytest.raises(GdraeError, match=r"expected one member named car_001_mesh.mat, got two"):
        _run(serve(tarball({**cars, "./data/cars/car_001_mesh.mat": b"y"})), raw_dir)
    with pytest.raises(GdraeError, match=r"unsafe member 'data/cars/car_/../../../car_003_mesh.mat': expected a "
                                         "relative path inside the archive"):
        _run(serve(tarball({**cars, "data/cars/car_/../../../car_003_mesh.mat": b"y"})), raw_dir)
    assert not (tmp_path / "car_003_mesh.mat").exists() and not (raw_dir / "car_003_mesh.mat").exists()
    assert not (raw_dir / "cars3d" / "raw").exists() and _leftovers(raw_dir) == []

    verified = dataclasses.replace(item, **{k: getattr(manifest.files[0], k) for k in ("size", "sha256")})
    server.files[item.name] = files[item.name]
    with pytest.raises(GdraeError, match="the manifest's unpack entry must be wrong"):  # verified: kept
        _run(Manifest("cars3d", (dataclasses.replace(verified, count=4),)), raw_dir)
    assert (raw_dir / "cars3d" / "downloads" / item.name).exists()


# --------------------------------------------------------------------------- mirrors


def test_mirror_folder_and_mirror_url(server, tmp_path, raw_dir):
    files, manifest = _serve(server, tmp_path, "small_norb")
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name, data in files.items():
        (mirror / name).write_bytes(data)
    server.requests.clear()
    summary = _run(manifest, raw_dir, mirror=str(mirror))
    assert server.requests == [] and [f.status for f in summary.files] == ["downloaded"] * 6
    record = json.loads((raw_dir / "small_norb" / "download.json").read_text())["files"]
    assert {r["url"] for r in record.values()} == {str(mirror / n) for n in files}

    other = tmp_path / "Other"
    server.files.update({f"pub/mirror/{n}": d for n, d in files.items()})
    summary = _run(manifest, other, mirror=f"{server.url}/pub/mirror/")
    assert {r[0] for r in server.requests} == {f"pub/mirror/{n}" for n in files}
    assert [f.status for f in summary.files] == ["downloaded"] * 6

    missing = sorted(files)[0]
    (mirror / missing).unlink()
    with pytest.raises(GdraeError) as e:
        _run(manifest, tmp_path / "Third", mirror=str(mirror))
    assert str(e.value) == f"{mirror / missing}: mirror folder {mirror} has no file {missing}"
    with pytest.raises(GdraeError, match=rf"{tmp_path / 'nowhere'}: mirror folder not found"):
        _run(manifest, tmp_path / "Third", mirror=str(tmp_path / "nowhere"))
    assert _leftovers(tmp_path / "Third") == []


# --------------------------------------------------------------------------- manifests


def test_builtin_manifests_are_valid_and_give_what_prepare_reads():
    manifests = [get_spec(n).download for n in NAMES if get_spec(n).download is not None]
    assert {m.dataset for m in manifests} == {"shapes2d", "shapes3d", "faces", "cars3d", "small_norb"}
    assert parse_manifests(json.loads(json.dumps(manifest_dict(manifests))), "builtin") == \
        {m.dataset: m for m in manifests}
    for m in manifests:
        spec = get_spec(m.dataset)
        assert sorted(d.relpath for d in m.files) == ([] if m.unavailable else sorted(r.relpath for r in spec.raw_files))
        assert all(d.md5 or d.sha256 for d in m.files)  # each file is checked against a published hash
    assert get_spec("shapes3d").download.files[0].size == 267_573_662


def test_faces_cannot_be_downloaded_and_says_why(raw_dir):
    with pytest.raises(GdraeError, match=r"faces: the 3DFaces renders are not public and cannot be downloaded: .*"
                                         r"place it at <raw-dir>/3dfaces/basel_face_renders.pth"):
        download(get_spec("faces").download, raw_dir, progress=False)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(version=2), "version: expected 1, got 2"),
    (lambda d: d["datasets"]["x"]["files"][0].update(sha256="ABC"),
     "datasets.x.files[0].sha256: expected 64 lowercase hex digits or null, got 'ABC'"),
    (lambda d: d["datasets"]["x"]["files"][0].update(url="ftp://h/f"),
     "datasets.x.files[0].url: expected an http:// or https:// URL, got 'ftp://h/f'"),
    (lambda d: d["datasets"]["x"]["files"][0].update(target="../etc/f"),
     "datasets.x.files[0].relpath: expected a relative path under the raw directory, got '../etc/f'"),
    (lambda d: d["datasets"]["x"]["files"][0].update(name="a/b"),
     "datasets.x.files[0].name: expected a plain file name, got 'a/b'"),
    (lambda d: d["datasets"]["x"]["files"][0].update(size=-1), "datasets.x.files[0].size: expected a byte count"),
    (lambda d: d["datasets"]["x"]["files"][0].update(unpack="untar"),
     "datasets.x.files[0].members: expected a glob of the archive members to take, got None"),
    (lambda d: d["datasets"]["x"]["files"][0].update(colour="red"), "got unknown ['colour']"),
    (lambda d: d["datasets"].update(y={}), "datasets.y: expected an object with 'files' (a list) or 'unavailable'"),
])
def test_manifest_file_validation(tmp_path, edit, message):
    good = manifest_dict([Manifest("x", (RawFile(name="f.bin", url="https://h/f.bin", relpath="x/f.bin"),))])
    path = tmp_path / "m.json"
    path.write_text(json.dumps(good))
    assert load_manifest(path, "x").files[0].name == "f.bin"
    edit(good)
    path.write_text(json.dumps(good))
    with pytest.raises(GdraeError) as e:
        load_manifest(path, "x")
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value)


def test_manifest_file_problems(tmp_path):
    path = tmp_path / "m.json"
    with pytest.raises(GdraeError, match="m.json: manifest not found"):
        load_manifest(path, "x")
    path.write_text("{")
    with pytest.raises(GdraeError, match="m.json: expected a JSON manifest, got invalid JSON"):
        load_manifest(path, "x")
    path.write_text(json.dumps({"version": 1, "datasets": {"a": {"unavailable": "no"}}}))
    with pytest.raises(GdraeError, match=r"m.json: expected an entry for dataset x under 'datasets', got \['a'\]"):
        load_manifest(path, "x")


def test_datasets_readme_states_the_builtin_hashes_and_a_valid_manifest_example(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "Datasets" / "README.md").read_text()
    for name in FETCHABLE:
        for item in get_spec(name).download.files:
            for value in (item.sha256, item.md5):
                assert value is None or f"`{value}`" in readme, (name, value)
            assert item.size is None or f"{item.size:,}" in readme
    example = tmp_path / "example.json"
    example.write_text(readme.split("```json\n", 1)[1].split("```", 1)[0])
    assert load_manifest(example, "faces").files[0].relpath == get_spec("faces").raw_files[0].relpath
