"""Data pipeline benchmark: prepare time and memory, loader throughput. One `name=value` line per figure.

    python bench/data.py [--work DIR] [--shapes3d-orientations 15] [--batches 3000]

Figures (targets on a 2-core CPU machine):
  shapes2d_synth_prepare_s         gdrae-data prepare shapes2d-synth (737,280 images)      < 180
  stream_64x64x1_img_per_s         streaming loader, compressed cache, batch 64            >= 110,000
  memory_64x64x1_img_per_s         in-memory loader, batch 64                              >= 550,000 (5x the original in-RAM rate)
  shapes3d_prepare_peak_rss_mb     prepare shapes3d from a synthetic full-size .h5         < 1,500
  stream_64x64x3_img_per_s         streaming loader on that cache, batch 64                >= 67,000
  memory_64x64x3_img_per_s         in-memory loader on that cache, batch 64                >= 335,000 (5x the original)
Prepare runs in a child process so its peak RSS is its own (os.wait4's rusage).
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


def loader_rate(cache, in_memory: bool, batches: int, batch_size: int = 64) -> tuple[float, float]:
    """(images per second over ``batches`` batches after a warm-up batch, setup seconds)."""
    start = time.perf_counter()
    loader = BatchLoader(cache, batch_size=batch_size, seed=0, in_memory=in_memory)
    stream = loader.batches()
    next(stream)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    rate = batches * batch_size / (time.perf_counter() - start)
    stream.close()  # stops the prefetch thread and frees the buffers before the next figure
    return rate, setup


def memcpy_rate(nbytes: int = 256 << 20) -> float:
    """GB/s of one large numpy copy (context for the in-memory figures: a batch is one gather)."""
    src = np.ones(nbytes, np.uint8)
    dst = np.ones(nbytes, np.uint8)
    start = time.perf_counter()
    for _ in range(4):
        dst[:] = src
    return 4 * nbytes / (time.perf_counter() - start) / 1e9


def print_loader_figures(cache_dir: Path, name: str, shape: str, batches: int) -> None:
    cache = open_cache(cache_path(cache_dir, name))
    stream, _ = loader_rate(cache, False, batches)
    print(f"stream_{shape}_img_per_s={stream:.0f}", flush=True)
    memory, load = loader_rate(cache, True, batches)
    print(f"memory_{shape}_img_per_s={memory:.0f}  # load {load:.1f} s, {memory / stream:.1f}x streaming", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--shapes3d-orientations", type=int, default=15,
                        help="orientation classes of the synthetic 3DShapes file (15: the full 480,000 images)")
    parser.add_argument("--batches", type=int, default=3000, help="batches timed per loader figure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        raw_dir, cache_dir = work / "Datasets", work / "cache"
        # the prepares first, in fresh children, while this process is still small
        seconds, _ = prepare_in_child("shapes2d-synth", raw_dir, cache_dir)
        print(f"shapes2d_synth_prepare_s={seconds:.1f}", flush=True)
        sizes = (10, 10, 10, 8, 4, args.shapes3d_orientations)
        start = time.perf_counter()
        raw_writers.write_3dshapes(raw_dir, sizes)
        print(f"# wrote a synthetic 3DShapes .h5 of {sizes} in {time.perf_counter() - start:.0f} s", flush=True)
        seconds, rss = prepare_in_child("shapes3d", raw_dir, cache_dir)
        print(f"shapes3d_prepare_peak_rss_mb={rss:.0f}  # prepare took {seconds:.1f} s", flush=True)
        print(f"memcpy_gb_per_s={memcpy_rate():.2f}", flush=True)
        print_loader_figures(cache_dir, "shapes2d-synth", "64x64x1", args.batches)
        print_loader_figures(cache_dir, "shapes3d", "64x64x3", args.batches)


if __name__ == "__main__":
    main()
