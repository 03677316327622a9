"""Checkpoint files: atomic writes, pruning, safe loading, digests, RNG round trip."""
import copy
import errno
import os
import random
import re

import numpy as np
import pytest
import torch

from fulldisk import fill_disk
from gdrae.checkpoint import read_checkpoint, rng_states, set_rng_states, temp_path, write_checkpoint
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


def test_kept_steps_are_never_pruned_nor_counted(tmp_path):
    for step in (1, 2, 3, 4, 5):
        write_checkpoint(tmp_path, _state(step), keep=1, keep_steps=[2, 3])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt", "step-2.pt", "step-3.pt", "step-5.pt"]
    write_checkpoint(tmp_path, _state(6), keep=0, keep_steps=[6])
    assert (tmp_path / "step-6.pt").exists()


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


def _zero_tensor_bytes(path, tensor, n=64):
    """Overwrite ``n`` bytes of ``tensor``'s data inside the checkpoint file, in place (hard links see it too)."""
    offset = path.read_bytes().find(tensor.numpy().tobytes())
    assert offset > 0
    with open(path, "r+b") as f:
        f.seek(offset + 8)
        f.write(b"\x00" * n)


def _big_state(step):
    return {**_state(step), "model": {"w": torch.arange(1000, dtype=torch.float32) + step}}


def test_zeroed_tensor_bytes_are_caught_and_the_newest_intact_step_file_named(tmp_path):
    for step in (1, 2, 3):
        write_checkpoint(tmp_path, _big_state(step), keep=3)
    latest = tmp_path / "latest.pt"
    _zero_tensor_bytes(latest, _big_state(3)["model"]["w"])  # step-3.pt is the same file (a hard link)
    message = (f"{latest}: damaged checkpoint: its content does not match the sha256 stored in it; the newest "
               f"intact checkpoint beside it is {tmp_path / 'step-2.pt'} (copy it over latest.pt to resume from it)")
    with pytest.raises(GdraeError, match=re.escape(message) + "$"):
        read_checkpoint(latest)
    assert read_checkpoint(tmp_path / "step-2.pt")["step"] == 2


def test_a_replaced_damaged_latest_points_to_its_own_step_file(tmp_path):
    write_checkpoint(tmp_path, _big_state(1), keep=2)
    latest = tmp_path / "latest.pt"
    damaged = latest.read_bytes()
    latest.unlink()
    latest.write_bytes(damaged)  # a copy: step-1.pt keeps the good bytes
    _zero_tensor_bytes(latest, _big_state(1)["model"]["w"])
    with pytest.raises(GdraeError, match=r"latest.pt: damaged checkpoint: .* beside it is .*step-1.pt"):
        read_checkpoint(latest)


def test_checkpoint_without_a_digest_still_loads(tmp_path):
    torch.save(_state(4), tmp_path / "old.pt")  # as written before checkpoints carried sha256
    assert read_checkpoint(tmp_path / "old.pt")["step"] == 4


def test_digest_is_stored_in_the_file_and_not_handed_out(tmp_path):
    write_checkpoint(tmp_path, _state(1), keep=1)
    assert len(torch.load(tmp_path / "latest.pt", weights_only=True)["sha256"]) == 64
    assert "sha256" not in read_checkpoint(tmp_path / "latest.pt")


class _Tripwire:
    """Records it ran if ever unpickled."""

    def __reduce__(self):
        return (RAN.append, ("unpickled",))


class _Settings:
    """A plain object: its class is Python code too."""


RAN = []


@pytest.mark.parametrize("extra", [_Tripwire(), _Settings()])
def test_checkpoint_holding_code_is_refused_in_plain_words(tmp_path, extra):
    path = tmp_path / "latest.pt"
    torch.save({**_state(1), "extra": extra}, path)
    message = f"{path}: holds Python code (pickled objects), not only tensors: not loaded; do not trust this file"
    with pytest.raises(GdraeError, match=re.escape(message) + "$"):
        read_checkpoint(path)
    assert RAN == []


