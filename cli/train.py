"""``gdrae-train``: train GDRAE from a run.yaml (thin: parse, call gdrae.train, translate errors)."""
from __future__ import annotations

from pathlib import Path

import click

from cli.common import keep_freed_memory, one_line_errors

# the figures of the last evaluation shown when a run ends (those present)
SUMMARY_KEYS = ("geometry/ortho_sign", "geometry/sv_match_err", "hist20/mig", "hist50/mig", "hist20/modularity",
                "alignment/min_r2", "alignment/axis0_r2", "alignment/axis1_r2", "dci/disentanglement")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
              help="run.yaml with sections data, model, loss, train (e.g. configs/demo.yaml).")
@click.option("--set", "overrides", multiple=True, metavar="A.B=VALUE",
              help="Override one config value, e.g. --set train.steps=200 (repeatable).")
@click.option("--resume", is_flag=True, help="Continue the run in train.run_dir from checkpoints/latest.pt.")
@one_line_errors
def main(config_path: str, overrides: tuple[str, ...], resume: bool) -> None:
    """Train GDRAE on a prepared cache and write a run directory.

    \b
    Training:
      gdrae-data prepare shapes2d-synth-small      # build the cache once
      gdrae-train --config configs/demo.yaml       # CPU is enough for the demo
      tensorboard --logdir runs/demo/tb            # losses, diagnostics, pictures
    The run directory (train.run_dir) holds config.yaml (resolved), train.log,
    tb/ (TensorBoard), images/ (step-N-<name>.png: reconstructions,
    traversals, sv bars), metrics/ (losses.jsonl; metrics.csv and
    step-N.json, the evaluations as gdrae-eval writes them) and checkpoints/ (latest.pt
    and step-N.pt). Ctrl-C or SIGTERM writes a checkpoint and stops; the same
    command with --resume continues exactly where it stopped (raise
    train.steps with --set to train longer). An existing run is never
    overwritten. Several GPUs or processes:
      torchrun --nproc_per_node=N -m cli.train --config run.yaml
    """
    from gdrae.config import load_config
    from gdrae.device import resolve_device
    from gdrae.runlog import last_evaluation, read_pictures
    from gdrae.train import train

    cfg = load_config(config_path, overrides)
    if resolve_device(cfg.train.device, "train.device").type == "cpu":
        keep_freed_memory()  # process-wide malloc settings: the command's business, not the library's
    train(cfg, resume=resume)
    run_dir = Path(cfg.train.run_dir)
    click.echo(f"run directory: {run_dir}")
    record = last_evaluation(run_dir)
    if record is not None:
        shown = "  ".join(f"{k}={record[k]:.4g}" for k in SUMMARY_KEYS if k in record)
        click.echo(f"last evaluation (step {record['step']}): {shown}")
    pictures = read_pictures(run_dir)
    if pictures:
        newest = sorted(path.name for path in pictures[max(pictures)].values())
        click.echo(f"pictures: {run_dir / 'images'} (newest: {', '.join(newest)})")
    click.echo(f"all metrics and their pictures: gdrae-eval --ckpt {run_dir / 'checkpoints' / 'latest.pt'}")


if __name__ == "__main__":
    main()
