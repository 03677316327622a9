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
from itertools import takewhile
from pathlib import Path

from gdrae.checkpoint import read_checkpoint
from gdrae.config import MODEL_SECTIONS, RunConfig, dump_config
from gdrae.errors import GdraeError, writing


def check_run_dir(run_dir: Path, cfg: RunConfig, resume: bool) -> dict | None:
    """Check the run directory for this training, writing nothing; returns the checkpoint to resume from, or None.

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
        saved_model = {"family": "gdrae", **state["config"]["model"]}  # checkpoints before families were GDRAE's
        if saved_model["family"] not in MODEL_SECTIONS:
            raise GdraeError(f"{latest}: model.family: expected one of {', '.join(MODEL_SECTIONS)}, "
                             f"got {saved_model['family']!r}")
        defaults = MODEL_SECTIONS[saved_model["family"]](family=saved_model["family"])
        saved = {**state["config"], "model": {**defaults.model_dump(mode="json"), **saved_model}}
        changed = [f"model.{k}" for k in now["model"] if saved["model"].get(k) != now["model"][k]]
        changed += ["data.name"] if saved["data"]["name"] != now["data"]["name"] else []
        if changed:
            key = changed[0]
            section, name = key.split(".")
            raise GdraeError(f"{latest}: {key}: expected the checkpoint's value {saved[section].get(name)!r} "
                             f"to resume, got {now[section][name]!r}")
        if state["step"] > cfg.train.steps:
            raise GdraeError(f"train.steps: expected at least the checkpoint's step {state['step']}, got {cfg.train.steps}")
        return state
    if latest.exists():
        raise GdraeError(f"{run_dir}: run directory already holds a checkpoint; expected --resume or a new train.run_dir")
    return None


def create_run_dir(run_dir: Path, cfg: RunConfig) -> None:
    """Create the run directory's folders and write its config.yaml (the resolved ``cfg``)."""
    with writing(run_dir, "the run directory"):
        for sub in ("checkpoints", "tb", "images", "metrics"):
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run_dir / "config.yaml")


class RunDirLock:
    """An exclusive lock on ``run_dir/.lock`` for the whole training, so two trainings never share a run.

    A second training into the same directory is refused with the pid that
    holds it. The lock is flock's: the OS drops it when its process ends,
    however it ends, so a crashed run leaves no stale lock behind. A lock
    that is refused or cannot be written, or is released with ``undo`` (by
    a training that refused to start), leaves the file system as it was: the
    .lock file and the folders it created are removed again.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".lock"
        # what taking the lock creates, innermost first
        self.created = list(takewhile(lambda p: not p.exists(), (self.path, *self.path.parents)))
        self.file, self.held = None, False
        try:
            with writing(run_dir, "the run directory"):
                run_dir.mkdir(parents=True, exist_ok=True)
            with writing(self.path, "the run directory's lock"):
                self.file = open(self.path, "a+b", buffering=0)  # unbuffered: a failed write is not retried at close
            try:
                fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.file.seek(0)
                holder = self.file.read().decode("utf-8", "replace").strip() or "unknown"
                raise GdraeError(f"{run_dir}: another training (pid {holder}) is writing this run directory; "
                                 "wait for it to end or choose another train.run_dir") from None
            self.held = True
            with writing(self.path, "the run directory's lock"):
                self.file.truncate(0)
                self.file.write(f"{os.getpid()}\n".encode())
        except BaseException:
            self.release(undo=True)
            raise

    def release(self, undo: bool = False) -> None:
        """Let the lock go (an empty .lock: nobody holds it); with ``undo``, also remove what taking it created.

        The .lock file is removed only while held, so a lock another training
        took meanwhile is never removed under it.
        """
        if self.held:
            if undo and self.path in self.created:
                self.path.unlink()
            else:
                self.file.truncate(0)
        if self.file is not None:
            self.file.close()
        self.held = False
        for folder in self.created[1:] if undo else []:
            try:
                folder.rmdir()
            except OSError:  # no longer empty: something else was written there meanwhile
                break


# The keys a continued run may change: how long it trains (upward), how often it logs, draws, evaluates and
# checkpoints, where its files and cache live, and how its step is computed (same numbers). Every other key
# (model, data, loss, seed, learning rate, dtype...) makes the run's identity.
CONTINUABLE_KEYS = frozenset({
    "train.steps", "train.log_every", "train.image_every", "train.eval_every", "train.ckpt_every",
    "train.keep_checkpoints", "train.keep_steps", "train.metrics", "train.diag_points", "train.device",
    "train.compile", "train.spectral_route", "train.max_nonfinite", "train.run_dir", "data.cache_dir",
    "data.in_memory",
})


def _flat(tree: dict, prefix: str = "") -> dict[str, object]:
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def identity_changes(saved: dict, cfg: RunConfig) -> list[tuple[str, object, object]]:
    """(key, saved value, new value) of every identity key (not in :data:`CONTINUABLE_KEYS`) on which a run's
    saved config (its config.yaml, as a dict) and ``cfg`` differ; [] when ``cfg`` continues that run.

    The saved config is read with today's defaults, so a key it predates counts as its default.
    """
    from gdrae.config import config_from_dict

    try:
        before = _flat(config_from_dict(saved, "config.yaml").model_dump(mode="json"))
    except GdraeError as exc:
        return [("config.yaml", str(exc), "a valid config")]
    now = _flat(cfg.model_dump(mode="json"))
    keys = [k for k in dict.fromkeys([*before, *now]) if k not in CONTINUABLE_KEYS]
    return [(k, before.get(k), now.get(k)) for k in keys if before.get(k) != now.get(k)]
