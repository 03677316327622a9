"""The cluster backend of a study: one SLURM job array per ``gdrae-study run``, one task per run, through submitit.

Needs the optional extra ``pip install -e '.[cluster]'`` (submitit). Each
task is :class:`StudyTask`: it trains its run in its own process
(:func:`gdrae.study.run_task`, continuing the run's checkpoint) and then
makes the study's evaluations. When SLURM warns of the time limit
(``--signal=USR2@<signal_delay_s>``, submitit's default signal) the trainer
stops with a checkpoint and the task is requeued through submitit, and the
requeued task continues the run. A preemption or ``scontrol requeue`` sends
SIGTERM: the trainer stops with a checkpoint and SLURM itself runs the task
again. Between arrays, the study reads every run's state from its run
directory (never from the job's state): runs stopped part way go into the
next array, up to ``max_attempts`` arrays, so a task killed outright (kill
-9, out of memory) is continued too.

``backend="local"`` uses submitit's local executor instead (same tasks, same
time-limit warning and requeue, on this machine): what the test suite runs.
"""
from __future__ import annotations

import os
import signal
import time
import warnings
from typing import Any

warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)  # submitit 1.5.3's own import
import submitit  # noqa: E402

from gdrae.errors import GdraeError  # noqa: E402
from gdrae.study import (Study, find_run, plan, read_status, refuse_identity_changes, run_state, study_copy,  # noqa: E402
                         write_status)

# `--slurm KEY=VALUE` keys -> submitit's parameter names
SLURM_KEYS = {"partition": "slurm_partition", "time_min": "timeout_min", "cpus_per_task": "cpus_per_task",
              "gpus_per_task": "gpus_per_node", "array_parallelism": "slurm_array_parallelism",
              "signal_delay_s": "slurm_signal_delay_s", "max_requeues": "slurm_max_num_timeout"}


# squeue keeps ended jobs listed a while (MinJobAge) in these states
ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "DEADLINE", "BOOT_FAIL"}


class StudyTask(submitit.helpers.Checkpointable):
    """One run of a study as a submitit task: train (continuing), evaluate; requeued at a time-limit warning."""

    def __init__(self, study_file: str, run_id: str, threads: int) -> None:
        self.study_file, self.run_id, self.threads = str(study_file), run_id, threads

    def __call__(self) -> int:
        from gdrae.study import run_task

        signals: list[int] = []
        study = plan(self.study_file, check_caches=False)
        run = find_run(study, self.run_id)
        started = time.monotonic()
        attempts = read_status(run).get("attempts", 0) + 1
        write_status(run, pid=os.getpid())  # the pid in the run's lock: "running" for gdrae-study status
        try:
            step = run_task(self.study_file, self.run_id, self.threads, on_stop=signals.append)
        except GdraeError as exc:
            write_status(run, attempts=attempts, returncode=1, line=str(exc).splitlines()[0], failed=True,
                         seconds=read_status(run).get("seconds", 0.0) + time.monotonic() - started)
            raise
        write_status(run, attempts=attempts, returncode=0, line="", failed=False,
                     seconds=read_status(run).get("seconds", 0.0) + time.monotonic() - started)
        if step < run.cfg.train.steps and signals and signals[-1] == signal.SIGUSR2:
            # the time-limit warning: the checkpoint is written; submitit's own handler (back in place now
            # the trainer's is gone) calls checkpoint() below and requeues this task
            handler = signal.getsignal(signal.SIGUSR2)
            if callable(handler):
                handler(signal.SIGUSR2, None)
        return step

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """The same task again: it continues from the run's checkpoint, which the trainer wrote at the warning."""
        return submitit.helpers.DelayedSubmission(StudyTask(self.study_file, self.run_id, self.threads))


