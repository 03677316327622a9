"""Fetch a dataset's published raw files: resumed, verified, unpacked where ``prepare`` reads them.

A :class:`Manifest` lists, per dataset, the files to fetch (:class:`Download`):
URL, byte size, sha256 and md5 where public sources agree on them (``None``
where not), and how each unpacks (``none``, ``gunzip``, ``untar``) into the
layout under ``--raw-dir`` that the dataset's pipeline reads. The built-in
manifests live next to each dataset's ``RawFile``; a JSON file of the same
shape (:func:`load_manifest`) replaces them, e.g. for a mirror.

:func:`fetch` streams one file into ``<final>.part`` in the target folder,
hashing while it writes, and renames it only once size and hashes check out.
An interrupted transfer resumes with an HTTP ``Range`` request where the
server allows it and restarts cleanly where it does not; a ``.part`` left by
an earlier run is resumed the same way. :func:`download` does a whole
dataset: files already present and verified are not fetched again; archives
are kept under ``<dataset folder>/downloads/`` and unpacked (safe members
only) into the raw layout. What was fetched, from where and with which
hashes is written to ``<dataset folder>/download.json``; ``prepare`` copies it
into the cache's ``source`` attributes (:func:`with_download_provenance`), so
a hash no public source confirms (trust on first use) stays on record.

Only the standard library speaks HTTP (urllib). Every problem is a
:class:`gdrae.errors.GdraeError` of one line naming the file; nothing partial
is ever left under a final name.
"""
from __future__ import annotations

import errno
import fnmatch
import gzip
import hashlib
import json
import os
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Callable

from tqdm import tqdm

from gdrae.errors import GdraeError

MANIFEST_VERSION = 1
UNPACK = ("none", "gunzip", "untar")
CHUNK = 1 << 20  # bytes per read/write
TIMEOUT_S = 60.0  # per socket operation (connect, each read)
RETRIES = 3  # further attempts after an interrupted transfer that made no progress
RETRY_WAIT_S = 1.0  # pause before each further attempt
RECORD = "download.json"  # per dataset folder: what was fetched, from where, with which hashes
ARCHIVES = "downloads"  # per dataset folder: archives kept after unpacking
USER_AGENT = "gdrae-data (python urllib)"
_FULL = (errno.ENOSPC, errno.EDQUOT)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_MD5 = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Download:
    """One published file, what it must be, and where it ends up under the raw directory."""

    name: str  # file name as published; under --mirror BASE it is fetched as BASE/<name>
    url: str  # http(s) URL
    target: str  # path under --raw-dir that prepare reads (a folder for untar)
    size: int | None = None  # bytes, where two public sources agree
    sha256: str | None = None  # where two public sources agree
    md5: str | None = None  # where two public sources agree (checked too; weaker, but often all that is published)
    unpack: str = "none"  # "none": the file itself; "gunzip": target is the unzipped file; "untar": see members
    members: str | None = None  # untar: glob of the members to take, e.g. "data/cars/car_*_mesh.mat"
    count: int | None = None  # untar: how many members the glob must match


@dataclass(frozen=True)
class Manifest:
    """The files of one dataset, or why they cannot be fetched."""

    dataset: str
    files: tuple[Download, ...] = ()
    unavailable: str | None = None  # set when the files are not public: where they come from instead


@dataclass
class FileResult:
    """What :func:`download` did with one manifest entry."""

    name: str
    path: Path  # the file fetched (or found), or the folder/file unpacked into
    status: str  # "downloaded", "resumed", "present", "unpacked"
    bytes: int  # size of the published file (0 when only its unpacked files were found)
    fetched: int  # bytes transferred by this run
    sha256: str | None  # of the published file, where computed
    md5: str | None  # of the published file, where computed
    checked: str  # how it was verified, in words
    first_use: bool  # no public hash to compare with: the sha256 is taken on trust
    notes: list[str] = field(default_factory=list)


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


