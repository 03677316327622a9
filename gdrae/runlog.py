"""What a training run writes besides checkpoints, and reading it back.

:class:`RunLog` writes ``train.log`` (plain text for people: losses,
diagnostics, warnings), ``metrics/losses.jsonl`` (the loss terms, one JSON
record per logged step, for programs), the evaluations into the record that
``gdrae-eval`` writes too (``metrics/metrics.csv``, one row per evaluated
step, and ``metrics/step-N.json``, through :mod:`gdrae.reports`),
TensorBoard scalars and images under ``tb/``, PNG files
``images/step-N-<name>.png``, and the progress bar.
:func:`read_loss_log`, :func:`logged_speed`, :func:`read_evaluations`,
:func:`last_evaluation` and :func:`read_pictures` read them back; nothing
parses the human log.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from gdrae.atomic import append_line
from gdrae.errors import GdraeError, writing
from gdrae.reports import METRICS_CSV, PICTURE, read_metrics_csv, write_metrics, write_pictures

METRICS = Path("metrics")  # in the run directory: losses.jsonl, and the evaluations of gdrae.reports
LOSSES = METRICS / "losses.jsonl"
SPEED = "steps_per_s"  # beside the loss terms in each losses.jsonl record: steps/s since the (re)start


def read_loss_log(run_dir: str | Path) -> dict[int, dict[str, float]]:
    """The loss terms a run logged, by step: {step: {"total": .., "recon": .., ...}}.

    Reads ``metrics/losses.jsonl`` as :meth:`RunLog.losses` writes it (a
    resumed run appends; the last record of a step wins). An unfinished run
    gives the steps it reached. A run directory without that file (none, or
    one trained before losses were written as JSON lines) is a GdraeError.
    """
    path = Path(run_dir) / LOSSES
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise GdraeError(f"{path}: cannot read the run's losses ({exc.strerror or exc}); runs trained before "
                         "losses were logged as JSON lines have none") from None
    curves: dict[int, dict[str, float]] = {}
    for line in lines:
        if line.strip():
            record = json.loads(line)
            record.pop(SPEED, None)
            curves[int(record.pop("step"))] = record
    return curves


def logged_speed(run_dir: str | Path) -> tuple[int, float] | None:
    """(step, steps/s) of the last record of ``metrics/losses.jsonl``, or None when it has none.

    The rate is what the run reached at that step since it (re)started,
    start-up and the first steps included.
    """
    path = Path(run_dir) / LOSSES
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()] if path.exists() else []
    if not lines:
        return None
    record = json.loads(lines[-1])
    return (int(record["step"]), float(record[SPEED])) if SPEED in record else None


# runs trained before the trainer wrote metrics.csv: its evaluations as JSON lines, the geometry unprefixed
OLD_EVALUATIONS = METRICS / "eval.jsonl"
# pictures of such runs: the trainer's images/<name>_<step, 7 digits>.png, gdrae-eval's eval-step-N-<name>.png
OLD_PICTURES = (re.compile(r"^(?P<name>.+)_(?P<step>\d{7})\.png$"),
                re.compile(r"^eval-step-(?P<step>\d+)-(?P<name>.+)\.png$"))


def read_evaluations(run_dir: str | Path) -> dict[int, dict[str, float]]:
    """Every evaluation of a run, by step: {step: {"geometry/ortho_sign": .., "hist20/mig": .., ...}}.

    Reads ``metrics/metrics.csv``, the one record that the trainer and
    ``gdrae-eval`` both write (:func:`gdrae.reports.write_metrics`): a step
    evaluated by both has the values of both, the newest where they share a
    key. A run trained before that record kept its trainer's evaluations in
    ``metrics/eval.jsonl`` (``ortho_sign`` for ``geometry/ortho_sign``):
    read too, under today's keys. No record at all gives {}; a value that
    is not a number is a GdraeError naming the file and the place.
    """
    run_dir = Path(run_dir)
    evaluations = _old_evaluations(run_dir / OLD_EVALUATIONS)
    table = run_dir / METRICS / METRICS_CSV
    for step, row in read_metrics_csv(table)[1].items():
        cells = {k: v for k, v in row.items() if k != "step" and v != ""}
        evaluations.setdefault(step, {}).update(_numbers(table, f"step {step}", cells))
    return dict(sorted(evaluations.items()))


def _old_evaluations(path: Path) -> dict[int, dict[str, float]]:
    """The records of an older run's metrics/eval.jsonl by step, under today's keys (the geometry's prefixed)."""
    found: dict[int, dict[str, float]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines() if path.exists() else [], 1):
        if line.strip():
            try:
                record = json.loads(line)
                step = int(record.pop("step"))
            except (ValueError, TypeError, KeyError, AttributeError):
                raise GdraeError(f"{path}: line {n}: expected a JSON record with a step, got {line[:80]!r}") from None
            values = {k if "/" in k else f"geometry/{k}": v for k, v in record.items()}
            found.setdefault(step, {}).update(_numbers(path, f"line {n}", values))
    return found


def _numbers(path: Path, where: str, values: Mapping[str, Any]) -> dict[str, float]:
    """``values`` as floats; one that is not a number is a GdraeError naming the file, ``where`` and its key."""
    numbers = {}
    for key, value in values.items():
        try:
            numbers[key] = float(value)
        except (ValueError, TypeError):
            raise GdraeError(f"{path}: {where}, {key}: expected a number, got {value!r}") from None
    return numbers


def last_evaluation(run_dir: str | Path) -> dict[str, float] | None:
    """The newest step's evaluation of :func:`read_evaluations`, its ``step`` included, or None when none."""
    evaluations = read_evaluations(run_dir)
    if not evaluations:
        return None
    step = max(evaluations)
    return {"step": step, **evaluations[step]}


def read_pictures(run_dir: str | Path) -> dict[int, dict[str, Path]]:
    """The pictures of a run by step and name: {step: {"reconstruction": images/step-N-reconstruction.png, ..}}.

    Today's names (:data:`gdrae.reports.PICTURE`) and those of older runs
    (:data:`OLD_PICTURES`); other files are not pictures of the run.
    """
    found: dict[int, dict[str, Path]] = {}
    images = Path(run_dir) / "images"
    for path in sorted(images.iterdir()) if images.is_dir() else []:
        match = next((m for pattern in (PICTURE, *OLD_PICTURES) if (m := pattern.match(path.name))), None)
        if match:
            found.setdefault(int(match["step"]), {})[match["name"]] = path
    return dict(sorted(found.items()))


class RunLog:
    """Everything a run writes besides checkpoints: train.log, TensorBoard, images/, metrics/, the progress bar.

    On ranks other than 0 (``enabled=False``) every method does nothing.
    """

    def __init__(self, run_dir: Path, enabled: bool, start_step: int, total_steps: int) -> None:
        self.enabled = enabled
        self.run_dir = Path(run_dir)
        self.start = time.perf_counter()
        self.start_step = start_step
        if not enabled:
            return
        from tqdm import tqdm

        from gdrae.tbevents import EventFile

        read_metrics_csv(self.run_dir / METRICS / METRICS_CSV)  # a table it cannot keep stops the run at its start
        self.tb = EventFile(self.run_dir / "tb", purge_step=start_step + 1)
        with writing(self.run_dir / LOSSES.parent, "the run's metrics"):
            (self.run_dir / LOSSES).parent.mkdir(parents=True, exist_ok=True)
        self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, leave=False)
        self.bar_step = start_step

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def advance(self, step: int) -> None:
        """Move the progress bar to ``step`` (no host sync: the losses on it change every log_every steps)."""
        if self.enabled:
            self.bar.update(step - self.bar_step)
            self.bar_step = step

    def text(self, line: str) -> None:
        """One line into train.log (and above the progress bar)."""
        if self.enabled:
            with writing(self.run_dir / "train.log", "the run's log"):
                append_line(self.run_dir / "train.log", f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
            self.bar.write(line)

    def losses(self, step: int, terms: dict[str, dict[str, torch.Tensor]], totals: dict[str, torch.Tensor]) -> None:
        """Scalars of every loss term and monitor of every parameter group (a host sync: only every log_every
        steps): TensorBoard, the progress bar, a line of train.log and a record of metrics/losses.jsonl.

        The first group's keys are plain (``loss/total``, ``loss/recon``, ``monitor/...``; in the record
        ``total``, ``recon``); a further group's carry its name (``discriminator/loss/total``; in the
        record ``discriminator/total``).
        """
        if not self.enabled:
            return
        values, short = {}, {}
        for i, (group, group_terms) in enumerate(terms.items()):
            prefix = "" if i == 0 else f"{group}/"
            for name, value in {"total": totals[group], **group_terms}.items():
                value = value.detach().float().cpu()
                key = f"{prefix}{name}" if name.startswith("monitor/") else f"{prefix}loss/{name}"
                if value.ndim == 0:
                    values[key] = float(value)
                    if not name.startswith("monitor/"):
                        short[f"{prefix}{name}"] = values[key]
                else:  # per-dimension monitors: one curve per latent dimension
                    for j, v in enumerate(value.tolist()):
                        values[f"{key}/{j}"] = v
        for name, v in values.items():
            self.tb.add_scalar(name, v, step)
        rate = (step - self.start_step) / max(self.elapsed(), 1e-9)
        self.tb.add_scalar("speed/steps_per_s", rate, step)
        with writing(self.run_dir / LOSSES, "the run's losses"):
            append_line(self.run_dir / LOSSES, json.dumps({"step": step, **short, SPEED: rate}) + "\n")
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in short.items()}, refresh=False)
        self.text(f"step {step} " + " ".join(f"{k}={v:.6g}" for k, v in short.items())
                  + f" recon_l1={values.get('monitor/recon_l1', float('nan')):.4g} steps/s={rate:.3g}")

    def images(self, step: int, pictures: dict[str, np.ndarray]) -> None:
        """PNG files images/step-<step>-<name>.png (as gdrae-eval names its own) and TensorBoard images."""
        if not self.enabled:
            return
        write_pictures(self.run_dir / "images", step, pictures)
        for name, array in pictures.items():
            self.tb.add_image(f"images/{name}", array, step, dataformats="HWC")

    def evaluation(self, step: int, results: dict[str, float], provenance: Mapping[str, Any]) -> None:
        """An evaluation (:func:`gdrae.evaluate.evaluate`'s keys) to TensorBoard, train.log and the run's
        record: metrics/metrics.csv and metrics/step-N.json, written as gdrae-eval writes them."""
        if not self.enabled:
            return
        for name, v in results.items():
            self.tb.add_scalar(f"eval/{name}", v, step)
        write_metrics(self.run_dir / METRICS, step, results, provenance)
        self.text(f"eval step {step} " + " ".join(f"{k}={v:.4g}" for k, v in results.items()))

    def close(self) -> None:
        if self.enabled:
            self.bar.close()
            self.tb.close()
