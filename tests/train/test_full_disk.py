"""A disk that fills up at the start of a training or during it: one GdraeError line naming the file, every
earlier checkpoint intact, nothing half-written and no temporary file left."""
import re
import shutil
from pathlib import Path

import pytest

from fulldisk import fill_disk
from gdrae.checkpoint import read_checkpoint
from gdrae.errors import GdraeError
from gdrae.runlog import read_loss_log
from gdrae.train import train

NO_SPACE = "No space left on device"
PNG_END = b"IEND\xaeB`\x82"  # a PNG file's last chunk


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_full_disk_at_the_start_is_one_line_and_leaves_nothing(make_cfg, tmp_path, monkeypatch):
    fill_disk(monkeypatch, tmp_path)
    lock = tmp_path / "runs" / "run" / ".lock"
    with pytest.raises(GdraeError, match=f"^{re.escape(str(lock))}: cannot write the run directory's lock: "
                                         f"{NO_SPACE}$"):
        train(make_cfg("sector", "train.steps=1", run="runs/run"))
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_at_a_resumed_start_leaves_the_run_as_it_was(make_cfg, tmp_path, monkeypatch, one_step_sector_run):
    shutil.copytree(one_step_sector_run, tmp_path / "run")
    before = _snapshot(tmp_path / "run")
    fill_disk(monkeypatch, tmp_path)
    with pytest.raises(GdraeError, match=f"^{re.escape(str(tmp_path / 'run' / '.lock'))}: cannot write"):
        train(make_cfg("sector", "train.steps=2"), resume=True)
    assert _snapshot(tmp_path / "run") == before


# what fills up during the resumed run's last step -> the start of the one line it gives
DURING_A_RUN = {
    "train.log": "train.log: cannot write the run's log",
    "metrics/losses.jsonl": "losses.jsonl: cannot write the run's losses",
    "metrics/step-2.json": "step-2.json: cannot write the evaluation's metrics",
    "images": ".png: cannot write a picture",
    "tb": "tb: cannot write the TensorBoard events",
    "checkpoints": "latest.pt: cannot write the checkpoint: the disk is full or not writable",  # torch's zip writer
}


@pytest.mark.parametrize("place", DURING_A_RUN)
def test_a_disk_that_fills_during_a_run(make_cfg, tmp_path, monkeypatch, one_step_sector_run, place):
    run = tmp_path / "run"
    shutil.copytree(one_step_sector_run, run)
    before = _snapshot(run)
    fill_disk(monkeypatch, run / place, room=100)  # part of a write goes in, then the disk is full
    with pytest.raises(GdraeError, match=f"{re.escape(DURING_A_RUN[place])}(: {NO_SPACE})?$") as e:
        train(make_cfg("sector", "train.steps=2"), resume=True)
    assert str(e.value).startswith(str(run))
    after = _snapshot(run)
    assert {k: v for k, v in after.items() if k.parts[0] == "checkpoints"} == \
           {k: v for k, v in before.items() if k.parts[0] == "checkpoints"}  # step 1's, intact
    assert read_checkpoint(run / "checkpoints" / "latest.pt")["step"] == 1
    assert not [k for k in after if k.name.endswith(".tmp")]
    assert all(v.endswith(PNG_END) for k, v in after.items() if k.suffix == ".png")  # whole pictures only
    if place in ("train.log", "metrics/losses.jsonl"):  # no part of a line at the end
        assert after[Path(place)].startswith(before[Path(place)]) and after[Path(place)].endswith(b"\n")
    assert 1 in read_loss_log(run)  # every record whole