# --------------------------------------------------------------------------- manifests


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
                     "unpack": d.unpack, "target": d.target}
            if d.unpack == "untar":
                entry.update(members=d.members, count=d.count)
            files.append(entry)
        datasets[m.dataset] = {"files": files}
    return {"version": MANIFEST_VERSION, "datasets": datasets}


def load_manifest(path: str | Path, dataset: str) -> Manifest:
    """The manifest of ``dataset`` in the JSON file ``path`` (format: :func:`manifest_dict`), checked."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise GdraeError(f"{path}: manifest not found: expected a JSON file listing the files of {dataset}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise GdraeError(f"{path}: expected a readable JSON manifest, got {e}") from None
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


def _parse_file(entry: Any, key: str) -> Download:
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
        raise GdraeError(f"{key}.target: expected a relative path under the raw directory, got {target!r}")
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
    return Download(name=name, url=url, target=target, size=size, sha256=entry.get("sha256"),
                    md5=entry.get("md5"), unpack=unpack, members=members, count=count)


def _clip(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- fetching one file


class _Hashes:
    """sha256 and md5 of the bytes seen so far, and their count."""

    def __init__(self) -> None:
        self.restarted = False  # set when a partial download had to be thrown away
        self.reset()

    def reset(self) -> None:
        self.sha256, self.md5, self.count = hashlib.sha256(), hashlib.md5(), 0

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        self.md5.update(data)
        self.count += len(data)


class _Interrupted(Exception):
    """A transfer that stopped early (connection cut, reset, timed out): it may be resumed."""


def source_of(item: Download, mirror: str | None) -> str:
    """Where ``item`` is fetched from: its URL, or ``<mirror>/<name>`` (an http(s) URL or a local folder)."""
    if mirror is None:
        return item.url
    if mirror.startswith(("http://", "https://")):
        return mirror.rstrip("/") + "/" + urllib.request.quote(item.name)
    return str(Path(mirror) / item.name)


def fetch(item: Download, dest: Path, source: str | None = None, *, mirror_dir: Path | None = None,
          progress: bool = True, timeout: float = TIMEOUT_S, retries: int = RETRIES) -> FileResult:
    """Fetch ``item`` to ``dest`` through ``dest.part``; rename only once size and hashes check out.

    ``source`` is an http(s) URL (default ``item.url``) or a local file (a
    mirror folder's copy; ``mirror_dir`` names that folder in errors). A
    ``.part`` left by an interrupted run is resumed. Raises GdraeError.
    """
    source = source or item.url
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GdraeError(f"{dest.parent}: expected a writable folder for {item.name}, got {e.strerror}") from None
    hashes, notes = _Hashes(), []
    if part.exists() and item.size is not None and part.stat().st_size > item.size:
        part.unlink()  # longer than the published file: not a prefix of it
    if part.exists():
        _hash_file(part, hashes)
    resumed_from = hashes.count
    with tqdm(total=item.size, initial=hashes.count, unit="B", unit_scale=True, unit_divisor=1024,
              desc=_short(item.name), disable=not progress, leave=False) as bar:
        if source.startswith(("http://", "https://")):
            _fetch_http(item, source, part, hashes, bar, notes, timeout, retries)
        else:
            _copy_local(item, Path(source), mirror_dir or Path(source).parent, part, hashes, bar, notes)
    sha256, md5 = hashes.sha256.hexdigest(), hashes.md5.hexdigest()
    problem = _mismatch(item, hashes.count, sha256, md5)
    if problem is not None:
        part.unlink(missing_ok=True)
        raise GdraeError(f"{item.name}: {problem} (from {source}); the download was removed")
    os.replace(part, dest)
    resumed = resumed_from > 0 and not hashes.restarted
    if resumed:
        notes.append(f"resumed from byte {resumed_from:,} left by an earlier run")
    return FileResult(name=item.name, path=dest, status="resumed" if resumed else "downloaded", bytes=hashes.count,
                      fetched=hashes.count - (resumed_from if resumed else 0), sha256=sha256, md5=md5,
                      checked=_checked(item), first_use=_first_use(item), notes=notes)


_RESTART = "restarted from the first byte"


def _fetch_http(item: Download, url: str, part: Path, hashes: _Hashes, bar: tqdm, notes: list[str],
                timeout: float, retries: int) -> None:
    """Transfer ``url`` into ``part`` (appending to what it holds), resuming after interruptions."""
    tries, failures, best = 0, 0, hashes.count
    while True:
        tries += 1
        try:
            _http_attempt(item, url, part, hashes, bar, notes, timeout)
            return
        except _Interrupted as e:
            if hashes.count > best:  # progress: the count of failures starts again
                best, failures = hashes.count, 0
            failures += 1
            if failures > retries:
                raise GdraeError(f"{url}: truncated transfer of {item.name}: {e} (gave up after {tries} "
                                 f"{'try' if tries == 1 else 'tries'}); "
                                 f"{_kept(part, hashes)}") from None
            notes.append(f"interrupted ({e}): trying again from byte {hashes.count:,}")
            time.sleep(RETRY_WAIT_S)


def _kept(part: Path, hashes: _Hashes) -> str:
    """What is left of a failed transfer, in words (an empty partial file is removed)."""
    if hashes.count and part.exists():
        return f"the {hashes.count:,} bytes received are kept in {part} and the next run resumes from there"
    if part.exists() and part.stat().st_size == 0:
        part.unlink()
    return "nothing was kept"


def _http_attempt(item: Download, url: str, part: Path, hashes: _Hashes, bar: tqdm, notes: list[str],
                  timeout: float) -> None:
    offset = hashes.count
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:  # nothing left to send from offset: maybe complete, else start over
            total = _content_range_total(e.headers.get("Content-Range"))
            if total == offset:
                return
            _restart(part, hashes, bar, notes, "the server refused the range of the partial download")
            raise _Interrupted("range refused") from None
        raise GdraeError(f"{url}: HTTP {e.code} {e.reason}: expected the file {item.name}; "
                         f"{_kept(part, hashes)}") from None
    except urllib.error.URLError as e:
        reason = getattr(e, "reason", e)
        if isinstance(reason, TimeoutError):
            reason = f"no answer within {timeout:g} s"
        raise GdraeError(f"{url}: server unreachable ({_reason(reason)}) while fetching {item.name}; "
                         f"{_kept(part, hashes)}") from None
    except TimeoutError:
        raise _Interrupted(f"no answer within {timeout:g} s") from None
    except (ConnectionError, HTTPException) as e:
        raise _Interrupted(_reason(e)) from None
    with response:
        if offset and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                _restart(part, hashes, bar, notes, f"the server answered the range request from byte {start}")
                raise _Interrupted("range answered from another byte")
        elif offset:
            _restart(part, hashes, bar, notes, "the server does not resume (no Range support)")
            offset = 0
        length = response.headers.get("Content-Length")
        expected = offset + int(length) if length is not None and length.isdigit() else None
        if item.size is not None and expected is not None and expected != item.size:
            part.unlink(missing_ok=True)
            raise GdraeError(f"{url}: size mismatch for {item.name}: expected {item.size} bytes, the server "
                             f"offers {expected}; nothing was kept")
        total = item.size if item.size is not None else expected
        if total is not None:
            bar.total = total
            _require_room(part, total - offset, item.name)
        try:
            out = _open_part(part, "ab" if offset else "wb")
        except OSError as e:
            raise _disk_error(e, part, item.name) from None
        with out:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except TimeoutError:
                    raise _Interrupted(f"no data for {timeout:g} s after byte {hashes.count:,}") from None
                except (ConnectionError, HTTPException, OSError) as e:
                    raise _Interrupted(f"{_reason(e)} after byte {hashes.count:,}") from None
                if not chunk:
                    break
                _write(out, chunk, part, item.name, hashes.count)
                hashes.update(chunk)
                bar.update(len(chunk))
    if total is not None and hashes.count < total:
        raise _Interrupted(f"the connection closed after {hashes.count:,} of {total:,} bytes")


def _restart(part: Path, hashes: _Hashes, bar: tqdm, notes: list[str], why: str) -> None:
    part.unlink(missing_ok=True)
    hashes.reset()
    hashes.restarted = True
    bar.reset(total=bar.total)
    notes.append(f"{why}: {_RESTART}")


def _content_range_start(value: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value or "")
    return int(match.group(1)) if match else None


def _content_range_total(value: str | None) -> int | None:
    match = re.fullmatch(r"\s*bytes\s+(?:\*|\d+-\d+)/(\d+)\s*", value or "")
    return int(match.group(1)) if match else None


def _copy_local(item: Download, src: Path, mirror_dir: Path, part: Path, hashes: _Hashes, bar: tqdm,
                notes: list[str]) -> None:
    """Copy a mirror folder's file into ``part``, resuming from what ``part`` holds."""
    if not mirror_dir.is_dir():
        raise GdraeError(f"{mirror_dir}: mirror folder not found: expected a folder holding {item.name}")
    if not src.is_file():
        raise GdraeError(f"{src}: mirror folder {mirror_dir} has no file {item.name}")
    size = src.stat().st_size
    if item.size is not None and size != item.size:
        raise GdraeError(f"{src}: size mismatch for {item.name}: expected {item.size} bytes, got {size}; "
                         "nothing was copied")
    if hashes.count > size:
        _restart(part, hashes, bar, notes, "the partial copy is longer than the mirror's file")
    bar.total = size
    _require_room(part, size - hashes.count, item.name)
    try:
        source = open(src, "rb")
    except OSError as e:
        raise GdraeError(f"{src}: expected a readable file, got {e.strerror}") from None
    try:
        out = _open_part(part, "ab" if hashes.count else "wb")
    except OSError as e:
        source.close()
        raise _disk_error(e, part, item.name) from None
    with source, out:
        source.seek(hashes.count)
        while chunk := source.read(CHUNK):
            _write(out, chunk, part, item.name, hashes.count)
            hashes.update(chunk)
            bar.update(len(chunk))


def _open_part(path: Path, mode: str) -> BinaryIO:
    """Open the partial download unbuffered, so a full disk fails in write, never later in close
    (also a seam for tests of a filling disk)."""
    return open(path, mode, buffering=0)


def _write(out: BinaryIO, chunk: bytes, part: Path, name: str, offset: int) -> None:
    """Write all of ``chunk`` (an unbuffered write may take part of it); a full disk is a GdraeError."""
    view, done = memoryview(chunk), 0
    try:
        while done < len(view):
            written = out.write(view[done:])
            done += len(view) - done if written is None else written
    except OSError as e:
        raise _disk_error(e, part, name, offset + done) from None


def _disk_error(e: OSError, part: Path, name: str, offset: int | None = None) -> GdraeError:
    if e.errno in _FULL:
        kept = f"the first {offset:,} bytes are kept in it; free space and run again to resume" if offset else \
            "free space and run again"
        return GdraeError(f"{part}: no space left on device while writing {name}; {kept}")
    return GdraeError(f"{part}: expected a writable file for {name}, got {e.strerror or e}")


def _require_room(part: Path, need: int, name: str) -> None:
    free = _free_bytes(part.parent)
    if free is not None and need > free:
        raise GdraeError(f"{part.parent}: expected room for {need:,} more bytes of {name}, got {free:,} free; "
                         "free space or pass another --raw-dir")


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _short(text: str, limit: int = 32) -> str:
    """A progress bar label: long file names keep their start and end."""
    return text if len(text) <= limit else f"{text[:limit // 2 - 1]}..{text[-(limit // 2 - 1):]}"


def _reason(e: object) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def _hash_file(path: Path, hashes: _Hashes, progress: bool = False, desc: str = "") -> None:
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=_short(desc), disable=not progress, leave=False) as bar:
        while chunk := f.read(CHUNK):
            hashes.update(chunk)
            bar.update(len(chunk))


