"""Manifests: the JSON form of what `gdrae-data download` fetches (``--manifest FILE``), and its checks.

A :class:`Manifest` lists a dataset's downloadable raw files
(:class:`pipelines.base.RawFile`: URL, size, sha256 and md5 where public
sources agree, how each unpacks). The built-in ones come from each dataset's
spec (``DatasetSpec.download``); a JSON file of the same shape
(:func:`load_manifest`, format in Datasets/README.md) replaces them, e.g.
for a mirror.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from gdrae.errors import GdraeError
from pipelines.base import UNPACK, RawFile
from pipelines.checks import read_text

MANIFEST_VERSION = 1


_SHA256 = re.compile(r"[0-9a-f]{64}")
_MD5 = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Manifest:
    """The files of one dataset, or why they cannot be fetched."""

    dataset: str
    files: tuple[RawFile, ...] = ()
    unavailable: str | None = None  # set when the files are not public: where they come from instead


def manifest_dict(manifests: list[Manifest]) -> dict:
    """The JSON form of ``manifests`` (what :func:`load_manifest` reads)."""
    datasets: dict[str, Any] = {}
    for m in manifests:
        if m.unavailable is not None and not m.files:
            datasets[m.dataset] = {"unavailable": m.unavailable}
            continue
        files = []
        for d in m.files:
            entry = {"name": d.name, "url": d.url, "size": d.size, "sha256": d.sha256, "md5": d.md5,
                     "unpack": d.unpack, "target": d.relpath}
            if d.unpack == "untar":
                entry.update(members=d.members, count=d.count)
            files.append(entry)
        datasets[m.dataset] = {"files": files}
    return {"version": MANIFEST_VERSION, "datasets": datasets}


def load_manifest(path: str | Path, dataset: str) -> Manifest:
    """The manifest of ``dataset`` in the JSON file ``path`` (format: :func:`manifest_dict`), checked."""
    path = Path(path)
    text = read_text(path, "manifest", f"a JSON file listing the files of {dataset}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise GdraeError(f"{path}: expected a JSON manifest, got invalid JSON ({e})") from None
    manifests = parse_manifests(data, str(path))
    if dataset not in manifests:
        raise GdraeError(f"{path}: expected an entry for dataset {dataset} under 'datasets', "
                         f"got {sorted(manifests) or 'none'}")
    return manifests[dataset]


def parse_manifests(data: Any, where: str) -> dict[str, Manifest]:
    """Check the JSON form of manifests; a GdraeError names the first bad key and value."""
    if not isinstance(data, dict) or set(data) - {"version", "datasets"}:
        raise GdraeError(f"{where}: expected an object with keys version and datasets, got {_clip(data)}")
    if data.get("version") != MANIFEST_VERSION:
        raise GdraeError(f"{where}: version: expected {MANIFEST_VERSION}, got {_clip(data.get('version'))}")
    datasets = data.get("datasets")
    if not isinstance(datasets, dict):
        raise GdraeError(f"{where}: datasets: expected an object of dataset name -> entry, got {_clip(datasets)}")
    out = {}
    for name, entry in datasets.items():
        key = f"{where}: datasets.{name}"
        if not isinstance(entry, dict) or not entry or set(entry) - {"files", "unavailable"}:
            raise GdraeError(f"{key}: expected an object with 'files' (a list) or 'unavailable' (a text), "
                             f"got {_clip(entry)}")
        unavailable = entry.get("unavailable")
        if unavailable is not None and not isinstance(unavailable, str):
            raise GdraeError(f"{key}.unavailable: expected a text, got {_clip(unavailable)}")
        files = entry.get("files", [])
        if not isinstance(files, list):
            raise GdraeError(f"{key}.files: expected a list, got {_clip(files)}")
        downloads = tuple(_parse_file(f, f"{key}.files[{i}]") for i, f in enumerate(files))
        names = [d.name for d in downloads]
        if len(set(names)) != len(names):
            raise GdraeError(f"{key}.files: expected distinct names, got {names}")
        if not downloads and unavailable is None:
            raise GdraeError(f"{key}: expected at least one file or an 'unavailable' text, got neither")
        out[name] = Manifest(dataset=name, files=downloads, unavailable=unavailable)
    return out


_FILE_KEYS = {"name", "url", "target", "size", "sha256", "md5", "unpack", "members", "count"}


def _parse_file(entry: Any, key: str) -> RawFile:
    if not isinstance(entry, dict):
        raise GdraeError(f"{key}: expected an object, got {_clip(entry)}")
    unknown = set(entry) - _FILE_KEYS
    if unknown:
        raise GdraeError(f"{key}: expected keys among {sorted(_FILE_KEYS)}, got unknown {sorted(unknown)}")
    for required in ("name", "url", "target"):
        if not isinstance(entry.get(required), str) or not entry[required]:
            raise GdraeError(f"{key}.{required}: expected a non-empty text, got {_clip(entry.get(required))}")
    name, url, target = entry["name"], entry["url"], entry["target"]
    if "/" in name or "\\" in name or name in (".", ".."):
        raise GdraeError(f"{key}.name: expected a plain file name, got {name!r}")
    if not url.startswith(("http://", "https://")):
        raise GdraeError(f"{key}.url: expected an http:// or https:// URL, got {url!r}")
    parts = PurePosixPath(target).parts
    if target.startswith(("/", "\\")) or "\\" in target or ".." in parts or ":" in target or not parts:
        raise GdraeError(f"{key}.relpath: expected a relative path under the raw directory, got {target!r}")
    size = entry.get("size")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise GdraeError(f"{key}.size: expected a byte count or null, got {_clip(size)}")
    for hash_key, pattern, digits in (("sha256", _SHA256, 64), ("md5", _MD5, 32)):
        value = entry.get(hash_key)
        if value is not None and not (isinstance(value, str) and pattern.fullmatch(value)):
            raise GdraeError(f"{key}.{hash_key}: expected {digits} lowercase hex digits or null, got {_clip(value)}")
    unpack = entry.get("unpack", "none")
    if unpack not in UNPACK:
        raise GdraeError(f"{key}.unpack: expected one of {', '.join(UNPACK)}, got {_clip(unpack)}")
    members, count = entry.get("members"), entry.get("count")
    if unpack == "untar":
        if not isinstance(members, str) or not members:
            raise GdraeError(f"{key}.members: expected a glob of the archive members to take, got {_clip(members)}")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise GdraeError(f"{key}.count: expected a positive number of members or null, got {_clip(count)}")
    elif members is not None or count is not None:
        raise GdraeError(f"{key}: members and count apply to unpack untar only, got unpack {unpack}")
    return RawFile(name=name, url=url, relpath=target, size=size, sha256=entry.get("sha256"),
                    md5=entry.get("md5"), unpack=unpack, members=members, count=count)


def _clip(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
