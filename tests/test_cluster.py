"""gdrae-study's cluster backend for real: submitit's local executor here, and a real one-node SLURM (marked
``slurm``: CI starts one with tests/slurm/start_slurm.sh; elsewhere they skip, saying why)."""
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("submitit", reason="the cluster extra: pip install -e '.[cluster]'")

from gdrae.study import plan, read_status, run_state  # noqa: E402
from studykit import REPO, study_cli, write_study  # noqa: E402

LOGGING = ["train.log_every=50", "train.ckpt_every=100"]


def test_a_time_limit_warning_checkpoints_requeues_and_finishes(tmp_path, sector_cache):
    """submitit's local executor: the task's limit is 60 s, SIGUSR2 comes 30 s before it."""
    path = write_study(tmp_path, sector_cache, steps=4000, seeds=1, overrides=LOGGING,
                       cluster={"time_min": 1, "signal_delay_s": 30})
    proc = study_cli("run", path, "--backend", "submitit-local")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = plan(path).runs[0]
    log = (run.dir / "train.log").read_text()
    assert "stopped by a signal at step" in log and "resuming at step" in log and "done: step 4000 of 4000" in log
    assert run_state(run, plan(path).config).state == "finished"
    assert read_status(run)["attempts"] >= 2
    # requeued by submitit within a round (its local executor retries a task at most 6 times in one round)
    assert read_status(run)["attempts"] > proc.stderr.count("round ")


# ----------------------------------------------------------------------------- a real SLURM


def _slurm_reason() -> str:
    if not shutil.which("sbatch"):
        return "no SLURM here (sbatch not found); CI starts one: tests/slurm/start_slurm.sh"
    probe = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0 or not probe.stdout.strip():
        return f"SLURM does not answer: {(probe.stderr or probe.stdout).strip()[:200]}"
    return ""


slurm = pytest.mark.skipif(bool(_slurm_reason()) and not os.environ.get("CI"), reason=_slurm_reason() or "ok")


@pytest.mark.slurm
@slurm
def test_a_real_slurm_runs_a_study_through_a_requeue_and_a_time_limit_warning(tmp_path, sector_cache):
    """Two runs in one job array: one is requeued by scontrol mid-run (SIGTERM), the other gets its time-limit
    warning (1-minute limit, SIGUSR2 30 s before it); both finish with the right number of steps."""
    assert not _slurm_reason(), _slurm_reason()  # in CI a SLURM that does not answer fails here, saying why
    folder = Path(os.environ.get("GDRAE_SLURM_TMP", tmp_path))  # a folder every SLURM node sees
    folder.mkdir(parents=True, exist_ok=True)
    path = write_study(folder, sector_cache, steps=4000, seeds=2, overrides=LOGGING,
                       cluster={"time_min": 1, "signal_delay_s": 30, "cpus_per_task": 1})
    study = plan(path)
    requeued, warned = study.runs
    nudge = threading.Event()

    def start_requeued_now():  # SLURM holds a requeued job for two minutes; the test has no need to wait
        while not nudge.wait(2):
            pending = subprocess.run(["squeue", "-h", "-r", "-t", "PD", "-o", "%i"], capture_output=True, text=True)
            for job in pending.stdout.split():
                subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], capture_output=True)

    threading.Thread(target=start_requeued_now, daemon=True).start()
    proc = subprocess.Popen([sys.executable, "-m", "cli.study", "run", str(path), "--backend", "slurm"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log = requeued.dir / "train.log"
        deadline = time.monotonic() + 240
        while not (log.exists() and "step 200 " in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert log.exists(), "the first task never started"
        jobs = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True).stdout.split()
        first = next(j for j in jobs if j.endswith("_0"))
        subprocess.run(["scontrol", "requeue", first], check=True, timeout=60)
        out, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
        nudge.set()
    assert proc.returncode == 0, err[-3000:]
    for run in (requeued, warned):
        text = (run.dir / "train.log").read_text()
        assert "stopped by a signal" in text and "resuming at step" in text, text[-2000:]
        assert run_state(run, study.config).state == "finished"
        assert f"done: step {run.cfg.train.steps} of {run.cfg.train.steps}" in text
