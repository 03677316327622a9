"""Loss curves of bfloat16 autocast against float32, same config and seed: the accuracy check of train.dtype.

Trains the config twice, identical but for ``train.dtype``, into OUT/float32
and OUT/bfloat16. A run already there is read, not trained again, so a check
that was stopped can be compared as far as it got. Prints the loss terms of
both runs at a few steps, writes OUT/curves.png (every term, both runs, log
scale) and ends with a line ``median_rel_gap_total=<number>``: the median,
over the steps both runs logged, of |total_bf16 - total_fp32| / |total_fp32|.
Before it, one line per run: ``steps_<dtype>=<last step>`` and
``steps_per_s_<dtype>=<number>`` (the run's rate at its last logged step,
start-up included). ``--only DTYPE`` trains (or reads) that run alone and
prints only its lines, so each run can be stopped on its own (Ctrl-C or
SIGINT writes its checkpoint and ends it); a later call without --only
compares what both reached.

    python bench/dtype_curves.py --config configs/sector2dunif.yaml --steps 2000   # minutes on a GPU
    python bench/dtype_curves.py --steps 2000 --set train.device=cuda --only float32

On a CPU without bfloat16 instructions the bfloat16 run is emulated and
about 15 times slower than float32.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from gdrae.config import load_config
from gdrae.errors import GdraeError
from gdrae.runlog import logged_speed, read_loss_log
from gdrae.train import train
from gdrae.viz import figure_to_array, loss_curves, save_png

DTYPES = ("float32", "bfloat16")
SHOWN_STEPS = {10, 50, 100, 200, 500, 1000, 1500, 2000, 5000, 10000}


def relative_gaps(reference: dict, other: dict, term: str = "total") -> dict[int, float]:
    """|other - reference| / |reference| of one loss term at every step both runs logged (and reference is not 0)."""
    steps = sorted(set(reference) & set(other))
    return {s: abs(other[s][term] - reference[s][term]) / abs(reference[s][term])
            for s in steps if reference[s][term] != 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/sector2dunif.yaml")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--log-every", type=int, default=10, help="steps between logged losses")
    parser.add_argument("--out", default="runs/dtype_check", help="folder of the two runs and curves.png")
    parser.add_argument("--set", action="append", default=[], help="config override KEY=VALUE (both runs)")
    parser.add_argument("--only", choices=DTYPES, default=None,
                        help="train (or read) this run alone and print its speed, no comparison")
    args = parser.parse_args()
    out = Path(args.out)
    try:
        curves = {}
        for dtype in [args.only] if args.only else DTYPES:
            run = out / dtype
            if not (run / "train.log").exists():
                every = [f"train.{k}_every={args.steps}" for k in ("image", "eval", "ckpt")]
                train(load_config(args.config, [*args.set, f"train.steps={args.steps}", f"train.dtype={dtype}",
                                                f"train.log_every={args.log_every}", *every, f"train.run_dir={run}"]))
            curves[dtype] = read_loss_log(run)
            speed = logged_speed(run)
            if speed is not None:
                print(f"steps_{dtype}={speed[0]}")
                print(f"steps_per_s_{dtype}={speed[1]:.3g}")
    except GdraeError as exc:
        sys.exit(f"dtype_curves: {exc}")
    if args.only:
        return
    reference, other = curves["float32"], curves["bfloat16"]
    gaps = relative_gaps(reference, other)
    if not gaps:
        sys.exit(f"dtype_curves: {out}: the two runs have no logged step in common")
    steps = sorted(gaps)
    print(f"float32 reached step {max(reference)}, bfloat16 step {max(other)}; {len(steps)} steps compared")
    terms = list(reference[steps[-1]])
    print("step  " + "  ".join(f"{t + ' fp32/bf16':>26}" for t in terms))
    for s in sorted({s for s in steps if s in SHOWN_STEPS} | {steps[-1]}):
        print(f"{s:<6}" + "  ".join(f"{reference[s][t]:>12.5g} /{other[s].get(t, float('nan')):>12.5g}" for t in terms))
    save_png(figure_to_array(loss_curves(curves)), out / "curves.png")
    print(f"curves: {out / 'curves.png'}")
    print(f"median_rel_gap_total={statistics.median(gaps.values()):.3g}")


if __name__ == "__main__":
    main()
