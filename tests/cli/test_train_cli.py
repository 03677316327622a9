"""gdrae-train: flags, and every failure as one line with a non-zero exit."""
import os
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
    assert "last evaluation (step 2): geometry/ortho_sign=" in result.output and "sv_match_err=" in result.output
    assert "pictures: " in result.output and "step-2-sector_grid.png" in result.output
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
    ("train.lr=.inf", "train.lr: input should be a finite number, got inf"),
    ("loss.recon=.nan", "loss.recon: input should be a finite number, got nan"),
    ("loss.sn=-1", "loss.sn: input should be greater than or equal to 0, got -1"),
    ("train.betas=[2, 3]", "train.betas: input should be less than 1, got 2"),
    ("data.name=../../escaped", "data.name: expected a dataset name like shapes2d"),
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


def test_resume_with_a_lower_lr_applies_it_and_says_so(tmp_path):
    assert _sector(tmp_path, "--set", "train.steps=1").exit_code == 0
    result = _sector(tmp_path, "--set", "train.steps=2", "--set", "train.lr=0.00005", "--resume")
    assert result.exit_code == 0, result.output
    assert "train.lr: 0.0001 in the checkpoint, 5e-05 from now on" in (tmp_path / "run" / "train.log").read_text()


def test_second_training_into_a_run_in_use(tmp_path):
    from gdrae.rundir import RunDirLock

    held = RunDirLock(tmp_path / "run")
    try:
        _one_line_error(_sector(tmp_path, "--set", "train.steps=1"),
                        f"{tmp_path / 'run'}: another training (pid {os.getpid()}) is writing this run directory")
    finally:
        held.release()


def test_batch_too_large_for_memory(tmp_path, monkeypatch):
    import gdrae.data.stream

    real = gdrae.data.stream.sample_sector

    def sample_sector(n, uniform, generator):  # what torch says when an allocation fails
        if n < 10**6:
            return real(n, uniform, generator)
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           f"memory: you tried to allocate {8 * n} bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(gdrae.data.stream, "sample_sector", sample_sector)
    result = _sector(tmp_path, "--set", "train.steps=1", "--set", "data.batch_size=100000000")
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [part for part in result.output.replace("\r", "\n").splitlines() if part.startswith("Error: ")]
    assert errors == ["Error: data.batch_size: 100000000 does not fit in memory on cpu (a training step ran out of "
                      "memory); lower data.batch_size"], result.output  # after the run's own start line


def test_config_file_that_is_not_utf8(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_bytes(b"data:\n  name: sector2dunif  # \xff\n")
    _one_line_error(_run("--config", str(config)), f"{config}: expected a UTF-8 text file, got byte 0xff")
