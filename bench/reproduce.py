"""Reproduce the paper's Sector2D result: GDRAE against the same model with its geometric terms off.

    python bench/reproduce.py sector2dunif --steps 1500 --out runs/reproduce [--seed 0]
    python bench/reproduce.py sector2dunif --steps 100000 --ablation-steps 25000 \
        --eval-steps 10000,25000,50000,75000,100000 --out ~/runs/published        # the published length
    python bench/reproduce.py sector2dunif --steps 5000 --seeds 0,1,2 --out runs/seeds   # identifiability

Trains two runs from the same seed and the same data stream:
  OUT/gdrae      the published settings (configs/<dataset>.yaml), --steps long
  OUT/ablation   the same with loss.sn=0 and loss.sv=0 (no spectral-norm, no singular-value
                 term), --ablation-steps long (default: --steps)
with a checkpoint every --ckpt-every steps; the checkpoints of the --eval-steps (default: five
evenly spaced) are kept whatever their age. It evaluates those with gdrae-eval's code
(gdrae.evaluate.evaluate_checkpoint; DCI at each run's last step only) and writes
  OUT/results.md     the command, the metrics of both runs at every evaluated step
  OUT/results.json   the same numbers
  OUT/chart.png      GDRAE's coordinate chart at every evaluated step (a strip): over the
                     sector the decoded curves along which z0 varies (reds) and z1 varies
                     (blues), the boundary dashed; below, the codes of 10,000 fresh points
  OUT/chart-last.png the same for GDRAE's last step next to the ablation's
  OUT/figures.png    both runs side by side at the last step: decoded latent grid, encoded mu
                     coloured by radius and by angle, mutual-information heat map
  OUT/curves.png     the loss terms of both runs against the step
and ends with one ``name=value`` line per headline figure. A run already in OUT is reused,
and continued with --resume when it stopped short of its length; a stop signal (Ctrl-C,
SIGTERM) stops the training with a checkpoint and this script without evaluating, and the
same command continues. Checkpoints written by a stop are never taken for evaluation points.
What the run's record (metrics/metrics.csv) holds already is read back, not evaluated again.
``--no-train`` trains nothing and reports what the runs in OUT hold now (a long run may be
going on in another process).
``--only LABEL`` trains and evaluates one run and writes nothing else, so the two runs can
share a machine, one thread each:

    for run in gdrae ablation; do
      OMP_NUM_THREADS=1 python bench/reproduce.py sector2dunif --steps 15000 --out runs/r --only $run &
    done; wait
    python bench/reproduce.py sector2dunif --steps 15000 --out runs/r     # reuses both, writes the results

The paper's claim is that the latent grid maps to the polar grid of the sector:
``alignment/min_r2`` is the smaller of the two latent axes' shares of variance explained
by one polar coordinate (gdrae.metrics.alignment), 1 for a perfect polar map.

``--seeds 0,1,2`` measures the other half of the claim, identifiability: it trains both runs
for each seed (OUT/seed-S/gdrae, OUT/seed-S/ablation), encodes the cache's grid with each last
checkpoint and compares every pair of seeds with gdrae.metrics.seed_agreement (the smallest
matched r^2 of their axes: 1 when the charts agree up to permutation, sign and rescaling of the
axes). It writes OUT/seeds.md, OUT/seeds.json and OUT/seeds-chart.png and prints
``gdrae_seed_agreement_min=`` and ``ablation_seed_agreement_min=`` (and the means).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gdrae.data.sector import DATASETS  # noqa: E402
from gdrae.errors import GdraeError  # noqa: E402

RUNS = {"gdrae": [], "ablation": ["loss.sn=0", "loss.sv=0"]}  # label -> config overrides
METRICS = ("histogram", "alignment", "geometry")  # at every evaluated step
FINAL_METRICS = ("dci",)  # at the last step only: about 80 s per evaluation on 2 CPU cores (64 classes per factor)
# metric keys of the table, in its column order, with their short headings
COLUMNS = {"hist20/mig": "MIG (20 bins)", "hist50/mig": "MIG (50 bins)", "hist20/modularity": "modularity",
           "dci/disentanglement": "DCI disent.", "dci/completeness": "DCI compl.",
           "alignment/min_r2": "polar alignment (min)", "alignment/axis0_r2": "z0 share",
           "alignment/axis1_r2": "z1 share", "geometry/ortho_sign": "ortho_sign"}
HEADLINE = {"hist20_mig": "hist20/mig", "hist50_mig": "hist50/mig", "dci_disentanglement": "dci/disentanglement",
            "alignment_min_r2": "alignment/min_r2", "ortho_sign": "geometry/ortho_sign"}
HEATMAP_BINS = 20
CHART_LINES = 11  # curves of each family in the coordinate chart
FRESH_POINTS = 10000  # fresh data points whose codes the chart shows


def run_config(args: argparse.Namespace, label: str, seed: int, run_dir: Path):
    """The config of run ``label``: the published one, this reproduction's length, seed, checkpoints and folders."""
    from gdrae.config import load_config

    steps = run_length(args, label)
    every = min(args.ckpt_every, steps)
    overrides = [*args.set, f"train.steps={steps}", f"train.seed={seed}",
                 f"train.run_dir={run_dir}", f"data.cache_dir={args.cache_dir}",
                 f"train.ckpt_every={every}", f"train.image_every={every}", f"train.eval_every={every}",
                 "train.keep_checkpoints=2", f"train.keep_steps={evaluation_points(args, label)}",
                 f"train.log_every={max(1, min(100, every // 10))}", *RUNS[label]]
    return load_config(ROOT / "configs" / f"{args.dataset}.yaml", overrides)


