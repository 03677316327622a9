"""A disk that fills up, for tests: files opened for writing in chosen places take a few bytes, then fail.

``fill_disk(monkeypatch, path, ...)`` patches ``open``: a file opened for
writing at or under one of the paths (a file's own temporary names from
gdrae.atomic included) is a real file whose system-level writes take
``room`` bytes, then fail with ENOSPC, as on a full disk. Python's own
buffering and text layers sit above it as they do above a real file, so
what the code under test does with that error (a buffer flushed again at
close; torch's zip writer turning it into a RuntimeError of its own) is the
real behaviour.
"""
import builtins
import errno
import io
import os
from pathlib import Path


class FullDiskFile(io.RawIOBase):
    """A real unbuffered file (io.FileIO) whose writes take ``room`` more bytes, then raise ENOSPC."""

    def __init__(self, file: io.FileIO, room: int):
        self.file, self.room = file, room

    def write(self, data) -> int:
        if self.room == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = self.file.write(memoryview(data).cast("B")[: self.room])  # a short write, as a disk's last bytes
        self.room -= written
        return written

    def readinto(self, buffer) -> int:
        return self.file.readinto(buffer)

    def close(self) -> None:
        self.file.close()
        super().close()

    def __getattr__(self, name):  # name, mode (io.RawIOBase has the methods below, so they are spelled out)
        return getattr(self.file, name)

    def seek(self, offset, whence=os.SEEK_SET):
        return self.file.seek(offset, whence)

    def tell(self):
        return self.file.tell()

    def truncate(self, size=None):
        return self.file.truncate(size)

    def fileno(self):
        return self.file.fileno()

    def readable(self):
        return self.file.readable()

    def writable(self):
        return self.file.writable()

    def seekable(self):
        return self.file.seekable()


def _hit(path: Path, place: Path) -> bool:
    """``path`` is ``place``, lies under it, or is one of its temporary names (``.<name>.*`` beside it)."""
    return path == place or place in path.parents or (
        path.parent == place.parent and path.name.startswith(f".{place.name}."))


def fill_disk(monkeypatch, *places: Path, room: int = 0) -> None:
    """From now on a file opened for writing at or under ``places`` takes ``room`` bytes, then fails with ENOSPC."""
    real_open = builtins.open
    places = [Path(os.path.abspath(p)) for p in places]

    def open_(file, mode="r", buffering=-1, encoding=None, errors=None, newline=None, *args, **kwargs):
        if not (isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+")
                and any(_hit(Path(os.path.abspath(file)), place) for place in places)):
            return real_open(file, mode, buffering, encoding, errors, newline, *args, **kwargs)
        raw = FullDiskFile(io.FileIO(file, mode.replace("b", "").replace("t", "")), room)
        if buffering == 0:
            return raw
        buffered = (io.BufferedRandom if "+" in mode else io.BufferedWriter)(raw)
        return buffered if "b" in mode else io.TextIOWrapper(buffered, encoding or "utf-8", errors, newline)

    monkeypatch.setattr(builtins, "open", open_)
