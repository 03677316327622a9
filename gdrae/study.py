"""A study: a grid of ordinary gdrae-train runs (models x settings x datasets x seeds), planned, run and read back.

A study file (YAML, :class:`StudyConfig`; unknown keys are errors naming the
key) names the models, each a base run.yaml plus overrides and its own list
of settings (disentanglement_lib's sweep: each model's swept keys zipped,
the models chained, never crossed), the datasets, the seeds, the shared
overrides and what to evaluate. :func:`plan` resolves every run's config and
checks it, its cache and its metric names before anything starts.

Each run is an ordinary run directory ``<out>/runs/<run id>`` (the id from
model, dataset, setting and seed, never the step count); its config.yaml is
the resolved config. Beside it, ``<out>/status/<run id>.json`` keeps the
last attempt's exit status and ``<run id>.stderr`` its error output. The
truth about a run is its run directory (:func:`run_state`): finished when
its checkpoint reached train.steps and its record holds every evaluation
the study asks for.

Reference: Locatello et al., ICML 2019, and disentanglement_lib's
config/unsupervised_study_v1/sweep.py (the study's shape).
"""
from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass, field
from statistics import mean
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gdrae.atomic import write_atomic
from gdrae.config import RunConfig, config_from_dict, load_config
from gdrae.errors import GdraeError

STATES = ("pending", "running", "running elsewhere", "stopped", "failed", "finished")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.=-]+")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelEntry(_Section):
    name: str = Field(description="the model's label in run ids and tables, e.g. gdrae, ablation, beta_vae")
    config: str = Field(description="base run.yaml; {dataset} is replaced by each dataset's name")
    overrides: list[str] = Field([], description="KEY=VALUE applied to this model's runs, e.g. loss.sn=0")
    grid: dict[str, list[Any]] = Field({}, description="swept keys, zipped (equal lengths): one setting per index")

    @field_validator("name")
    @classmethod
    def _plain(cls, name: str) -> str:
        if not name or _ID_UNSAFE.search(name):
            raise ValueError(f"expected letters, digits, '_', '.', '=', '-', got {name!r}")
        return name

    @field_validator("grid")
    @classmethod
    def _zipped(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        lengths = {len(v) for v in grid.values()}
        if len(lengths) > 1 or 0 in lengths:
            raise ValueError(f"expected swept lists of one non-zero length (zipped), got lengths "
                             f"{[len(v) for v in grid.values()]}")
        return grid


class EvaluationConfig(_Section):
    metrics: list[str] = Field([], description="metrics of gdrae-eval at every evaluated step")
    steps: list[int] = Field([], description="steps to evaluate besides the last (their checkpoints are kept)")
    final_metrics: list[str] = Field([], description="metrics at the last step only (slow ones, e.g. dci)")
    options: dict[str, dict[str, Any]] = Field({}, description="keyword options per metric, e.g. dci: {num_train: 1000}")


class LocalConfig(_Section):
    jobs: int = Field(1, ge=1, description="runs at once")
    threads: int = Field(1, ge=1, description="torch threads of each run")


class ClusterConfig(_Section):
    partition: str | None = Field(None, description="SLURM partition (default: the cluster's)")
    time_min: float = Field(60, gt=0, description="time limit of each task, minutes")
    cpus_per_task: int = Field(1, ge=1, description="CPUs of each task (its torch threads)")
    gpus_per_task: int = Field(0, ge=0, description="GPUs of each task")
    array_parallelism: int = Field(64, ge=1, description="tasks of the job array at once")
    signal_delay_s: int = Field(60, ge=1, description="SIGUSR2 this many seconds before the time limit")
    max_requeues: int = Field(10, ge=0, description="requeues of a task after a warning or a preemption")


class StudyConfig(_Section):
    name: str = Field(description="the study's name")
    out: str = Field(description="output folder (relative: to the study file's folder)")
    models: list[ModelEntry] = Field(description="the models, each a base config, overrides and its own grid")
    datasets: list[str] = Field(description="data.name of each dataset")
    seeds: list[int] | int = Field(description="the seeds (train.seed), or a count: 0..n-1")
    overrides: list[str] = Field([], description="KEY=VALUE applied to every run, e.g. train.steps=10000")
    evaluate: EvaluationConfig = Field(default_factory=EvaluationConfig)
    max_attempts: int = Field(3, ge=1, description="deaths by a signal (kill -9, out of memory) before a run counts "
                                                   "as failed; rounds of a cluster backend")
    local: LocalConfig = Field(default_factory=LocalConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds)) if isinstance(self.seeds, int) else list(self.seeds)


