"""What ``gdrae-study report`` writes: one table of every run and evaluated step, a picture per metric, the
seed-agreement table and a summary, all read from the run directories (any time, also while runs go on).

- ``results.csv``: a row per run and evaluated step: run, model, family, dataset, seed, every swept key,
  step, every metric of the record (gdrae.runlog.read_evaluations, so runs of any age read), the run's
  training seconds and steps per second.
- ``metric-<key>.png``: per metric, a panel per dataset, the models (with their setting) along x, a violin
  and a box of the seeds' values at each run's last evaluated step, the seeds as points.
- ``seed_agreement.csv`` and ``.md``: per dataset, model and setting, over the pairs of its seeds, min,
  median and mean of the matched r^2 (gdrae.metrics.seed_agreement), and over its seeds, of the UDR score
  (gdrae.metrics.udr: a run's score is the median over its pairs), each on the last step's code table; a
  Gaussian family's latents with mean KL <= 0.01 are left out of UDR (dlib's filter), GDRAE's never
  (it has no KL).
- ``summary.md``: per dataset and metric, the model and setting with the best mean over seeds, its
  spread, and the metric's direction.
"""
from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from itertools import combinations
from pathlib import Path
from statistics import mean, median, pstdev

import numpy as np

from gdrae.atomic import write_atomic
from gdrae.errors import GdraeError

# diagnostics whose low values are the good ones (orthogonal Jacobians, small errors); every other metric: high
LOWER_IS_BETTER = re.compile(r"(ortho|_err$|/err)")
UDR_KL_THRESHOLD = 0.01


def direction(metric: str) -> str:
    return "lower" if LOWER_IS_BETTER.search(metric) else "higher"


def label(run) -> str:
    """The x-axis label of a run's model: its name, with its setting when it has one."""
    setting = " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in run.setting.items())
    return f"{run.model} {setting}".strip()


def collect(study) -> list[dict]:
    """One row per run and evaluated step (runs without an evaluation give none)."""
    from gdrae.runlog import logged_speed, read_evaluations
    from gdrae.study import read_status

    swept = list(dict.fromkeys(k for run in study.runs for k in run.setting))
    rows = []
    for run in study.runs:
        try:
            record = read_evaluations(run.dir) if run.dir.exists() else {}
        except GdraeError:
            record = {}
        speed = logged_speed(run.dir) if (run.dir / "metrics").exists() else None
        seconds = read_status(run).get("seconds")
        for step, values in record.items():
            rows.append({"run": run.id, "model": run.model, "family": run.cfg.model.family, "dataset": run.dataset,
                         "seed": run.seed, **{k: run.setting.get(k, "") for k in swept}, "step": step,
                         "train_s": "" if seconds is None else round(seconds, 1),
                         "steps_per_s": "" if speed is None else round(speed[1], 3), **values})
    return rows


