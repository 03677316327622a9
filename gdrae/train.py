"""The training loop: one run of ``gdrae-train`` from a resolved config to a run directory.

:func:`train` reads top to bottom: set up (distributed, run directory,
data, seeds, model of any family, one Adam per parameter group, resume),
then the loop (:func:`train_step`: batch -> loss terms per group -> each
group's weighted total -> each total's backward into its own group ->
gradient all-reduce -> skip if non-finite -> every Adam's step), with
logging, pictures, diagnostics and checkpoints at their intervals. Rank 0 alone writes. What it relies on
lives beside it: :mod:`gdrae.distributed` (torchrun, gradients averaged
without DistributedDataParallel), :mod:`gdrae.rundir` (the run directory
and its lock), :mod:`gdrae.data.stream` (the batches), :mod:`gdrae.evaluate`
(the evaluation gdrae-eval makes), :mod:`gdrae.runlog` (train.log, losses
as JSON lines, the evaluations' record, TensorBoard, images),
:mod:`gdrae.checkpoint`. The helpers below it are small and each does one
thing.

Reference: Pan, Niu, Zhang, "Geometric Inductive Biases for Identifiable
Unsupervised Learning of Disentangled Representations", AAAI 2023 (docs/model.md
sections 6-8).
"""
from __future__ import annotations

import os
import random
import signal
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as tdist

from gdrae.checkpoint import checkpoint_state, restore_optimizers, set_rng_states, write_checkpoint
from gdrae.config import RunConfig
from gdrae.data.stream import TrainData, open_data
from gdrae.distributed import average_gradients, same_refusal_everywhere, setup_distributed, sync_parameters
from gdrae.errors import GdraeError
from gdrae.evaluate import DIAGNOSTICS, check_metric_names, evaluate, provenance
from gdrae.losses import weighted_total
from gdrae.models import build_model
from gdrae.models.contract import Model, Terms
from gdrae.pictures import model_pictures
from gdrae.rundir import RunDirLock, check_run_dir, create_run_dir
from gdrae.runlog import RunLog


class TrainingDiverged(GdraeError):
    """max_nonfinite steps in a row had a non-finite loss; the last good checkpoint is kept."""