@dataclass
class Run:
    """One run of a study: its labels, its resolved config and where it lives."""

    id: str
    model: str
    dataset: str
    setting: dict[str, Any]
    seed: int
    cfg: RunConfig
    study_dir: Path

    @property
    def dir(self) -> Path:
        return Path(self.cfg.train.run_dir)

    @property
    def status_file(self) -> Path:
        return self.study_dir / "status" / f"{self.id}.json"

    @property
    def stderr_file(self) -> Path:
        return self.study_dir / "status" / f"{self.id}.stderr"

    @property
    def config_file(self) -> Path:
        """The config the study hands gdrae-train (the run's own config.yaml is written by gdrae-train)."""
        return self.study_dir / "configs" / f"{self.id}.yaml"

    @property
    def eval_steps(self) -> list[int]:
        return sorted({s for s in self.cfg.train.keep_steps if s <= self.cfg.train.steps} | {self.cfg.train.steps})


@dataclass
class Study:
    """A validated study file and its planned runs."""

    config: StudyConfig
    path: Path
    dir: Path
    runs: list[Run] = field(default_factory=list)


# ----------------------------------------------------------------------------- the study file and its plan


def load_study(path: str | os.PathLike) -> StudyConfig:
    """Read and validate a study file; a GdraeError names the file and the key for any problem."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GdraeError(f"{path}: cannot read the study file ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise GdraeError(f"{path}: expected valid YAML, got a parse error ({exc})".replace("\n", " ")) from None
    if not isinstance(raw, dict):
        raise GdraeError(f"{path}: expected a mapping (name, out, models, datasets, seeds, ...), got "
                         f"{type(raw).__name__}")
    try:
        return StudyConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            raise GdraeError(f"{path}: {key}: unknown key") from None
        msg = err["msg"].removeprefix("Value error, ")
        raise GdraeError(f"{path}: {key}: {msg[:1].lower() + msg[1:]}") from None


def _setting_label(setting: dict[str, Any]) -> str:
    return "-".join(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in setting.items())


def run_id(model: str, dataset: str, setting: dict[str, Any], seed: int) -> str:
    """``<model>-<dataset>[-<key>=<value>...]-seed<seed>``: the run's folder name (never the step count)."""
    parts = [model, dataset, _setting_label(setting), f"seed{seed}"]
    return _ID_UNSAFE.sub("_", "-".join(p for p in parts if p))


def _settings(entry: ModelEntry) -> list[dict[str, Any]]:
    if not entry.grid:
        return [{}]
    keys = list(entry.grid)
    return [dict(zip(keys, values)) for values in zip(*entry.grid.values())]


def plan(path: str | os.PathLike, check_caches: bool = True, out: str | None = None,
         overrides: list[str] | tuple[str, ...] = ()) -> Study:
    """The study of ``path`` with every run resolved and checked (config, cache, metric names): writes nothing.

    ``out`` replaces the file's output folder, ``overrides`` are added to its shared overrides (e.g.
    ``data.cache_dir=...``). A GdraeError of one line names the study file and, for a run's problem,
    the run and its model's base config.
    """
    from gdrae.evaluate import check_metric_names

    path = Path(path)
    study_cfg = load_study(path)
    if out is not None or overrides:  # a folder given on the command line is relative to the working folder
        out = str(Path(os.path.expanduser(out)).resolve()) if out is not None else study_cfg.out
        study_cfg = study_cfg.model_copy(update={"out": out, "overrides": [*study_cfg.overrides, *overrides]})
    out = Path(os.path.expanduser(study_cfg.out))
    study = Study(study_cfg, path, (out if out.is_absolute() else path.parent / out).resolve())
    ev = study_cfg.evaluate
    check_metric_names(ev.metrics, f"{path}: evaluate.metrics")
    check_metric_names(ev.final_metrics, f"{path}: evaluate.final_metrics")
    seen: set[str] = set()
    for entry, dataset in itertools.product(study_cfg.models, study_cfg.datasets):
        base = _base_config(path, entry.config, dataset)
        for setting, seed in itertools.product(_settings(entry), study_cfg.seed_list):
            rid = run_id(entry.name, dataset, setting, seed)
            if rid in seen:
                raise GdraeError(f"{path}: run {rid} is planned twice (two models of one name?)")
            seen.add(rid)
            sets = [f"data.name={dataset}", *study_cfg.overrides, *entry.overrides,
                    *(f"{k}={json.dumps(v)}" for k, v in setting.items()), f"train.seed={seed}",
                    f"train.run_dir={study.dir / 'runs' / rid}"]
            try:
                cfg = load_config(base, sets)
                keep = sorted({*cfg.train.keep_steps, *(s for s in ev.steps if s <= cfg.train.steps)})
                cfg = config_from_dict(cfg.model_dump(mode="json"), str(base), [f"train.keep_steps={keep}"])
            except GdraeError as exc:
                raise GdraeError(f"{path}: run {rid}: {exc}") from None
            run = Run(rid, entry.name, dataset, setting, seed, cfg, study.dir)
            if check_caches and (ev.metrics or ev.final_metrics or cfg.train.metrics or cfg.model.kind == "image"):
                _check_cache(path, run)
            study.runs.append(run)
    return study


