"""``gdrae-eval``: disentanglement metrics and geometric diagnostics of a checkpoint (thin: parse, call
gdrae.evaluate, print, translate errors)."""
from __future__ import annotations

import click

from gdrae.errors import GdraeError
from gdrae.evaluate import METRICS, METRIC_NAMES


def _metric_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise click.BadParameter(f"expected comma-separated names from {', '.join(METRIC_NAMES)}, "
                                 f"got {', '.join(unknown) or repr(value)}")
    return names


_METRICS_EPILOG = "\b\nMetrics (--metrics):\n" + "\n".join(f"  {name:<25}{what}" for name, what in METRICS.items())


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=_METRICS_EPILOG)
@click.option("--ckpt", "ckpt", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint to evaluate, e.g. runs/demo/checkpoints/latest.pt.")
@click.option("--metrics", "metrics", callback=_metric_list, metavar="NAME,...",
              help=f"Comma-separated metrics to compute (default: all): {', '.join(METRIC_NAMES)}.")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="Folder holding <dataset>.zarr (default: data.cache_dir of the checkpoint's config).")
@click.option("--out", type=click.Path(file_okay=False),
              help="Where to write codes/, metrics/ and images/ (default: the checkpoint's run directory).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the sampled metrics and the diagnostics' latent points.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Device of the encoding pass and the diagnostics.")
def main(ckpt: str, metrics: list[str] | None, cache_dir: str | None, out: str | None, seed: int,
         device: str) -> None:
    """Evaluate a GDRAE checkpoint on the cache it was trained on.

    \b
    The cache is encoded once (the code table is stored under codes/ and
    reused next time); every metric reads that table. Results:
      metrics/step-N.json     every value of this evaluation
      metrics/metrics.csv     one row per evaluated step
      images/eval-step-N-*.png  traversal sheet (or Sector2D plots) and the
                              codes x factors mutual-information heat map
    Example:
      gdrae-eval --ckpt runs/demo/checkpoints/latest.pt --metrics histogram,dci
    """
    import torch

    from gdrae.evaluate import evaluate_checkpoint, format_table

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise click.BadParameter("expected a CUDA device, got none available", param_hint="--device")
    try:
        report = evaluate_checkpoint(ckpt, metrics, cache_dir=cache_dir, out=out, seed=seed, device=device)
    except GdraeError as exc:
        raise click.ClickException(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    click.echo(f"step {report.step}")
    click.echo(format_table(report.results))
    for path in report.files:
        click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