def train(cfg: RunConfig, resume: bool = False, on_stop=None) -> torch.nn.Module:
    """Train the model of ``cfg`` into ``cfg.train.run_dir`` and return it (on its device).

    ``resume`` continues from ``checkpoints/latest.pt``. ``on_stop(signum)``,
    when given, is called once a stop signal's checkpoint is written (a
    study's cluster task tells a time-limit warning from a requeue by it). A step whose loss is
    not finite still counts (the data stream moves on) but does not update
    the model; ``train.max_nonfinite`` of them in a row raise TrainingDiverged.
    """
    t = cfg.train
    rank, world, device = setup_distributed(t.device)
    main = rank == 0
    run_dir = Path(t.run_dir)
    stop, log, lock, checked = StopSignal(), None, None, False
    try:
        with same_refusal_everywhere(world):  # every check before any write; one rank's refusal is every rank's
            lock = RunDirLock(run_dir) if main else None  # one training per run directory
            state = check_run_dir(run_dir, cfg, resume)
            data = open_data(cfg)
            seed_everything(t.seed)
            model = build_model(cfg).to(device)
            metrics = evaluation_metrics(cfg, model)
            eval_cache = open_metrics_cache(cfg, data, metrics)  # None without train.metrics
        checked = True
        if main:
            create_run_dir(run_dir, cfg)
        sync_parameters(model, world)  # identical start on every rank
        optimizers = make_optimizers(model, cfg)
        step, notes = 0, []
        if state is not None:
            model.load_state_dict(state["model"])
            notes = restore_optimizers(optimizers, state["optimizer"], model.optimizer_settings(cfg))
            step = state["step"]
            set_rng_states(state["rng"])
        if world > 1:  # every rank draws its own geometric-term samples
            torch.manual_seed(t.seed + 7919 * rank + step)
        batches = data.batches(step, rank, world, device)
        loss_fn = torch.compile(model.loss_terms) if t.compile else model.loss_terms
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if t.dtype == "bfloat16" else nullcontext()
        log = RunLog(run_dir, enabled=main, start_step=step, total_steps=t.steps)
        log.text(f"{'resuming at' if resume else 'starting'} step {step} of {t.steps} on {device} ({world} "
                 f"process(es)), {model.family}, {sum(p.numel() for p in model.parameters()):,} parameters")
        for note in notes:
            log.text(note)
        if t.dtype == "bfloat16" and bfloat16_is_emulated(device):
            log.text("warning: train.dtype bfloat16 on a CPU without bfloat16 instructions is emulated, "
                     "many times slower than float32 (about 15x for sector2dunif); float32 is the choice here")
        nonfinite_in_a_row = 0
        while step < t.steps:
            model.train()
            with batch_must_fit(cfg, device):
                terms, totals, nonfinite, stopping = train_step(
                    model, optimizers, loss_fn, next(batches), step, autocast=autocast, stop=stop.requested,
                    world=world)
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
            # rank 0 writes. At a stop signal only the checkpoint (and the losses): nothing slow before it,
            # so a scheduler's grace period is enough. The last step writes everything.
            last = step == t.steps
            if main and (step % t.log_every == 0 or last or stopping):
                log.losses(step, terms, totals)
            if main and (step % t.image_every == 0 or last) and not stop.pending(stopping, world):
                log.images(step, model_pictures(model, data.sample, generator=picture_generator(t.seed, device)))
            if main and (step % t.eval_every == 0 or last) and not stop.pending(stopping, world):
                log.evaluation(step, evaluate_step(model, cfg, metrics, eval_cache), provenance(t.seed, eval_cache))
            stopping = stop.pending(stopping, world)
            if main and (step % t.ckpt_every == 0 or step in t.keep_steps or last or stopping):
                write_checkpoint(run_dir / "checkpoints", checkpoint_state(model, optimizers, step, cfg),
                                 t.keep_checkpoints, keep_steps=t.keep_steps)
            if stopping:
                latest = run_dir / "checkpoints" / "latest.pt"
                ignored = f" ({stop.repeated} further signal(s) waited for it)" if stop.repeated else ""
                log.text(f"stopped by a signal at step {step}: checkpoint {latest} written{ignored}; continue with "
                         f"--resume; evaluate it with: gdrae-eval --ckpt {latest}")
                if on_stop is not None:
                    on_stop(stop.signum)
                break
        log.text(f"done: step {step} of {t.steps} in {log.elapsed():.1f} s")
    finally:
        stop.restore()
        if lock is not None:
            lock.release(undo=not checked)  # a refused start leaves the file system as it was
        if world > 1:
            tdist.destroy_process_group()
        if log is not None:
            log.close()  # last: its flush can fail too (a full disk)
    return model


# ----------------------------------------------------------------------------- setup


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


def make_optimizers(model: Model, cfg: RunConfig) -> dict[str, torch.optim.Adam]:
    """One Adam per parameter group of the model, each with its settings (``model.optimizer_settings``)."""
    settings = model.optimizer_settings(cfg)
    return {group: make_adam(params, *settings[group][:2]) for group, params in model.parameter_groups().items()}


def make_adam(params, lr: float, betas: tuple[float, float]) -> torch.optim.Adam:
    """Adam over ``params``, its fused kernel where this torch has one for the device.

    Fused, each update is one pass over each tensor instead of about ten
    (on two CPU cores a Sector2D step spends 50 ms in the plain update and
    10 ms in the fused one); the update is the same. torch before 2.4 has
    no fused kernel for CPUs, and then the plain one is taken.
    """
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), fused=True)
    except RuntimeError:
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas))


