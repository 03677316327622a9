"""Data pipeline benchmark: prepare time and memory, loader throughput. One `name=value` line per figure.

    python bench/data.py [--work DIR] [--shapes3d-orientations 15] [--batches 3000]

Figures (targets on a 2-core CPU machine):
  shapes2d_synth_prepare_s         gdrae-data prepare shapes2d-synth (737,280 images)      < 180
  shapes2d_synth_prepare_peak_rss_mb  its peak memory                                      < 1,500
  stream_64x64x1_img_per_s         streaming loader, compressed cache, batch 64            >= 110,000
  memory_64x64x1_img_per_s         in-memory loader, batch 64                              >= 550,000 (5x the original in-RAM rate)
  shapes3d_prepare_peak_rss_mb     prepare shapes3d from a synthetic full-size .h5         < 1,500
  stream_64x64x3_img_per_s         streaming loader on that cache, batch 64                >= 67,000
  memory_64x64x3_img_per_s         in-memory loader on that cache, batch 64                >= 335,000 (5x the original)
Prepare runs in a child process so its peak RSS is its own (os.wait4's rusage).

Mixing, for each cache and loader mode (gdrae.data.mixing; about 1 for uniform draws; target >= 0.95):
  <mode>_<shape>_distinct_1       distinct combinations of the slow factors (all but the two fastest in
                                  grid order: for dSprites shape, scale, orientation) per batch, over
                                  K (1 - (1 - 1/K)^64)
  <mode>_<shape>_distinct_10      the same over 10 consecutive batches (n = 640)
  <mode>_<shape>_balance_100      factor-value balance over 100 consecutive batches: chi-square expected
                                  for uniform draws over the measured one
The batches' rows come from the loader's own order (``batch_indices``), over --mixing-batches batches.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from gdrae.data.cache import cache_path, open_cache  # noqa: E402
from gdrae.data.loader import BatchLoader  # noqa: E402
from gdrae.data.mixing import balance_ratio, distinct_ratio  # noqa: E402
from pipelines import raw_writers  # noqa: E402

CHILD = """
import sys, time
sys.path.insert(0, {root!r})
from pipelines.store import prepare
start = time.perf_counter()
prepare({name!r}, {raw!r}, {cache!r}, force=True, progress=False)
print(time.perf_counter() - start)
"""


def prepare_in_child(name: str, raw_dir: Path, cache_dir: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of prepare(name) run alone in a fresh process."""
    code = CHILD.format(root=str(ROOT), name=name, raw=str(raw_dir), cache=str(cache_dir))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    out = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage (ru_maxrss in KB on Linux)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"prepare {name} failed with exit code {child.returncode}")
    return float(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def loader_rate(loader: BatchLoader, batches: int) -> float:
    """Images per second over ``batches`` batches after a warm-up batch."""
    stream = loader.batches()
    next(stream)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    rate = batches * loader.batch_size / (time.perf_counter() - start)
    stream.close()  # stops the prefetch thread and frees the buffers before the next figure
    return rate


def mixing_figures(loader: BatchLoader, batches: int) -> dict[str, float]:
    """The three mixing ratios of the loader's first ``batches`` batches (module docstring)."""
    cache = loader.cache
    factors = [cache.factors[loader.batch_indices(s)] for s in range(batches)]
    slow = len(cache.factor_sizes) - 2
    slow_sizes = cache.factor_sizes[:slow]

    def groups(size: int) -> list[np.ndarray]:
        return [np.concatenate(factors[i:i + size]) for i in range(0, batches - size + 1, size)]

    return {"distinct_1": distinct_ratio([f[:, :slow] for f in factors], slow_sizes),
            "distinct_10": distinct_ratio([g[:, :slow] for g in groups(10)], slow_sizes),
            "balance_100": balance_ratio(groups(100), cache.factor_sizes, cache.n)}


def memcpy_rate(nbytes: int = 256 << 20) -> float:
    """GB/s of one large numpy copy (context for the in-memory figures: a batch is one gather)."""
    src = np.ones(nbytes, np.uint8)
    dst = np.ones(nbytes, np.uint8)
    start = time.perf_counter()
    for _ in range(4):
        dst[:] = src
    return 4 * nbytes / (time.perf_counter() - start) / 1e9


def print_loader_figures(cache_dir: Path, name: str, shape: str, batches: int, mixing_batches: int) -> None:
    cache = open_cache(cache_path(cache_dir, name))
    rates = {}
    for mode in ("stream", "memory"):
        start = time.perf_counter()
        loader = BatchLoader(cache, batch_size=64, seed=0, in_memory=mode == "memory")
        setup = time.perf_counter() - start
        rates[mode] = loader_rate(loader, batches)
        note = f"  # load {setup:.1f} s, {rates[mode] / rates['stream']:.1f}x streaming" if mode == "memory" else ""
        print(f"{mode}_{shape}_img_per_s={rates[mode]:.0f}{note}", flush=True)
        for key, value in mixing_figures(loader, mixing_batches).items():
            print(f"{mode}_{shape}_{key}={value:.3f}", flush=True)
        del loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--shapes3d-orientations", type=int, default=15,
                        help="orientation classes of the synthetic 3DShapes file (15: the full 480,000 images)")
    parser.add_argument("--batches", type=int, default=3000, help="batches timed per loader figure")
    parser.add_argument("--mixing-batches", type=int, default=5000, help="batches of each mixing figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        raw_dir, cache_dir = work / "Datasets", work / "cache"
        # the prepares first, in fresh children, while this process is still small
        seconds, rss = prepare_in_child("shapes2d-synth", raw_dir, cache_dir)
        print(f"shapes2d_synth_prepare_s={seconds:.1f}", flush=True)
        print(f"shapes2d_synth_prepare_peak_rss_mb={rss:.0f}", flush=True)
        sizes = (10, 10, 10, 8, 4, args.shapes3d_orientations)
        start = time.perf_counter()
        raw_writers.write_3dshapes(raw_dir, sizes)
        print(f"# wrote a synthetic 3DShapes .h5 of {sizes} in {time.perf_counter() - start:.0f} s", flush=True)
        seconds, rss = prepare_in_child("shapes3d", raw_dir, cache_dir)
        print(f"shapes3d_prepare_peak_rss_mb={rss:.0f}  # prepare took {seconds:.1f} s", flush=True)
        print(f"memcpy_gb_per_s={memcpy_rate():.2f}", flush=True)
        print_loader_figures(cache_dir, "shapes2d-synth", "64x64x1", args.batches, args.mixing_batches)
        print_loader_figures(cache_dir, "shapes3d", "64x64x3", args.batches, args.mixing_batches)


if __name__ == "__main__":
    main()
