"""``gdrae-data``: prepare, list, inspect and verify dataset caches.

Thin: parses arguments, calls pipelines.store / gdrae.data.cache, and turns
every GdraeError into one line and a non-zero exit.
"""
from __future__ import annotations

from functools import wraps
from pathlib import Path

import click

from gdrae.errors import GdraeError
from pipelines.registry import NAMES, get_spec

RAW_DIR = click.option("--raw-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("Datasets"),
                       show_default=True, help="Directory holding the raw downloads (see Datasets/README.md).")
CACHE_DIR = click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("cache"),
                         show_default=True, help="Directory holding the <name>.zarr caches.")
NAME = click.argument("name", type=click.Choice(NAMES), metavar="NAME")


def _one_line_errors(command):
    """GdraeError -> click.ClickException: one line, exit code 1, no traceback."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except GdraeError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KB'."""
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


@click.group(help="Convert raw datasets into checked zarr caches, and inspect them.\n\n"
                  f"NAME is one of: {', '.join(NAMES)}.")
def main() -> None:
    pass


@main.command(help="Convert the raw files of NAME into <cache-dir>/NAME.zarr. An existing cache is kept "
                   "unless --force, and with --force it is replaced only once the new one is complete.")
@NAME
@RAW_DIR
@CACHE_DIR
@click.option("--force", is_flag=True, help="Replace an existing cache (after the new one is complete).")
@_one_line_errors
def prepare(name: str, raw_dir: Path, cache_dir: Path, force: bool) -> None:
    from pipelines.store import prepare as run_prepare

    summary = run_prepare(name, raw_dir, cache_dir, force=force, progress=True)
    for note in summary.notes:
        click.echo(f"note: {note}")
    sizes = " x ".join(f"{n} {s}" for n, s in zip(summary.factor_names, summary.factor_sizes))
    click.echo(f"{summary.path}: {summary.n:,} rows of {tuple(summary.row_shape)}, factors {sizes}")
    click.echo(f"{human_bytes(summary.bytes_on_disk)} on disk, {summary.seconds:.1f} s")


@main.command(name="list", help="Every dataset: is the raw data present, is the cache valid, how big is it.")
@RAW_DIR
@CACHE_DIR
@_one_line_errors
def list_(raw_dir: Path, cache_dir: Path) -> None:
    from gdrae.data.cache import cache_path, dir_bytes, open_cache, restore_replaced
    from gdrae.data.staging import remove_dead_temps, staged

    remove_dead_temps(cache_dir)
    click.echo(f"{'name':<22}{'raw':<12}{'cache':<10}{'rows':>10}{'on disk':>12}")
    for name in NAMES:
        try:
            spec = get_spec(name)
        except ImportError:
            click.echo(f"{name:<22}{'(pipeline not installed)'}")
            continue
        if not spec.raw_files:
            raw = "synthetic"
        else:
            have = sum((raw_dir / f.relpath).exists() for f in spec.raw_files)
            raw = "present" if have == len(spec.raw_files) else f"{have}/{len(spec.raw_files)} files"
        path = cache_path(cache_dir, name)
        state, rows, size, problem = "missing", "", "", ""
        try:
            if path.exists() or restore_replaced(path):
                cache = open_cache(path)
                state, rows, size = "valid", f"{cache.n:,}", human_bytes(cache.bytes_on_disk())
        except GdraeError as exc:
            state, problem = "INVALID", str(exc)
        click.echo(f"{name:<22}{raw:<12}{state:<10}{rows:>10}{size:>12}")
        if problem:
            click.echo(f"  {problem}")
    left = staged(cache_dir)
    if left:
        click.echo(f"\nbeside the caches in {cache_dir}:")
    for s in left:
        click.echo(f"  {s.path.name}  {human_bytes(dir_bytes(s.path))}  {_staged_note(s)}")


def _staged_note(s) -> str:
    """What a staging directory (gdrae.data.staging.Staged) is, for `list`."""
    if s.kind == "tmp":
        return (f"a {s.dataset} cache being written by process {s.pid}" if s.alive else
                f"a temporary {s.dataset} cache of process {s.pid}, which is gone; could not be removed")
    if s.alive:
        return f"the earlier {s.dataset} cache, being replaced by process {s.pid}"
    final = s.path.with_name(f"{s.dataset}.zarr")
    advice = f"remove it once {final.name} is good" if final.exists() else f"rename it to {final.name} to keep it"
    return f"an earlier {s.dataset} cache set aside by an interrupted `prepare --force`; {advice}"


@main.command(help="Factors, rows, chunks, codecs and size of the cache of NAME.")
@NAME
@CACHE_DIR
@_one_line_errors
def info(name: str, cache_dir: Path) -> None:
    from gdrae.data.cache import cache_path, open_cache

    cache = open_cache(cache_path(cache_dir, name))
    data = cache.data
    click.echo(f"{cache.path}  (dataset {cache.name}, created {cache.attrs['created']})")
    click.echo(f"{data.name}: {data.dtype} {data.shape}, {data.nchunks} chunks of {data.chunk_rows} rows, "
               f"stored in a random order of the grid (row_order_seed {cache.attrs['row_order_seed']})")
    click.echo(f"codecs: {', '.join(type(c).__name__ for c in data.zarr.compressors)}")
    click.echo(f"size: {human_bytes(data.nbytes)} uncompressed, {human_bytes(cache.bytes_on_disk())} on disk")
    click.echo("factors (grid order: the last changes fastest):")
    for fname, size, values in zip(cache.factor_names, cache.factor_sizes, cache.factor_values):
        click.echo(f"  {fname:<14}{size:>5}  values {values[0]:.4g} .. {values[-1]:.4g}")
    for src in cache.attrs["source"]:
        click.echo(f"source: {src.get('name')} ({src.get('bytes')} bytes, sha256 {src.get('sha256')})")
    if cache.attrs["pipeline"]:
        click.echo(f"pipeline: {cache.attrs['pipeline']}")


@main.command(help="Re-read every chunk of the cache of NAME (checksums) and check its factor grid.")
@NAME
@CACHE_DIR
@_one_line_errors
def verify(name: str, cache_dir: Path) -> None:
    from gdrae.data.cache import cache_path
    from pipelines.store import verify as run_verify

    summary = run_verify(cache_path(cache_dir, name), progress=True)
    click.echo(f"{summary.path}: OK - {summary.n:,} rows, {summary.nchunks} chunks, checksums verified, "
               f"every grid cell stored once, "
               f"{human_bytes(summary.bytes_on_disk)}, {summary.seconds:.1f} s")
