"""What a training run writes besides checkpoints, and reading it back.

:class:`RunLog` writes ``train.log`` (plain text for people: losses,
diagnostics, warnings), ``metrics/losses.jsonl`` (the loss terms, one JSON
record per logged step, for programs), ``metrics/eval.jsonl`` (diagnostics
and metrics per evaluation step), TensorBoard scalars and images under
``tb/``, PNG files under ``images/``, and the progress bar.
:func:`read_loss_log` and :func:`last_evaluation` read the JSON lines back;
nothing parses the human log.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from gdrae import viz
from gdrae.atomic import append_line
from gdrae.errors import GdraeError, writing

LOSSES = Path("metrics") / "losses.jsonl"  # in the run directory
EVALUATIONS = Path("metrics") / "eval.jsonl"
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


def last_evaluation(run_dir: str | Path) -> dict[str, float] | None:
    """The newest record of a run's metrics/eval.jsonl (written by :meth:`RunLog.diagnostics`), or None."""
    path = Path(run_dir) / EVALUATIONS
    if not path.exists():
        return None
    lines = path.read_text(encoding="utf-8").splitlines()
    return json.loads(lines[-1]) if lines else None


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

    def losses(self, step: int, terms: dict[str, torch.Tensor], total: torch.Tensor) -> None:
        """Scalars of every loss term and monitor (a host sync: only every log_every steps): TensorBoard,
        the progress bar, a line of train.log and a record of metrics/losses.jsonl (the loss terms)."""
        if not self.enabled:
            return
        values = {"loss/total": float(total.detach())}
        for name, value in terms.items():
            value = value.detach().float().cpu()
            if value.ndim == 0:
                values[name if name.startswith("monitor/") else f"loss/{name}"] = float(value)
            else:  # per-dimension monitors: one curve per latent dimension
                for j, v in enumerate(value.tolist()):
                    values[f"{name}/{j}"] = v
        for name, v in values.items():
            self.tb.add_scalar(name, v, step)
        rate = (step - self.start_step) / max(self.elapsed(), 1e-9)
        self.tb.add_scalar("speed/steps_per_s", rate, step)
        short = {k.split("/", 1)[1]: v for k, v in values.items() if k.startswith("loss/")}
        with writing(self.run_dir / LOSSES, "the run's losses"):
            append_line(self.run_dir / LOSSES, json.dumps({"step": step, **short, SPEED: rate}) + "\n")
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in short.items()}, refresh=False)
        self.text(f"step {step} " + " ".join(f"{k}={v:.6g}" for k, v in short.items())
                  + f" recon_l1={values.get('monitor/recon_l1', float('nan')):.4g} steps/s={rate:.3g}")

    def images(self, step: int, pictures: dict[str, np.ndarray]) -> None:
        """PNG files images/<name>_<step>.png and TensorBoard images."""
        if not self.enabled:
            return
        for name, array in pictures.items():
            png = self.run_dir / "images" / f"{name}_{step:07d}.png"
            with writing(png, "a picture"):
                viz.save_png(array, png)
            self.tb.add_image(f"images/{name}", array, step, dataformats="HWC")

    def diagnostics(self, step: int, values: dict[str, float]) -> None:
        """Geometric diagnostics (and metrics) to TensorBoard, train.log and metrics/eval.jsonl."""
        if not self.enabled:
            return
        for name, v in values.items():
            self.tb.add_scalar(f"eval/{name}", v, step)
        with writing(self.run_dir / EVALUATIONS, "the run's evaluations"):
            append_line(self.run_dir / EVALUATIONS, json.dumps({"step": step, **values}) + "\n")
        self.text(f"eval step {step} " + " ".join(f"{k}={v:.4g}" for k, v in values.items()))

    def close(self) -> None:
        if self.enabled:
            self.bar.close()
            self.tb.close()
