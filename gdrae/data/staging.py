"""The directories a cache passes through beside ``<name>.zarr``, and the ones an interrupted prepare leaves.

``gdrae-data prepare`` writes ``.<name>.zarr.tmp-<pid>-<hex>`` and renames it
to ``<name>.zarr`` once complete; replacing a cache where the two cannot be
swapped atomically first moves the old one to ``.<name>.zarr.old-<pid>-<hex>``.
The pid in the name says which process owns the directory: one whose process
is gone was left by a kill. A temporary one is then garbage
(:func:`remove_dead_temps`); an old one may be the only copy of a cache
(:func:`gdrae.data.cache.restore_replaced` renames it back).
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)
_STAGED = re.compile(r"\.(?P<dataset>.+)\.zarr\.(?P<kind>tmp|old)-(?P<pid>\d+)-[0-9a-f]+")


def staging_path(final: Path, kind: str) -> Path:
    """A new name beside the cache ``final`` for this process: ``.<name>.zarr.<kind>-<pid>-<hex>``."""
    return final.with_name(f".{final.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


@dataclass(frozen=True)
class Staged:
    """One staging directory: ``kind`` "tmp" (a cache being written) or "old" (a replaced cache)."""

    path: Path
    dataset: str
    kind: str
    pid: int

    @property
    def alive(self) -> bool:
        """Whether the process that made it is still running."""
        return pid_alive(self.pid)


def staged(cache_dir: str | Path, dataset: str | None = None) -> list[Staged]:
    """The staging directories in ``cache_dir`` (of ``dataset`` only, if given), by name."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    found = []
    for path in sorted(cache_dir.iterdir()):
        match = _STAGED.fullmatch(path.name)
        if match and path.is_dir() and dataset in (None, match["dataset"]):
            found.append(Staged(path, match["dataset"], match["kind"], int(match["pid"])))
    return found


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (where that cannot be asked, assume it does)."""
    if os.name != "posix":  # os.kill would terminate it
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_dead_temps(cache_dir: str | Path) -> list[Staged]:
    """Remove the temporary caches in ``cache_dir`` whose process is gone, saying so; those removed."""
    removed = []
    for s in staged(cache_dir):
        if s.kind == "tmp" and not s.alive:
            shutil.rmtree(s.path, ignore_errors=True)
            if not s.path.exists():
                log.warning(f"{s.path}: removed the temporary {s.dataset} cache of process {s.pid}, "
                            f"which is no longer running")
                removed.append(s)
    return removed