def _mismatch(item: Download, size: int, sha256: str, md5: str) -> str | None:
    """The first way the bytes differ from the manifest (giving both values), or None."""
    if item.size is not None and size != item.size:
        return f"size mismatch: expected {item.size} bytes, got {size}"
    if item.sha256 is not None and sha256 != item.sha256:
        return f"sha256 mismatch: expected {item.sha256}, got {sha256}"
    if item.md5 is not None and md5 != item.md5:
        return f"md5 mismatch: expected {item.md5}, got {md5}"
    return None


def _first_use(item: Download) -> bool:
    """No published hash: the file's sha256 is taken on trust the first time."""
    return item.sha256 is None and item.md5 is None


def _checked(item: Download) -> str:
    """How a file that passed :func:`_mismatch` was verified, in words."""
    checks = [k for k, v in (("size", item.size), ("sha256", item.sha256), ("md5", item.md5)) if v is not None]
    if _first_use(item):
        return "no published hash to check: trust on first use" + (" (size matches)" if checks else "")
    return " and ".join(checks) + (" match" if len(checks) > 1 else " matches") + " the manifest"


# --------------------------------------------------------------------------- unpacking


def _outputs_present(item: Download, raw_dir: Path) -> bool:
    target = raw_dir / item.target
    if item.unpack != "untar":
        return target.is_file()
    if not target.is_dir():
        return False
    pattern = PurePosixPath(item.members).name
    found = sum(1 for p in target.iterdir() if fnmatch.fnmatchcase(p.name, pattern))
    return found >= (item.count or 1)


