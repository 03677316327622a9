"""The data a training run streams: batches from a cache (images) or fresh Sector2D points, and a fixed sample.

:func:`open_data` checks the config against the data (the Sector2D names,
or the cache through :func:`gdrae.data.cache.open_run_cache`) and returns a
:class:`TrainData`, whose :meth:`TrainData.batches` is the step-indexed
stream of one rank's batches: a resumed run draws what the straight run draws.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from gdrae.data.cache import Cache, open_run_cache
from gdrae.data.loader import BatchLoader
from gdrae.data.sector import DATASETS as SECTOR_NAMES, sample_sector
from gdrae.errors import GdraeError

if TYPE_CHECKING:
    from gdrae.config import RunConfig

@dataclass
class TrainData:
    """What the run trains on: a cache (images) or the Sector2D sampler, and a fixed sample to draw pictures of."""

    cfg: RunConfig
    cache: Cache | None  # the image cache; None for Sector2D, which samples fresh points
    sample: torch.Tensor  # fixed real data (64 images in [0, 1], or 2000 points) for the pictures

    def batches(self, start_step: int, rank: int, world: int, device: torch.device) -> Iterator[torch.Tensor]:
        """Infinite stream of this rank's training batches from ``start_step``, float on ``device``.

        Images: the cache loader (uint8 -> float / 255 on the device). Sector2D:
        fresh points every step (as the paper), drawn from a generator seeded
        by (seed, rank, step) so a resumed run draws what the straight run draws.
        """
        d, seed = self.cfg.data, self.cfg.train.seed
        if self.cache is None:
            gen = torch.Generator()
            for step in range(start_step, 2**62):
                gen.manual_seed(int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0]))
                yield sample_sector(d.batch_size, SECTOR_NAMES[d.name], gen).to(device)
        loader = BatchLoader(self.cache, d.batch_size, seed=seed, rank=rank, world_size=world, in_memory=d.in_memory)
        for batch in loader.batches(start_step):
            yield batch.to(device, non_blocking=True).float().div_(255.0)


def open_data(cfg: RunConfig) -> TrainData:
    """Open the cache (images) or check the Sector2D name; GdraeError when the config does not fit the data."""
    d, m = cfg.data, cfg.model
    if m.kind == "sector2d":
        if d.name not in SECTOR_NAMES:
            raise GdraeError(f"data.name: expected sector2d or sector2dunif for model.kind=sector2d, got {d.name!r}")
        gen = torch.Generator().manual_seed(cfg.train.seed)
        return TrainData(cfg, None, sample_sector(2000, SECTOR_NAMES[d.name], gen))
    if d.name in SECTOR_NAMES:
        raise GdraeError(f"model.kind: expected sector2d for data.name={d.name}, got {m.kind!r}")
    cache = open_run_cache(cfg, source="config")
    rows = np.sort(np.random.default_rng(cfg.train.seed).choice(cache.n, size=min(64, cache.n), replace=False))
    sample = torch.from_numpy(cache.images[rows]).float() / 255.0
    return TrainData(cfg, cache, sample)
