"""What the gdrae commands share: library errors as one line, the options several commands take.

As rasterio's ``rio``: a command parses its options, calls the library and,
through :func:`one_line_errors`, turns a :class:`gdrae.errors.GdraeError`
into ``click.ClickException`` - one line, exit code 1, no traceback.
"""
from __future__ import annotations

import ctypes
from functools import wraps
from pathlib import Path

import click

from gdrae.device import DEVICES
from gdrae.errors import GdraeError


def error_line(exc: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def one_line_errors(command):
    """GdraeError -> click.ClickException: one line, exit code 1, no traceback."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except GdraeError as exc:
            raise click.ClickException(error_line(exc)) from None

    return wrapper


def cache_dir_option(default: Path | None, help: str):
    """``--cache-dir``: the folder holding the <name>.zarr caches."""
    return click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=default,
                        show_default=default is not None, help=help)


def device_option(help: str):
    """``--device auto|cpu|cuda`` (resolved by :func:`gdrae.device.resolve_device`)."""
    return click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
                        help=help)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the system.

    Every decoder pass on CPU allocates and frees tensors of several MiB. By
    default glibc serves those with fresh ``mmap`` pages, so each one pays
    page faults and zeroing again; raising the mmap and trim thresholds makes
    the memory reused instead, about 10% off a CPU training step
    (bench/train_step.py). Returns False where the C library is not glibc
    (nothing changes there). Process-wide, so only the command-line entry
    points call it (gdrae-train on a CPU), never the library: a notebook's
    malloc stays as the user has it. The peak resident memory is kept.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc <malloc.h>
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, (1 << 31) - 1))
