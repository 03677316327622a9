"""The training loop: one run of ``gdrae-train`` from a resolved config to a run directory.

:func:`train` reads top to bottom: set up (distributed, run directory,
seeds, model, optimiser, resume), then the loop (batch -> loss terms ->
weighted total -> backward -> gradient all-reduce -> skip if non-finite ->
Adam step), with logging, pictures, diagnostics and checkpoints at their
intervals. The helpers below it are small and each does one thing.

Run directory (DESIGN.md, training run contract)::

    runs/<run>/.lock           held by the one training writing here (its pid inside)
               config.yaml     the resolved config
               checkpoints/    latest.pt (newest) + step-N.pt (keep_checkpoints newest)
               tb/             TensorBoard (tensorboardX) scalars and images
               images/         PNG pictures, one set per evaluation step
               metrics/        diagnostics (and metrics) per evaluation step, JSON lines
               train.log       plain text: losses, diagnostics, warnings

Distributed: launched by torchrun (RANK, WORLD_SIZE, LOCAL_RANK in the
environment), every process trains on its shard of each epoch
(``data.batch_size`` is per process) and gradients are averaged with
``torch.distributed.all_reduce`` after ``backward()``. The model is not
wrapped in DistributedDataParallel, which is known to give errors or wrong
gradients with Jacobian-style double differentiation (PyTorch issues 47562,
63812). Rank 0 alone writes.

Reference: Pan, Niu, Zhang, "Geometric Inductive Biases for Identifiable
Unsupervised Learning of Disentangled Representations", AAAI 2023 (MODEL.md
sections 6-8).
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import random
import re
import signal
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch
import torch.distributed as tdist

from gdrae import viz
from gdrae.checkpoint import VERSION, read_checkpoint, rng_states, set_rng_states, write_checkpoint
from gdrae.config import ModelConfig, RunConfig, TrainConfig, dump_config
from gdrae.data.sector import sample_sector
from gdrae.device import resolve_device
from gdrae.errors import GdraeError
from gdrae.losses import weighted_total
from gdrae.models import build_model
from gdrae.pictures import model_pictures

if TYPE_CHECKING:
    from gdrae.data.cache import Cache


class TrainingDiverged(GdraeError):
    """max_nonfinite steps in a row had a non-finite loss; the last good checkpoint is kept."""


def train(cfg: RunConfig, resume: bool = False) -> torch.nn.Module:
    """Train the model of ``cfg`` into ``cfg.train.run_dir`` and return it (on its device).

    ``resume`` continues from ``checkpoints/latest.pt``. A step whose loss is
    not finite still counts (the data stream moves on) but does not update
    the model; ``train.max_nonfinite`` of them in a row raise TrainingDiverged.
    """
    t = cfg.train
    rank, world, device = setup_distributed(t.device)
    if device.type == "cpu":
        keep_freed_memory()
    main = rank == 0
    run_dir = Path(t.run_dir)
    stop, log, lock = StopSignal(), None, None
    try:
        lock = RunDirLock(run_dir) if main else None  # one training per run directory
        state = open_run_dir(run_dir, cfg, resume, write=main)  # every rank checks, rank 0 writes
        data = open_data(cfg)
        metrics = metrics_hook(cfg, data)
        seed_everything(t.seed)
        model = build_model(cfg).to(device)
        sync_parameters(model, world)  # identical start on every rank
        optimizer = torch.optim.Adam(model.parameters(), lr=t.lr, betas=tuple(t.betas))
        step, notes = 0, []
        if state is not None:
            model.load_state_dict(state["model"])
            notes = restore_optimizer(optimizer, state["optimizer"], t)
            step = state["step"]
            set_rng_states(state["rng"])
        if world > 1:  # every rank draws its own geometric-term samples
            torch.manual_seed(t.seed + 7919 * rank + step)
        batches = data.batches(step, rank, world, device)
        loss_fn = torch.compile(model.loss_terms) if t.compile else model.loss_terms
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if t.dtype == "bfloat16" else nullcontext()
        log = RunLog(run_dir, enabled=main, start_step=step, total_steps=t.steps)
        log.text(f"{'resuming at' if resume else 'starting'} step {step} of {t.steps} on {device} ({world} "
                 f"process(es)), {sum(p.numel() for p in model.parameters()):,} parameters")
        for note in notes:
            log.text(note)
        if t.dtype == "bfloat16" and bfloat16_is_emulated(device):
            log.text("warning: train.dtype bfloat16 on a CPU without bfloat16 instructions is emulated, "
                     "many times slower than float32 (about 15x for sector2dunif); float32 is the choice here")
        nonfinite_in_a_row = 0
        while step < t.steps:
            model.train()
            with batch_must_fit(cfg, device):
                with autocast:
                    terms = loss_fn(next(batches))
                    total = weighted_total(terms, cfg.loss)
                optimizer.zero_grad(set_to_none=True)
                total.backward()
            flags = torch.stack([~torch.isfinite(total.detach()), torch.tensor(stop.requested, device=device)])
            if world > 1:  # any rank's non-finite loss or signal stops every rank
                flags = average_gradients(model, flags, world)
            nonfinite, stopping = (flags > 0).tolist()  # the one host sync per step (as torch's GradScaler)
            step += 1
            log.advance(step)
            if nonfinite:
                nonfinite_in_a_row += 1
                log.text(f"warning: step {step}: non-finite loss ({', '.join(nonfinite_terms(terms))}); step skipped")
                if nonfinite_in_a_row >= t.max_nonfinite:
                    raise TrainingDiverged(
                        f"{run_dir}: {nonfinite_in_a_row} non-finite losses in a row at step {step} "
                        f"(train.max_nonfinite={t.max_nonfinite}); the last good checkpoint is kept in "
                        f"{run_dir / 'checkpoints'}: lower train.lr or check the loss weights")
            else:
                nonfinite_in_a_row = 0
                optimizer.step()
            # rank 0 writes: scalars, pictures, diagnostics, checkpoints; the last step writes all of them
            last = step == t.steps or stopping
            if main and (step % t.log_every == 0 or last):
                log.losses(step, terms, total)
            if main and (step % t.image_every == 0 or last):
                log.images(step, model_pictures(model, data.sample, generator=picture_generator(t.seed, device)))
            if main and (step % t.eval_every == 0 or last):
                log.diagnostics(step, evaluate_step(model, cfg, metrics))
            if main and (step % t.ckpt_every == 0 or last):
                write_checkpoint(run_dir / "checkpoints", checkpoint_state(model, optimizer, step, cfg), t.keep_checkpoints)
            if stopping:
                log.text(f"stopped by a signal at step {step}: checkpoint written; continue with --resume")
                break
        log.text(f"done: step {step} of {t.steps} in {log.elapsed():.1f} s")
    finally:
        stop.restore()
        if log is not None:
            log.close()
        if lock is not None:
            lock.release()
        if world > 1:
            tdist.destroy_process_group()
    return model


# ----------------------------------------------------------------------------- setup


def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world_size, device): torchrun's environment if present (gloo on CPU, nccl on GPU), else one process."""
    use_cuda = resolve_device(device, "train.device").type == "cuda"
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return 0, 1, torch.device("cuda" if use_cuda else "cpu")
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local)
    tdist.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world, torch.device(f"cuda:{local}" if use_cuda else "cpu")


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


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the system.

    Every decoder pass on CPU allocates and frees tensors of several MiB. By
    default glibc serves those with fresh ``mmap`` pages, so each one pays
    page faults and zeroing again; raising the mmap and trim thresholds makes
    the memory reused instead, about 10% off a CPU training step
    (bench/train_step.py). Returns False where the C library is not glibc
    (nothing changes there). Process-wide; the peak resident memory is kept.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc <malloc.h>
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, (1 << 31) - 1))


