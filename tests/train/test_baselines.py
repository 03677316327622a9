"""The baselines through the trainer and gdrae-eval, and runs written before model families."""
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from gdrae.checkpoint import read_checkpoint
from gdrae.config import BASELINES, load_config
from gdrae.evaluate import evaluate_checkpoint
from gdrae.models import vae
from gdrae.runlog import read_evaluations, read_loss_log
from gdrae.train import train

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "v1-run"
QUIET = ["train.log_every=1", "train.image_every=1000", "train.eval_every=1000", "train.ckpt_every=1000",
         "train.device=cpu", "train.diag_points=4"]


def baseline(family: str, kind: str, run: Path, *sets: str, cache_dir: Path | None = None):
    data = "sector2dunif" if kind == "sector" else "shapes2d-synth-small"
    extra = ["data.batch_size=8"] if kind == "sector" else ["data.name=tiny", "data.batch_size=4", "model.nz=3"]
    where = [f"data.cache_dir={cache_dir}"] if cache_dir else []
    return load_config(REPO / "configs" / "baselines" / f"{family}-{data}.yaml",
                       [*extra, *where, *QUIET, f"train.run_dir={run}", *sets])


@pytest.mark.parametrize("family", BASELINES)
def test_every_baseline_trains_on_points_and_is_scored(family, tmp_path, sector_cache):
    run = tmp_path / "run"
    train(baseline(family, "sector", run, "train.steps=2", "train.metrics=[alignment]", cache_dir=sector_cache))
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["model"]["family"] == family
    assert set(config["loss"]) == {"recon"} and "spectral_route" not in config["train"]  # no key of GDRAE's
    assert set(read_evaluations(run)[2]) >= {"alignment/min_r2", "jacobian/ortho_sign"}
    assert not any(k.startswith("geometry/") for k in read_evaluations(run)[2])
    assert read_loss_log(run)[2]["recon"] > 0
    images = sorted(p.name for p in (run / "images").iterdir())
    assert images == ["step-2-sector_grid.png", "step-2-sector_mu.png"]  # no singular-value bars: GDRAE's only


