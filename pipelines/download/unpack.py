"""Unpacking a fetched archive into the raw layout: gunzip, or the matching members of a tar (safe ones only).

Outputs go to temporary names first and are renamed one by one, so no
partial file ever stands under a final name.
"""
from __future__ import annotations

import fnmatch
import gzip
import os
import shutil
import tarfile
import zlib
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from gdrae.errors import GdraeError
from pipelines.base import RawFile
from pipelines.download.fetch import CHUNK, DISK_FULL

def outputs_present(item: RawFile, raw_dir: Path) -> bool:
    target = raw_dir / item.relpath
    if item.unpack != "untar":
        return target.is_file()
    if not target.is_dir():
        return False
    pattern = PurePosixPath(item.members).name
    found = sum(1 for p in target.iterdir() if fnmatch.fnmatchcase(p.name, pattern))
    return found >= (item.count or 1)


def unpack(item: RawFile, archive: Path, raw_dir: Path, verified: bool) -> list[Path]:
    """Unpack ``archive`` into the raw layout; a GdraeError if it does not give the expected files.

    Outputs go to temporary names first and are renamed one by one, so no
    partial file ever stands under a final name. An archive that fails and was
    not verified against a published hash is removed (the next run fetches it
    anew); a verified one is kept, since fetching it again would not help.
    """
    try:
        if item.unpack == "gunzip":
            return [_gunzip(archive, raw_dir / item.relpath)]
        return _untar(item, archive, raw_dir / item.relpath)
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
        if e.errno in DISK_FULL:
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


def _untar(item: RawFile, archive: Path, folder: Path) -> list[Path]:
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
