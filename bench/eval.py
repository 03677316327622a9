"""Benchmark of the evaluation's encoding pass (not a test): one `name=value` figure per line.

    python bench/eval.py [--config configs/shapes2d.yaml] [--n 16384] [--batch-size 1024] [--device cpu]

Builds a cache of ``--n`` random 64x64 binary images in a temporary folder,
encodes it with the model of ``--config`` (untrained: the cost does not
depend on the weights) and prints:

    encode_images_per_s=<images per second of gdrae.codes.encode_cache, cache reads included>
    encoding_passes_per_evaluation=<rows encoded by one gdrae.evaluate.evaluate call / cache rows; must be 1>
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gdrae import evaluate as ev
from gdrae.codes import ENCODE_BATCH, encode_cache
from gdrae.config import load_config
from gdrae.data.cache import cache_path, open_cache
from gdrae.models import build_model
from pipelines.store import prepare, spec_from_array


def random_cache(folder: Path, n: int, channels: int):
    """A cache of ``n`` random binary images on a (n/64, 64) factor grid."""
    rng = np.random.default_rng(0)
    images = (rng.random((n, channels, 64, 64)) < 0.2).astype(np.uint8) * 255
    spec = spec_from_array("bench-eval", images, ["a", "b"], [n // 64, 64])
    prepare(spec, folder / "raw", folder / "cache", progress=False)
    return open_cache(cache_path(folder / "cache", "bench-eval"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/shapes2d.yaml")
    parser.add_argument("--n", type=int, default=16384, help="images in the cache (a multiple of 64)")
    parser.add_argument("--batch-size", type=int, default=ENCODE_BATCH)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    cfg = load_config(args.config)
    torch.manual_seed(0)
    model = build_model(cfg).to(args.device).eval()
    with tempfile.TemporaryDirectory() as tmp:
        cache = random_cache(Path(tmp), args.n // 64 * 64, cfg.model.channels)
        encode_cache(model, cache, args.batch_size, progress=False)  # warm-up (allocations, kernels)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        encode_cache(model, cache, args.batch_size, progress=False)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start

        rows = 0
        encode = model.encode

        def counting_encode(x):
            nonlocal rows
            rows += len(x)
            return encode(x)

        model.encode = counting_encode
        ev.evaluate(model, cache, ["histogram", "mig", "sap"], progress=False)
    print(f"device={args.device} images={cache.n} batch_size={args.batch_size} threads={torch.get_num_threads()}")
    print(f"encode_images_per_s={cache.n / seconds:.0f}")
    print(f"encoding_passes_per_evaluation={rows / cache.n:g}")


if __name__ == "__main__":
    main()