def bfloat16_is_emulated(device: torch.device) -> bool:
    """True on a CPU without bfloat16 instructions, where oneDNN emulates bfloat16 arithmetic.

    There an autocast step is many times slower than float32 (about 15x for
    sector2dunif on an AVX2 CPU), so the trainer warns. False on GPUs, and
    where this torch build cannot tell.
    """
    if device.type != "cpu":
        return False
    try:
        return not torch.ops.mkldnn._is_mkldnn_bf16_supported()
    except (AttributeError, RuntimeError):
        return False


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python's random."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def sync_parameters(model: torch.nn.Module, world: int) -> None:
    """Copy rank 0's parameters and buffers to every rank (a no-op in one process)."""
    if world > 1:
        for tensor in list(model.parameters()) + list(model.buffers()):
            tdist.broadcast(tensor.data, src=0)


def average_gradients(model: torch.nn.Module, flags: torch.Tensor, world: int) -> torch.Tensor:
    """Average the gradients over ranks and sum ``flags``, in one all-reduce; returns the summed flags.

    Not DistributedDataParallel: see the module docstring.
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads] + [flags.to(grads[0].dtype)])
    tdist.all_reduce(flat, op=tdist.ReduceOp.SUM)
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g)).div_(world)
        offset += g.numel()
    return flat[offset:]


def nonfinite_terms(terms: dict[str, torch.Tensor]) -> list[str]:
    """Names of the loss terms that are not finite (for the warning)."""
    bad = [k for k, v in terms.items() if not k.startswith("monitor/") and not torch.isfinite(v).all()]
    return bad or ["weighted total"]


def checkpoint_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int, cfg: RunConfig) -> dict:
    """The checkpoint dict (gdrae.checkpoint): tensors and primitives only."""
    return {"version": VERSION, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "config": cfg.model_dump(mode="json"), "rng": rng_states()}


def restore_optimizer(optimizer: torch.optim.Optimizer, saved: dict, t: TrainConfig) -> list[str]:
    """Load the checkpoint's optimiser state, then apply the config's lr and betas to it.

    A resumed run may change them (lowering the learning rate is common); the
    returned lines (for train.log) say what changed, so the optimiser and
    config.yaml never disagree silently.
    """
    optimizer.load_state_dict(saved)
    notes = []
    for key, value in (("lr", t.lr), ("betas", tuple(t.betas))):
        before = optimizer.param_groups[0][key]
        if before != value:
            for group in optimizer.param_groups:
                group[key] = value
            shown = [list(v) if isinstance(v, tuple) else v for v in (before, value)]
            notes.append(f"train.{key}: {shown[0]} in the checkpoint, {shown[1]} from now on")
    return notes


@contextmanager
def batch_must_fit(cfg: RunConfig, device: torch.device):
    """Running out of memory in a training step becomes one line naming data.batch_size."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not isinstance(exc, (MemoryError, torch.OutOfMemoryError)) and "allocate memory" not in str(exc):
            raise
        raise GdraeError(f"data.batch_size: {cfg.data.batch_size} does not fit in memory on {device} "
                         "(a training step ran out of memory); lower data.batch_size") from None


