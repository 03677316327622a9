"""Shared fixtures of the trainer tests: a tiny image cache and tiny run configs (fast on 2 CPU cores)."""
import subprocess
import sys
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest

from gdrae.config import load_config

REPO = Path(__file__).resolve().parents[2]
TINY_IMAGE_SIZES = (3, 2, 2, 4, 4)  # 192 procedural images, the shapes2d-synth factors on a small grid
# image model with a few channels per layer; the architecture is otherwise the published one
TINY_IMAGE = ["model.nz=3", "model.ncs=[8,4,4,4,4]", "model.hidden_ncs=[8,4,4,4,4]", "model.encoder_width=8",
              "model.sv_hidden=16", "data.batch_size=4", "train.diag_points=2", "train.device=cpu"]
TINY_SECTOR = ["model.sector2d.input_nc=16", "model.sector2d.hidden_nc=16", "model.sector2d.n_flows=1",
               "model.sv_hidden=16", "data.batch_size=8", "train.diag_points=4", "train.device=cpu"]
QUIET = ["train.log_every=1", "train.image_every=1000", "train.eval_every=1000", "train.ckpt_every=1000"]


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A cache folder holding tiny.zarr: shapes2d-synth images on a 192-image grid."""
    from pipelines.base import DatasetSpec
    from pipelines.datasets.shapes2d_synth import FACTOR_NAMES, convert
    from pipelines.store import prepare

    cache_dir = tmp_path_factory.mktemp("cache")
    spec = DatasetSpec(name="tiny", description="tiny procedural images", factor_names=FACTOR_NAMES,
                       factor_sizes=TINY_IMAGE_SIZES, raw_files=(), convert=partial(convert, sizes=TINY_IMAGE_SIZES))
    prepare(spec, cache_dir / "raw", cache_dir, progress=False)
    return cache_dir


@pytest.fixture
def fake_family(monkeypatch):
    """The fake family (fake_family.Fake) built for every config of model.family beta_vae; returns the class,
    whose ``hook`` a test may set."""
    from fake_family import Fake

    monkeypatch.setitem(__import__("gdrae.models.registry", fromlist=["BUILDERS"]).BUILDERS, "beta_vae",
                        lambda cfg: Fake(cfg.model.nz))
    monkeypatch.setattr(Fake, "hook", None)
    return Fake


@pytest.fixture
def make_cfg(tmp_path, tiny_cache):
    """make_cfg("image" | "sector" | "fake", *overrides, run="run") -> RunConfig of a tiny run under tmp_path
    ("fake": a config that the fixture fake_family builds as the fake family)."""

    def make(kind: str, *overrides: str, run: str = "run"):
        if kind == "image":
            base = REPO / "configs" / "demo.yaml"
            sets = ["data.name=tiny", f"data.cache_dir={tiny_cache}", *TINY_IMAGE]
        elif kind == "fake":
            from fake_family import FAKE_CONFIG

            base, sets = REPO / "configs" / "baselines" / "beta_vae-sector2dunif.yaml", FAKE_CONFIG
        else:
            base = REPO / "configs" / "sector2dunif.yaml"
            sets = TINY_SECTOR
        return load_config(base, [*sets, *QUIET, f"train.run_dir={tmp_path / run}", *overrides])

    return make


@pytest.fixture(scope="session")
def one_step_sector_run(tmp_path_factory) -> Path:
    """A tiny sector run trained for one step, with all it writes at its last step (copy it to change it)."""
    from gdrae.train import train

    run = tmp_path_factory.mktemp("trained") / "run"
    train(load_config(REPO / "configs" / "sector2dunif.yaml", [*TINY_SECTOR, *QUIET, f"train.run_dir={run}",
                                                               "train.steps=1"]))
    return run


@contextmanager
def _held_by_another_process(run_dir: Path):
    run_dir.mkdir(parents=True, exist_ok=True)
    holder = ("import fcntl, os, sys; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
              "f.write(str(os.getpid())); f.flush(); print('held', flush=True); sys.stdin.read()")
    other = subprocess.Popen([sys.executable, "-c", holder, str(run_dir / ".lock")],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline() == "held\n"
        yield other.pid
    finally:
        other.communicate("")


@pytest.fixture
def lock_held_elsewhere():
    """``with lock_held_elsewhere(run_dir) as pid:`` another process holds run_dir/.lock, as another training
    would (its pid written in it), until the block ends."""
    return _held_by_another_process
