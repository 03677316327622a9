"""Runs that must not start: each ends with one GdraeError line and leaves earlier files untouched."""
import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from gdrae.errors import GdraeError
from gdrae.train import train

REPO = Path(__file__).resolve().parents[2]

CPU_OUT_OF_MEMORY = ("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                     "you tried to allocate 40000000000000 bytes. Error code 12 (Cannot allocate memory)")


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_channels_that_do_not_match_the_cache(make_cfg):
    with pytest.raises(GdraeError, match=r"config and cache \S*tiny.zarr do not belong together: channels expected 3 "
                                         r"\(model.channels\), got 1$"):
        train(make_cfg("image", "model.channels=3", "model.ncs=[8,4,4,4,4]"))


def test_sector_model_on_an_image_dataset_and_back(make_cfg):
    with pytest.raises(GdraeError, match="data.name: expected sector2d or sector2dunif"):
        train(make_cfg("sector", "data.name=tiny"))
    with pytest.raises(GdraeError, match="model.kind: expected sector2d for data.name=sector2dunif"):
        train(make_cfg("image", "data.name=sector2dunif"))


def test_missing_cache_names_the_prepare_command(make_cfg, tmp_path):
    with pytest.raises(GdraeError, match="run `gdrae-data prepare shapes2d-synth-small --cache-dir "):
        train(make_cfg("image", "data.name=shapes2d-synth-small", f"data.cache_dir={tmp_path / 'nothing'}"))


def test_existing_run_needs_resume_and_is_left_alone(make_cfg, tmp_path):
    train(make_cfg("sector", "train.steps=1"))
    before = _snapshot(tmp_path / "run")
    with pytest.raises(GdraeError, match="already holds a checkpoint; expected --resume"):
        train(make_cfg("sector", "train.steps=2", "train.lr=0.5"))
    assert _snapshot(tmp_path / "run") == before


def test_resume_needs_a_checkpoint(make_cfg):
    with pytest.raises(GdraeError, match="latest.pt: --resume expected a checkpoint, got none"):
        train(make_cfg("sector", "train.steps=1"), resume=True)


def test_resume_refuses_a_changed_model(make_cfg, tmp_path):
    train(make_cfg("sector", "train.steps=1"))
    before = _snapshot(tmp_path / "run")
    with pytest.raises(GdraeError, match="model.sv_hidden: expected the checkpoint's value 16 to resume, got 8"):
        train(make_cfg("sector", "train.steps=2", "model.sv_hidden=8"), resume=True)
    assert _snapshot(tmp_path / "run") == before


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign", "zeroed", "step_text"])
def test_resume_from_a_corrupt_checkpoint(make_cfg, tmp_path, damage):
    train(make_cfg("sector", "train.steps=1"))
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    if damage == "truncate":
        latest.write_bytes(latest.read_bytes()[:1000])
    elif damage == "garbage":
        latest.write_bytes(b"\x00" * 64)
    elif damage == "foreign":
        torch.save({"state_dict": {}}, latest)
    elif damage == "zeroed":  # inside a weight tensor's bytes: torch.load does not notice
        weights = max(torch.load(latest, weights_only=True)["model"].values(), key=torch.numel)
        raw = bytearray(latest.read_bytes())
        offset = raw.find(weights.numpy().tobytes())
        raw[offset + 8 : offset + 72] = bytes(64)
        latest.write_bytes(bytes(raw))
    else:
        state = torch.load(latest, weights_only=True)
        torch.save({**state, "step": "1"}, latest)
    before = _snapshot(tmp_path / "run")
    with pytest.raises(GdraeError, match="latest.pt: (unreadable checkpoint|not a gdrae checkpoint|damaged checkpoint"
                                         "|checkpoint step: expected an integer >= 0, got '1')"):
        train(make_cfg("sector", "train.steps=2"), resume=True)
    assert _snapshot(tmp_path / "run") == before


def test_a_step_that_runs_out_of_memory_names_the_batch_size(make_cfg, fake_family):
    def out_of_memory(call, terms):
        raise RuntimeError(CPU_OUT_OF_MEMORY)

    fake_family.hook = out_of_memory
    with pytest.raises(GdraeError, match=r"^data.batch_size: 8 does not fit in memory on cpu \(a training step ran "
                                         r"out of memory\); lower data.batch_size$"):
        train(make_cfg("fake", "train.steps=1"))


def test_other_runtime_errors_are_not_taken_for_memory(make_cfg, fake_family):
    def broken(call, terms):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    fake_family.hook = broken
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        train(make_cfg("fake", "train.steps=1"))


def test_full_disk_at_a_checkpoint_keeps_the_earlier_one_and_no_temporary_file(make_cfg, tmp_path, monkeypatch):
    train(make_cfg("sector", "train.steps=1"))
    ckpts = tmp_path / "run" / "checkpoints"
    before = _snapshot(ckpts)

    def full_disk(obj, f):
        f.write(b"PK partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(GdraeError, match=re.escape(f"{ckpts / 'latest.pt'}: cannot write the checkpoint: "
                                                   "No space left on device") + "$"):
        train(make_cfg("sector", "train.steps=2"), resume=True)
    assert _snapshot(ckpts) == before


