"""``gdrae-study``: plan, run, watch and report a grid of runs (thin: parse, call gdrae.study, translate errors)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cli.common import one_line_errors


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Grids of gdrae-train runs: models x settings x datasets x seeds, resumable, read back as one table.

    \b
      gdrae-study plan configs/studies/smoke.yaml     # every run, checked; nothing starts
      gdrae-study run configs/studies/smoke.yaml --jobs 2
      gdrae-study status runs/studies/smoke           # from the run directories
      gdrae-study report runs/studies/smoke           # results.csv, pictures, seed agreement, summary.md
    Running the same study again skips finished runs and continues stopped ones.
    """


def study_options(command):
    """``--out`` and ``--set``, which plan and run share."""
    command = click.option("--set", "overrides", multiple=True, metavar="A.B=VALUE",
                           help="Added to the study's shared overrides, e.g. --set data.cache_dir=... (repeatable)."
                           )(command)
    return click.option("--out", type=click.Path(file_okay=False), default=None,
                        help="Output folder instead of the study file's out.")(command)


@main.command()
@click.argument("study_file", type=click.Path(dir_okay=False))
@study_options
@one_line_errors
def plan(study_file: str, out: str | None, overrides: tuple[str, ...]) -> None:
    """Check every run of STUDY_FILE (config, cache, metric names) and list them; starts nothing."""
    from gdrae.study import plan as make_plan

    study = make_plan(study_file, out=out, overrides=overrides)
    click.echo(f"{study.config.name}: {len(study.runs)} runs into {study.dir}")
    width = max(len(r.id) for r in study.runs) if study.runs else 0
    for run in study.runs:
        setting = " ".join(f"{k}={v}" for k, v in run.setting.items())
        click.echo(f"  {run.id:<{width}}  {run.cfg.model.family:<12} steps={run.cfg.train.steps} {setting}")


@main.command()
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.option("--jobs", type=int, default=None, help="Runs at once (default: the study's local.jobs).")
@click.option("--threads", type=int, default=None, help="Torch threads per run (default: local.threads).")
@click.option("--oversubscribe", is_flag=True, help="Allow jobs x threads above the machine's cores.")
@click.option("--retry-failed", is_flag=True, help="Start failed runs again (from their checkpoint).")
@click.option("--backend", type=click.Choice(["local", "slurm", "submitit-local"]), default="local",
              show_default=True, help="This machine's processes, a SLURM job array (submitit), or submitit's "
                                      "local executor (SLURM's time-limit warning and requeue, on this machine).")
@click.option("--slurm", "slurm", multiple=True, metavar="KEY=VALUE",
              help="Over the study's cluster settings: partition, time_min, cpus_per_task, gpus_per_task, "
                   "array_parallelism, signal_delay_s, max_requeues (repeatable).")
@study_options
@one_line_errors
def run(study_file: str, jobs: int | None, threads: int | None, oversubscribe: bool, retry_failed: bool,
        backend: str, slurm: tuple[str, ...], out: str | None, overrides: tuple[str, ...]) -> None:
    """Run every unfinished run of STUDY_FILE; Ctrl-C stops them all with their checkpoints.

    Finished runs are skipped, runs stopped part way continued, failed ones retried with --retry-failed.
    """
    from gdrae.errors import GdraeError
    from gdrae.study import plan as make_plan, run_local

    study = make_plan(study_file, out=out, overrides=overrides)
    if backend != "local":
        try:
            from gdrae.cluster import run_cluster
        except ImportError:
            raise GdraeError(f"--backend {backend}: needs submitit: pip install -e '.[cluster]'") from None
        failed = run_cluster(study, "slurm" if backend == "slurm" else "local", list(slurm), threads, retry_failed,
                             echo=lambda line: click.echo(line, err=True))
        if failed:
            raise GdraeError(f"{len(failed)} run(s) not finished: {', '.join(failed)} (gdrae-study status "
                             f"{study.dir})")
        _summarise(study, study_file)
        return
    jobs = jobs or study.config.local.jobs
    threads = threads or study.config.local.threads
    cores = os.cpu_count() or 1
    if jobs * threads > cores and not oversubscribe:
        raise GdraeError(f"--jobs {jobs} x --threads {threads} is more than this machine's {cores} cores; "
                         "lower them or pass --oversubscribe")
    failed = run_local(study, jobs, threads, retry_failed)
    if failed:
        raise GdraeError(f"{len(failed)} run(s) failed: {', '.join(failed)} (gdrae-study status {study.dir} "
                         "gives each one's line; --retry-failed starts them again)")
    _summarise(study, study_file)


def _summarise(study, study_file: str) -> None:
    """The closing line of a run: every run finished, or how many stopped and the command that continues."""
    from gdrae.study import run_state

    unfinished = [r.id for r in study.runs if run_state(r, study.config).state != "finished"]
    if unfinished:
        click.echo(f"stopped: {len(unfinished)} of {len(study.runs)} runs not finished, each with its checkpoint; "
                   f"gdrae-study run {study_file} continues them")
    else:
        click.echo(f"study {study.config.name}: {len(study.runs)} runs finished; gdrae-study report {study.dir}")


def _study_of(folder: str):
    from gdrae.errors import GdraeError
    from gdrae.study import plan as make_plan

    copy = Path(folder) / "study.yaml"
    if not copy.exists():
        raise GdraeError(f"{folder}: not a study folder (no study.yaml; gdrae-study run writes it)")
    return make_plan(copy, check_caches=False)


@main.command()
@click.argument("study_dir", type=click.Path(file_okay=False))
@one_line_errors
def status(study_dir: str) -> None:
    """The state of every run of the study in STUDY_DIR, read from its run directories."""
    from gdrae.study import STATES, run_state

    study = _study_of(study_dir)
    counts = dict.fromkeys(STATES, 0)
    width = max(len(r.id) for r in study.runs) if study.runs else 0
    for run in study.runs:
        state = run_state(run, study.config)
        counts[state.state] += 1
        line = f"  {state.line}" if state.line else ""
        click.echo(f"{run.id:<{width}}  {state.state:<17} step {state.step}/{run.cfg.train.steps}{line}")
    click.echo(", ".join(f"{n} {s}" for s, n in counts.items() if n))


@main.command()
@click.argument("study_dir", type=click.Path(file_okay=False))
@one_line_errors
def report(study_dir: str) -> None:
    """results.csv, a picture per metric, the seed-agreement table and summary.md of STUDY_DIR (any time)."""
    from gdrae.studyreport import write_report

    study = _study_of(study_dir)
    for path in write_report(study):
        click.echo(str(path))


@main.command(hidden=True)
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.argument("run_id")
@click.option("--threads", type=int, default=None)
@one_line_errors
def task(study_file: str, run_id: str, threads: int | None) -> None:
    """One run of a study in this process: train it (continuing its checkpoint), then evaluate it."""
    from gdrae.study import run_task

    run_task(study_file, run_id, threads)


if __name__ == "__main__":
    sys.exit(main())
