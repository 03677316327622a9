"""The training loop: run directory contents, exact resume, non-finite steps, signals, torchrun."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from gdrae import load_checkpoint
from gdrae.checkpoint import read_checkpoint
from gdrae.config import load_config
from gdrae.errors import GdraeError
from gdrae.models import GDRAE
from gdrae.rundir import RunDirLock
from gdrae.runlog import RunLog, last_evaluation, logged_speed, read_evaluations, read_loss_log, read_pictures
from gdrae.train import TrainingDiverged, bfloat16_is_emulated, train

REPO = Path(__file__).resolve().parents[2]


def _assert_same_parameters(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_image_run_writes_config_log_tb_images_diagnostics_checkpoint(make_cfg, tmp_path):
    cfg = make_cfg("image", "train.steps=2")
    model = train(cfg)
    run = tmp_path / "run"
    assert load_config(run / "config.yaml") == cfg  # resolved config round-trips
    images = sorted(p.name for p in (run / "images").iterdir())
    assert images == [f"step-2-{n}.png" for n in ("reconstruction", "sv_bars", "traversal_random", "traversal_real")]
    assert list((run / "tb").glob("events.out.tfevents.*"))
    log = (run / "train.log").read_text()
    assert "step 1 total=" in log and "step 2 total=" in log and "eval step 2 geometry/ortho_sign=" in log
    evals = read_evaluations(run)  # metrics/metrics.csv, as gdrae-eval writes it
    assert list(evals) == [2] and set(evals[2]) == {"geometry/ortho_sign", "geometry/sv_match_err", "geometry/lt_err",
                                                    "jacobian/ortho_sign"}
    record = json.loads((run / "metrics" / "step-2.json").read_text())
    assert record == {"step": 2, "seed": cfg.train.seed, "metrics": evals[2]}
    state = read_checkpoint(run / "checkpoints" / "latest.pt")
    assert state["step"] == 2 and (run / "checkpoints" / "step-2.pt").exists()
    _assert_same_parameters(state["model"], model.state_dict())


def _tensorboard_tags(tb_dir) -> set[str]:
    """Tags of every summary in the TFRecord event files under tb_dir (read with tensorboardX's protobufs)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    tags = set()
    for path in tb_dir.glob("events.out.tfevents.*"):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = Event.FromString(data[pos + 12 : pos + 12 + length])
            tags.update(v.tag for v in event.summary.value)
            pos += 12 + length + 4
    return tags


def test_tensorboard_has_every_loss_term_monitor_image_and_diagnostic(make_cfg, tmp_path):
    train(make_cfg("sector", "train.steps=2"))
    tags = _tensorboard_tags(tmp_path / "run" / "tb")
    expected = {f"loss/{k}" for k in ("total", "recon", "prior", "sn", "sv", "cap")}
    expected |= {"monitor/recon_l1", "monitor/mu_abs/0", "monitor/mu_abs/1", "monitor/sv_mean/0", "monitor/sv_mean/1"}
    expected |= {"eval/geometry/ortho_sign", "eval/geometry/sv_match_err", "images/sv_bars", "images/sector_grid",
                 "images/sector_mu"}
    assert expected <= tags, expected - tags


def test_sector_run_pictures_and_python_api(make_cfg, tmp_path):
    cfg = make_cfg("sector", "train.steps=3", "train.image_every=2")
    model = train(cfg)
    run = tmp_path / "run"
    names = sorted(p.name for p in (run / "images").iterdir())
    assert names == sorted(f"step-{s}-{n}.png" for n in ("sector_grid", "sector_mu", "sv_bars") for s in (2, 3))
    assert read_pictures(run) == {s: {n: run / "images" / f"step-{s}-{n}.png" for n in ("sector_grid", "sector_mu",
                                                                                     "sv_bars")} for s in (2, 3)}
    loaded, loaded_cfg = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert loaded_cfg == cfg and isinstance(loaded, GDRAE) and not loaded.training
    _assert_same_parameters(loaded.state_dict(), model.state_dict())
    x = torch.rand(5, 2)
    assert torch.equal(loaded.encode(x), model.eval().encode(x))


@pytest.mark.parametrize("kind,n", [("sector", 3), ("image", 1)])
def test_resume_continues_bit_for_bit(make_cfg, kind, n):
    # pictures, diagnostics and checkpoints at steps where only one of the two runs stops must not matter
    every = [f"train.{k}=2" for k in ("image_every", "eval_every", "ckpt_every")]
    straight = train(make_cfg(kind, f"train.steps={2 * n}", *every, run="straight"))
    train(make_cfg(kind, f"train.steps={n}", *every, run="split"))
    resumed = train(make_cfg(kind, f"train.steps={2 * n}", *every, run="split"), resume=True)
    _assert_same_parameters(straight.state_dict(), resumed.state_dict())


def test_checkpoint_from_before_posterior_noise_loads_and_resumes(make_cfg, tmp_path):
    """A saved model section without a later key (posterior_noise) means that key's default."""
    train(make_cfg("image", "train.steps=1"))
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    state = torch.load(latest, weights_only=True)
    del state["config"]["model"]["posterior_noise"]
    del state["sha256"]  # such checkpoints predate the digest too
    torch.save(state, latest)
    model, cfg = load_checkpoint(latest)
    assert cfg.model.posterior_noise == "independent" and model.posterior_noise == "independent"
    with pytest.raises(GdraeError, match="model.posterior_noise: expected the checkpoint's value 'independent' "
                                         "to resume, got 'shared'"):
        train(make_cfg("image", "train.steps=2", "model.posterior_noise=shared"), resume=True)
    train(make_cfg("image", "train.steps=2"), resume=True)
    assert read_checkpoint(latest)["step"] == 2


def test_resume_applies_a_changed_lr_and_betas_and_logs_it(make_cfg, tmp_path):
    train(make_cfg("sector", "train.steps=1"))
    train(make_cfg("sector", "train.steps=2", "train.lr=0.5", "train.betas=[0.5, 0.999]"), resume=True)
    groups = read_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["optimizer"]["model"]["param_groups"]
    assert all(g["lr"] == 0.5 and tuple(g["betas"]) == (0.5, 0.999) for g in groups)
    log = (tmp_path / "run" / "train.log").read_text()
    assert "train.lr: 0.0001 in the checkpoint, 0.5 from now on" in log
    assert "train.betas: [0.9, 0.999] in the checkpoint, [0.5, 0.999] from now on" in log
    train(make_cfg("sector", "train.steps=3", "train.lr=0.5", "train.betas=[0.5, 0.999]"), resume=True)
    assert (tmp_path / "run" / "train.log").read_text().count("from now on") == 2  # nothing changed this time


def test_a_second_training_into_a_run_directory_is_refused(make_cfg, tmp_path):
    held = RunDirLock(tmp_path / "run")  # as another training would hold it (flock is per open file)
    try:
        with pytest.raises(GdraeError, match=f"{tmp_path / 'run'}: another training \\(pid {os.getpid()}\\) is "
                                             "writing this run directory; wait for it to end"):
            train(make_cfg("sector", "train.steps=1"))
        assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock"]
    finally:
        held.release()
    train(make_cfg("sector", "train.steps=1"))
    assert (tmp_path / "run" / ".lock").read_text() == ""  # released


def test_a_training_in_another_process_is_named_by_its_pid(make_cfg, tmp_path, lock_held_elsewhere):
    with lock_held_elsewhere(tmp_path / "run") as pid:
        with pytest.raises(GdraeError, match=f"another training \\(pid {pid}\\) is writing this run"):
            train(make_cfg("sector", "train.steps=1"))
    assert (tmp_path / "run" / ".lock").read_text() == str(pid)  # the refused run wrote nothing there


def test_the_lock_of_a_process_that_died_is_no_obstacle(make_cfg, tmp_path):
    (tmp_path / "run").mkdir()
    holder = ("import fcntl, os, sys; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
              "f.write(str(os.getpid())); f.flush(); os._exit(9)")  # dies holding it, pid left in the file
    subprocess.run([sys.executable, "-c", holder, str(tmp_path / "run" / ".lock")], check=False)
    assert (tmp_path / "run" / ".lock").read_text().isdigit()
    train(make_cfg("sector", "train.steps=1"))
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["step"] == 1


def _nan_from_call(fake_family, calls: set[int], group: str = "main", term: str = "recon"):
    """Make the fake family's loss_terms return a NaN ``group``/``term`` on the given (1-based) calls."""

    def hook(call, terms):
        if call in calls:
            terms[group][term] = terms[group][term] * float("nan")

    fake_family.hook = hook


@pytest.mark.parametrize("group,term,named", [("main", "recon", "recon"), ("critic", "fit", "critic/fit")])
def test_nonfinite_step_is_skipped_without_update_of_any_group(make_cfg, tmp_path, fake_family, group, term, named):
    _nan_from_call(fake_family, {2}, group, term)
    train(make_cfg("fake", "train.steps=3"))
    state = read_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert state["step"] == 3 and set(state["optimizer"]) == {"main", "critic"}
    for saved in state["optimizer"].values():  # two Adam updates of each group, not three
        assert all(s["step"].item() == 2 for s in saved["state"].values())
    assert f"warning: step 2: non-finite loss ({named}); step skipped" in (tmp_path / "run" / "train.log").read_text()


def test_too_many_nonfinite_steps_stop_the_run_keeping_the_good_checkpoint(make_cfg, tmp_path, fake_family):
    _nan_from_call(fake_family, set(range(3, 100)))
    cfg = make_cfg("fake", "train.steps=10", "train.ckpt_every=2", "train.max_nonfinite=3")
    with pytest.raises(TrainingDiverged, match="3 non-finite losses in a row at step 5"):
        train(cfg)
    ckpts = tmp_path / "run" / "checkpoints"
    good = read_checkpoint(ckpts / "step-2.pt")
    latest = read_checkpoint(ckpts / "latest.pt")  # step 4: no update since step 2
    assert latest["step"] == 4
    _assert_same_parameters(latest["model"], good["model"])
    assert all(torch.isfinite(v).all() for v in latest["model"].values())


@pytest.mark.parametrize("emulated", [True, False])
def test_bfloat16_autocast_switch_trains(make_cfg, tmp_path, monkeypatch, emulated):
    monkeypatch.setattr("gdrae.train.bfloat16_is_emulated", lambda device: emulated)
    model = train(make_cfg("sector", "train.steps=2", "train.dtype=bfloat16"))
    assert all(torch.isfinite(p).all() and p.dtype == torch.float32 for p in model.parameters())
    text = (tmp_path / "run" / "train.log").read_text()
    assert "step 2 total=" in text
    assert ("bfloat16 instructions is emulated" in text) == emulated  # the slow-CPU warning


def test_bfloat16_emulation_is_only_a_cpu_question():
    assert not bfloat16_is_emulated(torch.device("cuda"))  # asks nothing of the CPU's instructions


def _wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.communicate(timeout=10)[0] if proc.poll() is not None else ""
            raise AssertionError(f"condition not met (rc={proc.poll()}): {out[-2000:]}")
        time.sleep(0.2)


def test_sigterm_writes_checkpoint_and_exits_cleanly(make_cfg, tmp_path):
    cfg = make_cfg("sector", "train.steps=100000")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    log = tmp_path / "run" / "train.log"
    proc = subprocess.Popen([sys.executable, "-m", "cli.train", "--config", str(config)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: log.exists() and "step 3 total=" in log.read_text(), 120, proc)
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, out[-2000:]
    assert "Traceback" not in out
    state = read_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert 3 <= state["step"] < 100000
    assert f"stopped by a signal at step {state['step']}" in log.read_text()
    # and the run continues from there
    resumed = train(make_cfg("sector", f"train.steps={state['step'] + 1}"), resume=True)
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["step"] == state["step"] + 1
    assert all(torch.isfinite(p).all() for p in resumed.parameters())


def _signal_at_step(fake_family, step: int) -> None:
    """Send this process SIGINT while training step ``step`` computes its loss."""

    def hook(call, terms):
        if call == step:
            os.kill(os.getpid(), signal.SIGINT)

    fake_family.hook = hook


def test_ctrl_c_writes_the_checkpoint_and_nothing_slow(make_cfg, tmp_path, monkeypatch, fake_family):
    _signal_at_step(fake_family, 3)
    slow = []
    monkeypatch.setattr("gdrae.train.model_pictures", lambda *a, **k: slow.append("pictures") or {})
    monkeypatch.setattr("gdrae.train.evaluate_step", lambda *a, **k: slow.append("evaluation") or {})
    handler = signal.getsignal(signal.SIGINT)
    train(make_cfg("fake", "train.steps=100"))  # its last step would draw and evaluate
    assert signal.getsignal(signal.SIGINT) is handler  # the caller's handler is back
    assert slow == []
    run = tmp_path / "run"
    assert read_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 3
    assert (run / "checkpoints" / "step-3.pt").exists()
    log = (run / "train.log").read_text()
    assert "stopped by a signal at step 3" in log
    assert f"gdrae-eval --ckpt {run / 'checkpoints' / 'latest.pt'}" in log


def test_kept_steps_get_a_checkpoint_whatever_ckpt_every(make_cfg, tmp_path):
    train(make_cfg("sector", "train.steps=6", "train.ckpt_every=4", "train.keep_checkpoints=1",
                   "train.keep_steps=[1,3]"))
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["latest.pt", "step-1.pt", "step-3.pt", "step-6.pt"]


def test_the_ablation_trains_without_the_spectral_terms(make_cfg, tmp_path):
    train(make_cfg("sector", "train.steps=2", "loss.sn=0", "loss.sv=0"))
    record = read_loss_log(tmp_path / "run")[2]
    assert "sn" not in record and "sv" not in record and "recon" in record


def test_a_second_ctrl_c_waits_for_the_checkpoint(make_cfg, tmp_path, monkeypatch, fake_family):
    from gdrae import checkpoint

    _signal_at_step(fake_family, 2)
    original = checkpoint.save_atomic

    def save_atomic(obj, path):  # the second Ctrl-C arrives in the middle of the write
        os.kill(os.getpid(), signal.SIGINT)
        return original(obj, path)

    monkeypatch.setattr(checkpoint, "save_atomic", save_atomic)
    train(make_cfg("fake", "train.steps=100"))
    run = tmp_path / "run"
    assert read_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 2
    assert "stopped by a signal at step 2" in (run / "train.log").read_text()
    assert "further signal(s) waited for it" in (run / "train.log").read_text()


def test_sigterm_then_kill_keeps_the_stop_step(make_cfg, tmp_path):
    """A preemption: SIGTERM, then SIGKILL a few seconds later, during a run whose evaluations are slow."""
    cfg = make_cfg("sector", "train.steps=100000", "train.eval_every=100000")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    log = tmp_path / "run" / "train.log"
    script = ("import sys, time, gdrae.train\n"
              "gdrae.train.evaluate_step = lambda *a, **k: time.sleep(600) or {}  # an evaluation far past the grace\n"
              "from cli.train import main\n"
              "main(sys.argv[1:])\n")
    proc = subprocess.Popen([sys.executable, "-c", script, "--config", str(config)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: log.exists() and "step 3 total=" in log.read_text(), 120, proc)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    finally:
        proc.kill()
        out = proc.communicate(timeout=30)[0]
    state = read_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")
    assert state["step"] >= 3, out[-2000:]
    assert f"stopped by a signal at step {state['step']}" in log.read_text()
    lines = (tmp_path / "run" / "metrics" / "losses.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines][-1] == state["step"]  # every line whole


def test_torchrun_two_processes_on_gloo_keep_ranks_identical(make_cfg, tmp_path):
    cfg = make_cfg("image", "train.steps=2", "train.ckpt_every=1")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    script = tmp_path / "ddp_train.py"
    script.write_text(
        "import os, sys, torch\n"
        "from gdrae.config import load_config\n"
        "from gdrae.train import train\n"
        "model = train(load_config(sys.argv[1]))\n"
        "torch.save(model.state_dict(), os.path.join(sys.argv[2], f\"rank{os.environ['RANK']}.pt\"))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(config), str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    _assert_same_parameters(rank0, rank1)
    _assert_same_parameters(read_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["model"], rank0)
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("starting step 0") == 1 and "(2 process(es))" in log  # rank 0 alone writes
    initial = read_checkpoint(tmp_path / "run" / "checkpoints" / "step-1.pt")["model"]
    assert not all(torch.equal(initial[k], rank0[k]) for k in rank0)  # it did train


def test_evaluations_are_gdrae_evaluate_of_train_metrics_and_the_geometry(make_cfg, tmp_path, monkeypatch):
    calls, opened = [], []

    def fake_evaluate(model, cache, names, **options):
        calls.append((names, cache, options["seed"], options["diag_points"]))
        return {"mig/discrete_mig": 0.5, "geometry/ortho_sign": 0.25}

    # Sector2D trains without a cache; its metrics read the prepared grid, opened once at the start
    grid = SimpleNamespace(path=tmp_path / "sector2dunif.zarr", attrs={"dataset": "sector2dunif"})
    monkeypatch.setattr("gdrae.train.evaluate", fake_evaluate)
    monkeypatch.setattr("gdrae.data.cache.open_run_cache", lambda cfg, source: opened.append(source) or grid)
    train(make_cfg("sector", "train.steps=2", "train.eval_every=1", "train.metrics=[mig]", "train.seed=3"))
    assert calls == [(["mig", "geometry", "jacobian"], grid, 3, 4)] * 2 and opened == ["train.metrics"]
    run = tmp_path / "run"
    assert read_evaluations(run) == {s: {"mig/discrete_mig": 0.5, "geometry/ortho_sign": 0.25} for s in (1, 2)}
    record = json.loads((run / "metrics" / "step-2.json").read_text())
    assert record["seed"] == 3 and record["cache"] == str(grid.path) and record["cache_id"].startswith("sector2dunif-")


def test_a_metrics_table_it_cannot_keep_stops_a_resumed_run_at_its_start(make_cfg, tmp_path):
    train(make_cfg("sector", "train.steps=1"))
    table = tmp_path / "run" / "metrics" / "metrics.csv"
    table.write_text("run,score\nmine,0.9\n")
    with pytest.raises(GdraeError, match=f"{table}: expected step as the first column, got 'run'"):
        train(make_cfg("sector", "train.steps=2"), resume=True)
    assert table.read_text() == "run,score\nmine,0.9\n"
    assert read_checkpoint(tmp_path / "run" / "checkpoints" / "latest.pt")["step"] == 1


def test_training_without_train_metrics_imports_neither_the_metrics_nor_scikit_learn(make_cfg, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(make_cfg("sector", "train.steps=1").model_dump(mode="json")))
    script = ("import sys\nfrom gdrae.config import load_config\nfrom gdrae.train import train\n"
              "train(load_config(sys.argv[1]))\n"
              "print(sorted(m for m in ('sklearn', 'gdrae.metrics') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", script, str(config)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == "[]"
    assert "geometry/ortho_sign" in read_evaluations(tmp_path / "run")[1]


def test_metric_problems_stop_the_run_before_its_first_step(make_cfg, tmp_path):
    from gdrae.errors import GdraeError

    with pytest.raises(GdraeError, match=r"train.metrics: expected metric names from .*got 'migg'"):
        train(make_cfg("sector", "train.steps=1", "train.metrics=[migg]"))
    with pytest.raises(GdraeError, match=r"gdrae-data prepare"):  # metrics need the run's cache
        train(make_cfg("sector", "train.steps=1", "train.metrics=[mig]", f"data.cache_dir={tmp_path / 'none'}"))
    assert not (tmp_path / "run" / "checkpoints" / "latest.pt").exists()


def test_read_loss_log_reads_what_runlog_writes(tmp_path):
    log = RunLog(tmp_path, enabled=True, start_step=0, total_steps=20)
    terms = {"recon": torch.tensor(0.5), "sn": torch.tensor(2e-5), "monitor/recon_l1": torch.tensor(0.1),
             "monitor/mu_abs": torch.tensor([1.0, 2.0])}
    log.losses(10, {"model": terms}, {"model": torch.tensor(3.25)})
    log.text("eval step 10 ortho_sign=0.1 sv_match_err=0.2")
    log.losses(20, {"model": {**terms, "recon": torch.tensor(0.125)}}, {"model": torch.tensor(1.5)})
    log.losses(20, {"model": {**terms, "recon": torch.tensor(0.25)}}, {"model": torch.tensor(1.5)})  # resumed: again
    log.close()
    assert "step 10 total=3.25 recon=0.5 sn=2e-05" in (tmp_path / "train.log").read_text()  # for people
    assert read_loss_log(tmp_path) == {
        10: {"total": 3.25, "recon": 0.5, "sn": torch.tensor(2e-5).item()},  # the logged float32, not rounded
        20: {"total": 1.5, "recon": 0.25, "sn": torch.tensor(2e-5).item()},
    }
    step, rate = logged_speed(tmp_path)  # the rate beside the terms, not among them
    assert step == 20 and rate > 0
    assert logged_speed(tmp_path / "nowhere") is None


def test_runs_written_before_the_one_record_read_under_todays_names(tmp_path):
    metrics, images = tmp_path / "metrics", tmp_path / "images"
    metrics.mkdir()
    images.mkdir()
    (metrics / "eval.jsonl").write_text('{"step": 10, "ortho_sign": 0.5, "lt_err": 0.25, "hist20/mig": 0.125}\n'
                                        '{"step": 20, "ortho_sign": 0.375, "sv_match_err": 0.0625}\n')
    (metrics / "metrics.csv").write_text("step,hist20/mig,sap/sap_score\n20,0.75,\n30,,0.5\n")  # gdrae-eval's
    for name in ("reconstruction_0000020.png", "eval-step-30-mi.png", "step-40-sv_bars.png", "notes.txt"):
        (images / name).write_bytes(b"")
    assert read_evaluations(tmp_path) == {
        10: {"geometry/ortho_sign": 0.5, "geometry/lt_err": 0.25, "hist20/mig": 0.125},
        20: {"geometry/ortho_sign": 0.375, "geometry/sv_match_err": 0.0625, "hist20/mig": 0.75},
        30: {"sap/sap_score": 0.5},
    }
    assert last_evaluation(tmp_path) == {"step": 30, "sap/sap_score": 0.5}
    assert read_pictures(tmp_path) == {20: {"reconstruction": images / "reconstruction_0000020.png"},
                                       30: {"mi": images / "eval-step-30-mi.png"},
                                       40: {"sv_bars": images / "step-40-sv_bars.png"}}
    assert read_evaluations(tmp_path / "nowhere") == {} and last_evaluation(tmp_path / "nowhere") is None
    assert read_pictures(tmp_path / "nowhere") == {}


@pytest.mark.parametrize("name, text, message", [
    ("metrics.csv", "step,hist20/mig\n20,high\n", "metrics.csv: step 20, hist20/mig: expected a number, got 'high'"),
    ("eval.jsonl", '{"step": 10, "ortho_sign": 0.5}\n{"step": 20, "ort', "eval.jsonl: line 2: expected a JSON record"),
    ("eval.jsonl", '{"step": 10, "ortho_sign": null}\n', "eval.jsonl: line 1, geometry/ortho_sign: expected a number"),
])
def test_a_record_that_is_not_numbers_is_one_line_naming_the_file(tmp_path, name, text, message):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / name).write_text(text)
    with pytest.raises(GdraeError) as error:
        read_evaluations(tmp_path)
    assert str(error.value).startswith(f"{tmp_path / 'metrics'}/{message}")


def test_read_loss_log_of_a_run_without_json_losses_says_so(tmp_path):
    (tmp_path / "train.log").write_text("2026-01-01 00:00:00 step 10 total=3.25 recon=0.5\n")  # an older run
    with pytest.raises(GdraeError, match=r"metrics/losses.jsonl: cannot read the run's losses"):
        read_loss_log(tmp_path)


@pytest.mark.parametrize("route", ["auto", "reference"])
def test_the_spectral_route_is_the_configs(make_cfg, monkeypatch, route):
    """train.spectral_route reaches the power iteration (the routes' numbers agree: tests/models/test_fast_path.py)."""
    import gdrae.models.gdrae as gdrae_module

    real, seen = gdrae_module.resolve_route, []

    def resolve_route(route, *args):
        seen.append(route)
        return real(route, *args)

    monkeypatch.setattr(gdrae_module, "resolve_route", resolve_route)
    train(make_cfg("sector", "train.steps=2", f"train.spectral_route={route}"))
    assert seen == [route, route]
