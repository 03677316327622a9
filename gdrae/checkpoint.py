"""Checkpoints: plain dicts of tensors and primitives, written atomically, read safely.

A checkpoint is a dict with the keys ``version``, ``step``, ``model`` (state
dict), ``optimizer`` (version 2: one optimiser state dict per parameter group
of the model, by group name; version 1, before model families: GDRAE's one
state dict, read as the group "model"), ``config`` (the resolved run config
as a plain dict) and ``rng`` (torch CPU, CUDA, numpy and python generator
states).
It loads with ``torch.load(weights_only=True)``: nothing is unpickled beyond
tensors and primitives, so a checkpoint from elsewhere cannot run code.

A run keeps ``checkpoints/latest.pt`` (always the newest) and up to
``keep_checkpoints`` files ``step-N.pt``. Every file is written whole or not
at all (:mod:`gdrae.atomic`), so a crash or a full disk mid-write leaves the
earlier good checkpoint in place.

Each file also carries ``sha256``, a digest of everything else in it (every
tensor's bytes and every primitive, see :func:`content_digest`), checked on
every read: damage inside the tensor data, which torch.load does not notice,
is refused. Checkpoints written before the digest existed load unchecked.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import random
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Iterable

import numpy as np
import torch

from gdrae.atomic import temp_path, write_atomic
from gdrae.errors import GdraeError, writing

if TYPE_CHECKING:
    from gdrae.config import RunConfig, TrainConfig

VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: one optimiser (GDRAE's), read as the group "model"
V1_GROUP = "model"
REQUIRED_KEYS = ("version", "step", "model", "optimizer", "config", "rng")
_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")
# torch's weights-only refusals of a pickle that names Python classes or functions (torch/_weights_only_unpickler.py)
_NAMES_PYTHON_OBJECTS = re.compile(r"GLOBAL|safe_globals|unrecognized function")


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
    """torch.save through :func:`gdrae.atomic.write_atomic`; a failed write is a GdraeError naming ``path``."""
    with writing(path, "the checkpoint"):
        write_atomic(path, lambda f: _torch_save(obj, f))


def _torch_save(obj: dict, f: BinaryIO) -> None:
    """torch.save into ``f``; a failed write is an OSError.

    torch's zip writer swallows the file's OSError (a full disk) and raises
    a RuntimeError of its own later ("[enforce fail at inline_container.cc]
    unexpected pos ..."); that one becomes the OSError it stands for.
    """
    try:
        torch.save(obj, f)
    except RuntimeError as exc:
        if "inline_container" not in str(exc) and "PytorchStreamWriter" not in str(exc):
            raise
        raise OSError("the disk is full or not writable") from None


def checkpoint_state(model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer], step: int,
                     cfg: RunConfig) -> dict:
    """The checkpoint of a training at ``step`` (the keys above): tensors and primitives only."""
    return {"version": VERSION, "step": step, "model": model.state_dict(),
            "optimizer": {group: opt.state_dict() for group, opt in optimizers.items()},
            "config": cfg.model_dump(mode="json"), "rng": rng_states()}


def restore_optimizers(optimizers: dict[str, torch.optim.Optimizer], saved: dict[str, dict],
                       settings: dict[str, tuple]) -> list[str]:
    """Load each group's saved optimiser state, then apply the config's learning rate and betas to it.

    ``settings``: ``model.optimizer_settings(cfg)``, {group: (lr, betas,
    lr key, betas key)}. The optimiser keeps its own kernel (fused or not,
    gdrae.train.make_adam): how the update runs is not part of the run, and a
    checkpoint written by another kernel continues with the same update.

    A resumed run may change them (lowering the learning rate is common); the
    returned lines (for train.log) say what changed, naming the config key,
    so the optimisers and config.yaml never disagree silently.
    """
    if set(saved) != set(optimizers):
        raise GdraeError(f"checkpoint optimizer: expected the parameter groups {sorted(optimizers)}, "
                         f"got {sorted(saved)}")
    notes = []
    for group, optimizer in optimizers.items():
        kernels = [{k: g.get(k) for k in ("fused", "foreach")} for g in optimizer.param_groups]
        optimizer.load_state_dict(saved[group])
        for param_group, kernel in zip(optimizer.param_groups, kernels):  # how updates run is not the run's state
            param_group.update(kernel)
        lr, betas, lr_key, betas_key = settings[group]
        for name, key, value in (("lr", lr_key, lr), ("betas", betas_key, tuple(betas))):
            before = optimizer.param_groups[0][name]
            if before != value:
                for param_group in optimizer.param_groups:
                    param_group[name] = value
                shown = [list(v) if isinstance(v, tuple) else v for v in (before, value)]
                notes.append(f"{key}: {shown[0]} in the checkpoint, {shown[1]} from now on")
    return notes


def write_checkpoint(ckpt_dir: Path, state: dict, keep: int, keep_steps: Iterable[int] = ()) -> Path:
    """Write ``state`` plus its ``sha256`` as ``latest.pt`` and ``step-N.pt``; keep the ``keep`` newest step
    files, and those of ``keep_steps`` whatever their age (they are not counted in ``keep``)."""
    ckpt_dir = Path(ckpt_dir)
    latest = ckpt_dir / "latest.pt"
    with writing(ckpt_dir, "the checkpoint"):
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    state = {**state, "sha256": content_digest(state)}
    save_atomic(state, latest)
    kept = set(keep_steps)
    if keep > 0 or state["step"] in kept:
        step_file = ckpt_dir / f"step-{state['step']}.pt"
        tmp = temp_path(step_file)
        try:
            os.link(latest, tmp)  # same bytes, no second write
            os.replace(tmp, step_file)
        except OSError:
            tmp.unlink(missing_ok=True)
            save_atomic(state, step_file)
    steps = [n for n in step_numbers(ckpt_dir) if n not in kept]
    for old in steps[: max(len(steps) - keep, 0)]:
        (ckpt_dir / f"step-{old}.pt").unlink()
    return latest


def step_numbers(ckpt_dir: Path) -> list[int]:
    """The N of every ``step-N.pt`` in ``ckpt_dir``, ascending."""
    return sorted(int(m.group(1)) for f in Path(ckpt_dir).iterdir() if (m := _STEP_FILE.match(f.name)))


def content_digest(state: dict) -> str:
    """sha256 over a checkpoint dict: every key, primitive and tensor (dtype, shape, bytes), in order.

    The same before torch.save and after torch.load(weights_only=True), so it
    travels inside the file, and hard-linked step files share it.
    """
    h = hashlib.sha256()
    _digest_into(h, state)
    return h.hexdigest()


def _digest_into(h, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"tensor {t.dtype} {tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(obj, dict):
        h.update(f"dict {len(obj)};".encode())
        for key, value in obj.items():
            _digest_into(h, key)
            _digest_into(h, value)
    elif isinstance(obj, (list, tuple)):
        h.update(f"list {len(obj)};".encode())
        for value in obj:
            _digest_into(h, value)
    else:
        text = repr(obj)
        h.update(f"{type(obj).__name__} {len(text)} {text};".encode())


def torch_load(path: Path, map_location: str | torch.device = "cpu") -> Any:
    """torch.load(weights_only=True), its refusals in plain words.

    A file holding pickled code is a GdraeError saying so. Other refusals
    (damage, e.g. "Unsupported operand 0") stay a pickle.UnpicklingError,
    carrying only torch's reason, not its advice to load with
    weights_only=False.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if _NAMES_PYTHON_OBJECTS.search(str(exc)):
            raise GdraeError(f"{path}: holds Python code (pickled objects), not only tensors: not loaded; "
                             "do not trust this file") from None
        reason = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)", str(exc), re.S)
        raise pickle.UnpicklingError(reason.group(1) if reason else str(exc)) from None


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_tensor_dict(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(t, torch.Tensor) for t in v.values())


