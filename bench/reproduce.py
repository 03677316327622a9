"""Reproduce the paper's Sector2D result: GDRAE against the same model with its geometric terms off.

    python bench/reproduce.py sector2dunif --steps 1500 --out runs/reproduce [--seed 0]

Trains two runs from the same seed and the same data stream:
  OUT/gdrae      the published settings (configs/<dataset>.yaml)
  OUT/ablation   the same with loss.sn=0 and loss.sv=0 (no spectral-norm, no singular-value term)
evaluates the checkpoints at --evals evenly spaced steps with gdrae-eval's code
(gdrae.evaluate.evaluate_checkpoint), and writes
  OUT/results.md     the command, the metrics of both runs at every evaluated step
  OUT/results.json   the same numbers
  OUT/figures.png    both runs side by side at the last step: decoded latent grid over the
                     sector, encoded mu coloured by radius and by angle, mutual-information heat map
  OUT/curves.png     the loss terms of both runs against the step
and ends with one ``name=value`` line per headline figure. A run already in OUT is
reused (continued with --resume when it stopped short of --steps); a checkpoint already
evaluated is read back, not evaluated again. ``--only LABEL`` trains and evaluates one run
and writes nothing else, so the two runs can share a machine, one thread each:

    for run in gdrae ablation; do
      OMP_NUM_THREADS=1 python bench/reproduce.py sector2dunif --steps 15000 --out runs/r --only $run &
    done; wait
    python bench/reproduce.py sector2dunif --steps 15000 --out runs/r     # reuses both, writes the results

The paper's claim is that the latent grid maps to the polar grid of the sector:
``alignment/min_r2`` is the smaller of the two latent axes' shares of variance explained
by one polar coordinate (gdrae.metrics.alignment), 1 for a perfect polar map.
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


def run_config(args: argparse.Namespace, label: str):
    """The config of run ``label``: the published one, this reproduction's length, seed and folders."""
    from gdrae.config import load_config

    every = max(1, args.steps // args.evals)
    overrides = [*args.set, f"train.steps={args.steps}", f"train.seed={args.seed}",
                 f"train.run_dir={args.out / label}", f"data.cache_dir={args.cache_dir}",
                 f"train.ckpt_every={every}", f"train.image_every={every}", f"train.eval_every={every}",
                 f"train.keep_checkpoints={args.evals + 2}", f"train.log_every={max(1, min(100, every // 10))}",
                 *RUNS[label]]
    return load_config(ROOT / "configs" / f"{args.dataset}.yaml", overrides)


def ensure_trained(cfg) -> None:
    """Train ``cfg`` into its run directory, reuse a finished run there, or continue a shorter one."""
    from gdrae.checkpoint import read_checkpoint
    from gdrae.train import train

    latest = Path(cfg.train.run_dir) / "checkpoints" / "latest.pt"
    if not latest.exists():
        train(cfg)
        return
    saved = read_checkpoint(latest)
    want = cfg.model_dump(mode="json")
    for section, key in [("train", "seed"), *(("loss", k) for k in want["loss"])]:
        if saved["config"][section].get(key) != want[section][key]:
            raise GdraeError(f"{latest}: {section}.{key} is {saved['config'][section].get(key)!r} there, "
                             f"this reproduction asks for {want[section][key]!r}; choose another --out")
    if saved["step"] < cfg.train.steps:
        train(cfg, resume=True)


def evaluated_steps(run_dir: Path, steps: int) -> list[tuple[int, Path]]:
    """(step, checkpoint) of every numbered checkpoint of the run up to ``steps``, in step order."""
    found = []
    for path in (run_dir / "checkpoints").glob("step-*.pt"):
        step = int(path.stem.split("-")[1])
        if step <= steps:
            found.append((step, path))
    return sorted(found)


def evaluate_run(run_dir: Path, steps: int, cache_dir: Path) -> dict[int, dict[str, float]]:
    """{step: metrics} of every checkpoint of the run (:data:`FINAL_METRICS` too at the last), each
    computed once: what the run's record holds already (the trainer's evaluations, earlier ones of
    this script) is read back, and only the metrics it lacks are evaluated."""
    from gdrae.evaluate import evaluate_checkpoint
    from gdrae.runlog import read_evaluations

    results, stored = {}, read_evaluations(run_dir)
    checkpoints = evaluated_steps(run_dir, steps)
    for step, ckpt in checkpoints:
        names = METRICS + (FINAL_METRICS if step == checkpoints[-1][0] else ())
        values = stored.get(step, {})
        missing = [n for n in names if not any(k.startswith(_key_prefix(n)) for k in values)]
        if missing:
            values = {**values, **evaluate_checkpoint(ckpt, missing, cache_dir=cache_dir, progress=False).results}
        results[step] = values
    return results


def _key_prefix(metric: str) -> str:
    """How the result keys of ``metric`` begin (gdrae.evaluate.evaluate)."""
    return "hist" if metric == "histogram" else f"{metric}/"


def final_pictures(ckpt: Path, cache_dir: Path) -> dict[str, np.ndarray]:
    """The arrays of one row of the side-by-side figure, from checkpoint ``ckpt``."""
    from gdrae import viz
    from gdrae.checkpoint import model_from_checkpoint, read_checkpoint
    from gdrae.codes import code_table
    from gdrae.data.cache import open_run_cache
    from gdrae.metrics import histogram_mi

    state = read_checkpoint(ckpt)
    model, cfg = model_from_checkpoint(state, ckpt)
    cache = open_run_cache(cfg, cache_dir)
    codes = code_table(model, cache, ckpt.parent.parent / "codes", int(state["step"]), progress=False)
    points = cache.to_grid_order(cache.points[:])
    grid = viz.sector_grid_codes(cfg.model.prior_radius)
    model.eval()
    with torch.no_grad():
        decoded = model.decode(torch.from_numpy(grid)).numpy()
    return {"grid_x": decoded, "mu": codes, "radius": np.linalg.norm(points, axis=1),
            "angle": np.arctan2(points[:, 1], points[:, 0]),
            "mi": histogram_mi(codes, cache.factor_sizes, nbins=HEATMAP_BINS)}


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
    parser.add_argument("--steps", type=int, default=1500, help="training steps of each run (published: 100000)")
    parser.add_argument("--out", type=Path, default=Path("runs/reproduce"), help="folder of both runs and results")
    parser.add_argument("--seed", type=int, default=0, help="seed of both runs (model, data stream)")
    parser.add_argument("--evals", type=int, default=5, help="evenly spaced evaluations per run")
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"), help="folder of the <dataset>.zarr cache")
    parser.add_argument("--only", choices=tuple(RUNS), default=None,
                        help="train and evaluate this run alone (no results files); see the module help")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for both runs, e.g. train.lr=1e-3 (say so when you report it)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.evals < 1:
        parser.error("--steps and --evals: expected positive integers")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from gdrae.data.cache import cache_path
    from gdrae.runlog import read_loss_log
    from pipelines.store import prepare

    command = "python bench/reproduce.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    try:
        if not cache_path(args.cache_dir, args.dataset).exists():  # synthetic: seconds to prepare
            prepare(args.dataset, args.cache_dir, args.cache_dir, progress=False)
        results, curves, pictures = {}, {}, {}
        for label in [args.only] if args.only else RUNS:
            cfg = run_config(args, label)
            print(f"{label}: {args.steps} steps into {cfg.train.run_dir}"
                  + (f" ({', '.join(RUNS[label])})" if RUNS[label] else " (published settings)"), flush=True)
            ensure_trained(cfg)
            run_dir = Path(cfg.train.run_dir)
            results[label] = evaluate_run(run_dir, args.steps, args.cache_dir)
            curves[label] = read_loss_log(run_dir)
            pictures[label] = final_pictures(evaluated_steps(run_dir, args.steps)[-1][1], args.cache_dir)
    except GdraeError as exc:
        sys.exit(f"reproduce: {exc}")
    if args.only is None:
        write_results(args, command, results, curves, pictures)
    for label, per_run in results.items():
        last = per_run[max(per_run)]
        for name, key in HEADLINE.items():
            print(f"{label}_{name}={last[key]:.4f}")


def write_results(args: argparse.Namespace, command: str, results: dict, curves: dict, pictures: dict) -> None:
    """OUT/results.md, results.json, figures.png and curves.png (module docstring)."""
    from gdrae import viz

    out = args.out
    figure = viz.sector_comparison(pictures, 1.0, 11, ("radius", "angle"), HEATMAP_BINS,
                                   outline=sector_outline(args.dataset == "sector2dunif"))
    viz.save_png(viz.figure_to_array(figure), out / "figures.png", colors=256)  # small enough for docs/
    viz.save_png(viz.figure_to_array(viz.loss_curves(curves)), out / "curves.png", colors=256)
    (out / "results.json").write_text(json.dumps(
        {"command": command, "dataset": args.dataset, "steps": args.steps, "seed": args.seed,
         "runs": {label: {"overrides": RUNS[label], "metrics": {str(s): v for s, v in per.items()}}
                  for label, per in results.items()}}, indent=2) + "\n")
    (out / "results.md").write_text(
        f"# {args.dataset}: GDRAE against its ablation\n\n`{command}`\n\n"
        f"gdrae: the published settings; ablation: the same with {' '.join(RUNS['ablation'])}. "
        f"Same seed ({args.seed}) and data stream.\n\n{results_table(results)}\n\n"
        f"![side by side](figures.png)\n\n![loss curves](curves.png)\n")
    print(results_table(results))
    print(f"wrote {out / 'results.md'}, results.json, figures.png, curves.png")


if __name__ == "__main__":
    main()
