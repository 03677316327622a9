"""``gdrae-data``: download raw files; prepare, list, inspect and verify dataset caches.

Thin: parses arguments, calls pipelines.download / pipelines.store /
gdrae.data.cache, and turns every GdraeError into one line and a non-zero exit.
"""
from __future__ import annotations

from pathlib import Path

import click

from cli.common import cache_dir_option, one_line_errors
from gdrae.errors import GdraeError
from pipelines.registry import NAMES, get_spec

RAW_DIR = click.option("--raw-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("Datasets"),
                       show_default=True, help="Directory holding the raw downloads (see Datasets/README.md).")
CACHE_DIR = cache_dir_option(Path("cache"), "Directory holding the <name>.zarr caches.")
NAME = click.argument("name", type=click.Choice(NAMES), metavar="NAME")


def _plain_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from gdrae.config import DATASET_NAME

    if not DATASET_NAME.fullmatch(value) or ".." in value:
        raise click.BadParameter(f"expected a dataset name like shapes2d (letters, digits, '_', '.', '-'), got {value!r}")
    return value


CACHE_NAME = click.argument("name", metavar="NAME", callback=_plain_name)  # built-in, or declared (prepare --spec)
MIRROR = click.option("--mirror", metavar="BASE", default=None,
                      help="Fetch each file as BASE/<its file name>, BASE being an http(s) URL or a local folder "
                           "(a mirror behind a firewall).")
MANIFEST = click.option("--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Read the list of files (URL, size, sha256, md5, unpacking) from this JSON file "
                             "instead of the built-in one (format: Datasets/README.md).")


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


@main.command(help="Download the raw files of NAME into --raw-dir where prepare reads them: resumed after an "
                   "interruption, checked against the published size and hashes (or, where none is published, "
                   "their sha256 printed and recorded: trust on first use), unpacked. Files already present and "
                   "verified are not fetched again.")
@NAME
@RAW_DIR
@MIRROR
@MANIFEST
@one_line_errors
def download(name: str, raw_dir: Path, mirror: str | None, manifest: Path | None) -> None:
    _download(name, raw_dir, mirror, manifest)


def _download(name: str, raw_dir: Path, mirror: str | None, manifest_path: Path | None) -> None:
    """Fetch what is missing of NAME, one line per file and a summary; GdraeError on any problem."""
    from pipelines.download import download as run_download, load_manifest
    from pipelines.store import check_raw_files

    spec = get_spec(name)
    manifest = load_manifest(manifest_path, name) if manifest_path is not None else spec.download
    if manifest is None:
        click.echo(f"{name} is synthetic: nothing to download (`gdrae-data prepare {name}` builds it)")
        return
    summary = run_download(manifest, raw_dir, mirror=mirror, progress=True, on_file=_echo_file)
    check_raw_files(spec, raw_dir)  # a manifest of one's own must give what prepare reads
    fetched = [f for f in summary.files if f.status in ("downloaded", "resumed")]
    rate = f", {human_bytes(summary.fetched / summary.seconds)}/s" if fetched and summary.seconds > 0 else ""
    click.echo(f"{name}: {len(fetched)} of {len(summary.files)} file(s) fetched ({human_bytes(summary.fetched)} in "
               f"{summary.seconds:.1f} s{rate}), {len(summary.files) - len(fetched)} already there; "
               f"record: {summary.record}")


def _echo_file(result) -> None:
    """One line per manifest entry (a pipelines.download.FileResult), its notes, and a first-use sha256."""
    what = {"downloaded": f"downloaded ({human_bytes(result.bytes)})",
            "resumed": f"resumed ({human_bytes(result.fetched)} of {human_bytes(result.bytes)} fetched now)",
            "present": "already present", "unpacked": "archive already present"}[result.status]
    click.echo(f"{result.path}: {what}; {result.checked}")
    for note in result.notes:
        click.echo(f"  {note}")
    if result.first_use and result.sha256 and result.status != "present":
        click.echo(f"  sha256 {result.sha256} of {result.name}: no published hash to compare with, so this one "
                   "is trusted on first use; compare it with a colleague's copy (prepare records it in the "
                   "cache's source attributes)")


@main.command(help="Convert the raw files of NAME into <cache-dir>/NAME.zarr. An existing cache is kept "
                   "unless --force, and with --force it is replaced only once the new one is complete. "
                   "Nothing is downloaded unless --download is given. With --spec FILE.yaml, a data file of "
                   "your own is converted as that declaration says (docs/datasets.md); NAME may then be left "
                   "out.")
@click.argument("name", required=False, metavar="[NAME]")
@RAW_DIR
@CACHE_DIR
@click.option("--force", is_flag=True, help="Replace an existing cache (after the new one is complete).")
@click.option("--download", "fetch", is_flag=True,
              help="First download what is missing of the raw files (as `gdrae-data download NAME`).")
