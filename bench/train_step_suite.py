"""Run bench/train_step.py over the issue's configurations, eager and compiled, one process each.

Prints one line per run: ``<config> <mode> ms_per_step=<number>`` plus the
bench's other lines (summary, and the time breakdown with --breakdown), so the whole block can be pasted into a
report. Each run is a fresh process (clean peak-memory figures, no
compile cache shared between modes).

    python bench/train_step_suite.py --device cuda
    python bench/train_step_suite.py --device cuda --modes eager,cudagraphs --configs sector2dunif
    python bench/train_step_suite.py --device cuda --modes eager --breakdown
    python bench/train_step_suite.py --device cpu --configs shapes2d --modes eager,reference
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gdrae.device import DEVICES  # noqa: E402

MODES = {
    "eager": [],
    "compile": ["--compile"],
    "cudagraphs": ["--compile", "--compile-mode", "reduce-overhead", "--warmup", "3"],  # records on the 2nd call
    "reference": ["--spectral-method", "reference"],  # the plain route, for comparison
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=DEVICES[1:], default="cuda")
    parser.add_argument("--configs", default="shapes2d,shapes3d,sector2dunif", help="names under configs/")
    parser.add_argument("--modes", default="eager,compile", help=f"comma list of {', '.join(MODES)}")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run")
    parser.add_argument("--breakdown", action="store_true", help="pass --breakdown to every run")
    args = parser.parse_args()
    modes = args.modes.split(",")
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"--modes: unknown {', '.join(unknown)} (expected {', '.join(MODES)})")
    failed = 0
    for name in args.configs.split(","):
        config = ROOT / "configs" / f"{name}.yaml"
        for mode in modes:
            cmd = [sys.executable, str(ROOT / "bench" / "train_step.py"), "--config", str(config),
                   "--device", args.device, "--steps", str(args.steps), *MODES[mode]]
            if args.breakdown:
                cmd.append("--breakdown")
            try:
                run = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
                lines = run.stdout.strip().splitlines()
                ok = run.returncode == 0 and lines and lines[-1].startswith("ms_per_step=")
                why = (run.stderr.strip().splitlines() or ["no output"])[-1]
            except subprocess.TimeoutExpired:
                ok, lines, why = False, [], f"timed out after {args.timeout:.0f} s"
            if ok:
                print(f"{name} {mode} {lines[-1]}   ({' | '.join(lines[:-1])})", flush=True)
            else:
                failed += 1
                print(f"{name} {mode} failed: {why}", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