def write_results_csv(rows: list[dict], path: Path) -> Path:
    columns = list(dict.fromkeys(k for row in rows for k in row)) or ["run", "step"]

    def render(f):
        writer = csv.DictWriter(f, columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    write_atomic(path, lambda f: render(_text(f)))
    return path


def _text(binary):
    import io

    return io.TextIOWrapper(binary, encoding="utf-8", newline="", write_through=True)


def _metric_keys(rows: list[dict]) -> list[str]:
    fixed = {"run", "model", "family", "dataset", "seed", "step", "train_s", "steps_per_s"}
    keys = [k for k in dict.fromkeys(k for row in rows for k in row) if k not in fixed and "/" in k]
    return [k for k in keys if not k.endswith("_factor")]  # which factor an axis took is a label, not a score


def last_rows(rows: list[dict]) -> dict[str, dict]:
    """Each run's row at its last evaluated step."""
    last: dict[str, dict] = {}
    for row in rows:
        if row["run"] not in last or row["step"] > last[row["run"]]["step"]:
            last[row["run"]] = row
    return last


def metric_pictures(study, rows: list[dict], out: Path) -> list[Path]:
    """``metric-<key>.png`` per metric: a panel per dataset, violin + box per model (and setting), seeds as points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gdrae import viz

    last = last_rows(rows)
    runs = {r.id: r for r in study.runs}
    datasets = list(dict.fromkeys(r.dataset for r in study.runs))
    labels = list(dict.fromkeys(label(r) for r in study.runs))
    paths = []
    for key in _metric_keys(rows):
        fig, axes = plt.subplots(1, len(datasets), figsize=(max(4, 0.9 * len(labels)) * len(datasets), 3.6),
                                 squeeze=False)
        for ax, dataset in zip(axes[0], datasets):
            groups = [[float(row[key]) for rid, row in last.items() if key in row and row[key] != ""
                       and runs[rid].dataset == dataset and label(runs[rid]) == name] for name in labels]
            positions = [i for i, g in enumerate(groups) if g]
            present = [g for g in groups if g]
            if present:
                if any(len(g) > 1 and np.ptp(g) > 0 for g in present):
                    ax.violinplot([g for g in present], positions=positions, showextrema=False)
                ax.boxplot(present, positions=positions, widths=0.25, showfliers=False)
                jitter = np.random.RandomState(0)
                for i, g in zip(positions, present):
                    ax.scatter(i + jitter.uniform(-0.08, 0.08, len(g)), g, s=12, color="k", zorder=3)
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
            ax.set_title(dataset, fontsize=9)
            ax.set_ylabel(f"{key} ({direction(key)} is better)", fontsize=8)
        fig.tight_layout()
        path = out / f"metric-{key.replace('/', '_')}.png"
        viz.save_png(viz.figure_to_array(fig), path)
        plt.close(fig)
        paths.append(path)
    return paths


def _last_codes(run) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The last step's code table of a run and its latents' mean KL (None: a family without a KL)."""
    step = run.cfg.train.steps
    tables = sorted((run.dir / "codes").glob(f"step-{step}-*.npy"))
    if not tables:
        return None
    codes = np.load(tables[-1], allow_pickle=False)
    kl_file = run.dir / "codes" / f"step-{step}-kl.json"
    kl = np.asarray(json.loads(kl_file.read_text())) if kl_file.exists() else None
    return codes, kl


def seed_agreement_rows(study) -> list[dict]:
    """Per dataset, model and setting: matched r^2 over the pairs of seeds, UDR over the seeds."""
    from gdrae.metrics import seed_agreement, udr_scores

    groups: dict[tuple, list] = defaultdict(list)
    for run in study.runs:
        groups[(run.dataset, label(run))].append(run)
    rows = []
    for (dataset, name), runs in groups.items():
        found = [(run, got) for run in runs if (got := _last_codes(run)) is not None]
        row = {"dataset": dataset, "model": name, "family": runs[0].cfg.model.family, "seeds": len(found)}
        if len(found) >= 2:
            r2 = [seed_agreement(a[1][0], b[1][0])["min"] for a, b in combinations(found, 2)]
            kls = [got[1] for _, got in found]
            udr = udr_scores([got[0] for _, got in found], kls if all(k is not None for k in kls) else None,
                             threshold=UDR_KL_THRESHOLD)["scores"]
            row.update({"r2_min": min(r2), "r2_median": median(r2), "r2_mean": mean(r2),
                        "udr_min": min(udr), "udr_median": median(udr), "udr_mean": mean(udr),
                        "udr_filter": f"KL > {UDR_KL_THRESHOLD}" if kls[0] is not None else "none (no KL)"})
        rows.append(row)
    return rows


def _markdown(rows: list[dict], columns: list[str]) -> str:
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


SEED_COLUMNS = ["dataset", "model", "family", "seeds", "r2_min", "r2_median", "r2_mean", "udr_min", "udr_median",
                "udr_mean", "udr_filter"]


def summary(study, rows: list[dict]) -> str:
    """Per dataset and metric: the best model (mean over seeds at the last evaluated step), its spread."""
    last = last_rows(rows)
    runs = {r.id: r for r in study.runs}
    lines = [f"# {study.config.name}: summary", "",
             f"{len(study.runs)} runs; {len(last)} evaluated. Each metric at each run's last evaluated step; "
             "mean ± standard deviation over seeds (n seeds), the worst seed in brackets.", ""]
    table = []
    for dataset in dict.fromkeys(r.dataset for r in study.runs):
        for key in _metric_keys(rows):
            by_model: dict[str, list[float]] = defaultdict(list)
            for rid, row in last.items():
                if runs[rid].dataset == dataset and row.get(key, "") != "":
                    by_model[label(runs[rid])].append(float(row[key]))
            if not by_model:
                continue
            low = direction(key) == "lower"
            best = (min if low else max)(by_model, key=lambda m: mean(by_model[m]))
            values = by_model[best]
            worst = max(values) if low else min(values)
            table.append({"dataset": dataset, "metric": key, "better": direction(key), "best model": best,
                          "mean": mean(values), "sd": pstdev(values), "worst seed": worst, "n": len(values)})
    lines.append(_markdown(table, ["dataset", "metric", "better", "best model", "mean", "sd", "worst seed", "n"]))
    return "\n".join(lines)


def write_report(study) -> list[Path]:
    """Write the report into the study's folder; returns the paths written."""
    out = study.dir
    rows = collect(study)
    paths = [write_results_csv(rows, out / "results.csv")]
    paths += metric_pictures(study, rows, out)
    agreement = seed_agreement_rows(study)
    columns = [c for c in SEED_COLUMNS if any(c in row for row in agreement)]
    write_atomic(out / "seed_agreement.md", _markdown(agreement, columns))
    write_results_csv(agreement, out / "seed_agreement.csv")
    write_atomic(out / "summary.md", summary(study, rows))
    return [*paths, out / "seed_agreement.csv", out / "seed_agreement.md", out / "summary.md"]