_KEY_TYPES = {  # checkpoint key -> (what it must be, test)
    "step": ("an integer >= 0", _is_count),
    "model": ("a dict of tensors", _is_tensor_dict),
    "optimizer": ("a dict", lambda v: isinstance(v, dict)),
    "config": ("a dict", lambda v: isinstance(v, dict)),
    "rng": ("a dict", lambda v: isinstance(v, dict)),
}


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load and check a checkpoint dict; a GdraeError names the file when it is missing, damaged or foreign.

    A damaged file's message names the newest ``step-N.pt`` beside it that is intact.
    """
    path = Path(path)
    if not path.is_file():
        raise GdraeError(f"{path}: checkpoint not found")
    try:
        return _read_checked(path, map_location)
    except GdraeError as exc:
        raise GdraeError(f"{exc}{_intact_neighbour(path)}") from None


def _read_checked(path: Path, map_location: str | torch.device) -> dict:
    try:
        state = torch_load(path, map_location)
    except GdraeError:
        raise
    except Exception as exc:  # torch raises many types for damaged files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GdraeError(f"{path}: unreadable checkpoint (corrupt or not a torch file): {reason[:200]}") from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        got = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise GdraeError(f"{path}: not a gdrae checkpoint: expected keys {list(REQUIRED_KEYS)}, got {got}")
    stored = state.pop("sha256", None)  # None: written before checkpoints carried a digest
    if stored is not None and stored != content_digest(state):
        raise GdraeError(f"{path}: damaged checkpoint: its content does not match the sha256 stored in it")
    if state["version"] not in READABLE_VERSIONS:
        raise GdraeError(f"{path}: checkpoint version: expected one of {list(READABLE_VERSIONS)}, "
                         f"got {state['version']!r}")
    for key, (expected, ok) in _KEY_TYPES.items():
        value = state[key]
        if not ok(value):
            got = repr(value)[:60] if isinstance(value, (int, float, str)) else type(value).__name__
            raise GdraeError(f"{path}: checkpoint {key}: expected {expected}, got {got}")
    if state["version"] == 1:  # the one optimiser of a GDRAE checkpoint from before model families
        state["optimizer"] = {V1_GROUP: state["optimizer"]}
    elif not all(isinstance(v, dict) for v in state["optimizer"].values()):
        raise GdraeError(f"{path}: checkpoint optimizer: expected a dict of optimiser states by parameter group")
    return state


def _intact_neighbour(path: Path) -> str:
    """The end of a message about a damaged ``path``: the newest intact step-N.pt beside it, or nothing."""
    for step in reversed(step_numbers(path.parent)):
        other = path.parent / f"step-{step}.pt"
        if other.name == path.name:
            continue
        try:
            _read_checked(other, "cpu")
        except GdraeError:
            continue
        return f"; the newest intact checkpoint beside it is {other} (copy it over latest.pt to resume from it)"
    return ""


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """Rebuild the model of a checkpoint: returns ``(model, cfg)``, the model in eval mode.

    ``cfg`` is the run's resolved :class:`gdrae.config.RunConfig`.
    """
    return model_from_checkpoint(read_checkpoint(path, map_location), path, map_location)


def model_from_checkpoint(state: dict, path: str | os.PathLike, map_location: str | torch.device = "cpu"):
    """``(model, cfg)`` of a checkpoint dict already read by :func:`read_checkpoint` from ``path``
    (named in errors); the model in eval mode."""
    from gdrae.config import RunConfig
    from gdrae.models import build_model

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
