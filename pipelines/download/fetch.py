"""Fetching one file: resumed, retried, hashed while written, renamed only once it checks out.

:func:`fetch` streams a file into ``<final>.part`` beside its final name,
hashing while it writes, and renames it only once size and hashes match
what is published. An interrupted transfer resumes with an HTTP ``Range``
request where the server allows it and restarts cleanly where it does not;
a ``.part`` left by an earlier run is resumed the same way. A mirror folder's
copy is read the same way. Only the standard library speaks HTTP (urllib).
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from gdrae.errors import GdraeError
from pipelines.base import RawFile

CHUNK = 1 << 20  # bytes per read/write


TIMEOUT_S = 60.0  # per socket operation (connect, each read)


RETRIES = 3  # further attempts after an interrupted transfer that made no progress


RETRY_WAIT_S = 1.0  # pause before each further attempt


USER_AGENT = "gdrae-data (python urllib)"


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


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


class Hashes:
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


def source_of(item: RawFile, mirror: str | None) -> str:
    """Where ``item`` is fetched from: its URL, or ``<mirror>/<name>`` (an http(s) URL or a local folder)."""
    if mirror is None:
        return item.url
    if mirror.startswith(("http://", "https://")):
        return mirror.rstrip("/") + "/" + urllib.request.quote(item.name)
    return str(Path(mirror) / item.name)


def fetch(item: RawFile, dest: Path, source: str | None = None, *, mirror_dir: Path | None = None,
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
    hashes, notes = Hashes(), []
    if part.exists() and item.size is not None and part.stat().st_size > item.size:
        part.unlink()  # longer than the published file: not a prefix of it
    if part.exists():
        hash_file(part, hashes)
    resumed_from = hashes.count
    with tqdm(total=item.size, initial=hashes.count, unit="B", unit_scale=True, unit_divisor=1024,
              desc=short_label(item.name), disable=not progress, leave=False) as bar:
        if source.startswith(("http://", "https://")):
            _fetch_http(item, source, part, hashes, bar, notes, timeout, retries)
        else:
            _copy_local(item, Path(source), mirror_dir or Path(source).parent, part, hashes, bar, notes)
    sha256, md5 = hashes.sha256.hexdigest(), hashes.md5.hexdigest()
    problem = mismatch(item, hashes.count, sha256, md5)
    if problem is not None:
        part.unlink(missing_ok=True)
        raise GdraeError(f"{item.name}: {problem} (from {source}); the download was removed")
    os.replace(part, dest)
    resumed = resumed_from > 0 and not hashes.restarted
    if resumed:
        notes.append(f"resumed from byte {resumed_from:,} left by an earlier run")
    return FileResult(name=item.name, path=dest, status="resumed" if resumed else "downloaded", bytes=hashes.count,
                      fetched=hashes.count - (resumed_from if resumed else 0), sha256=sha256, md5=md5,
                      checked=how_checked(item), first_use=first_use(item), notes=notes)


_RESTART = "restarted from the first byte"


def _fetch_http(item: RawFile, url: str, part: Path, hashes: Hashes, bar: tqdm, notes: list[str],
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


def _kept(part: Path, hashes: Hashes) -> str:
    """What is left of a failed transfer, in words (an empty partial file is removed)."""
    if hashes.count and part.exists():
        return f"the {hashes.count:,} bytes received are kept in {part} and the next run resumes from there"
    if part.exists() and part.stat().st_size == 0:
        part.unlink()
    return "nothing was kept"


def _http_attempt(item: RawFile, url: str, part: Path, hashes: Hashes, bar: tqdm, notes: list[str],
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


def _restart(part: Path, hashes: Hashes, bar: tqdm, notes: list[str], why: str) -> None:
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


def _copy_local(item: RawFile, src: Path, mirror_dir: Path, part: Path, hashes: Hashes, bar: tqdm,
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
    if e.errno in DISK_FULL:
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


def short_label(text: str, limit: int = 32) -> str:
    """A progress bar label: long file names keep their start and end."""
    return text if len(text) <= limit else f"{text[:limit // 2 - 1]}..{text[-(limit // 2 - 1):]}"


def _reason(e: object) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def hash_file(path: Path, hashes: Hashes, progress: bool = False, desc: str = "") -> None:
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=short_label(desc), disable=not progress, leave=False) as bar:
        while chunk := f.read(CHUNK):
            hashes.update(chunk)
            bar.update(len(chunk))


def mismatch(item: RawFile, size: int, sha256: str, md5: str) -> str | None:
    """The first way the bytes differ from the manifest (giving both values), or None."""
    if item.size is not None and size != item.size:
        return f"size mismatch: expected {item.size} bytes, got {size}"
    if item.sha256 is not None and sha256 != item.sha256:
        return f"sha256 mismatch: expected {item.sha256}, got {sha256}"
    if item.md5 is not None and md5 != item.md5:
        return f"md5 mismatch: expected {item.md5}, got {md5}"
    return None


def first_use(item: RawFile) -> bool:
    """No published hash: the file's sha256 is taken on trust the first time."""
    return item.sha256 is None and item.md5 is None


def how_checked(item: RawFile) -> str:
    """How a file that passed :func:`mismatch` was verified, in words."""
    checks = [k for k, v in (("size", item.size), ("sha256", item.sha256), ("md5", item.md5)) if v is not None]
    if first_use(item):
        return "no published hash to check: trust on first use" + (" (size matches)" if checks else "")
    return " and ".join(checks) + (" match" if len(checks) > 1 else " matches") + " the manifest"