@pytest.mark.parametrize("key,value,message", [
    ("step", "12", "checkpoint step: expected an integer >= 0, got '12'"),
    ("step", -1, "checkpoint step: expected an integer >= 0, got -1"),
    ("step", True, "checkpoint step: expected an integer >= 0, got True"),
    ("model", [1, 2], "checkpoint model: expected a dict of tensors, got list"),
    ("model", {"w": "x"}, "checkpoint model: expected a dict of tensors, got dict"),
    ("optimizer", None, "checkpoint optimizer: expected a dict, got NoneType"),
    ("config", "run.yaml", "checkpoint config: expected a dict, got 'run.yaml'"),
])
def test_ill_typed_keys_are_named(tmp_path, key, value, message):
    write_checkpoint(tmp_path, {**_state(1), key: value}, keep=0)
    with pytest.raises(GdraeError, match=re.escape(f"{tmp_path / 'latest.pt'}: {message}") + "$"):
        read_checkpoint(tmp_path / "latest.pt")


def test_temporary_names_are_unique_to_the_process_and_call(tmp_path):
    first, second = temp_path(tmp_path / "latest.pt"), temp_path(tmp_path / "latest.pt")
    assert first != second and f".latest.pt.{os.getpid()}." in first.name and first.name.endswith(".tmp")


@pytest.mark.parametrize("failing, reason", [
    ("the file", "No space left on device"),  # torch.save meets the OSError and passes it on
    ("torch's zip writer", "the disk is full or not writable"),  # torch's own RuntimeError ("unexpected pos")
])
def test_full_disk_leaves_no_temporary_file_and_keeps_the_earlier_checkpoint(tmp_path, monkeypatch, failing, reason):
    state = {**_state(1), "model": {"w": torch.ones(100_000)}}  # a tensor larger than a file's buffer
    write_checkpoint(tmp_path, state, keep=2)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full_disk(obj, f):
        f.write(b"PK partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    if failing == "the file":
        monkeypatch.setattr(torch, "save", full_disk)
    else:
        fill_disk(monkeypatch, tmp_path, room=50_000)  # the pickle goes in, the big tensor does not
    with pytest.raises(GdraeError, match=re.escape(f"{tmp_path / 'latest.pt'}: cannot write the checkpoint: {reason}")
                       + "$"):
        write_checkpoint(tmp_path, {**state, "step": 2}, keep=2)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    monkeypatch.undo()
    assert read_checkpoint(tmp_path / "latest.pt")["step"] == 1


def test_damage_torch_refuses_is_not_told_as_advice_to_load_unsafely(tmp_path):
    path = tmp_path / "latest.pt"
    path.write_bytes(b"\x00" * 64)  # torch: "Weights only load failed ... Re-running with weights_only=False ..."
    with pytest.raises(GdraeError) as error:
        read_checkpoint(path)
    assert str(error.value) == f"{path}: unreadable checkpoint (corrupt or not a torch file): Unsupported operand 0"


def test_a_plain_adam_state_continues_in_the_fused_kernel():
    from gdrae.checkpoint import restore_optimizers

    torch.manual_seed(0)
    start = torch.nn.Linear(4, 3)
    plain = torch.optim.Adam(start.parameters(), lr=1e-2)
    for _ in range(3):
        plain.zero_grad()
        start(torch.randn(8, 4)).square().sum().backward()
        plain.step()
    saved = copy.deepcopy(plain.state_dict())  # as read from a file: no tensor shared with plain
    twin = torch.nn.Linear(4, 3)
    twin.load_state_dict(start.state_dict())
    fused = torch.optim.Adam(twin.parameters(), lr=1e-2, fused=True)
    restore_optimizers({"model": fused}, {"model": saved}, {"model": (1e-2, (0.9, 0.999), "train.lr", "train.betas")})
    assert fused.param_groups[0]["fused"] is True
    x = torch.randn(8, 4)
    for model, opt in ((start, plain), (twin, fused)):
        opt.zero_grad()
        model(x).square().sum().backward()
        opt.step()
    for a, b in zip(start.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
