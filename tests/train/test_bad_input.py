"""Runs that must not start: each ends with one GdraeError line and leaves earlier files untouched."""
import pytest
import torch

from gdrae.errors import GdraeError
from gdrae.train import train


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_channels_that_do_not_match_the_cache(make_cfg):
    with pytest.raises(GdraeError, match=r"tiny.zarr: model.channels: expected 1 \(the cache's images\), got 3"):
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


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign"])
def test_resume_from_a_corrupt_checkpoint(make_cfg, tmp_path, damage):
    train(make_cfg("sector", "train.steps=1"))
    latest = tmp_path / "run" / "checkpoints" / "latest.pt"
    if damage == "truncate":
        latest.write_bytes(latest.read_bytes()[:1000])
    elif damage == "garbage":
        latest.write_bytes(b"\x00" * 64)
    else:
        torch.save({"state_dict": {}}, latest)
    before = _snapshot(tmp_path / "run")
    with pytest.raises(GdraeError, match="latest.pt: (unreadable checkpoint|not a gdrae checkpoint)"):
        train(make_cfg("sector", "train.steps=2"), resume=True)
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
