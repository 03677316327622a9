"""The life cycle of a cache directory: written aside, swapped in, set aside, restored, cleaned up.

A cache lives at ``<cache_dir>/<name>.zarr`` (:func:`cache_path`). A new one
is written beside it under a temporary name and becomes ``<name>.zarr`` only
once complete (:func:`written_aside`): swapped with the earlier cache in one step
where the OS can, else after renaming the earlier one aside. Temporary and
set-aside directories are named ``.<name>.zarr.tmp-<host>-<pid>-<hex>`` and
``.<name>.zarr.old-<host>-<pid>-<hex>``: the host and process that own them.

One whose process is gone from this host was left by a kill: a temporary
one is garbage, a set-aside one may be the only copy of a cache.
:func:`tidy` removes the first and renames the newest whole one of the
second back; ``prepare`` and ``gdrae-data list`` call it. Another host's
directories are listed, never touched: whether their process still runs
cannot be asked from here (a cache folder on a file system several hosts
share). The reader renames nothing; :func:`restorable` tells it what
``gdrae-data list`` would restore.
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import shutil
import signal
import socket
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from gdrae.errors import GdraeError

# the host part is absent in names written before hosts were recorded: those are taken as this host's
_STAGED = re.compile(r"\.(?P<dataset>.+)\.zarr\.(?P<kind>tmp|old)-(?:(?P<host>.+)-)?(?P<pid>\d+)-[0-9a-f]+")


def cache_path(cache_dir: str | Path, name: str) -> Path:
    """Where the cache of dataset ``name`` lives: ``<cache_dir>/<name>.zarr``."""
    return Path(cache_dir) / f"{name}.zarr"


def dataset_name(path: str | Path) -> str:
    """The dataset name a cache path stands for (``cache/shapes2d.zarr`` -> ``shapes2d``)."""
    name = Path(path).name
    return name[: -len(".zarr")] if name.endswith(".zarr") else name


def this_host() -> str:
    """This host's name as staging names carry it (characters other than letters, digits, ``.``
    and ``-`` become ``_``)."""
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


def staging_path(final: Path, kind: str) -> Path:
    """A new name beside the cache ``final`` for this process: ``.<name>.zarr.<kind>-<host>-<pid>-<hex>``,
    ``kind`` being "tmp" (a cache being written) or "old" (a cache set aside)."""
    return final.with_name(f".{final.name}.{kind}-{this_host()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (where that cannot be asked, assume it does)."""
    if os.name != "posix":  # os.kill would terminate it
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


@dataclass(frozen=True)
class Staged:
    """One staging directory beside the caches: ``kind`` "tmp" (a cache being written) or "old"
    (a cache set aside), made by process ``pid`` of ``host`` (None: a name without a host, this host's)."""

    path: Path
    dataset: str
    kind: str
    host: str | None
    pid: int

    @property
    def here(self) -> bool:
        """Whether it belongs to this host, whose processes can be asked whether they run."""
        return self.host in (None, this_host())

    @property
    def dead(self) -> bool:
        """Whether its process is known to be gone: left by a kill (never so for another host's)."""
        return self.here and not pid_alive(self.pid)

    def describe(self) -> str:
        """What it is and what to do with it, in words (for ``gdrae-data list``)."""
        final = cache_path(self.path.parent, self.dataset).name
        keep = (f"remove it once {final} is good" if self.path.with_name(final).exists()
                else f"rename it to {final} to keep it")
        owner = f"process {self.pid} on host {self.host}"
        if not self.here and self.kind == "tmp":
            return f"a {self.dataset} cache being written by {owner}, or left by it (another host's: left alone)"
        if not self.here:
            return (f"an earlier {self.dataset} cache set aside by {owner} (another host's: left alone); "
                    f"if that prepare is over, {keep}")
        if self.kind == "tmp":
            return (f"a temporary {self.dataset} cache of process {self.pid}, which is gone; could not be removed"
                    if self.dead else f"a {self.dataset} cache being written by process {self.pid}")
        if not self.dead:
            return f"the earlier {self.dataset} cache, being replaced by process {self.pid}"
        return f"an earlier {self.dataset} cache set aside by an interrupted `prepare --force`; {keep}"