@MIRROR
@MANIFEST
@click.option("--spec", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A YAML declaration of your own dataset: its data file under --raw-dir, image key, layout, "
                   "factors and labels (docs/datasets.md).")
@one_line_errors
def prepare(name: str | None, raw_dir: Path, cache_dir: Path, force: bool, fetch: bool, mirror: str | None,
            manifest: Path | None, spec: Path | None) -> None:
    from pipelines.store import prepare as run_prepare

    if not fetch and (mirror is not None or manifest is not None):
        raise click.BadParameter("applies to --download only; add --download",
                                 param_hint="--mirror" if mirror is not None else "--manifest")
    if spec is not None:
        dataset = _declared(spec, name)
        if fetch:
            raise click.BadParameter("applies to the built-in datasets only: a declared file is yours already",
                                     param_hint="--download")
    elif name is None:
        raise click.BadParameter(f"expected one of {', '.join(NAMES)}, or --spec FILE.yaml", param_hint="NAME")
    elif name not in NAMES:
        raise click.BadParameter(f"expected one of {', '.join(NAMES)} (or a dataset of your own with --spec "
                                 f"FILE.yaml), got {name!r}", param_hint="NAME")
    else:
        dataset = name
    if fetch:
        _download(name, raw_dir, mirror, manifest)
    summary = run_prepare(dataset, raw_dir, cache_dir, force=force, progress=True)
    for note in summary.notes:
        click.echo(f"note: {note}")
    sizes = " x ".join(f"{n} {s}" for n, s in zip(summary.factor_names, summary.factor_sizes))
    click.echo(f"{summary.path}: {summary.n:,} rows of {tuple(summary.row_shape)}, factors {sizes}")
    click.echo(f"{human_bytes(summary.bytes_on_disk)} on disk, {summary.seconds:.1f} s")


def _declared(path: Path, name: str | None):
    """The DatasetSpec that the declaration at ``path`` makes; a NAME given as well must be the declared one."""
    from pipelines.declaration import declared_spec, load_declaration

    declaration = load_declaration(path)
    if name is not None and name != declaration.name:
        raise GdraeError(f"{path}: name: expected {name!r} as given on the command line, got {declaration.name!r}")
    return declared_spec(declaration, str(path))


@main.command(name="list", help="Every dataset: is the raw data present, is the cache valid, how big is it; and "
                                "what lies beside the caches. First removes what a killed prepare left on this host "
                                "and restores a cache it had set aside.")
@RAW_DIR
@CACHE_DIR
@one_line_errors
def list_(raw_dir: Path, cache_dir: Path) -> None:
    from gdrae.data.lifecycle import tidy
    from pipelines.inventory import inventory

    for line in tidy(cache_dir):
        click.echo(line)
    found = inventory(raw_dir, cache_dir)
    click.echo(f"{'name':<22}{'raw':<12}{'cache':<10}{'rows':>10}{'on disk':>12}")
    for d in found.datasets:
        rows = f"{d.rows:,}" if d.rows is not None else ""
        size = human_bytes(d.bytes_on_disk) if d.bytes_on_disk is not None else ""
        click.echo(f"{d.name:<22}{d.raw:<12}{d.cache:<10}{rows:>10}{size:>12}".rstrip())
        if d.problem:
            click.echo(f"  {d.problem}")
    if found.leftovers:
        click.echo(f"\nbeside the caches in {cache_dir}:")
    for left in found.leftovers:
        click.echo(f"  {left.path.name}  {human_bytes(left.bytes_on_disk)}  {left.note}")


@main.command(help="Factors, rows, chunks, codecs and size of the cache of NAME (built-in or declared).")
@CACHE_NAME
@CACHE_DIR
@one_line_errors
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
        fetched = f"; downloaded from {src['url']}: {src.get('checked')}" if src.get("url") else ""
        click.echo(f"source: {src.get('name')} ({src.get('bytes')} bytes, sha256 {src.get('sha256')}{fetched})")
    if cache.attrs["pipeline"]:
        click.echo(f"pipeline: {cache.attrs['pipeline']}")


@main.command(help="Re-read every chunk of the cache of NAME (built-in or declared; checksums) and check its "
                   "factor grid.")
@CACHE_NAME
@CACHE_DIR
@one_line_errors
def verify(name: str, cache_dir: Path) -> None:
    from gdrae.data.cache import cache_path, verify as run_verify

    summary = run_verify(cache_path(cache_dir, name), progress=True)
    click.echo(f"{summary.path}: OK - {summary.n:,} rows, {summary.nchunks} chunks, checksums verified, "
               f"every grid cell stored once, "
               f"{human_bytes(summary.bytes_on_disk)}, {summary.seconds:.1f} s")


if __name__ == "__main__":
    main()