def unpack(item: Download, archive: Path, raw_dir: Path, verified: bool) -> list[Path]:
    """Unpack ``archive`` into the raw layout; a GdraeError if it does not give the expected files.

    Outputs go to temporary names first and are renamed one by one, so no
    partial file ever stands under a final name. An archive that fails and was
    not verified against a published hash is removed (the next run fetches it
    anew); a verified one is kept, since fetching it again would not help.
    """
    try:
        if item.unpack == "gunzip":
            return [_gunzip(archive, raw_dir / item.target)]
        return _untar(item, archive, raw_dir / item.target)
    except _BadArchive as e:
        if verified:
            advice = "it matches the manifest's hash, so the manifest's unpack entry must be wrong"
        else:
            archive.unlink(missing_ok=True)
            advice = "the archive was removed; run the command again to fetch it anew"
        raise GdraeError(f"{archive}: {e}; {advice}") from None


class _BadArchive(Exception):
    """An archive that does not unpack to the expected files."""


@contextmanager
def _unpack_errors(archive: Path, dest: Path, expected: str, damaged: tuple[type[BaseException], ...]):
    """Turn what unpacking ``archive`` into ``dest`` may raise into _BadArchive (the archive's fault)
    or a one-line GdraeError (the disk's): ``expected`` says what the archive should have held."""
    try:
        yield
    except damaged as e:
        raise _BadArchive(f"expected {expected}, got a damaged one ({e})") from None
    except OSError as e:
        if e.errno in _FULL:
            raise GdraeError(f"{dest}: no space left on device while unpacking {archive.name}; free space "
                             "and run again (the archive is kept)") from None
        if e.filename is None or Path(e.filename) == archive:
            raise _BadArchive(f"expected {expected}, got {e}") from None
        raise GdraeError(f"{e.filename}: expected a writable file, got {e.strerror or e}") from None