class StopSignal:
    """SIGINT/SIGTERM set ``requested``; the loop then writes a checkpoint and leaves cleanly (exit 0)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay with the caller
                pass

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self.restore()  # a second Ctrl-C stops at once, without a checkpoint

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# ----------------------------------------------------------------------------- data


SECTOR_NAMES = {"sector2d": False, "sector2dunif": True}  # name -> uniform density on the sector


@dataclass
class TrainData:
    """What the run trains on: a cache (images) or the Sector2D sampler, and a fixed sample to draw pictures of."""

    cfg: RunConfig
    cache: Cache | None  # the image cache; None for Sector2D, which samples fresh points
    sample: torch.Tensor  # fixed real data (64 images in [0, 1], or 2000 points) for the pictures

    def batches(self, start_step: int, rank: int, world: int, device: torch.device) -> Iterator[torch.Tensor]:
        """Infinite stream of this rank's training batches from ``start_step``, float on ``device``.

        Images: the cache loader (uint8 -> float / 255 on the device). Sector2D:
        fresh points every step (as the paper), drawn from a generator seeded
        by (seed, rank, step) so a resumed run draws what the straight run draws.
        """
        d, seed = self.cfg.data, self.cfg.train.seed
        if self.cache is None:
            gen = torch.Generator()
            for step in range(start_step, 2**62):
                gen.manual_seed(int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0]))
                yield sample_sector(d.batch_size, SECTOR_NAMES[d.name], gen).to(device)
        from gdrae.data.loader import BatchLoader

        loader = BatchLoader(self.cache, d.batch_size, seed=seed, rank=rank, world_size=world, in_memory=d.in_memory)
        for batch in loader.batches(start_step):
            yield batch.to(device, non_blocking=True).float().div_(255.0)


def open_data(cfg: RunConfig) -> TrainData:
    """Open the cache (images) or check the Sector2D name; GdraeError when the config does not fit the data."""
    d, m = cfg.data, cfg.model
    if m.kind == "sector2d":
        if d.name not in SECTOR_NAMES:
            raise GdraeError(f"data.name: expected sector2d or sector2dunif for model.kind=sector2d, got {d.name!r}")
        gen = torch.Generator().manual_seed(cfg.train.seed)
        return TrainData(cfg, None, sample_sector(2000, SECTOR_NAMES[d.name], gen))
    if d.name in SECTOR_NAMES:
        raise GdraeError(f"model.kind: expected sector2d for data.name={d.name}, got {m.kind!r}")
    from gdrae.data.cache import open_run_cache

    cache = open_run_cache(cfg, source="config")
    rows = np.sort(np.random.default_rng(cfg.train.seed).choice(cache.n, size=min(64, cache.n), replace=False))
    sample = torch.from_numpy(cache.images[rows]).float() / 255.0
    return TrainData(cfg, cache, sample)


# ----------------------------------------------------------------------------- evaluation


def picture_generator(seed: int, device: torch.device) -> torch.Generator:
    """The pictures' own generator (seeded by train.seed), so the training random stream is untouched."""
    return torch.Generator(device=device).manual_seed(seed)


