"""Checkpoints: plain dicts of tensors and primitives, written atomically, read safely.

A checkpoint is a dict with the keys ``version``, ``step``, ``model`` (state
dict), ``optimizer`` (state dict), ``config`` (the resolved run config as a
plain dict) and ``rng`` (torch CPU, CUDA, numpy and python generator states).
It loads with ``torch.load(weights_only=True)``: nothing is unpickled beyond
tensors and primitives, so a checkpoint from elsewhere cannot run code.

A run keeps ``checkpoints/latest.pt`` (always the newest) and up to
``keep_checkpoints`` files ``step-N.pt``. Every file is written to a
temporary name and renamed, so a crash mid-write leaves the earlier good
checkpoint in place.
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gdrae.errors import GdraeError

VERSION = 1
REQUIRED_KEYS = ("version", "step", "model", "optimizer", "config", "rng")
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


def rng_states() -> dict[str, Any]:
    """Every random generator the trainer uses, as tensors and primitives."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_states`."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save to a temporary name in the same folder, then rename over ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def write_checkpoint(ckpt_dir: Path, state: dict, keep: int) -> Path:
    """Write ``state`` as ``latest.pt`` and ``step-N.pt``, then keep only the ``keep`` newest step files."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    latest = ckpt_dir / "latest.pt"
    save_atomic(state, latest)
    if keep > 0:
        step_file = ckpt_dir / f"step-{state['step']}.pt"
        tmp = ckpt_dir / f".{step_file.name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(latest, tmp)  # same bytes, no second write
        except OSError:
            save_atomic(state, tmp)
        os.replace(tmp, step_file)
    steps = sorted(int(m.group(1)) for f in ckpt_dir.iterdir() if (m := _STEP_FILE.match(f.name)))
    for old in steps[: max(len(steps) - keep, 0)]:
        (ckpt_dir / f"step-{old}.pt").unlink()
    return latest


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load and check a checkpoint dict; a GdraeError names the file when it is missing, corrupt or foreign."""
    path = Path(path)
    if not path.is_file():
        raise GdraeError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for damaged files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GdraeError(f"{path}: unreadable checkpoint (corrupt or not a torch file): {reason[:200]}") from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise GdraeError(f"{path}: not a gdrae checkpoint: expected keys {list(REQUIRED_KEYS)}, got {got}")
    if state["version"] != VERSION:
        raise GdraeError(f"{path}: checkpoint version: expected {VERSION}, got {state['version']}")
    return state


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Rebuild the model of a checkpoint: returns ``(model, cfg)``, the model in eval mode.

    ``cfg`` is the run's resolved :class:`gdrae.config.RunConfig`.
    """
    from gdrae.config import RunConfig
    from gdrae.models import build_model

    state = read_checkpoint(path, map_location)
    try:
        cfg = RunConfig.model_validate(state["config"])
    except Exception as exc:
        raise GdraeError(f"{path}: checkpoint config does not validate: {str(exc).splitlines()[0]}") from None
    model = build_model(cfg)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise GdraeError(f"{path}: model weights do not fit the checkpoint's config: {str(exc).splitlines()[0]}") from None
    return model.to(map_location).eval(), cfg