def run_length(args: argparse.Namespace, label: str) -> int:
    """Training steps of run ``label``: --steps, or --ablation-steps for the ablation."""
    return args.ablation_steps if label == "ablation" and args.ablation_steps else args.steps


def evaluation_points(args: argparse.Namespace, label: str) -> list[int]:
    """The steps at which run ``label`` is evaluated: the --eval-steps within its length, and its last."""
    steps = run_length(args, label)
    return sorted({s for s in args.eval_steps if s <= steps} | {steps})


def ensure_trained(cfg) -> bool:
    """Train ``cfg`` into its run directory, reuse a finished run there, or continue a shorter one
    (gdrae.study.continue_training, the study runner's rule). True when the run has reached its length;
    False when a stop signal ended the training first."""
    from gdrae.study import continue_training

    return continue_training(cfg) >= cfg.train.steps


def evaluated_steps(run_dir: Path, points: list[int]) -> list[tuple[int, Path]]:
    """(step, checkpoint) of the evaluation points whose numbered checkpoint the run holds, in step order."""
    found = [(step, run_dir / "checkpoints" / f"step-{step}.pt") for step in points]
    return [(step, path) for step, path in found if path.exists()]


def evaluate_run(run_dir: Path, points: list[int], cache_dir: Path) -> dict[int, dict[str, float]]:
    """{step: metrics} at the run's evaluation points (:data:`FINAL_METRICS` too at its last), each
    computed once (gdrae.study.evaluate_lacking): what the run's record holds already (the trainer's
    evaluations, earlier ones of this script) is read back, and only the metrics it lacks are evaluated."""
    from gdrae.runlog import read_evaluations
    from gdrae.study import evaluate_lacking

    present = [step for step, _ in evaluated_steps(run_dir, points)]
    if present:
        evaluate_lacking(run_dir, present, list(METRICS), list(FINAL_METRICS) if points[-1] in present else [],
                         cache_dir=cache_dir)
    stored = read_evaluations(run_dir)
    return {step: stored.get(step, {}) for step in present}


