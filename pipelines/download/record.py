"""The download record (``<dataset folder>/download.json``) and what prepare learns from it.

What was fetched, from where and with which hashes is written, atomically,
to ``<dataset folder>/download.json``; ``prepare`` copies it into the cache's
``source`` attributes (:func:`with_download_provenance`), so a hash no
public source confirms (trust on first use) stays on record, and compares
every raw file with what is published of it (:func:`check_hand_placed`).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from gdrae.atomic import write_atomic
from gdrae.errors import GdraeError
from pipelines.base import RawFile
from pipelines.download.fetch import FileResult, Hashes, hash_file, how_checked, mismatch

RECORD = "download.json"  # per dataset folder: what was fetched, from where, with which hashes


ARCHIVES = "downloads"  # per dataset folder: archives kept after unpacking


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


def remember(home: Path, raw_dir: Path, item: RawFile, result: FileResult, source: str | None,
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
    try:
        home.mkdir(parents=True, exist_ok=True)
        write_atomic(home / RECORD, json.dumps({"version": 1, "files": record}, indent=1, sort_keys=True))
    except OSError as e:
        raise GdraeError(f"{home / RECORD}: expected a writable file for the download record, got "
                         f"{e.strerror or e}") from None


def _output_entry(path: Path, raw_dir: Path) -> dict:
    hashes = Hashes()
    hash_file(path, hashes)
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


def check_hand_placed(raw_files: tuple[RawFile, ...], raw_dir: str | Path,
                      sources: list[dict]) -> tuple[list[dict], list[str]]:
    """Raw files compared with what is published of them (size, sha256, md5), however they got there.

    Returns ``sources`` with a ``published`` entry saying how each compared,
    and notes for the user: a file that differs from the published one (a
    different or damaged copy; the pipeline's own checks still apply), or
    one unpacked from an archive whose md5 is all that is published, when
    the archive is gone and no download record vouches for it.
    """
    raw_dir = Path(raw_dir)
    out = [dict(s) for s in sources]
    notes: list[str] = []
    for item in raw_files:
        if item.size is None and item.sha256 is None and item.md5 is None:
            continue  # nothing published: the sha256 in `sources` is the record (trust on first use)
        mine = [s for s in out if s.get("name") == item.relpath or str(s.get("name")).startswith(item.relpath + "/")]
        if not mine:
            continue
        home = dataset_home(raw_dir, item.relpath)
        checked = raw_dir / item.relpath if item.unpack == "none" else home / ARCHIVES / item.name
        if item.unpack != "none" and not checked.exists():
            recorded = read_record(home).get(item.name) or {}
            if {o.get("sha256") for o in recorded.get("outputs") or []} >= {s.get("sha256") for s in mine}:
                continue  # unpacked by `gdrae-data download` from a verified archive (its record says so)
            notes.append(f"{raw_dir / item.relpath}: not checked: what is published of it is the "
                         f"{'md5' if item.md5 else 'hash'} of the archive {item.name}, which is not in "
                         f"{home / ARCHIVES}")
            continue
        if item.size is not None and checked.stat().st_size != item.size:  # no need to read it to know
            problem = mismatch(item, checked.stat().st_size, "", "")
        else:
            hashes = Hashes()
            hash_file(checked, hashes)
            problem = mismatch(item, hashes.count, hashes.sha256.hexdigest(), hashes.md5.hexdigest())
        said = problem or how_checked(item)
        for s in mine:
            s["published"] = said if item.unpack == "none" else f"unpacked from {item.name}, whose {said}"
        if problem is not None:
            notes.append(f"{checked}: {problem} of the published file: a different or damaged copy "
                         "(its contents passed the pipeline's checks)")
    return out, notes