def _gunzip(archive: Path, out: Path) -> Path:
    tmp = out.with_name(out.name + ".unpacking")
    try:
        with _unpack_errors(archive, out.parent, f"a gzip file that unpacks to {out.name}",
                            (EOFError, zlib.error, gzip.BadGzipFile)):
            out.parent.mkdir(parents=True, exist_ok=True)
            with gzip.open(archive, "rb") as src, open(tmp, "wb") as dst:
                while chunk := src.read(CHUNK):
                    dst.write(chunk)
            os.replace(tmp, out)
            return out
    finally:
        tmp.unlink(missing_ok=True)


def _untar(item: Download, archive: Path, folder: Path) -> list[Path]:
    tmp = folder.parent / f".{folder.name}.unpacking"
    shutil.rmtree(tmp, ignore_errors=True)
    taken: dict[str, Path] = {}
    try:
        with _unpack_errors(archive, folder.parent, f"a tar archive holding {item.members}",
                            (tarfile.TarError, EOFError, zlib.error)):
            tmp.mkdir(parents=True)
            with tarfile.open(archive, "r:*") as tar:
                for member in tar:
                    name = member.name
                    while name.startswith("./"):
                        name = name[2:]
                    if not fnmatch.fnmatchcase(name, item.members):
                        continue
                    _check_member(member, name, tmp)
                    base = PurePosixPath(name).name
                    if base in taken:
                        raise _BadArchive(f"expected one member named {base}, got two matching {item.members}")
                    src = tar.extractfile(member)
                    with src, open(tmp / base, "wb") as dst:
                        while chunk := src.read(CHUNK):
                            dst.write(chunk)
                    taken[base] = tmp / base
            if not taken or (item.count is not None and len(taken) != item.count):
                want = f"{item.count}" if item.count is not None else "at least one"
                raise _BadArchive(f"expected {want} members matching {item.members}, got {len(taken)}")
            folder.mkdir(parents=True, exist_ok=True)
            outputs = []
            for base in sorted(taken):
                os.replace(taken[base], folder / base)
                outputs.append(folder / base)
            return outputs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_member(member: tarfile.TarInfo, name: str, dest: Path) -> None:
    """Refuse links, devices, absolute paths and '..' members (tarfile's "data" filter where available)."""
    if PurePosixPath(member.name).is_absolute() or ".." in PurePosixPath(member.name).parts:
        raise _BadArchive(f"unsafe member {member.name!r}: expected a relative path inside the archive")
    if not member.isfile():
        raise _BadArchive(f"member {name}: expected a regular file, got a link, folder or device")
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is not None:
        try:
            data_filter(member, str(dest))
        except tarfile.FilterError as e:
            raise _BadArchive(f"unsafe member {member.name!r}: {e}") from None