def test_read_only_file_system_at_run_start(make_cfg, tmp_path, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(GdraeError, match=re.escape(f"{tmp_path / 'run'}: cannot write the run directory: "
                                                   "Read-only file system") + "$"):
        train(make_cfg("sector", "train.steps=1"))
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories anyway")
def test_run_directory_without_write_permission(make_cfg, tmp_path):
    train(make_cfg("sector", "train.steps=1"))
    before = _snapshot(tmp_path / "run")
    os.chmod(tmp_path / "run", 0o555)
    try:
        with pytest.raises(GdraeError, match=re.escape(f"{tmp_path / 'run'}: cannot write the run directory: "
                                                       "Permission denied") + "$"):
            train(make_cfg("sector", "train.steps=2"), resume=True)
    finally:
        os.chmod(tmp_path / "run", 0o755)
    assert _snapshot(tmp_path / "run") == before


def test_unwritable_run_directory(make_cfg, tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(GdraeError, match="a_file/run: cannot write the run directory"):
        train(make_cfg("sector", "train.steps=1", run="a_file/run"))


def test_cuda_asked_for_but_absent(make_cfg):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(GdraeError, match="train.device: expected a CUDA device"):
        train(make_cfg("sector", "train.device=cuda"))


@pytest.mark.parametrize("refusal", ["resume without a checkpoint", "missing cache"])
def test_a_refused_start_leaves_the_file_system_as_it_was(make_cfg, tmp_path, refusal):
    run = "new/folders/run"
    with pytest.raises(GdraeError):
        if refusal == "missing cache":
            train(make_cfg("image", "data.name=shapes2d-synth-small", f"data.cache_dir={tmp_path / 'none'}", run=run))
        else:
            train(make_cfg("sector", "train.steps=1", run=run), resume=True)
    assert list(tmp_path.iterdir()) == []


def test_under_torchrun_every_rank_ends_with_the_refusal_of_a_locked_run_directory(make_cfg, tmp_path,
                                                                                     lock_held_elsewhere):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(make_cfg("sector", "train.steps=2").model_dump(mode="json")))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with lock_held_elsewhere(tmp_path / "run") as pid:
        # torchrun stops the other ranks once one has ended: it looks seldom enough here for both to end first
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               "--monitor-interval=3", "-m", "cli.train", "--config", str(config)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    line = (f"Error: {tmp_path / 'run'}: another training (pid {pid}) is writing this run directory; "
            "wait for it to end or choose another train.run_dir\n")
    assert proc.returncode != 0
    assert out.count(line) == 2, out[-3000:]  # one line from each rank
    assert str(REPO / "gdrae") not in out and "gloo" not in out, out[-3000:]  # no rank's traceback