def metrics_hook(cfg: RunConfig, data: TrainData):
    """``gdrae.evaluate.training_metrics`` on the run's cache when train.metrics asks for metrics, else None.

    The names and the cache are checked here, at run start, so a typo or a
    missing cache stops the run before its first step, not at its first
    evaluation. The cache is opened once: the one the run trains on, or for
    Sector2D (trained on fresh samples) its prepared grid. Imported lazily:
    plain training needs neither the metrics nor scikit-learn.
    """
    if not cfg.train.metrics:
        return None
    from gdrae import evaluate
    from gdrae.data.cache import open_run_cache

    evaluate.check_metric_names(cfg.train.metrics, "train.metrics")
    cache = data.cache if data.cache is not None else open_run_cache(cfg, source="train.metrics")
    return partial(evaluate.training_metrics, cache=cache)


def evaluate_step(model, cfg: RunConfig, metrics=None) -> dict[str, float]:
    """Geometric diagnostics (model.diagnostics), plus the disentanglement metrics of ``metrics_hook``."""
    model.eval()
    values = dict(model.diagnostics(n_points=cfg.train.diag_points, seed=cfg.train.seed))
    if metrics is not None:
        values.update(metrics(model, cfg))
    return values


# ----------------------------------------------------------------------------- logging

LOSS_LINE = re.compile(r" step (\d+) (total=.*)$")  # as RunLog.losses writes it
NOT_LOSSES = {"recon_l1", "steps/s"}  # monitors on the same line


def read_loss_log(path: Path) -> dict[int, dict[str, float]]:
    """The loss terms a run's train.log holds, by step: {step: {"total": .., "recon": .., ...}}.

    Reads the lines :meth:`RunLog.losses` writes (a resumed run appends; the
    last line of a step wins). An unfinished run gives the steps it reached.
    """
    curves: dict[int, dict[str, float]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        match = LOSS_LINE.search(line)
        if match:
            pairs = (item.split("=", 1) for item in match.group(2).split())
            curves[int(match.group(1))] = {k: float(v) for k, v in pairs if k not in NOT_LOSSES}
    return curves


def last_evaluation(run_dir: str | Path) -> dict[str, float] | None:
    """The newest record of a run's metrics/eval.jsonl (written by :meth:`RunLog.diagnostics`), or None."""
    path = Path(run_dir) / "metrics" / "eval.jsonl"
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
        from tensorboardX import SummaryWriter
        from tqdm import tqdm

        self.tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=start_step + 1)
        self.file = open(self.run_dir / "train.log", "a", encoding="utf-8")
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
            self.file.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
            self.file.flush()
            self.bar.write(line)

    def losses(self, step: int, terms: dict[str, torch.Tensor], total: torch.Tensor) -> None:
        """Scalars of every loss term and monitor (a host sync: only every log_every steps)."""
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
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in short.items()}, refresh=False)
        self.text(f"step {step} " + " ".join(f"{k}={v:.6g}" for k, v in short.items())
                  + f" recon_l1={values.get('monitor/recon_l1', float('nan')):.4g} steps/s={rate:.3g}")

    def images(self, step: int, pictures: dict[str, np.ndarray]) -> None:
        """PNG files images/<name>_<step>.png and TensorBoard images."""
        if not self.enabled:
            return
        for name, array in pictures.items():
            viz.save_png(array, self.run_dir / "images" / f"{name}_{step:07d}.png")
            self.tb.add_image(f"images/{name}", array, step, dataformats="HWC")

    def diagnostics(self, step: int, values: dict[str, float]) -> None:
        """Geometric diagnostics (and metrics) to TensorBoard, train.log and metrics/eval.jsonl."""
        if not self.enabled:
            return
        for name, v in values.items():
            self.tb.add_scalar(f"eval/{name}", v, step)
        with open(self.run_dir / "metrics" / "eval.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        self.text(f"eval step {step} " + " ".join(f"{k}={v:.4g}" for k, v in values.items()))

    def close(self) -> None:
        if self.enabled:
            self.bar.close()
            self.tb.close()
            self.file.close()