def train_step(model: Model, optimizers: dict[str, torch.optim.Optimizer], loss_fn, batch: torch.Tensor, step: int,
               *, autocast=nullcontext(), stop: bool = False, world: int = 1
               ) -> tuple[dict[str, Terms], dict[str, torch.Tensor], bool, bool]:
    """One optimisation step of every parameter group: ``(terms, totals, nonfinite, stopping)``.

    In this order: the loss terms of every group (``loss_fn``: the model's
    ``loss_terms`` or its compiled form, given ``step`` as a 0-d tensor);
    each group's weighted total (``model.weights``); the backward of every
    total into its own group's parameters alone (so FactorVAE's VAE loss
    leaves the discriminator's gradients untouched); then the all-reduce of
    every gradient and the one host sync of the non-finite and stop flags
    (``stop``: this process was asked to stop); a non-finite total in any
    group skips the step of every group; then every optimiser's step. No
    optimiser steps before every backward is done (stepping one in place
    before another's backward is the error FactorVAE ports meet).
    """
    with autocast:
        terms = loss_fn(batch, torch.tensor(step, device=batch.device))
        totals = {group: weighted_total(group_terms, model.weights[group]) for group, group_terms in terms.items()}
    for optimizer in optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    for i, (group, optimizer) in enumerate(optimizers.items()):
        params = [p for param_group in optimizer.param_groups for p in param_group["params"]]
        torch.autograd.backward(totals[group], inputs=params, retain_graph=i + 1 < len(optimizers))
    finite = torch.stack([torch.isfinite(total.detach()) for total in totals.values()]).all()
    flags = torch.stack([~finite, torch.tensor(stop, device=finite.device)])
    if world > 1:  # any rank's non-finite loss or signal stops every rank
        flags = average_gradients(model, flags, world)
    nonfinite, stopping = (flags > 0).tolist()  # the one host sync per step (as torch's GradScaler)
    if not nonfinite:
        for optimizer in optimizers.values():
            optimizer.step()
    return terms, totals, nonfinite, stopping


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python's random."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def nonfinite_terms(terms: dict[str, Terms]) -> list[str]:
    """Names of the loss terms that are not finite (for the warning); a further group's named with its group."""
    bad = [k if i == 0 else f"{group}/{k}" for i, (group, group_terms) in enumerate(terms.items())
           for k, v in group_terms.items() if not k.startswith("monitor/") and not torch.isfinite(v).all()]
    return bad or ["weighted total"]


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


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)  # SIGUSR2: SLURM's time-limit warning (--signal)


class StopSignal:
    """SIGINT, SIGTERM and SIGUSR2 set ``requested``; the loop then writes a checkpoint and leaves cleanly (exit 0).

    Later signals are counted in ``repeated`` and otherwise ignored until the
    run has left the loop: a second Ctrl-C cannot interrupt the checkpoint
    write or leave half a line in a log. Python's handlers only set flags,
    so nothing is raised in the middle of a write.
    """

    def __init__(self) -> None:
        self.requested = False
        self.repeated = 0
        self.signum = None  # the first stop signal's number
        self._previous = {}
        for sig in STOP_SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: signals stay with the caller
                pass

    def _handle(self, signum, frame) -> None:
        if self.requested:
            self.repeated += 1
            return
        self.requested = True
        self.signum = signum
        os.write(2, f"\n{signal.Signals(signum).name}: stopping after this step with a checkpoint "
                    "(a further signal waits for it)\n".encode())

    def pending(self, stopping: bool, world: int) -> bool:
        """True once the run must stop: ``stopping`` (every rank agreed at the step's end), or, in a
        single process, a signal that arrived since (e.g. during the pictures or the evaluation)."""
        return stopping or (world == 1 and self.requested)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# ----------------------------------------------------------------------------- evaluation


def picture_generator(seed: int, device: torch.device) -> torch.Generator:
    """The pictures' own generator (seeded by train.seed), so the training random stream is untouched."""
    return torch.Generator(device=device).manual_seed(seed)


def evaluation_metrics(cfg: RunConfig, model: Model) -> list[str]:
    """What each evaluation computes: train.metrics (checked against what the model can be asked), then the
    model's own diagnostics (``model.evaluations``) that train.metrics does not list."""
    names = check_metric_names(cfg.train.metrics, "train.metrics", model)
    return [*names, *(n for n in model.evaluations if n not in names)]


def open_metrics_cache(cfg: RunConfig, data: TrainData, metrics: list[str]):
    """The cache the evaluations' ``metrics`` read; None when they are diagnostics alone (they read no data).

    The names and the cache are checked here, at run start, so a typo or a
    missing cache stops the run before its first step, not at its first
    evaluation. The cache is opened once: the one the run trains on, or for
    Sector2D (trained on fresh samples) its prepared grid.
    """
    if all(name in DIAGNOSTICS for name in metrics):
        return None
    from gdrae.data.cache import open_run_cache

    return data.cache if data.cache is not None else open_run_cache(cfg, source="train.metrics")


def evaluate_step(model: Model, cfg: RunConfig, metrics: list[str], cache=None) -> dict[str, float]:
    """:func:`gdrae.evaluate.evaluate` of ``metrics`` (:func:`evaluation_metrics`) with train.seed and
    train.diag_points.

    The keys and numbers ``gdrae-eval --metrics <those> --seed <train.seed>``
    gives of this step's checkpoint. ``cache``: :func:`open_metrics_cache`'s;
    its one encoding pass stays in memory.
    """
    return evaluate(model, cache, metrics, seed=cfg.train.seed, diag_points=cfg.train.diag_points, progress=False)