# --------------------------------------------------------------------------- a whole dataset


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
        home = dataset_home(raw_dir, item.target)
        record = read_record(home)
        result = _one(item, raw_dir, home, record.get(item.name), mirror, mirror_dir, progress, timeout, retries)
        results.append(result)
        if on_file is not None:
            on_file(result)
    return DownloadSummary(dataset=manifest.dataset, files=results, seconds=time.perf_counter() - start,
                           record=dataset_home(raw_dir, manifest.files[0].target) / RECORD)


def _one(item: Download, raw_dir: Path, home: Path, recorded: dict | None, mirror: str | None,
         mirror_dir: Path | None, progress: bool, timeout: float, retries: int) -> FileResult:
    target = raw_dir / item.target
    source = source_of(item, mirror)
    if item.unpack == "none":
        if target.exists():
            return _present(item, target, recorded, progress)
        result = fetch(item, target, source, mirror_dir=mirror_dir, progress=progress, timeout=timeout,
                       retries=retries)
        _remember(home, raw_dir, item, result, source, archive=None, outputs=[target])
        return result
    if _outputs_present(item, raw_dir):
        return _unpacked_present(item, raw_dir, target, recorded, progress)
    archive = home / ARCHIVES / item.name
    if archive.exists():
        result = _present(item, archive, recorded, progress)
        source = (recorded or {}).get("url")
    else:
        result = fetch(item, archive, source, mirror_dir=mirror_dir, progress=progress, timeout=timeout,
                       retries=retries)
    outputs = unpack(item, archive, raw_dir, verified=not _first_use(item))
    where = target if item.unpack == "untar" else target.parent
    result.notes.append(f"unpacked {len(outputs)} file(s) into {where}")
    if result.status == "present":
        result.status = "unpacked"
    _remember(home, raw_dir, item, result, source, archive=archive, outputs=outputs)
    return result