def test_a_baseline_image_run_through_the_command_line_and_gdrae_eval(tmp_path, tiny_cache):
    run = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(baseline("factor_vae", "image", run, cache_dir=tiny_cache).model_dump(mode="json")))
    proc = subprocess.run([sys.executable, "-m", "cli.train", "--config", str(config), "--set", "train.steps=2"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = read_loss_log(run)[2]
    assert {"recon", "kl", "tc", "discriminator/total", "discriminator/loss"} <= set(losses)
    images = sorted(p.name for p in (run / "images").iterdir())
    assert images == ["step-2-reconstruction.png", "step-2-traversal_random.png", "step-2-traversal_real.png"]
    report = evaluate_checkpoint(run / "checkpoints" / "latest.pt", progress=False,
                                 options={"dci": {"num_train": 100, "num_test": 50},
                                          "beta_vae": {"num_train": 50, "num_eval": 20, "batch_size": 8},
                                          "factor_vae": {"num_train": 50, "num_eval": 20, "batch_size": 8,
                                                         "num_variance_estimate": 100},
                                          "mig": {"num_train": 100}, "sap": {"num_train": 100, "num_test": 50},
                                          "irs": {"num_train": 100}, "modularity_explicitness": {"num_train": 100,
                                                                                                 "num_test": 50}})
    names = {k.split("/")[0] for k in report.results}
    assert "jacobian" in names and "geometry" not in names and {"hist20", "dci", "mig", "alignment"} <= names
    from gdrae.errors import GdraeError

    with pytest.raises(GdraeError, match="'geometry' is not a diagnostic of a factor_vae model"):
        evaluate_checkpoint(run / "checkpoints" / "latest.pt", metrics=["geometry"], progress=False)


def test_annealed_capacity_follows_its_schedule_across_a_resume(tmp_path, monkeypatch):
    seen = []
    original = vae.AnnealedVAE.regularizer

    def regularizer(self, z, mu, logvar, kl, step):
        seen.append(int(step))
        return original(self, z, mu, logvar, kl, step)

    monkeypatch.setattr(vae.AnnealedVAE, "regularizer", regularizer)
    cfg = ["model.c_max=8", "model.iteration_threshold=4"]
    train(baseline("annealed_vae", "sector", tmp_path / "run", "train.steps=3", *cfg))
    train(baseline("annealed_vae", "sector", tmp_path / "run", "train.steps=6", *cfg), resume=True)
    assert seen == [0, 1, 2, 3, 4, 5]  # dlib's global step: C = 0, 2, 4, 6, 8, 8
    caps = [min(8, 8 * s / 4) for s in seen]
    assert caps == [0, 2, 4, 6, 8, 8]


def test_factor_vae_killed_resumes_both_optimisers_exactly(tmp_path):
    """kill -9 mid-run, --resume from the last checkpoint: the same numbers as a run never interrupted."""
    sets = ["train.ckpt_every=3", "data.batch_size=4"]
    straight = train(baseline("factor_vae", "sector", tmp_path / "straight", "train.steps=8", *sets))
    cfg = baseline("factor_vae", "sector", tmp_path / "killed", "train.steps=100000", *sets)
    config = tmp_path / "killed.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    proc = subprocess.Popen([sys.executable, "-m", "cli.train", "--config", str(config)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "checkpoints" / "step-6.pt"
    deadline = time.monotonic() + 240
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert ckpt.exists(), "no checkpoint at step 6 before the kill"
    latest = tmp_path / "killed" / "checkpoints" / "latest.pt"
    latest.unlink()  # the last checkpoint it wrote may be later (or step 6 itself, hard-linked): continue from step 6
    shutil.copy(ckpt, latest)
    state = read_checkpoint(latest)
    assert set(state["optimizer"]) == {"vae", "discriminator"} and state["step"] == 6
    resumed = train(baseline("factor_vae", "sector", tmp_path / "killed", "train.steps=8", *sets), resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


# ----------------------------------------------------------------------------- before model families


def _fixture_copy(tmp_path: Path) -> Path:
    run = tmp_path / "v1-run"
    shutil.copytree(FIXTURE, run)
    return run


def test_a_version_1_run_loads_and_evaluates_as_before(tmp_path, tiny_cache):
    run = _fixture_copy(tmp_path)
    state = read_checkpoint(run / "checkpoints" / "latest.pt")
    assert state["version"] == 1 and set(state["optimizer"]) == {"model"}
    config = load_config(run / "config.yaml")
    assert config.model.family == "gdrae" and config.train.spectral_route == "auto"
    before = read_evaluations(run)[2]
    report = evaluate_checkpoint(run / "checkpoints" / "latest.pt", metrics=["geometry"], cache_dir=tiny_cache,
                                 progress=False, images=False)
    assert report.results == pytest.approx(before, rel=1e-5, abs=1e-9)


def test_a_version_1_checkpoint_resumes_as_the_new_code_continues_it(tmp_path, tiny_cache):
    """Resuming the fixture (written by gdrae 0.1.0 at step 2) to step 4 equals training 4 steps straight."""
    run = _fixture_copy(tmp_path)
    overrides = [f"data.cache_dir={tiny_cache}", f"train.run_dir={run}", "train.steps=4"]
    resumed = train(load_config(run / "config.yaml", overrides), resume=True)
    straight_dir = [f"data.cache_dir={tiny_cache}", f"train.run_dir={tmp_path / 'straight'}", "train.steps=4"]
    straight = train(load_config(run / "config.yaml", straight_dir))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    state = read_checkpoint(run / "checkpoints" / "latest.pt")
    assert state["version"] == 2 and set(state["optimizer"]) == {"model"} and state["step"] == 4
