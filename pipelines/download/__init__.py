"""Fetch a dataset's published raw files: resumed, verified, unpacked where ``prepare`` reads them.

The files and what is published of them (URL, size, sha256, md5, how each
unpacks) are the dataset's :class:`pipelines.base.RawFile` declarations;
``DatasetSpec.download`` gathers them into a :class:`Manifest`, which a
JSON file may replace (``manifest``). :func:`download` does a whole
dataset: files already present and verified are not fetched again
(``fetch``); archives are kept under ``<dataset folder>/downloads/`` and
unpacked, safe members only (``unpack``); what was fetched is recorded
(``record``). Every problem is a :class:`gdrae.errors.GdraeError` of one
line naming the file; nothing partial is ever left under a final name.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gdrae.errors import GdraeError
from pipelines.base import RawFile
from pipelines.download import fetch as fetching  # the module: `fetch` names it, not its function
from pipelines.download.fetch import RETRIES, TIMEOUT_S, FileResult, Hashes, first_use, hash_file, how_checked, \
    mismatch, source_of
from pipelines.download.manifest import Manifest, load_manifest, manifest_dict, parse_manifests
from pipelines.download.record import ARCHIVES, RECORD, check_hand_placed, dataset_home, read_record, remember, \
    with_download_provenance
from pipelines.download.unpack import outputs_present, unpack

__all__ = ["ARCHIVES", "RECORD", "DownloadSummary", "FileResult", "Manifest", "check_hand_placed", "dataset_home",
           "download", "load_manifest", "manifest_dict", "parse_manifests", "read_record", "source_of",
           "unpack", "with_download_provenance"]

@dataclass
class DownloadSummary:
    """What :func:`download` did with a whole dataset."""

    dataset: str
    files: list[FileResult]
    seconds: float
    record: Path

    @property
    def fetched(self) -> int:
        return sum(f.fetched for f in self.files)


def download(manifest: Manifest, raw_dir: str | Path, *, mirror: str | None = None, progress: bool = True,
             timeout: float = TIMEOUT_S, retries: int = RETRIES,
             on_file: Callable[[FileResult], None] | None = None) -> DownloadSummary:
    """Fetch, verify and unpack every file of ``manifest`` into ``raw_dir``; skip what is already there.

    A file already present is checked against the manifest's hashes, else
    against the sha256 recorded when it was first fetched; unpacked files
    against the record of their archive. ``mirror`` replaces each URL by
    ``<mirror>/<name>`` (an http(s) URL or a local folder). ``on_file`` is
    called after each file (the command line prints a line there).
    """
    raw_dir = Path(raw_dir)
    if manifest.unavailable is not None and not manifest.files:
        raise GdraeError(f"{manifest.dataset}: {manifest.unavailable}")
    mirror_dir = None
    if mirror is not None and not mirror.startswith(("http://", "https://")):
        mirror_dir = Path(mirror)
        if not mirror_dir.is_dir():
            raise GdraeError(f"{mirror_dir}: mirror folder not found: expected a folder holding "
                             f"{', '.join(d.name for d in manifest.files)}")
    start = time.perf_counter()
    results = []
    for item in manifest.files:
        home = dataset_home(raw_dir, item.relpath)
        record = read_record(home)
        result = _one(item, raw_dir, home, record.get(item.name), mirror, mirror_dir, progress, timeout, retries)
        results.append(result)
        if on_file is not None:
            on_file(result)
    return DownloadSummary(dataset=manifest.dataset, files=results, seconds=time.perf_counter() - start,
                           record=dataset_home(raw_dir, manifest.files[0].relpath) / RECORD)


def _one(item: RawFile, raw_dir: Path, home: Path, recorded: dict | None, mirror: str | None,
         mirror_dir: Path | None, progress: bool, timeout: float, retries: int) -> FileResult:
    target = raw_dir / item.relpath
    source = source_of(item, mirror)
    if item.unpack == "none":
        if target.exists():
            return _present(item, target, recorded, progress)
        result = fetching.fetch(item, target, source, mirror_dir=mirror_dir, progress=progress, timeout=timeout,
                       retries=retries)
        remember(home, raw_dir, item, result, source, archive=None, outputs=[target])
        return result
    if outputs_present(item, raw_dir):
        return _unpacked_present(item, raw_dir, target, recorded, progress)
    archive = home / ARCHIVES / item.name
    if archive.exists():
        result = _present(item, archive, recorded, progress)
        source = (recorded or {}).get("url")
    else:
        result = fetching.fetch(item, archive, source, mirror_dir=mirror_dir, progress=progress, timeout=timeout,
                       retries=retries)
    outputs = unpack(item, archive, raw_dir, verified=not first_use(item))
    where = target if item.unpack == "untar" else target.parent
    result.notes.append(f"unpacked {len(outputs)} file(s) into {where}")
    if result.status == "present":
        result.status = "unpacked"
    remember(home, raw_dir, item, result, source, archive=archive, outputs=outputs)
    return result


def _present(item: RawFile, path: Path, recorded: dict | None, progress: bool) -> FileResult:
    """A file already in place: checked against the manifest, else against its first-use record."""
    hashes = Hashes()
    hash_file(path, hashes, progress, f"check {item.name}")
    sha256, md5 = hashes.sha256.hexdigest(), hashes.md5.hexdigest()
    problem = mismatch(item, hashes.count, sha256, md5)
    if problem is not None:
        raise GdraeError(f"{path}: already present but {problem}; move it aside or remove it and run again to "
                         "fetch it")
    checked = how_checked(item)
    if first_use(item) and recorded and recorded.get("sha256"):
        if recorded["sha256"] != sha256:
            raise GdraeError(f"{path}: already present but sha256 mismatch with its first download: expected "
                             f"{recorded['sha256']} (recorded in {RECORD}), got {sha256}; move it aside or remove "
                             "it and run again to fetch it")
        checked = f"matches the sha256 recorded at its first download ({recorded.get('downloaded')})"
    elif first_use(item):
        checked = "not fetched here and no published hash: not checked"
    return FileResult(name=item.name, path=path, status="present", bytes=hashes.count, fetched=0, sha256=sha256,
                      md5=md5, checked=checked, first_use=first_use(item))


def _unpacked_present(item: RawFile, raw_dir: Path, target: Path, recorded: dict | None,
                      progress: bool) -> FileResult:
    """Unpacked files already in place: checked against the record of their archive, where there is one."""
    outputs = (recorded or {}).get("outputs")
    if not outputs:
        return FileResult(name=item.name, path=target, status="present", bytes=0, fetched=0, sha256=None, md5=None,
                          checked="unpacked files present (not fetched here: not checked)", first_use=False)
    for output in outputs:
        path = raw_dir / output["name"]
        if not path.is_file():
            raise GdraeError(f"{path}: expected the file unpacked from {item.name} (recorded in {RECORD}), got "
                             "nothing there; remove the other files unpacked from it and run again")
        hashes = Hashes()
        hash_file(path, hashes, progress, f"check {path.name}")
        if hashes.sha256.hexdigest() != output["sha256"]:
            raise GdraeError(f"{path}: sha256 mismatch with the file unpacked from {item.name}: expected "
                             f"{output['sha256']} (recorded in {RECORD}), got {hashes.sha256.hexdigest()}; "
                             "move it aside or remove it and run again")
    return FileResult(name=item.name, path=target, status="present", bytes=recorded.get("bytes") or 0, fetched=0,
                      sha256=recorded.get("sha256"), md5=recorded.get("md5"), first_use=first_use(item),
                      checked=f"{len(outputs)} unpacked file(s) match the record of their download")