def checkpoint_pictures(ckpt: Path, cache_dir: Path) -> dict[str, np.ndarray]:
    """The arrays the figures draw of checkpoint ``ckpt``: the decoded latent grid (``grid_x``), the codes
    of the cache's grid (``mu``) with the points' radius and angle, their mutual information with the
    factors (``mi``), and the codes of :data:`FRESH_POINTS` fresh data points (``codes``)."""
    from gdrae import viz
    from gdrae.checkpoint import model_from_checkpoint, read_checkpoint
    from gdrae.codes import code_table
    from gdrae.data.cache import open_run_cache
    from gdrae.data.sector import sample_sector
    from gdrae.metrics import histogram_mi

    state = read_checkpoint(ckpt)
    model, cfg = model_from_checkpoint(state, ckpt)
    cache = open_run_cache(cfg, cache_dir)
    codes = code_table(model, cache, ckpt.parent.parent / "codes", int(state["step"]), progress=False)
    points = cache.to_grid_order(cache.points[:])
    grid = viz.sector_grid_codes(cfg.model.prior_radius, CHART_LINES)
    fresh = sample_sector(FRESH_POINTS, DATASETS[cfg.data.name], torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        decoded = model.decode(torch.from_numpy(grid)).numpy()
        fresh_codes = model.encode(fresh).numpy()
    return {"grid_x": decoded, "mu": codes, "radius": np.linalg.norm(points, axis=1),
            "angle": np.arctan2(points[:, 1], points[:, 0]),
            "mi": histogram_mi(codes, cache.factor_sizes, nbins=HEATMAP_BINS), "codes": fresh_codes}


def sector_outline(uniform: bool, n: int = 50) -> np.ndarray:
    """The boundary of the quarter annulus, (4 n, 2): the image of the unit square's edges."""
    from gdrae.data.sector import sector_points

    t = np.linspace(0.0, 1.0, n)
    u = np.concatenate([t, np.ones(n), t[::-1], np.zeros(n)])
    v = np.concatenate([np.zeros(n), t, np.ones(n), t[::-1]])
    return sector_points(u, v, uniform)


def results_table(results: dict[str, dict[int, dict[str, float]]]) -> str:
    """A markdown table: one row per (step, run), one column per metric of COLUMNS."""
    lines = ["| step | run | " + " | ".join(COLUMNS.values()) + " |",
             "|---:|---|" + "---:|" * len(COLUMNS)]
    steps = sorted({s for per_run in results.values() for s in per_run})
    for step in steps:
        for label, per_run in results.items():
            if step in per_run:
                cells = [f"{per_run[step][k]:.3f}" if k in per_run[step] else "" for k in COLUMNS]
                lines.append(f"| {step} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Example: python bench/reproduce.py sector2dunif --steps 1500 "
                                            "--out runs/reproduce")
    parser.add_argument("dataset", choices=tuple(DATASETS))
    parser.add_argument("--steps", type=int, default=1500, help="training steps of GDRAE (published: 100000)")
    parser.add_argument("--ablation-steps", type=int, default=None, help="training steps of the ablation "
                        "(default: --steps; it is flat from 2,500 steps on)")
    parser.add_argument("--eval-steps", type=step_list, default=None, metavar="N,N,...",
                        help="evaluation points (default: five evenly spaced up to --steps); each run's last "
                             "step is one too")
    parser.add_argument("--ckpt-every", type=int, default=2500, help="steps between checkpoints (default 2500)")
    parser.add_argument("--out", type=Path, default=Path("runs/reproduce"), help="folder of the runs and results")
    parser.add_argument("--seed", type=int, default=0, help="seed of both runs (model, data stream)")
    parser.add_argument("--seeds", type=step_list, default=None, metavar="S,S,...",
                        help="the identifiability study: both runs for each seed, compared pairwise")
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"), help="folder of the <dataset>.zarr cache")
    parser.add_argument("--only", choices=tuple(RUNS), default=None,
                        help="train and evaluate this run alone (no results files); see the module help")
    parser.add_argument("--no-train", action="store_true",
                        help="train nothing: evaluate and draw what the runs in OUT hold now (e.g. while a long "
                             "run goes on in another process); a run not started yet is left out")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for both runs, e.g. train.lr=1e-3 (say so when you report it)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.ckpt_every < 1 or (args.ablation_steps is not None and args.ablation_steps < 1):
        parser.error("--steps, --ablation-steps and --ckpt-every: expected positive integers")
    if args.eval_steps is None:
        args.eval_steps = [max(1, args.steps * k // 5) for k in range(1, 6)]
    if args.seeds is not None and len(args.seeds) < 2:
        parser.error(f"--seeds: expected at least two seeds to compare, got {args.seeds}")
    return args


def step_list(text: str) -> list[int]:
    """``"10000,25000"`` -> [10000, 25000]: non-negative integers, for --eval-steps and --seeds."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected non-negative integers separated by commas, got {text!r}")
    return values


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from gdrae.data.cache import cache_path
    from pipelines.store import prepare

    command = "python bench/reproduce.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    try:
        if not cache_path(args.cache_dir, args.dataset).exists():  # synthetic: seconds to prepare
            prepare(args.dataset, args.cache_dir, args.cache_dir, progress=False)
        if args.seeds is not None:
            seed_study(args, command)
        else:
            reproduction(args, command)
    except GdraeError as exc:
        sys.exit(f"reproduce: {exc}")


def train_all(args: argparse.Namespace, runs: list[tuple[str, int, Path]]) -> bool:
    """Train (or reuse, or continue) each (label, seed, run_dir); False when a stop signal ended one.
    With --no-train, nothing is trained."""
    for label, seed, run_dir in [] if args.no_train else runs:
        cfg = run_config(args, label, seed, run_dir)
        print(f"{label} (seed {seed}): {cfg.train.steps} steps into {run_dir}"
              + (f" ({', '.join(RUNS[label])})" if RUNS[label] else " (published settings)"), flush=True)
        if not ensure_trained(cfg):
            print(f"stopped before step {cfg.train.steps}: the same command continues from {run_dir}")
            return False
    return True


def reproduction(args: argparse.Namespace, command: str) -> None:
    """GDRAE and its ablation from one seed: train, evaluate at the evaluation points, write the results."""
    from gdrae.runlog import read_loss_log

    labels = [args.only] if args.only else list(RUNS)
    if not train_all(args, [(label, args.seed, args.out / label) for label in labels]):
        return
    if args.no_train:
        labels = [label for label in labels if evaluated_steps(args.out / label, evaluation_points(args, label))]
    results, curves, pictures = {}, {}, {}
    for label in labels:
        run_dir = args.out / label
        points = evaluation_points(args, label)
        results[label] = evaluate_run(run_dir, points, args.cache_dir)
        curves[label] = read_loss_log(run_dir)
        pictures[label] = {step: checkpoint_pictures(ckpt, args.cache_dir)
                           for step, ckpt in evaluated_steps(run_dir, points)}
    if args.only is None:
        write_results(args, command, results, curves, pictures)
    for label, per_run in results.items():
        last = per_run[max(per_run)] if per_run else {}
        for name, key in HEADLINE.items():
            if key in last:
                print(f"{label}_{name}={last[key]:.4f}")


def write_results(args: argparse.Namespace, command: str, results: dict, curves: dict, pictures: dict) -> None:
    """OUT/results.md, results.json, chart.png, chart-last.png, figures.png and curves.png (module docstring)."""
    from gdrae import viz

    out = args.out
    outline = sector_outline(DATASETS[args.dataset])
    last = {label: per[max(per)] for label, per in pictures.items()}
    strip = {f"gdrae, step {step:,}": panel for step, panel in pictures.get("gdrae", {}).items()}
    finals = {f"{label}, step {max(per):,}": per[max(per)] for label, per in pictures.items()}
    if strip:
        viz.save_png(viz.figure_to_array(viz.chart_strip(strip, 1.0, CHART_LINES, outline)), out / "chart.png",
                     colors=256)
    viz.save_png(viz.figure_to_array(viz.chart_strip(finals, 1.0, CHART_LINES, outline)), out / "chart-last.png",
                 colors=256)
    figure = viz.sector_comparison(last, 1.0, CHART_LINES, ("radius", "angle"), HEATMAP_BINS, outline=outline)
    viz.save_png(viz.figure_to_array(figure), out / "figures.png", colors=256)  # small enough for docs/
    viz.save_png(viz.figure_to_array(viz.loss_curves(curves)), out / "curves.png", colors=256)
    (out / "results.json").write_text(json.dumps(
        {"command": command, "dataset": args.dataset, "steps": {label: run_length(args, label) for label in RUNS},
         "seed": args.seed,
         "runs": {label: {"overrides": RUNS[label], "metrics": {str(s): v for s, v in per.items()}}
                  for label, per in results.items()}}, indent=2) + "\n")
    (out / "results.md").write_text(
        f"# {args.dataset}: GDRAE against its ablation\n\n`{command}`\n\n"
        f"gdrae: the published settings; ablation: the same with {' '.join(RUNS['ablation'])} (its power "
        f"iteration is not run, so its loss has no sn and sv terms). Same seed ({args.seed}) and data stream."
        f"\n\n{results_table(results)}\n\n![coordinate chart at every evaluated step](chart.png)\n\n"
        f"![last steps](chart-last.png)\n\n![side by side](figures.png)\n\n![loss curves](curves.png)\n")
    print(results_table(results))
    print(f"wrote {out / 'results.md'}, results.json, chart.png, chart-last.png, figures.png, curves.png")


def seed_study(args: argparse.Namespace, command: str) -> None:
    """Both runs for each seed of --seeds; the pairwise seed agreement of their codes of the cache's grid."""
    from itertools import combinations

    from gdrae import viz
    from gdrae.metrics import seed_agreement

    labels = [args.only] if args.only else list(RUNS)
    runs = [(label, seed, args.out / f"seed-{seed}" / label) for seed in args.seeds for label in labels]
    if not train_all(args, runs):
        return
    panels = {(label, seed): checkpoint_pictures(run_dir / "checkpoints" / f"step-{run_length(args, label)}.pt",
                                                 args.cache_dir)
              for label, seed, run_dir in runs}
    table, summary = {}, {}
    for label in labels:
        pairs = {(a, b): seed_agreement(panels[label, a]["mu"], panels[label, b]["mu"])
                 for a, b in combinations(args.seeds, 2)}
        table[label] = {f"{a}-{b}": r for (a, b), r in pairs.items()}
        mins = [r["min"] for r in pairs.values()]
        summary[label] = {"mean": float(np.mean(mins)), "min": float(np.min(mins))}
    lines = ["| run | seeds | matched r² (axis by axis) | min |", "|---|---|---|---:|"]
    for label, per_pair in table.items():
        for pair, r in per_pair.items():
            lines.append(f"| {label} | {pair} | {', '.join(f'{v:.3f}' for v in r['r2'])} | {r['min']:.3f} |")
    lines += ["", "| run | mean of the pairs' min | min over the pairs |", "|---|---:|---:|"]
    lines += [f"| {label} | {s['mean']:.3f} | {s['min']:.3f} |" for label, s in summary.items()]
    text = "\n".join(lines)
    out = args.out
    strip = {f"{label}, seed {seed}": panels[label, seed] for label in labels for seed in args.seeds}
    viz.save_png(viz.figure_to_array(viz.chart_strip(strip, 1.0, CHART_LINES, sector_outline(DATASETS[args.dataset]))),
                 out / "seeds-chart.png", colors=256)
    (out / "seeds.json").write_text(json.dumps(
        {"command": command, "dataset": args.dataset, "seeds": args.seeds,
         "steps": {label: run_length(args, label) for label in labels},
         "pairs": table, "summary": summary}, indent=2) + "\n")
    (out / "seeds.md").write_text(
        f"# {args.dataset}: do different seeds learn the same chart?\n\n`{command}`\n\n"
        "Squared correlation of the latent axes of two seeds' codes of the cache's grid, axes paired to "
        "maximise the total (gdrae.metrics.seed_agreement): 1 when the charts agree up to a permutation, "
        f"sign and rescaling of the axes.\n\n{text}\n\n![last step of every seed](seeds-chart.png)\n")
    print(text)
    print(f"wrote {out / 'seeds.md'}, seeds.json, seeds-chart.png")
    for label, s in summary.items():
        print(f"{label}_seed_agreement_min={s['min']:.4f}")
        print(f"{label}_seed_agreement_mean={s['mean']:.4f}")


if __name__ == "__main__":
    main()
