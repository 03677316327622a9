"""Checkpoint files: atomic writes, pruning, safe loading, RNG round trip."""
import random

import numpy as np
import pytest
import torch

from gdrae.checkpoint import read_checkpoint, rng_states, set_rng_states, write_checkpoint
from gdrae.errors import GdraeError


def _state(step):
    return {"version": 1, "step": step, "model": {"w": torch.full((3,), float(step))},
            "optimizer": {}, "config": {"train": {"steps": 5}}, "rng": rng_states()}


def test_latest_is_newest_and_old_steps_pruned(tmp_path):
    for step in (1, 2, 3, 4):
        write_checkpoint(tmp_path, _state(step), keep=2)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["latest.pt", "step-3.pt", "step-4.pt"]
    latest = read_checkpoint(tmp_path / "latest.pt")
    assert latest["step"] == 4 and torch.equal(latest["model"]["w"], torch.full((3,), 4.0))
    assert read_checkpoint(tmp_path / "step-3.pt")["step"] == 3


def test_keep_zero_writes_only_latest(tmp_path):
    write_checkpoint(tmp_path, _state(7), keep=0)
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


def test_loads_with_weights_only(tmp_path):
    write_checkpoint(tmp_path, _state(1), keep=1)
    state = torch.load(tmp_path / "latest.pt", weights_only=True)
    assert state["step"] == 1


def test_rng_round_trip(tmp_path):
    torch.manual_seed(3); np.random.seed(3); random.seed(3)
    saved = rng_states()
    write_checkpoint(tmp_path, {**_state(1), "rng": saved}, keep=0)
    first = (torch.rand(4), np.random.rand(4), random.random())
    set_rng_states(read_checkpoint(tmp_path / "latest.pt")["rng"])
    second = (torch.rand(4), np.random.rand(4), random.random())
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1]) and first[2] == second[2]


@pytest.mark.parametrize("content", [b"", b"garbage bytes, not a zip", None])
def test_corrupt_or_foreign_file_is_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.pt"
    if content is None:
        torch.save({"weights": torch.zeros(2)}, path)  # a torch file, but not ours
    else:
        path.write_bytes(content)
    with pytest.raises(GdraeError, match="bad.pt"):
        read_checkpoint(path)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    write_checkpoint(tmp_path, _state(1), keep=0)
    data = (tmp_path / "latest.pt").read_bytes()
    (tmp_path / "latest.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(GdraeError, match="latest.pt: unreadable"):
        read_checkpoint(tmp_path / "latest.pt")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(GdraeError, match="not found"):
        read_checkpoint(tmp_path / "nope.pt")