def _present(item: Download, path: Path, recorded: dict | None, progress: bool) -> FileResult:
    """A file already in place: checked against the manifest, else against its first-use record."""
    hashes = _Hashes()
    _hash_file(path, hashes, progress, f"check {item.name}")
    sha256, md5 = hashes.sha256.hexdigest(), hashes.md5.hexdigest()
    problem = _mismatch(item, hashes.count, sha256, md5)
    if problem is not None:
        raise GdraeError(f"{path}: already present but {problem}; move it aside or remove it and run again to "
                         "fetch it")
    checked = _checked(item)
    if _first_use(item) and recorded and recorded.get("sha256"):
        if recorded["sha256"] != sha256:
            raise GdraeError(f"{path}: already present but sha256 mismatch with its first download: expected "
                             f"{recorded['sha256']} (recorded in {RECORD}), got {sha256}; move it aside or remove "
                             "it and run again to fetch it")
        checked = f"matches the sha256 recorded at its first download ({recorded.get('downloaded')})"
    elif _first_use(item):
        checked = "not fetched here and no published hash: not checked"
    return FileResult(name=item.name, path=path, status="present", bytes=hashes.count, fetched=0, sha256=sha256,
                      md5=md5, checked=checked, first_use=_first_use(item))


def _unpacked_present(item: Download, raw_dir: Path, target: Path, recorded: dict | None,
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
        hashes = _Hashes()
        _hash_file(path, hashes, progress, f"check {path.name}")
        if hashes.sha256.hexdigest() != output["sha256"]:
            raise GdraeError(f"{path}: sha256 mismatch with the file unpacked from {item.name}: expected "
                             f"{output['sha256']} (recorded in {RECORD}), got {hashes.sha256.hexdigest()}; "
                             "move it aside or remove it and run again")
    return FileResult(name=item.name, path=target, status="present", bytes=recorded.get("bytes") or 0, fetched=0,
                      sha256=recorded.get("sha256"), md5=recorded.get("md5"), first_use=_first_use(item),
                      checked=f"{len(outputs)} unpacked file(s) match the record of their download")


# --------------------------------------------------------------------------- the record and the cache's provenance


def dataset_home(raw_dir: Path, relpath: str) -> Path:
    """The dataset's folder under ``raw_dir``: the first component of a raw file's path."""
    return Path(raw_dir) / PurePosixPath(relpath).parts[0]


def read_record(home: Path) -> dict[str, dict]:
    """Published name -> what was fetched (``<home>/download.json``); empty when absent or unreadable."""
    try:
        data = json.loads((home / RECORD).read_text())
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return {k: v for k, v in files.items() if isinstance(v, dict)} if isinstance(files, dict) else {}


def _remember(home: Path, raw_dir: Path, item: Download, result: FileResult, source: str | None,
              archive: Path | None, outputs: list[Path]) -> None:
    """Write what was fetched (or found and unpacked) into ``<home>/download.json``, atomically."""
    record = read_record(home)
    previous = record.get(item.name, {}) if result.status == "unpacked" else {}
    record[item.name] = {
        "name": item.name, "url": source, "bytes": result.bytes, "sha256": result.sha256, "md5": result.md5,
        "checked": result.checked,
        "downloaded": previous.get("downloaded") or datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "archive": _rel(archive, raw_dir) if archive is not None else None,
        "outputs": [_output_entry(p, raw_dir) for p in outputs],
    }
    tmp = home / f".{RECORD}.tmp"
    try:
        home.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"version": 1, "files": record}, indent=1, sort_keys=True))
        os.replace(tmp, home / RECORD)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise GdraeError(f"{home / RECORD}: expected a writable file for the download record, got "
                         f"{e.strerror or e}") from None


