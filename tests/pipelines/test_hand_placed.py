"""Raw files placed by hand are compared with what the download manifest publishes of them."""
import dataclasses
import gzip
import hashlib
import shutil

from gdrae.data.cache import cache_path, open_cache
from pipelines import raw_writers
from pipelines.datasets import small_norb
from pipelines.download import ARCHIVES
from pipelines.registry import get_spec
from pipelines.store import prepare


def _published(spec, **facts):
    (raw,) = spec.raw_files
    return dataclasses.replace(spec, raw_files=(dataclasses.replace(raw, **facts),))


def test_a_file_that_differs_from_the_published_one_is_said_and_recorded(tmp_path):
    raw_dir = tmp_path / "Datasets"
    (path,) = raw_writers.write_3dshapes(raw_dir)  # a small stand-in: not the published 3dshapes.h5
    summary = prepare("shapes3d", raw_dir, tmp_path / "cache", progress=False)
    size = path.stat().st_size
    assert [n for n in summary.notes if "published" in n] == [
        f"{path}: size mismatch: expected 267573662 bytes, got {size} of the published file: a different or "
        "damaged copy (its contents passed the pipeline's checks)"]
    (source,) = open_cache(cache_path(tmp_path / "cache", "shapes3d")).attrs["source"]
    assert source["published"] == f"size mismatch: expected 267573662 bytes, got {size}"


def test_a_file_that_matches_its_published_hashes_is_recorded_as_checked(tmp_path):
    raw_dir = tmp_path / "Datasets"
    (path,) = raw_writers.write_dsprites(raw_dir)
    data = path.read_bytes()
    spec = _published(get_spec("shapes2d"), size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                      md5=hashlib.md5(data).hexdigest())
    summary = prepare(spec, raw_dir, tmp_path / "cache", progress=False)
    assert not [n for n in summary.notes if "published" in n]
    (source,) = open_cache(cache_path(tmp_path / "cache", "shapes2d")).attrs["source"]
    assert source["published"] == "size and sha256 and md5 match the manifest"


def test_unpacked_files_are_checked_through_their_archive_or_said_to_be_unchecked(tmp_path):
    raw_dir = tmp_path / "Datasets"
    paths = raw_writers.write_small_norb(raw_dir)
    summary = prepare("small_norb", raw_dir, tmp_path / "cache", progress=False)
    unchecked = [n for n in summary.notes if "not checked" in n]
    assert len(unchecked) == 6
    assert unchecked[0].startswith(f"{paths[0]}: not checked: what is published of it is the md5 of the archive ")
    # the archive kept beside the files: its md5 is the one published, so the file unpacked from it is checked
    archives = raw_dir / "small_norb" / ARCHIVES
    archives.mkdir()
    items = []
    for raw in small_norb.RAW.values():
        archive = archives / raw.name
        with open(raw_dir / raw.relpath, "rb") as src, gzip.open(archive, "wb") as dst:
            shutil.copyfileobj(src, dst)
        items.append(dataclasses.replace(raw, md5=hashlib.md5(archive.read_bytes()).hexdigest()))
    spec = dataclasses.replace(get_spec("small_norb"), raw_files=tuple(items))
    summary = prepare(spec, raw_dir, tmp_path / "cache", force=True, progress=False)
    assert not [n for n in summary.notes if "not checked" in n or "published" in n]
    sources = open_cache(cache_path(tmp_path / "cache", "small_norb")).attrs["source"]
    assert {s["published"] for s in sources} == {f"unpacked from {item.name}, whose md5 matches the manifest"
                                                 for item in items}
