"""The run directory of one training: checked and created at the start, held by one training at a time.

Layout (docs/design.md section 4, the training run contract)::

    runs/<run>/.lock           held by the one training writing here (its pid inside)
               config.yaml     the resolved config
               checkpoints/    latest.pt (newest) + step-N.pt (keep_checkpoints newest)
               tb/             TensorBoard (tensorboardX) scalars and images
               images/         PNG pictures step-N-<name>.png, one set per picture step
               metrics/        losses.jsonl (loss terms per logged step), metrics.csv (one row per
                               evaluated step) and step-N.json, as gdrae-eval writes them
               train.log       plain text for people: losses, diagnostics, warnings

What goes in besides checkpoints is written by :class:`gdrae.runlog.RunLog`.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from gdrae.checkpoint import read_checkpoint
from gdrae.config import ModelConfig, RunConfig, dump_config
from gdrae.errors import GdraeError


def open_run_dir(run_dir: Path, cfg: RunConfig, resume: bool, write: bool = True) -> dict | None:
    """Check (and, if ``write``, create) the run directory; returns the checkpoint to resume from, or None.

    Never overwrites a run: a directory holding a checkpoint needs ``resume``;
    ``resume`` needs a checkpoint with the same model section and data.name;
    a model key the checkpoint predates counts as its default.
    """
    latest = run_dir / "checkpoints" / "latest.pt"
    if resume:
        if not latest.exists():
            raise GdraeError(f"{latest}: --resume expected a checkpoint, got none (start without --resume)")
        state = read_checkpoint(latest)
        now = cfg.model_dump(mode="json")
        saved = {**state["config"], "model": {**ModelConfig().model_dump(mode="json"), **state["config"]["model"]}}
        changed = [f"model.{k}" for k in now["model"] if saved["model"].get(k) != now["model"][k]]
        changed += ["data.name"] if saved["data"]["name"] != now["data"]["name"] else []
        if changed:
            key = changed[0]
            section, name = key.split(".")
            raise GdraeError(f"{latest}: {key}: expected the checkpoint's value {saved[section].get(name)!r} "
                             f"to resume, got {now[section][name]!r}")
        if state["step"] > cfg.train.steps:
            raise GdraeError(f"train.steps: expected at least the checkpoint's step {state['step']}, got {cfg.train.steps}")
    elif latest.exists():
        raise GdraeError(f"{run_dir}: run directory already holds a checkpoint; expected --resume or a new train.run_dir")
    else:
        state = None
    if not write:
        return state
    try:
        for sub in ("checkpoints", "tb", "images", "metrics"):
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")
    except OSError as exc:
        raise GdraeError(f"{run_dir}: cannot write the run directory: {exc.strerror or exc}") from None
    return state


class RunDirLock:
    """An exclusive lock on ``run_dir/.lock`` for the whole training, so two trainings never share a run.

    A second training into the same directory is refused with the pid that
    holds it. The lock is flock's: the OS drops it when its process ends,
    however it ends, so a crashed run leaves no stale lock behind.
    """

    def __init__(self, run_dir: Path) -> None:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            self.file = open(run_dir / ".lock", "a+", encoding="utf-8")
        except OSError as exc:
            raise GdraeError(f"{run_dir}: cannot write the run directory: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "unknown"
            self.file.close()
            raise GdraeError(f"{run_dir}: another training (pid {holder}) is writing this run directory; "
                             "wait for it to end or choose another train.run_dir") from None
        self.file.truncate(0)
        self.file.write(f"{os.getpid()}\n")
        self.file.flush()

    def release(self) -> None:
        self.file.truncate(0)  # an empty .lock: nobody holds it
        self.file.close()
