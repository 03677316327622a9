"""The one error type users see, and the one way a failed write becomes one.

Library code raises :class:`GdraeError` for every problem with user input
(a file, a cache, a config value, a checkpoint). Its message is one line that
names the file or key and says "expected X, got Y" where that fits. The
command-line layer turns it into a one-line message and a non-zero exit.
Every write of a file that can fail (a full disk, a read-only folder) runs
inside :func:`writing`, so all of them fail with the same line.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator


class GdraeError(ValueError):
    """A problem with user input, described in one line naming the file or key."""


@contextmanager
def writing(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Write ``path`` (``what`` it holds, in words) inside this block: an OSError there (a full disk, a
    read-only or missing folder) becomes ``GdraeError("<path>: cannot write <what>: <reason>")``."""
    try:
        yield
    except OSError as exc:
        raise GdraeError(f"{path}: cannot write {what}: {exc.strerror or exc}") from None
