"""What an evaluation writes: metrics/step-N.json, the metrics.csv table, pictures; and the table printed.

The trainer's evaluations and ``gdrae-eval`` write through these functions
alike, so a run has one record: :func:`write_metrics` keeps
``metrics/metrics.csv`` one row per evaluated step (a table it did not write
is refused, never rewritten) and ``metrics/step-N.json`` the newest
evaluation of step N; :func:`write_pictures` names every picture
``images/step-N-<name>.png``; :func:`write_images` draws the pictures of the
model and of its code table. Every file is written whole or not at all
(:mod:`gdrae.atomic`). :mod:`gdrae.runlog` reads them back.
"""
from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from gdrae.atomic import write_atomic
from gdrae.errors import GdraeError, writing

HEATMAP_BINS = 20  # bin count of the mutual-information heat map
METRICS_CSV = "metrics.csv"  # in the metrics folder: one row per evaluated step
PICTURE = re.compile(r"^step-(?P<step>\d+)-(?P<name>.+)\.png$")  # images/step-N-<name>.png


def write_metrics(metrics_dir: str | Path, step: int, results: Mapping[str, float],
                  provenance: Mapping[str, Any] | None = None) -> list[Path]:
    """Write ``step-<step>.json`` and update ``metrics.csv`` (one row per step, rows by step).

    The CSV's columns are ``step`` then metric keys in first-seen order; a
    new key adds a column at the end (earlier rows get empty cells); a step
    evaluated again updates its own row, keeping the values it does not
    recompute. Both files are written atomically. A ``metrics.csv`` this
    function did not write (first column not ``step``, a step that is not an
    integer) is a GdraeError and stays as it is: its rows are never dropped.
    """
    metrics_dir = Path(metrics_dir)
    with writing(metrics_dir, "the evaluation's metrics"):
        metrics_dir.mkdir(parents=True, exist_ok=True)
    csv_path = metrics_dir / METRICS_CSV
    columns, rows = read_metrics_csv(csv_path)  # first: a table it cannot keep stops before any write
    json_path = metrics_dir / f"step-{step}.json"
    record = {"step": step, **dict(provenance or {}), "metrics": dict(results)}
    with writing(json_path, "the evaluation's metrics"):
        write_atomic(json_path, json.dumps(record, indent=2) + "\n")

    columns += [k for k in results if k not in columns]
    row = rows.setdefault(step, {"step": str(step)})
    row.update({k: repr(float(v)) for k, v in results.items()})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for s in sorted(rows):
        writer.writerow(rows[s])
    with writing(csv_path, "the metrics table"):
        write_atomic(csv_path, text.getvalue())
    return [json_path, csv_path]


def read_metrics_csv(path: Path) -> tuple[list[str], dict[int, dict[str, str]]]:
    """(columns, rows by step) of a metrics.csv as :func:`write_metrics` writes it; (["step"], {}) if none.

    A table that could not be rewritten without losing a row is a GdraeError.
    """
    if not path.exists():
        return ["step"], {}
    rows: dict[int, dict[str, str]] = {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = list(reader.fieldnames or ["step"])
            if columns[0] != "step":
                raise _kept_as_is(path, f"expected step as the first column, got {columns[0]!r}")
            for row in reader:
                where = f"line {reader.line_num}"
                if None in row:
                    raise _kept_as_is(path, f"{where}: expected at most {len(columns)} cells (one per column), "
                                            "got more")
                if not row["step"].strip().isdigit():
                    raise _kept_as_is(path, f"{where}: step: expected an integer, got {row['step']!r}")
                if int(row["step"]) in rows:
                    raise _kept_as_is(path, f"{where}: step: expected one row per step, got {row['step']} again")
                rows[int(row["step"])] = row
    except (UnicodeDecodeError, csv.Error) as exc:
        raise _kept_as_is(path, f"expected a UTF-8 CSV table, got {exc}") from None
    return columns, rows


def _kept_as_is(path: Path, problem: str) -> GdraeError:
    return GdraeError(f"{path}: {problem}; the file is left as it is: move it aside and evaluate again")


def format_table(results: Mapping[str, float]) -> str:
    """A readable two-column table of results, one metric group per block."""
    width = max((len(k) for k in results), default=0)
    lines, group = [], None
    for key, value in results.items():
        head = key.split("/", 1)[0]
        if group is not None and head != group:
            lines.append("")
        group = head
        lines.append(f"{key:<{width}}  {value:.4f}")
    return "\n".join(lines)


@torch.no_grad()
def write_images(model: torch.nn.Module, cache, codes: np.ndarray, images_dir: str | Path, step: int,
                 seed: int = 0) -> list[Path]:
    """The pictures people read faster than tables, as PNG files under ``images_dir``.

    ``step-N-mi.png``: I(z_j; v_k) at 20 bins (codes x factors). Images:
    ``step-N-traversal_real.png``, one row per latent sweeping the prior box
    from a real image (chosen by ``seed``) after its reconstruction. Sector2D:
    ``step-N-sector_grid.png`` (latent grid on the data plane) and
    ``step-N-sector_mu.png`` (codes of the cache's grid, coloured by radius).
    The names are :func:`gdrae.pictures.model_pictures`' own, as the
    trainer's pictures are: a step both drew keeps the newest of each.
    Uses the code table: no extra encoding.
    """
    from gdrae import viz
    from gdrae.metrics import histogram_mi
    from gdrae.pictures import model_pictures

    mi = histogram_mi(codes, cache.factor_sizes, nbins=HEATMAP_BINS)
    pictures = {"mi": viz.figure_to_array(viz.mi_heatmap(mi, cache.factor_names, HEATMAP_BINS))}
    if cache.kind == "points":  # the whole grid, coloured by radius
        drawn = model_pictures(model, torch.from_numpy(cache.to_grid_order(cache.points[:])), torch.from_numpy(codes))
        pictures.update(sector_grid=drawn["sector_grid"], sector_mu=drawn["sector_mu"])
    else:
        row = int(np.random.RandomState(seed).randint(cache.n))  # a stored row, and its grid cell's code
        real = torch.from_numpy(cache.images[row:row + 1].astype(np.float32) / 255.0)
        drawn = model_pictures(model, real, torch.from_numpy(codes[cache.grid_index[row:row + 1]]))
        pictures["traversal_real"] = drawn["traversal_real"]
    return write_pictures(images_dir, step, pictures)


def write_pictures(images_dir: str | Path, step: int, pictures: Mapping[str, np.ndarray]) -> list[Path]:
    """Save RGB uint8 arrays by name as ``images_dir/step-<step>-<name>.png`` (:data:`PICTURE`)."""
    from gdrae import viz

    images_dir = Path(images_dir)
    with writing(images_dir, "a picture"):
        images_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, array in pictures.items():
        paths.append(images_dir / f"step-{step}-{name}.png")
        with writing(paths[-1], "a picture"):
            viz.save_png(array, paths[-1])
    return paths
