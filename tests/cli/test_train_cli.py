"""gdrae-train: flags, and every failure as one line with a non-zero exit."""
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cli.train import main

REPO = Path(__file__).resolve().parents[2]
TINY = ["--set", "model.sector2d.input_nc=16", "--set", "model.sector2d.hidden_nc=16", "--set",
        "model.sector2d.n_flows=1", "--set", "model.sv_hidden=16", "--set", "data.batch_size=8",
        "--set", "train.diag_points=2", "--set", "train.device=cpu"]


def _run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _sector(tmp_path, *args):
    return _run("--config", str(REPO / "configs" / "sector2dunif.yaml"), *TINY,
                "--set", f"train.run_dir={tmp_path / 'run'}", *args)


def _one_line_error(result, fragment: str) -> None:
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], result.output
    assert "Traceback" not in result.output


def test_help_describes_training():
    result = _run("--help")
    assert result.exit_code == 0
    assert "--resume" in result.output and "--set" in result.output and "tensorboard --logdir" in result.output


def test_trains_resumes_and_writes_resolved_config(tmp_path):
    result = _sector(tmp_path, "--set", "train.steps=2")
    assert result.exit_code == 0, result.output
    assert f"run directory: {tmp_path / 'run'}" in result.output
    # the closing lines: the last evaluation's figures, the newest pictures, the next command
    assert "last evaluation (step 2): ortho_sign=" in result.output and "sv_match_err=" in result.output
    assert "pictures: " in result.output and "sector_grid_0000002.png" in result.output
    assert f"gdrae-eval --ckpt {tmp_path / 'run' / 'checkpoints' / 'latest.pt'}" in result.output
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert resolved["train"]["steps"] == 2 and resolved["model"]["sector2d"]["input_nc"] == 16
    result = _sector(tmp_path, "--set", "train.steps=3", "--resume")
    assert result.exit_code == 0, result.output
    assert "resuming at step 2 of 3" in (tmp_path / "run" / "train.log").read_text()


def test_missing_cache_says_which_prepare_to_run(tmp_path):
    result = _run("--config", str(REPO / "configs" / "demo.yaml"), "--set", f"data.cache_dir={tmp_path}",
                  "--set", f"train.run_dir={tmp_path / 'run'}")
    _one_line_error(result, f"run `gdrae-data prepare shapes2d-synth-small --cache-dir {tmp_path}`")


@pytest.mark.parametrize("override,fragment", [
    ("train.stepz=3", "train.stepz: unknown key"),
    ("train.steps=many", "train.steps:"),
    ("train.steps", "expected KEY=VALUE"),
    ("model.nz=[1,2]", "model.nz:"),
])
def test_bad_overrides(tmp_path, override, fragment):
    _one_line_error(_sector(tmp_path, "--set", override), fragment)
    assert not (tmp_path / "run").exists()


def test_unknown_key_in_the_file(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("data:\n  name: sector2dunif\ntrain:\n  stpes: 3\n")
    _one_line_error(_run("--config", str(config)), "train.stpes: unknown key")


def test_missing_config_file(tmp_path):
    _one_line_error(_run("--config", str(tmp_path / "nope.yaml")), "nope.yaml")


def test_existing_run_without_resume_is_not_overwritten(tmp_path):
    assert _sector(tmp_path, "--set", "train.steps=1").exit_code == 0
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    before = (latest.read_bytes(), (tmp_path / "run" / "config.yaml").read_bytes())
    _one_line_error(_sector(tmp_path, "--set", "train.steps=2"), "already holds a checkpoint; expected --resume")
    assert (latest.read_bytes(), (tmp_path / "run" / "config.yaml").read_bytes()) == before


def test_corrupt_checkpoint_on_resume(tmp_path):
    assert _sector(tmp_path, "--set", "train.steps=1").exit_code == 0
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    latest.write_bytes(b"PK\x03\x04 damaged")
    _one_line_error(_sector(tmp_path, "--set", "train.steps=2", "--resume"), f"{latest}: unreadable checkpoint")
    assert latest.read_bytes() == b"PK\x03\x04 damaged"


def test_unwritable_run_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    result = _run("--config", str(REPO / "configs" / "sector2dunif.yaml"), *TINY,
                  "--set", f"train.run_dir={tmp_path / 'file' / 'run'}")
    _one_line_error(result, "cannot write the run directory")
