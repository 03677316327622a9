"""Writing a file whole or not at all: the one way gdrae replaces a file (configs, checkpoints, metrics, code
tables, pictures) or adds a line to one (logs).

:func:`write_atomic` writes the content to a temporary name beside the file
(unique to the writing process and call, hidden, ending in ``.tmp``) and
renames it over the file when complete, so a reader sees the earlier file or
the new one, never a part, and a crash or a full disk mid-write leaves the
earlier file in place. :func:`append_line` cuts a file back to its earlier
end when a line cannot be added whole.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable


def temp_path(path: Path) -> Path:
    """A temporary name beside ``path``, unique to this process and call (hidden, ends in .tmp)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_atomic(path: str | os.PathLike, content: bytes | str | Callable[[BinaryIO], None]) -> None:
    """Replace ``path`` by ``content``: bytes, text (written as UTF-8) or a function that writes to a binary file.

    A write that fails (OSError: a full disk, a read-only folder) removes the
    temporary file and raises that OSError; the earlier file stays as it was.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:  # a Python file: a failed write is an OSError with its errno
            if callable(content):
                content(f)
            else:
                f.write(content.encode("utf-8") if isinstance(content, str) else content)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def append_line(path: str | os.PathLike, line: str) -> None:
    """Add ``line`` (text, written as UTF-8, ending in a newline) to the end of ``path``, whole or not at all.

    A write that fails (OSError: a full disk; or an interruption) cuts the
    file back to where it ended and raises again, so a reader never finds a
    part of a line (a JSON record, say) at the end.
    """
    data = memoryview(line.encode("utf-8"))
    with open(path, "ab", buffering=0) as f:  # unbuffered: every byte written is known
        end = f.seek(0, os.SEEK_END)
        try:
            while data:
                data = data[f.write(data):]
        except BaseException:
            f.truncate(end)
            raise