def parse_slurm(pairs: list[str], study: Study) -> dict[str, Any]:
    """The study's cluster settings with ``--slurm KEY=VALUE`` pairs over them, as submitit parameters."""
    settings = study.config.cluster.model_dump()
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in SLURM_KEYS:
            raise GdraeError(f"--slurm {pair!r}: expected KEY=VALUE with KEY one of {', '.join(SLURM_KEYS)}")
        try:
            settings[key] = value if key == "partition" else float(value) if key == "time_min" else int(value)
        except ValueError:
            raise GdraeError(f"--slurm {pair!r}: expected a number for {key}") from None
    return {SLURM_KEYS[k]: v for k, v in settings.items() if v is not None}


def make_executor(study: Study, backend: str, parameters: dict[str, Any]):
    """submitit's SLURM executor (``backend="slurm"``) or its local one (``"local"``), logs in <out>/submitit."""
    folder = study.dir / "submitit" / "%j"
    parameters = dict(parameters)
    requeues = parameters.pop("slurm_max_num_timeout")
    if backend == "local":
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=requeues)
        executor.update_parameters(timeout_min=parameters["timeout_min"],
                                   signal_delay_s=parameters.get("slurm_signal_delay_s", 60))
        return executor
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=requeues)
    slurm = {**parameters, "timeout_min": max(1, round(parameters["timeout_min"]))}  # SLURM counts whole minutes
    executor.update_parameters(name=f"gdrae-{study.config.name}", slurm_additional_parameters={"requeue": True},
                               **slurm)
    return executor


def round_over(jobs: list, backend: str) -> bool:
    """True once no task of ``jobs`` is queued or running any more (requeued ones are queued again).

    SLURM: from ``squeue`` (submitit's own check needs SLURM's accounting, which small clusters may lack);
    the local executor: its processes.
    """
    if backend == "local":
        return all(job.done() for job in jobs)
    import subprocess

    listed = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True, timeout=60)
    if listed.returncode != 0:
        return False  # the controller may be busy: ask again
    alive = {line.split()[0] for line in listed.stdout.splitlines() if line.split()[1:] and
             line.split()[1] not in ENDED}
    return not any(job.job_id in alive for job in jobs)


def run_cluster(study: Study, backend: str, slurm: list[str], threads: int | None = None,
                retry_failed: bool = False, echo=print, poll_s: float = 2.0) -> list[str]:
    """Run every unfinished run of ``study`` as tasks of job arrays; returns the ids of the runs that failed.

    One array per round: the runs pending or stopped part way. A round ends when every task has ended;
    then the run directories say which runs go into the next round (stopped ones), up to
    ``max_attempts`` rounds. Ctrl-C cancels the array's tasks (SLURM signals them: each writes its
    checkpoint) and returns; the next ``run`` continues.
    """
    parameters = parse_slurm(slurm, study)
    threads = threads or parameters.get("cpus_per_task", 1)
    refuse_identity_changes(study)
    study_file = study_copy(study)
    if retry_failed:
        for run in study.runs:
            if read_status(run).get("failed"):
                write_status(run, failed=False, deaths=0)
    executor = make_executor(study, backend, parameters)
    for round_ in range(study.config.max_attempts):
        states = {r.id: run_state(r, study.config) for r in study.runs}
        todo = [r for r in study.runs if states[r.id].state in ("pending", "stopped")]
        if not todo:
            break
        with executor.batch():
            jobs = [executor.submit(StudyTask(str(study_file), r.id, threads)) for r in todo]
        echo(f"round {round_ + 1}: {len(jobs)} task(s) submitted ({backend}), job {jobs[0].job_id.split('_')[0]}")
        try:
            while not round_over(jobs, backend):
                time.sleep(poll_s)
        except KeyboardInterrupt:
            for job in jobs:
                job.cancel(check=False)
            echo("interrupted: tasks cancelled, each stopping with its checkpoint; run again to continue")
            break
    states = {r.id: run_state(r, study.config) for r in study.runs}
    failed = [rid for rid, s in states.items() if s.state != "finished"]
    for rid in failed:
        echo(f"{rid}: {states[rid].state} at step {states[rid].step}: {states[rid].line}")
    return failed