def _output_entry(path: Path, raw_dir: Path) -> dict:
    hashes = _Hashes()
    _hash_file(path, hashes)
    return {"name": _rel(path, raw_dir), "bytes": hashes.count, "sha256": hashes.sha256.hexdigest()}


def _rel(path: Path, raw_dir: Path) -> str:
    return PurePosixPath(Path(path).relative_to(raw_dir)).as_posix()


def with_download_provenance(raw_dir: str | Path, sources: list[dict]) -> list[dict]:
    """``sources`` (name, bytes, sha256 of each raw file read) with what ``download`` recorded about them.

    A raw file that is itself a download gains its URL and how it was
    checked; files unpacked from an archive bring the archive's entry (name,
    bytes, sha256, URL, how it was checked). A record whose files differ from
    those read (replaced since) is left out.
    """
    raw_dir = Path(raw_dir)
    by_name = {s.get("name"): s for s in sources}
    homes = sorted({PurePosixPath(str(name)).parts[0] for name in by_name if name})
    out = [dict(s) for s in sources]
    index = {s.get("name"): s for s in out}
    for home in homes:
        for entry in read_record(raw_dir / home).values():
            outputs = entry.get("outputs") or []
            if not outputs or not all(
                    isinstance(o, dict) and o.get("name") in by_name and by_name[o["name"]].get("sha256") == o.get("sha256")
                    for o in outputs):
                continue
            about = {"url": entry.get("url"), "checked": entry.get("checked"), "downloaded": entry.get("downloaded")}
            if entry.get("archive") is None:
                index[outputs[0]["name"]].update(about)
            else:
                out.append({"name": entry["archive"], "bytes": entry.get("bytes"), "sha256": entry.get("sha256"),
                            **about, "unpacked_to": [o["name"] for o in outputs]})
    return out


def check_hand_placed(manifest: Manifest | None, raw_dir: str | Path, sources: list[dict]) -> tuple[list[dict], list[str]]:
    """Raw files compared with what ``manifest`` publishes of them (size, sha256, md5), however they got there.

    Returns ``sources`` with a ``published`` entry saying how each compared,
    and notes for the user: a file that differs from the published one (a
    different or damaged copy; the pipeline's own checks still apply), or
    one unpacked from an archive whose md5 is all that is published, when
    the archive is gone and no download record vouches for it.
    """
    raw_dir = Path(raw_dir)
    out = [dict(s) for s in sources]
    notes: list[str] = []
    for item in manifest.files if manifest is not None else ():
        if item.size is None and item.sha256 is None and item.md5 is None:
            continue  # nothing published: the sha256 in `sources` is the record (trust on first use)
        mine = [s for s in out if s.get("name") == item.target or str(s.get("name")).startswith(item.target + "/")]
        if not mine:
            continue
        home = dataset_home(raw_dir, item.target)
        checked = raw_dir / item.target if item.unpack == "none" else home / ARCHIVES / item.name
        if item.unpack != "none" and not checked.exists():
            recorded = read_record(home).get(item.name) or {}
            if {o.get("sha256") for o in recorded.get("outputs") or []} >= {s.get("sha256") for s in mine}:
                continue  # unpacked by `gdrae-data download` from a verified archive (its record says so)
            notes.append(f"{raw_dir / item.target}: not checked: what is published of it is the "
                         f"{'md5' if item.md5 else 'hash'} of the archive {item.name}, which is not in "
                         f"{home / ARCHIVES}")
            continue
        hashes = _Hashes()
        _hash_file(checked, hashes)
        problem = _mismatch(item, hashes.count, hashes.sha256.hexdigest(), hashes.md5.hexdigest())
        said = problem or _checked(item)
        for s in mine:
            s["published"] = said if item.unpack == "none" else f"unpacked from {item.name}, whose {said}"
        if problem is not None:
            notes.append(f"{checked}: {problem} of the published file: a different or damaged copy "
                         "(its contents passed the pipeline's checks)")
    return out, notes
