"""``gdrae-eval``: disentanglement metrics and geometric diagnostics of a checkpoint (thin: parse, call
gdrae.evaluate, print gdrae.reports.format_table, translate errors)."""
from __future__ import annotations

from pathlib import Path

import click

from cli.common import cache_dir_option, device_option, one_line_errors
from gdrae.errors import GdraeError
from gdrae.evaluate import METRICS, METRIC_NAMES, check_metric_names


def _metric_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise click.BadParameter(f"expected comma-separated names from {', '.join(METRIC_NAMES)}, got {value!r}")
    try:
        return check_metric_names(names, "--metrics")
    except GdraeError as exc:  # "--metrics: expected ..., got ...": click names the option itself
        raise click.BadParameter(str(exc).removeprefix("--metrics: ")) from None


_METRICS_EPILOG = "\b\nMetrics (--metrics):\n" + "\n".join(f"  {name:<25}{what}" for name, what in METRICS.items())


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=_METRICS_EPILOG)
@click.option("--ckpt", "ckpt", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint to evaluate, e.g. runs/demo/checkpoints/latest.pt.")
@click.option("--metrics", "metrics", callback=_metric_list, metavar="NAME,...",
              help=f"Comma-separated metrics to compute (default: all that the checkpoint's model has): {', '.join(METRIC_NAMES)}.")
@cache_dir_option(None, "Folder holding <dataset>.zarr (default: data.cache_dir of the checkpoint's config).")
@click.option("--out", type=click.Path(file_okay=False),
              help="Where to write codes/, metrics/ and images/ (default: the checkpoint's run directory).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the sampled metrics and the diagnostics' latent points.")
@device_option("Device of the encoding pass and the diagnostics.")
@one_line_errors
def main(ckpt: str, metrics: list[str] | None, cache_dir: Path | None, out: str | None, seed: int,
         device: str) -> None:
    """Evaluate a GDRAE checkpoint on the cache it was trained on.

    \b
    The cache is encoded once (the code table is stored under codes/ and
    reused next time); every metric reads that table. Results:
      metrics/step-N.json     every value of this evaluation
      metrics/metrics.csv     one row per evaluated step (the trainer's too)
      images/step-N-*.png     traversal sheet (or Sector2D plots) and the
                              codes x factors mutual-information heat map
    Example:
      gdrae-eval --ckpt runs/demo/checkpoints/latest.pt --metrics histogram,dci
    """
    from gdrae.device import resolve_device
    from gdrae.evaluate import evaluate_checkpoint
    from gdrae.reports import format_table

    report = evaluate_checkpoint(ckpt, metrics, cache_dir=cache_dir, out=out, seed=seed,
                                 device=resolve_device(device, "--device"))
    click.echo(f"step {report.step}")
    click.echo(format_table(report.results))
    for path in report.files:
        click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
