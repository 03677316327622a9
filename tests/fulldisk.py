"""A disk that fills up, for tests: files opened for writing in chosen places take a few bytes, then fail.

``fill_disk(monkeypatch, path, ...)`` patches ``open``: a file opened for
writing at or under one of the paths (a file's own temporary names from
gdrae.atomic included) is the real file, whose writes fail with ENOSPC once
``room`` bytes are written, after writing the part that fits, as on a full
disk. What the code does with that error (torch's zip writer turns it into a
RuntimeError of its own) is then the real behaviour.
"""
import builtins
import errno
import os
from pathlib import Path


class FullFile:
    """A real open file that takes ``room`` more bytes (characters, in text mode), then raises ENOSPC."""

    def __init__(self, file, room: int):
        self.file, self.room = file, room

    def write(self, data):
        size = len(data) if isinstance(data, str) else memoryview(data).nbytes
        if size > self.room:
            self.file.write(data[: self.room] if isinstance(data, str) else memoryview(data).cast("B")[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= size
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def _hit(path: Path, place: Path) -> bool:
    """``path`` is ``place``, lies under it, or is one of its temporary names (``.<name>.*`` beside it)."""
    return path == place or place in path.parents or (
        path.parent == place.parent and path.name.startswith(f".{place.name}."))


def fill_disk(monkeypatch, *places: Path, room: int = 0) -> None:
    """From now on a file opened for writing at or under ``places`` takes ``room`` bytes, then fails with ENOSPC."""
    real_open = builtins.open
    places = [Path(os.path.abspath(p)) for p in places]

    def open_(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+"):
            if any(_hit(Path(os.path.abspath(file)), place) for place in places):
                return FullFile(f, room)
        return f

    monkeypatch.setattr(builtins, "open", open_)