def staged(cache_dir: str | Path, dataset: str | None = None) -> list[Staged]:
    """The staging directories in ``cache_dir`` (of ``dataset`` only, if given), by name."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    found = []
    for path in sorted(cache_dir.iterdir()):
        match = _STAGED.fullmatch(path.name)
        if match and path.is_dir() and dataset in (None, match["dataset"]):
            found.append(Staged(path, match["dataset"], match["kind"], match["host"], int(match["pid"])))
    return found


# ----------------------------------------------------------------------------- restore and clean up


def restorable(final: str | Path) -> tuple[Path | None, list[Path]]:
    """The copy :func:`restore` would rename back to the missing cache ``final`` (or None), and the other
    set-aside copies of that dataset it would leave. Reads only.

    The candidates are this host's copies whose process is gone; the one
    taken is the newest (by its ``zarr.json``, written last) that opens as a
    valid cache.
    """
    final = Path(final)
    if final.exists():
        return None, []
    olds = [s for s in staged(final.parent, dataset_name(final)) if s.kind == "old"]
    whole = [s.path for s in olds if s.dead and _whole(s.path)]
    kept = max(whole, key=lambda p: (p / "zarr.json").stat().st_mtime_ns, default=None)
    return kept, [s.path for s in olds if s.path != kept]


def restore(final: str | Path) -> str | None:
    """Rename the copy :func:`restorable` names back to the missing cache ``final``; a line saying which
    copy it took and which it left, or None when there was none to restore."""
    final = Path(final)
    kept, left = restorable(final)
    if kept is None:
        return None
    try:
        os.rename(kept, final)
    except OSError as exc:
        if final.exists() and not kept.exists():  # another process restored it first
            return None
        raise GdraeError(f"{kept}: expected to rename this earlier cache back to {final}, got "
                         f"{type(exc).__name__}: {exc}; rename it yourself") from exc
    others = f"; left {', '.join(p.name for p in left)}" if left else ""
    return (f"{final}: restored from {kept.name}, where an interrupted `gdrae-data prepare --force` "
            f"had set it aside{others}")


def tidy(cache_dir: str | Path, dataset: str | None = None) -> list[str]:
    """Remove this host's temporary caches in ``cache_dir`` whose process is gone, and restore each
    missing cache (of ``dataset`` only, if given) that has a set-aside copy; a line per thing done."""
    done = []
    for s in staged(cache_dir):
        if s.kind == "tmp" and s.dead:
            shutil.rmtree(s.path, ignore_errors=True)
            if not s.path.exists():
                done.append(f"{s.path}: removed the temporary {s.dataset} cache of process {s.pid}, "
                            f"which is no longer running")
    for name in sorted({s.dataset for s in staged(cache_dir, dataset) if s.kind == "old"}):
        line = restore(cache_path(cache_dir, name))
        if line is not None:
            done.append(line)
    return done


def _whole(path: Path) -> bool:
    """Whether ``path`` opens as a valid cache (a copy whose removal was interrupted does not)."""
    from gdrae.data.cache import open_cache  # deferred: gdrae.data.cache imports this module

    try:
        open_cache(path)
    except GdraeError:
        return False
    return True


# ----------------------------------------------------------------------------- write and swap in


@contextmanager
def written_aside(final: Path) -> Iterator[Path]:
    """A temporary directory name beside the cache ``final`` to write a new cache under; when the block
    ends, the cache written there becomes ``final``.

    An existing ``final`` is replaced only then. If the block raises or is
    interrupted (Ctrl-C; SIGTERM too, in the main thread), the temporary
    directory is removed and ``final`` is left as it was.
    """
    tmp = staging_path(final, "tmp")
    try:
        with _sigterm_raises():
            final.parent.mkdir(parents=True, exist_ok=True)
            yield tmp
            _swap_in(tmp, final)
    except BaseException:
        _remove_tree(tmp)
        raise


def _swap_in(tmp: Path, final: Path) -> None:
    """Move the complete cache ``tmp`` to ``final``, replacing an existing one.

    Where the OS can, the two are swapped in one step and the old cache,
    now under the temporary name, is removed. Otherwise the old cache is
    renamed aside first: a kill before the second rename leaves it alone
    under a set-aside name, which :func:`tidy` renames back.
    """
    if not final.exists():
        os.rename(tmp, final)
        return
    if _exchange(tmp, final):
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = staging_path(final, "old")
    os.rename(final, old)
    try:
        os.rename(tmp, final)
    except BaseException:
        os.rename(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the OS or the file
    system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)  # glibc 2.28+
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # not supported here
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _remove_tree(path: Path, settle_s: float = 0.2, limit_s: float = 5.0) -> None:
    """Remove ``path`` and make sure it stays gone for ``settle_s``: after an interruption zarr's
    I/O thread may still be finishing a write into it."""
    deadline = time.monotonic() + limit_s
    absent_since = None
    while time.monotonic() < deadline:
        now = time.monotonic()
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
            absent_since = None
        elif absent_since is None:
            absent_since = now
        elif now - absent_since >= settle_s:
            return
        time.sleep(0.02)


@contextmanager
def _sigterm_raises():
    """Turn SIGTERM into KeyboardInterrupt while writing, so cleanup runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