def _base_config(study_file: Path, template: str, dataset: str) -> Path:
    """A model's base config for ``dataset``: absolute as written, else relative to the working folder when it
    is there, else to the study file's folder."""
    base = Path(template.replace("{dataset}", dataset))
    if base.is_absolute() or base.exists():
        return base
    return study_file.parent / base


def _check_cache(path: Path, run: Run) -> None:
    from gdrae.data.cache import open_run_cache

    try:
        open_run_cache(run.cfg, source=f"run {run.id}")
    except GdraeError as exc:
        raise GdraeError(f"{path}: run {run.id}: {exc}") from None


# ----------------------------------------------------------------------------- the state of a run


@dataclass
class RunState:
    state: str  # one of STATES
    step: int = 0
    line: str = ""  # a failed run's one line; a stopped run's last exit


def read_status(run: Run) -> dict[str, Any]:
    """The last attempt's record: {"attempts": n, "returncode": rc, "line": ...}, or {} before any attempt."""
    try:
        return json.loads(run.status_file.read_text())
    except (OSError, ValueError):
        return {}


def write_status(run: Run, **values: Any) -> None:
    run.status_file.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(run.status_file, json.dumps({**read_status(run), **values}, sort_keys=True) + "\n")


def lock_holder(run_dir: Path) -> int | None:
    """The pid holding ``run_dir/.lock`` (a training writing there), or None."""
    import fcntl

    lock = run_dir / ".lock"
    try:
        with open(lock, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = f.read().decode("utf-8", "replace").strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(f, fcntl.LOCK_UN)
    except OSError:
        return None
    return None


def checkpoint_step(run_dir: Path) -> int | None:
    """The step of ``checkpoints/latest.pt`` (read with the checks of gdrae.checkpoint), or None without one."""
    latest = run_dir / "checkpoints" / "latest.pt"
    if not latest.exists():
        return None
    from gdrae.checkpoint import read_checkpoint

    try:
        return int(read_checkpoint(latest)["step"])
    except GdraeError:
        return None


def missing_evaluations(run: Run, metrics: list[str], final: list[str]) -> dict[int, list[str]]:
    """The evaluations the study asks of ``run`` that its record lacks: {step: [metric names]}."""
    return lacking_evaluations(run.dir, run.eval_steps, metrics, final)


def lacking_evaluations(run_dir: Path, steps: list[int], metrics: list[str], final: list[str]
                        ) -> dict[int, list[str]]:
    """What a run's record lacks of ``metrics`` at each of ``steps`` and of ``final`` at the last of them:
    {step: [metric names]}. The record is read through gdrae.runlog.read_evaluations (runs of any age)."""
    from gdrae.runlog import read_evaluations

    try:
        record = read_evaluations(run_dir)
    except GdraeError:
        record = {}
    missing = {}
    for step in sorted(steps):
        names = [*metrics, *(final if step == max(steps) else [])]
        have = {k.split("/")[0] for k in record.get(step, {})}
        lacking = [n for n in names if _key_prefix(n) not in have]
        if lacking:
            missing[step] = lacking
    return missing


def evaluate_lacking(run_dir: Path, steps: list[int], metrics: list[str], final: list[str], seed: int = 0,
                     options: dict | None = None, cache_dir: Path | None = None) -> None:
    """gdrae-eval of what :func:`lacking_evaluations` finds, each at its step's checkpoint (``step-N.pt``,
    or ``latest.pt`` for a last step without one), into the run's record."""
    from gdrae.evaluate import evaluate_checkpoint

    ckpts = Path(run_dir) / "checkpoints"
    for step, names in lacking_evaluations(run_dir, steps, metrics, final).items():
        ckpt = ckpts / f"step-{step}.pt"
        ckpt = ckpt if ckpt.exists() or step != max(steps) else ckpts / "latest.pt"
        evaluate_checkpoint(ckpt, names, cache_dir=cache_dir, seed=seed, options=options, progress=False)


def continue_training(cfg: RunConfig, on_stop=None) -> int:
    """Train ``cfg`` into its run directory: start it, continue it (``--resume``), or leave it when it has
    reached train.steps; returns the step its checkpoint reached (short of train.steps: stopped by a signal).

    A run directory that holds another run (an identity key of gdrae.rundir differs) is refused in one
    line naming the key.
    """
    from gdrae.rundir import identity_changes
    from gdrae.train import train

    run_dir = Path(cfg.train.run_dir)
    step = checkpoint_step(run_dir)
    if step is not None:
        from gdrae.checkpoint import read_checkpoint

        changes = identity_changes(read_checkpoint(run_dir / "checkpoints" / "latest.pt")["config"], cfg)
        if changes:
            key, before, now = changes[0]
            raise GdraeError(f"{run_dir}: {key}: the run has {before!r}, this asks {now!r} (it would be another "
                             "run: choose another folder)")
        if step >= cfg.train.steps:
            return step
    train(cfg, resume=step is not None, on_stop=on_stop)
    return checkpoint_step(run_dir) or 0


def _key_prefix(metric: str) -> str:
    """The first part of a metric's record keys (the histogram family's are hist<bins>/...)."""
    return "hist20" if metric == "histogram" else metric


def run_state(run: Run, study: StudyConfig, own_pids: frozenset[int] = frozenset()) -> RunState:
    """What a run's directory and status say: pending, running (by this study's process), running elsewhere,
    stopped (part way, to be continued), failed (with its one line) or finished."""
    holder = lock_holder(run.dir) if run.dir.exists() else None
    step = checkpoint_step(run.dir) if run.dir.exists() else None
    status = read_status(run)
    if holder is not None:  # "running": by a task this study started (its pid in the run's status)
        ours = holder in own_pids or holder == status.get("pid")
        return RunState("running" if ours else "running elsewhere", step or 0)
    if status.get("failed"):
        return RunState("failed", step or 0, status.get("line", ""))
    if step is None:
        return RunState("pending")
    changed = identity_change(run)
    if changed:
        return RunState("failed", step, f"{run.dir / 'config.yaml'}: {changed}")
    if step >= run.cfg.train.steps and not missing_evaluations(run, study.evaluate.metrics,
                                                               study.evaluate.final_metrics):
        return RunState("finished", step)
    return RunState("stopped", step, status.get("line", ""))


def identity_change(run: Run) -> str:
    """'' when the run directory's config.yaml is this run's; else which identity key differs (or that it is gone)."""
    from gdrae.rundir import identity_changes

    saved = run.dir / "config.yaml"
    try:
        saved_cfg = yaml.safe_load(saved.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return "the run's config.yaml is missing or unreadable"
    changes = identity_changes(saved_cfg, run.cfg)
    if changes:
        key, before, now = changes[0]
        return f"{key}: the run has {before!r}, the study asks {now!r} (it would be another run)"
    return ""


# ----------------------------------------------------------------------------- one run: train, then evaluate


def study_copy(study: Study) -> Path:
    """Write ``<out>/study.yaml``: the study file with ``out`` and the base configs as absolute paths, so that
    ``gdrae-study status|report DIR`` read the study from its folder. Returns its path."""
    raw = yaml.safe_load(study.path.read_text(encoding="utf-8"))
    raw["out"] = str(study.dir.resolve())
    raw["overrides"] = study.config.overrides  # with those given on the command line
    for entry in raw["models"]:
        resolved = _base_config(study.path, entry["config"], study.config.datasets[0])
        if not Path(entry["config"]).is_absolute():  # the same folder for every dataset, kept as a template
            folder = resolved.parent.resolve()
            entry["config"] = str(folder / Path(entry["config"]).name)
    target = study.dir / "study.yaml"
    study.dir.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(raw, sort_keys=False)
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        write_atomic(target, text)
    return target


def find_run(study: Study, rid: str) -> Run:
    for run in study.runs:
        if run.id == rid:
            return run
    raise GdraeError(f"{study.path}: no run {rid!r} in this study")


def run_task(study_file: str | os.PathLike, rid: str, threads: int | None = None, on_stop=None) -> int:
    """One task of a study, in this process: train run ``rid`` (continuing its checkpoint), then make the
    evaluations the study asks that its record lacks. Returns the step its checkpoint reached.

    A stop signal ends the training with a checkpoint (the trainer's stop) and skips the evaluations; the
    next task continues. What a task of any backend runs (``gdrae-study task``); ``on_stop`` goes to
    :func:`gdrae.train.train`.
    """
    import torch

    from gdrae.config import dump_config

    if threads:
        torch.set_num_threads(threads)
    study = plan(study_file, check_caches=False)
    run = find_run(study, rid)
    run.config_file.parent.mkdir(parents=True, exist_ok=True)
    dump_config(run.cfg, run.config_file)
    try:
        step = continue_training(run.cfg, on_stop)
    except GdraeError as exc:
        raise GdraeError(f"run {rid}: {exc}") from None
    if step >= run.cfg.train.steps:
        evaluate_run(run, study.config)
    return step


def evaluate_run(run: Run, study: StudyConfig) -> None:
    """gdrae-eval of every evaluation the study asks of ``run`` that its record lacks, each at its kept
    checkpoint; the last step's code table is always stored (the report's seed agreement reads it)."""
    ev = study.evaluate
    evaluate_lacking(run.dir, run.eval_steps, ev.metrics, ev.final_metrics, run.seed, ev.options)
    store_codes(run)


def store_codes(run: Run) -> None:
    """The code table of the last checkpoint in ``codes/`` (reused when stored) and, for a model with a
    posterior, the mean KL of each latent over the cache (``codes/step-N-kl.json``: UDR's filter of inactive
    latents)."""
    from gdrae.checkpoint import load_checkpoint
    from gdrae.codes import code_table
    from gdrae.data.cache import open_run_cache

    model, cfg = load_checkpoint(run.dir / "checkpoints" / "latest.pt")
    step = run.cfg.train.steps
    cache = open_run_cache(cfg, source=f"run {run.id}")
    code_table(model, cache, run.dir / "codes", step, progress=False)
    kl_file = run.dir / "codes" / f"step-{step}-kl.json"
    if hasattr(model, "posterior") and not kl_file.exists():
        write_atomic(kl_file, json.dumps(latent_kl(model, cache)) + "\n")


def latent_kl(model, cache, batch: int = 1024) -> list[float]:
    """Mean over every row of a cache of each latent's KL(q(z_j | x) || N(0, 1)) (a Gaussian posterior)."""
    import numpy as np
    import torch

    from gdrae.codes import as_input

    total = np.zeros(model.nz)
    data = cache.data
    with model.evaluating(), torch.no_grad():
        for i in range(data.nchunks):
            rows = data.read_chunk(i)
            for start in range(0, len(rows), batch):
                mu, logvar = model.posterior(as_input(rows[start:start + batch], model.device))
                total += (0.5 * (mu.square() + logvar.exp() - logvar - 1)).sum(0).double().cpu().numpy()
    return (total / cache.n).tolist()


# ----------------------------------------------------------------------------- the local backend


def _die_with_parent() -> None:
    """In a task's process: SIGTERM when the study's process dies (Linux), so that no run goes on unowned;
    the trainer then stops with a checkpoint."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


@dataclass
class Outcome:
    """How one attempt of a task ended, as the run's status records it."""

    run: Run
    returncode: int
    seconds: float


def task_command(study_file: Path, rid: str, threads: int) -> list[str]:
    import sys

    return [sys.executable, "-m", "cli.study", "task", str(study_file), rid, "--threads", str(threads)]


def record_outcome(outcome: Outcome, study: StudyConfig) -> str:
    """Write the attempt into the run's status; returns the run's state after it (stopped, failed, trained)."""
    run, rc = outcome.run, outcome.returncode
    status = read_status(run)
    attempts = status.get("attempts", 0) + 1
    line = _last_line(run.stderr_file)
    step = checkpoint_step(run.dir) or 0
    seconds = status.get("seconds", 0.0) + outcome.seconds
    if rc == 0:
        state = "finished" if step >= run.cfg.train.steps else "stopped"
        write_status(run, attempts=attempts, returncode=rc, line="", failed=False, seconds=seconds)
        return state
    if rc < 0:  # died by a signal (kill -9, out of memory): continued, until max_attempts such deaths
        deaths = status.get("deaths", 0) + 1
        killed = f"killed by signal {-rc} at step {step}"
        failed = deaths >= study.max_attempts
        write_status(run, attempts=attempts, deaths=deaths, returncode=rc, line=killed + (
            f" ({deaths} times, max_attempts={study.max_attempts})" if failed else ""), failed=failed,
            seconds=seconds)
        return "failed" if failed else "stopped"
    write_status(run, attempts=attempts, returncode=rc, line=line or f"exit status {rc}", failed=True,
                 seconds=seconds)
    return "failed"


def _last_line(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("Error: ")]
    return (errors or lines or [""])[-1].removeprefix("Error: ")


def refuse_identity_changes(study: Study) -> None:
    """Before anything starts: no run may become another under its folder's name (one line naming both)."""
    for run in study.runs:
        if (run.dir / "config.yaml").exists() and (changed := identity_change(run)):
            raise GdraeError(f"{study.path}: run {run.id}: {changed}; give the changed model another name or "
                             "another out folder")


def _stderr(*args, **kwargs) -> None:
    import sys

    print(*args, **kwargs, file=sys.stderr, flush=True)


def run_local(study: Study, jobs: int, threads: int, retry_failed: bool = False, echo=_stderr) -> list[str]:
    """Run every unfinished run of ``study``, ``jobs`` at once, each a task in its own process with ``threads``
    torch threads. Returns the ids of the runs that failed (empty: every run finished).

    Finished runs are skipped, stopped ones continued, failed ones retried only with ``retry_failed``; a
    run that another process is writing is left to it. A run whose task dies by a signal is started again up
    to ``max_attempts``. SIGINT or SIGTERM stops every task with its checkpoint (the trainer's stop) and
    returns; the next ``run`` continues.
    """
    import signal
    import subprocess
    import time

    refuse_identity_changes(study)
    study_file = study_copy(study)
    for run in study.runs:
        if retry_failed and read_status(run).get("failed"):
            write_status(run, failed=False, deaths=0)
    states = {r.id: run_state(r, study.config) for r in study.runs}
    queue = [r for r in study.runs if states[r.id].state in ("pending", "stopped")]
    failed_before = [r.id for r in study.runs if states[r.id].state == "failed"]
    for rid in failed_before:
        echo(f"{rid}: failed before: {states[rid].line} (--retry-failed starts it again)")
    elsewhere = [r.id for r in study.runs if states[r.id].state == "running elsewhere"]
    for rid in elsewhere:
        echo(f"{rid}: running elsewhere (its run lock is held by another process): left to it")
    running: dict[str, tuple[Run, subprocess.Popen, float, Any]] = {}
    stopping = [False]
    done, failed, durations, shown = 0, [], [], ""

    def stop(signum, frame):
        if not stopping[0]:
            echo(f"{signal.Signals(signum).name}: stopping every run with its checkpoint")
        stopping[0] = True
        for _, proc, _, _ in running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    total = len(queue)
    try:
        while queue or running:
            while queue and len(running) < jobs and not stopping[0]:
                run = queue.pop(0)
                run.stderr_file.parent.mkdir(parents=True, exist_ok=True)
                err = open(run.stderr_file, "w")
                proc = subprocess.Popen(task_command(study_file, run.id, threads), stdout=subprocess.DEVNULL,
                                        stderr=err, env={**os.environ, "OMP_NUM_THREADS": str(threads)},
                                        preexec_fn=_die_with_parent)
                running[run.id] = (run, proc, time.monotonic(), err)
                write_status(run, pid=proc.pid)
            time.sleep(0.2)
            for rid, (run, proc, started, err) in list(running.items()):
                if proc.poll() is None:
                    continue
                err.close()
                del running[rid]
                seconds = time.monotonic() - started
                state = record_outcome(Outcome(run, proc.returncode, seconds), study.config)
                if state == "finished":
                    done += 1
                    durations.append(seconds)
                elif state == "failed":
                    failed.append(rid)
                    echo(f"\n{rid}: failed: {read_status(run).get('line', '')}")
                elif not stopping[0]:  # killed by a signal: again, from its checkpoint
                    echo(f"\n{rid}: {read_status(run).get('line') or 'stopped'}: continuing it")
                    queue.append(run)
            eta = ""
            if durations and (queue or running):
                eta = f", about {(len(queue) + len(running)) * mean(durations) / jobs / 60:.1f} min left"
            line = f"{done}/{total} done, {len(running)} running, {len(failed)} failed{eta}"
            if line != shown:
                echo(f"\r{line}", end="")
                shown = line
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    echo("")
    return [*failed_before, *failed]
