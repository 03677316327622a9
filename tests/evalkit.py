"""Small caches, configs and checkpoints for the evaluation tests (tests/test_evaluate.py, tests/cli/test_eval_cli.py)."""
from pathlib import Path

import numpy as np

from gdrae.config import config_from_dict
from gdrae.data.cache import cache_path, open_cache
from gdrae.data.grid import all_factors
from pipelines.store import prepare, spec_from_array

SIZES = (3, 4, 5)  # a small factor grid: 60 images


def block_images(sizes=SIZES, channels=1, side=64) -> np.ndarray:
    """uint8 (N, C, side, side) images in grid order: a bright block whose row, column and height follow
    the first three factors (more factors only change the block's brightness)."""
    factors = all_factors(sizes)
    images = np.zeros((len(factors), channels, side, side), np.uint8)
    cell = side // 8
    for i, f in enumerate(factors):
        f = list(f) + [0] * (3 - len(f))
        top, left, height = cell * f[0], cell * f[1], cell * (1 + f[2] % 5)
        images[i, :, top:top + height, left:left + 2 * cell] = 255 - 20 * int(sum(f[3:]))
    return images


def make_cache(cache_dir: Path, name: str = "tiny2d", sizes=SIZES, channels=1, side=64, chunk_rows=None):
    """Prepare a cache of :func:`block_images` named ``name`` under ``cache_dir`` and open it."""
    images = block_images(sizes, channels, side)
    spec = spec_from_array(name, images, [f"f{k}" for k in range(len(sizes))], list(sizes))
    prepare(spec, Path(cache_dir) / "raw", cache_dir, progress=False, chunk_rows=chunk_rows)
    return open_cache(cache_path(cache_dir, name))


def tiny_config(kind: str, cache_dir: Path, run_dir: Path, name: str = "tiny2d", **train):
    """A RunConfig with a very small model (image or Sector2D) that trains in seconds on a CPU."""
    if kind == "image":
        model = {"nz": 3, "encoder_width": 8, "ncs": [8, 4, 4, 4, 4], "hidden_ncs": [8, 4, 4, 4, 4], "sv_hidden": 16}
        loss = {}
    else:
        model = {"kind": "sector2d", "nz": 2, "sv_hidden": 16, "sector2d": {"input_nc": 16, "hidden_nc": 16, "n_flows": 1}}
        loss = {"recon": 1000, "sv": 1, "norm_sv": None}
    return config_from_dict({
        "data": {"name": name, "cache_dir": str(cache_dir), "batch_size": 4},
        "model": model,
        "loss": loss,
        "train": {"steps": 2, "seed": 0, "device": "cpu", "run_dir": str(run_dir), "diag_points": 4,
                  "log_every": 1, **train},
    })


def train_tiny(kind: str, cache_dir: Path, run_dir: Path, name: str, **train_options) -> Path:
    """Train the tiny model for two steps through the trainer's API; returns checkpoints/latest.pt."""
    from gdrae.train import train

    train(tiny_config(kind, cache_dir, run_dir, name, **train_options))
    return Path(run_dir) / "checkpoints" / "latest.pt"
