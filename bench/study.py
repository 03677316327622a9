"""What a study costs beyond its runs, and how two cores are best shared between runs.

1. Overhead: a study of --runs runs (GDRAE's published Sector2D settings, --steps steps each, the
   study's evaluation of alignment at the last step) run one at a time; per run, the task's wall
   time (from the study's status record) against the training time the run logged: the difference
   is the study's start, evaluation and bookkeeping.
2. Throughput: the same training, --steps steps, as two single-thread runs at once against one
   two-thread run; steps per hour of each and their ratio.

Each figure is a ``name=value`` line. Run it on an otherwise idle machine:

    python bench/study.py --steps 300 --runs 3
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DONE = re.compile(r"done: step (\d+) of \d+ in ([0-9.]+) s")


def trained_seconds(run_dir: Path) -> float:
    """Seconds of training the run logged (the sum over its stretches)."""
    return sum(float(m.group(2)) for m in DONE.finditer((run_dir / "train.log").read_text()))


def overhead(folder: Path, cache_dir: Path, steps: int, runs: int) -> None:
    study = {"name": "overhead", "out": str(folder / "overhead"), "datasets": ["sector2dunif"], "seeds": runs,
             "overrides": [f"train.steps={steps}", f"data.cache_dir={cache_dir}", f"train.ckpt_every={steps}",
                           f"train.image_every={steps}", f"train.eval_every={steps}"],
             "models": [{"name": "gdrae", "config": str(ROOT / "configs" / "sector2dunif.yaml")}],
             "evaluate": {"metrics": ["alignment"]}}
    path = folder / "overhead.yaml"
    path.write_text(yaml.safe_dump(study))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cli.study", "run", str(path), "--jobs", "1", "--threads", "2"],
                   cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - start
    tasks, trained = [], []
    for status in sorted((folder / "overhead" / "status").glob("*.json")):
        tasks.append(json.loads(status.read_text())["seconds"])
        trained.append(trained_seconds(folder / "overhead" / "runs" / status.stem))
    per_run = [t - s for t, s in zip(tasks, trained)]
    print(f"study_wall_s={wall:.1f} runs={len(tasks)} steps_per_run={steps}")
    print(f"task_s_mean={sum(tasks) / len(tasks):.1f} training_s_mean={sum(trained) / len(trained):.1f} "
          f"overhead_s_per_run={sum(per_run) / len(per_run):.1f} "
          f"overhead_share={sum(per_run) / sum(tasks):.2f}")


def train_processes(folder: Path, cache_dir: Path, steps: int, count: int, threads: int) -> float:
    """Wall seconds of ``count`` gdrae-train runs at once, ``threads`` torch threads each."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    procs = []
    start = time.perf_counter()
    for i in range(count):
        run = folder / f"t{threads}-{i}"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "cli.train", "--config", str(ROOT / "configs" / "sector2dunif.yaml"),
             "--set", f"train.steps={steps}", "--set", f"train.run_dir={run}", "--set", f"train.seed={i}",
             "--set", f"data.cache_dir={cache_dir}", "--set", f"train.ckpt_every={steps}",
             "--set", f"train.image_every={steps}", "--set", f"train.eval_every={steps}"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"bench/study.py: a training run failed (exit {proc.returncode})")
    return time.perf_counter() - start


def throughput(folder: Path, cache_dir: Path, steps: int) -> None:
    two_single = train_processes(folder, cache_dir, steps, count=2, threads=1)
    one_double = train_processes(folder, cache_dir, steps, count=1, threads=2)
    a, b = 2 * steps * 3600 / two_single, steps * 3600 / one_double
    print(f"two_1thread_runs_steps_per_hour={a:.0f} one_2thread_run_steps_per_hour={b:.0f} ratio={a / b:.2f} "
          f"(whole processes: start, training, the last step's pictures and diagnostics)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=None, help="holding sector2dunif.zarr (default: made)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cache_dir = args.cache_dir
        if cache_dir is None:
            from pipelines.registry import get_spec
            from pipelines.store import prepare

            cache_dir = folder / "cache"
            prepare(get_spec("sector2dunif"), cache_dir / "raw", cache_dir, progress=False)
        overhead(folder, cache_dir, args.steps, args.runs)
        throughput(folder, cache_dir, args.steps)


if __name__ == "__main__":
    main()
