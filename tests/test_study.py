"""gdrae-study: the study file and its plan, running on one machine with its faults, status, the report."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cli.study import main
from gdrae.config import load_config
from gdrae.errors import GdraeError
from gdrae.rundir import identity_changes
from gdrae.study import plan, run_state
from studykit import REPO, TINY_SECTOR, study_cli, write_study

CHECKPOINTS = ["train.log_every=1", "train.ckpt_every=2"]
EVAL = {"evaluate": {"metrics": ["alignment"], "steps": [2]}}


def tiny_study(folder, cache, steps=6, **options):
    """The tiny study with a checkpoint every 2 steps and an evaluation at step 2 too."""
    return write_study(folder, cache, steps, overrides=CHECKPOINTS, **{**EVAL, **options})


# ----------------------------------------------------------------------------- the study file and its plan


def test_plan_chains_models_and_zips_each_models_grid(tmp_path, sector_cache):
    models = [{"name": "gdrae", "config": str(REPO / "configs" / "sector2dunif.yaml"), "overrides": TINY_SECTOR},
              {"name": "beta_vae", "config": str(REPO / "configs" / "baselines" / "beta_vae-{dataset}.yaml"),
               "grid": {"model.beta": [1, 4, 16]}},
              {"name": "dip", "config": str(REPO / "configs" / "baselines" / "dip_vae_i-{dataset}.yaml"),
               "grid": {"model.lambda_od": [1, 2], "model.lambda_d_factor": [10, 20]}}]
    study = plan(tiny_study(tmp_path, sector_cache, models=models, seeds=[3, 5]))
    assert len(study.runs) == (1 + 3 + 2) * 2  # never crossed: 6 settings, 2 seeds
    ids = [r.id for r in study.runs]
    assert ids[:4] == ["gdrae-sector2dunif-seed3", "gdrae-sector2dunif-seed5", "beta_vae-sector2dunif-beta=1-seed3",
                       "beta_vae-sector2dunif-beta=1-seed5"]
    dip = [r for r in study.runs if r.model == "dip"]
    assert [(r.cfg.model.lambda_od, r.cfg.model.lambda_d_factor) for r in dip] == [(1, 10), (1, 10), (2, 20), (2, 20)]
    run = study.runs[2]
    assert run.cfg.model.family == "beta_vae" and run.cfg.train.seed == 3 and run.cfg.train.steps == 6
    assert run.cfg.train.keep_steps == [2] and run.dir == tmp_path / "out" / "runs" / run.id
    assert not (tmp_path / "out").exists()  # planning writes nothing


@pytest.mark.parametrize("change,message", [
    ({"modles": []}, r"study.yaml: modles: unknown key"),
    ({"models": [{"name": "x", "config": "configs/sector2dunif.yaml", "overrides": ["model.family=vae"]}]},
     r"run x-sector2dunif-seed0: .*model.family: expected one of gdrae, beta_vae"),
    ({"evaluate": {"metrics": ["migg"]}}, r"evaluate.metrics: expected metric names from .* got 'migg'"),
    ({"models": [{"name": "g", "config": "configs/sector2dunif.yaml", "grid": {"model.nz": [2, 3], "loss.sn": [1]}}]},
     r"models.0.grid: expected swept lists of one non-zero length"),
    ({"models": [{"name": "a b", "config": "configs/sector2dunif.yaml"}]}, r"models.0.name: expected letters"),
])
def test_a_bad_study_is_one_line_and_starts_nothing(tmp_path, sector_cache, change, message, monkeypatch):
    monkeypatch.chdir(REPO)
    path = tiny_study(tmp_path, sector_cache)
    raw = {**yaml.safe_load(path.read_text()), **change}
    path.write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["plan", str(path)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith("Error: ") and __import__("re").search(message, result.output), result.output
    assert CliRunner().invoke(main, ["run", str(path)]).exit_code == 1
    assert not (tmp_path / "out").exists()


def test_a_missing_cache_is_one_line_naming_the_run(tmp_path, sector_cache):
    path = tiny_study(tmp_path, tmp_path / "no-cache")
    with pytest.raises(GdraeError, match=r"study.yaml: run gdrae-sector2dunif-seed0: .*not found.*gdrae-data prepare"):
        plan(path)


def test_the_identity_rule_allows_more_steps_and_refuses_another_model():
    cfg = load_config(REPO / "configs" / "sector2dunif.yaml")
    saved = cfg.model_dump(mode="json")
    longer = load_config(REPO / "configs" / "sector2dunif.yaml", ["train.steps=200000", "train.eval_every=7",
                                                                 "data.cache_dir=elsewhere", "train.run_dir=x"])
    assert identity_changes(saved, longer) == []
    other = load_config(REPO / "configs" / "sector2dunif.yaml", ["loss.sn=0", "train.seed=4"])
    assert identity_changes(saved, other) == [("loss.sn", 1000.0, 0.0), ("train.seed", 0, 4)]
    del saved["model"]["posterior_noise"]  # a key the saved config predates counts as its default
    assert identity_changes(saved, cfg) == []


# ----------------------------------------------------------------------------- running, faults, status


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory, sector_cache) -> Path:
    """A study of two 4-step runs, run to the end (the report reads it first, then it is continued)."""
    path = tiny_study(tmp_path_factory.mktemp("finished"), sector_cache, steps=4)
    proc = study_cli("run", path, "--jobs", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return path


def test_report_writes_the_table_pictures_and_agreement_in_a_stable_format(finished_study):
    study = plan(finished_study)
    result = CliRunner().invoke(main, ["report", str(study.dir)])
    assert result.exit_code == 0, result.output
    with open(study.dir / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["step"]) for r in rows] == [(r.id, s) for r in study.runs for s in ("2", "4")]
    assert list(rows[0])[:8] == ["run", "model", "family", "dataset", "seed", "step", "train_s", "steps_per_s"]
    assert {"alignment/min_r2", "geometry/ortho_sign", "jacobian/ortho_sign"} <= set(rows[0])
    assert (study.dir / "metric-alignment_min_r2.png").exists()
    agreement = (study.dir / "seed_agreement.md").read_text().splitlines()
    assert agreement[0] == ("| dataset | model | family | seeds | r2_min | r2_median | r2_mean | udr_min | udr_median "
                            "| udr_mean | udr_filter |")
    assert agreement[2].startswith("| sector2dunif | gdrae | gdrae | 2 | ") and agreement[2].endswith("| none (no KL) |")
    summary = (study.dir / "summary.md").read_text()
    assert "| dataset | metric | better | best model | mean | sd | worst seed | n |" in summary
    assert "| sector2dunif | jacobian/ortho_sign | lower | gdrae |" in summary


def test_run_finishes_skips_finished_runs_and_continues_them_when_steps_rise(finished_study, sector_cache):
    path = finished_study
    study = plan(path)
    assert [run_state(r, study.config).state for r in study.runs] == ["finished", "finished"]
    for run in study.runs:
        config = yaml.safe_load((run.dir / "config.yaml").read_text())
        assert config["train"]["seed"] == run.seed and config["train"]["steps"] == 4
        record = json.loads((run.dir / "metrics" / "step-2.json").read_text())
        assert "alignment/min_r2" in record["metrics"]  # the study's evaluation at its kept step
        assert list((run.dir / "codes").glob("step-4-*.npy"))  # the last step's code table, for the report
    mtime = (study.runs[0].dir / "checkpoints" / "latest.pt").stat().st_mtime_ns
    again = study_cli("run", path)
    assert again.returncode == 0 and (study.runs[0].dir / "checkpoints" / "latest.pt").stat().st_mtime_ns == mtime
    raised = tiny_study(path.parent, sector_cache, steps=6)
    assert study_cli("run", raised, "--jobs", "2").returncode == 0
    study = plan(raised)
    assert [run_state(r, study.config).step for r in study.runs] == [6, 6]
    log = (study.runs[0].dir / "train.log").read_text()
    assert "resuming at step 4 of 6" in log


def test_a_change_of_identity_is_refused_naming_the_run_and_the_key(tmp_path, sector_cache):
    path = tiny_study(tmp_path, sector_cache, steps=2, seeds=1)
    assert study_cli("run", path).returncode == 0
    raw = yaml.safe_load(path.read_text())
    raw["overrides"].append("loss.sn=10")
    path.write_text(yaml.safe_dump(raw))
    proc = study_cli("run", path)
    assert proc.returncode == 1
    assert "gdrae-sector2dunif-seed0" in proc.stderr and "loss.sn: the run has 1000.0, the study asks 10.0" in proc.stderr


def test_a_failing_run_ends_alone_and_a_killed_one_is_continued(tmp_path, sector_cache):
    path = tiny_study(tmp_path, sector_cache, steps=400)
    study = plan(path)
    broken, killed = study.runs
    broken.dir.parent.mkdir(parents=True)
    broken.dir.write_text("not a folder")  # its training cannot make its run directory
    proc = subprocess.Popen([sys.executable, "-m", "cli.study", "run", str(path), "--jobs", "2"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log = killed.dir / "train.log"
        deadline = time.monotonic() + 120
        while not (log.exists() and "step 30 " in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = int((killed.dir / ".lock").read_text())
        os.kill(pid, signal.SIGKILL)  # the task itself, as the out-of-memory killer would
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 1 and f"1 run(s) failed: {broken.id}" in err, err[-2000:]
    status = json.loads(killed.status_file.read_text())
    assert status["attempts"] == 2 and not status["failed"]
    assert run_state(killed, study.config).state == "finished"
    assert "resuming at step" in (killed.dir / "train.log").read_text()
    failed = run_state(broken, study.config)
    assert failed.state == "failed" and str(broken.dir) in failed.line
    status_out = CliRunner().invoke(main, ["status", str(study.dir)]).output
    assert "1 failed, 1 finished" in status_out and "failed" in status_out.splitlines()[0]


def test_sigterm_to_the_study_stops_every_run_with_its_checkpoint_and_the_next_run_finishes(tmp_path, sector_cache):
    path = tiny_study(tmp_path, sector_cache, steps=100000)
    study = plan(path)
    proc = subprocess.Popen([sys.executable, "-m", "cli.study", "run", str(path), "--jobs", "2"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        logs = [r.dir / "train.log" for r in study.runs]
        while not all(p.exists() and "step 5 " in p.read_text() for p in logs) and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert "SIGTERM: stopping every run with its checkpoint" in err
    states = [run_state(r, study.config) for r in study.runs]
    assert [s.state for s in states] == ["stopped", "stopped"] and all(s.step >= 5 for s in states)
    for run in study.runs:
        assert "stopped by a signal" in (run.dir / "train.log").read_text()
    shorter = tiny_study(tmp_path, sector_cache, steps=max(s.step for s in states) + 2)
    assert study_cli("run", shorter, "--jobs", "2").returncode == 0
    assert [run_state(r, plan(shorter).config).state for r in plan(shorter).runs] == ["finished", "finished"]
