"""Evaluation: encode a cache once, compute every metric from that code table, add the geometry.

The cache holds every combination of its factors exactly once (stored in a
shuffled order, each row with its factors), so one encoding pass gives the
representation of any factor combination. :func:`code_table` makes that
pass (batched, no_grad, on the model's device), puts the codes in grid order
(``codes[ravel_multi_index(factors)]``, :meth:`Cache.to_grid_order`) and stores the table as
``<out>/codes/step-<N>-<cache id>-<encoder id>.npy``, so a second
evaluation of the same checkpoint on the same cache encodes nothing.
:func:`evaluate` runs the chosen metrics of :mod:`gdrae.metrics` on the
table and the geometric diagnostics (MODEL.md section 8) on random latent
points, and returns flat keys such as ``hist20/mig``,
``dci/disentanglement``, ``geometry/ortho_sign``.

:func:`evaluate_checkpoint` is what ``gdrae-eval`` does: load a checkpoint
safely, find and check its cache, evaluate, and write ``metrics/step-N.json``,
a row of ``metrics/metrics.csv`` and two pictures under ``images/`` (a
traversal sheet and the codes x factors mutual-information heat map).
The trainer's periodic evaluation calls :func:`training_metrics`.

Reference: METRICS.md (definitions, defaults); Locatello et al., "Challenging
Common Assumptions in the Unsupervised Learning of Disentangled
Representations", ICML 2019 (encode once, metrics as lookups).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from gdrae.atomic import write_atomic
from gdrae.data.cache import open_run_cache
from gdrae.device import resolve_device
from gdrae.errors import GdraeError

# name accepted by --metrics / train.metrics -> what it computes (shown in --help)
METRICS: dict[str, str] = {
    "histogram": "histogram family at 3/5/10/20/50 bins: mig, mig_misum, jemmig, migsup, modularity, dcimig",
    "beta_vae": "BetaVAE score (train/eval accuracy)",
    "factor_vae": "FactorVAE score (train/eval accuracy, active dims)",
    "mig": "MIG as in disentanglement_lib (sampled, 20 bins)",
    "dci": "DCI disentanglement, completeness, informativeness",
    "sap": "SAP score",
    "irs": "interventional robustness score",
    "modularity_explicitness": "modularity and explicitness",
    "alignment": "share of each latent axis's variance explained by its one assigned factor (correlation ratio); "
                 "Sector2D: the polar-grid figure",
    "geometry": "ortho_sign, sv_match_err, lt_err at random latent points (MODEL.md section 8)",
}
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)
NBINS: tuple[int, ...] = (3, 5, 10, 20, 50)  # the histogram family's bin counts (METRICS.md A)
HEATMAP_BINS = 20  # bin count of the mutual-information heat map
ENCODE_BATCH = 1024  # rows per encoder call


# ----------------------------------------------------------------------------- the code table


def cache_id(cache) -> str:
    """A short name for a cache's content: dataset name + hash of its sources, creation time and pipeline.

    Two caches with the same id were written from the same raw files by the
    same pipeline run, so a stored code table for one is valid for the other.
    """
    a = cache.attrs
    key = json.dumps({k: a.get(k) for k in ("dataset", "factor_sizes", "source", "created", "pipeline")},
                     sort_keys=True, default=str)
    return f"{a['dataset']}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def encoder_id(model: torch.nn.Module) -> str:
    """A short hash of the encoder's weights: the code table depends on nothing else of the model."""
    digest = hashlib.sha256()
    for name, tensor in model.encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:8]


def code_path(code_dir: str | Path, step: int, cache, model: torch.nn.Module) -> Path:
    """Where the code table of ``model`` at ``step`` on ``cache`` is stored:
    ``<code_dir>/step-<step>-<cache id>-<encoder id>.npy``."""
    return Path(code_dir) / f"step-{step}-{cache_id(cache)}-{encoder_id(model)}.npy"


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's parameters."""
    return next(model.parameters()).device


def _as_input(rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """Cache rows -> encoder input: uint8 images become floats in [0, 1]; points stay float32."""
    x = torch.from_numpy(rows).to(device, non_blocking=True)
    if x.dtype != torch.uint8:
        return x
    return x.float().div_(255.0).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def encode_cache(model: torch.nn.Module, cache, batch_size: int = ENCODE_BATCH, progress: bool = True) -> np.ndarray:
    """Encode every row of ``cache`` once: the code table (N, nz) float32 of mu, in grid order.

    Reads one stored chunk ahead in a thread (decompression overlaps the
    encoder) and feeds the encoder ``batch_size`` rows at a time.
    """
    from tqdm import tqdm

    data = cache.data
    device = model_device(model)
    codes = np.empty((cache.n, model.nz), dtype=np.float32)  # row i: grid cell i
    layout = _channels_last(model.encoder) if data.name == "images" else nullcontext()
    with model.evaluating(), layout, ThreadPoolExecutor(max_workers=1) as pool, \
            tqdm(total=cache.n, unit="row", desc=f"encode {cache.name}", disable=not progress, leave=False) as bar:
        pending = pool.submit(data.read_chunk, 0) if data.nchunks else None
        for i in range(data.nchunks):
            rows = pending.result()
            pending = pool.submit(data.read_chunk, i + 1) if i + 1 < data.nchunks else None
            lo, _ = data.chunk_range(i)
            for start in range(0, len(rows), batch_size):
                mu = model.encode(_as_input(rows[start:start + batch_size], device))
                codes[cache.grid_index[lo + start:lo + start + len(mu)]] = mu.float().cpu().numpy()
            bar.update(len(rows))
    return codes


@contextmanager
def _channels_last(module: torch.nn.Module):
    """Convolution weights in channels-last layout inside (about 1.6x faster encoding on CPU), as before after.

    The parameters stay the same objects with the same values, so an
    optimiser holding them is unaffected.
    """
    was_contiguous = all(p.is_contiguous() for p in module.parameters())
    module.to(memory_format=torch.channels_last)
    try:
        yield module
    finally:
        if was_contiguous:
            module.to(memory_format=torch.contiguous_format)


def code_table(model: torch.nn.Module, cache, code_dir: str | Path | None = None, step: int | None = None,
               batch_size: int = ENCODE_BATCH, progress: bool = True) -> np.ndarray:
    """The code table of ``model`` on ``cache``, reused from ``code_dir`` when stored there.

    With ``code_dir`` and ``step`` the table lives at :func:`code_path`
    (keyed by step, cache content and encoder weights, so a table is never
    reused for another model or cache): read when present (checked against
    the cache size and the latent size), written atomically otherwise.
    Without them the cache is encoded in memory.
    """
    if code_dir is None or step is None:
        return encode_cache(model, cache, batch_size, progress)
    path = code_path(code_dir, step, cache, model)
    if path.exists():
        return _read_codes(path, cache.n, model.nz)
    path.parent.mkdir(parents=True, exist_ok=True)  # before the encoding pass: fail early
    codes = encode_cache(model, cache, batch_size, progress)
    write_atomic(path, lambda f: np.save(f, codes, allow_pickle=False))
    return codes


def _read_codes(path: Path, n: int, nz: int) -> np.ndarray:
    try:
        codes = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise GdraeError(f"{path}: unreadable code table ({' '.join(str(exc).split())[:120]}); "
                         f"delete it to encode again") from None
    if codes.shape != (n, nz) or codes.dtype.kind != "f":
        raise GdraeError(f"{path}: code table expected float ({n}, {nz}) (cache rows, latent size), "
                         f"got {codes.dtype} {codes.shape}; delete it to encode again")
    return codes


# ----------------------------------------------------------------------------- metrics


def check_metric_names(names: Sequence[str], source: str = "metrics") -> list[str]:
    """The names, checked against :data:`METRIC_NAMES` (GdraeError naming the first unknown one)."""
    names = list(names)
    for name in names:
        if name not in METRICS:
            raise GdraeError(f"{source}: expected metric names from {', '.join(METRIC_NAMES)}, got {name!r}")
    return names


def evaluate(model: torch.nn.Module, cache, metrics: Sequence[str] | None = None, nbins: Sequence[int] = NBINS,
             seed: int = 0, *, codes: np.ndarray | None = None, code_dir: str | Path | None = None,
             step: int | None = None, options: Mapping[str, Mapping[str, Any]] | None = None,
             diag_points: int = 64, progress: bool = True) -> dict[str, float]:
    """Metrics ``metrics`` (default: all of :data:`METRIC_NAMES`) of ``model`` on ``cache``, flat keys.

    Every metric reads the one code table (``codes`` if given, else
    :func:`code_table` with ``code_dir``/``step``): exactly one encoding pass,
    none when the table is stored. ``seed`` seeds every sampled metric and
    the diagnostics' latent points, so the same seed gives the same numbers.
    ``options`` passes keyword arguments per metric name (e.g.
    ``{"dci": {"num_train": 1000}}``); ``histogram`` options go to every bin count.
    """
    from gdrae import metrics as m

    names = check_metric_names(METRIC_NAMES if metrics is None else metrics)
    options = options or {}
    if codes is None and any(n != "geometry" for n in names):
        codes = code_table(model, cache, code_dir, step, progress=progress)
    sizes = tuple(cache.factor_sizes)
    results: dict[str, float] = {}
    for name in names:
        kwargs = dict(options.get(name, {}))
        if name == "histogram":
            for b in nbins:
                results.update(_prefixed(f"hist{b}", m.histogram_family(codes, sizes, nbins=b, seed=seed, **kwargs)))
        elif name == "geometry":
            with model.evaluating():
                values = model.diagnostics(n_points=kwargs.pop("n_points", diag_points), seed=seed)
            results.update(_prefixed("geometry", values))
        else:  # the disentanglement_lib family: gdrae.metrics.<name>(codes, factor_sizes, seed, **options)
            results.update(_prefixed(name, getattr(m, name)(codes, sizes, seed=seed, **kwargs)))
    return results


def _prefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, float]:
    return {f"{prefix}/{k}": float(v) for k, v in values.items()}


def training_metrics(model: torch.nn.Module, cfg, cache) -> dict[str, float]:
    """The disentanglement metrics the trainer logs at an evaluation step (``train.metrics``).

    ``cache`` is the run's cache, opened and checked once by the trainer
    (Sector2D: its prepared grid). Evaluates with ``train.seed``: one
    encoding pass, kept in memory. The trainer logs the geometric
    diagnostics itself, so "geometry" is skipped here.
    """
    names = [n for n in check_metric_names(cfg.train.metrics, "train.metrics") if n != "geometry"]
    if not names:
        return {}
    return evaluate(model, cache, names, seed=cfg.train.seed, progress=False)


# ----------------------------------------------------------------------------- checkpoint


def run_dir_of(ckpt: str | Path) -> Path:
    """The run directory of a checkpoint: the parent of ``checkpoints/``, else the file's folder."""
    ckpt = Path(ckpt)
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


@dataclass
class Report:
    """What :func:`evaluate_checkpoint` computed and wrote."""

    step: int
    results: dict[str, float]
    files: list[Path] = field(default_factory=list)


def evaluate_checkpoint(ckpt: str | Path, metrics: Sequence[str] | None = None, cache_dir: str | Path | None = None,
                        out: str | Path | None = None, seed: int = 0, device: str | torch.device = "cpu",
                        nbins: Sequence[int] = NBINS, options: Mapping[str, Mapping[str, Any]] | None = None,
                        images: bool = True, progress: bool = True) -> Report:
    """``gdrae-eval``: evaluate checkpoint ``ckpt`` on its cache and write the results under ``out``.

    ``out`` defaults to the checkpoint's run directory; it receives
    ``codes/`` (the stored code table), ``metrics/step-N.json``,
    ``metrics/metrics.csv`` and, with ``images``, ``images/eval-step-N-*.png``.
    """
    from gdrae.checkpoint import load_checkpoint, read_checkpoint

    names = check_metric_names(METRIC_NAMES if metrics is None else metrics)
    device = resolve_device(device) if isinstance(device, str) else device
    step = int(read_checkpoint(ckpt)["step"])
    model, cfg = load_checkpoint(ckpt, map_location=device)
    cache = open_run_cache(cfg, cache_dir, source=f"checkpoint {ckpt}")
    out = run_dir_of(ckpt) if out is None else Path(out)
    try:
        codes = code_table(model, cache, out / "codes", step, progress=progress)
        results = evaluate(model, cache, names, nbins, seed, codes=codes, options=options,
                           diag_points=cfg.train.diag_points, progress=progress)
        provenance = {"checkpoint": str(ckpt), "cache": str(cache.path), "cache_id": cache_id(cache), "seed": seed}
        files = write_metrics(out / "metrics", step, results, provenance)
        if images:
            files += write_images(model, cache, codes, out / "images", step, seed)
    except OSError as exc:  # the cache's own read errors are GdraeErrors already
        raise GdraeError(f"{out}: cannot write the evaluation results there: "
                         f"{exc.strerror or exc} ({exc.filename or out})") from None
    return Report(step, results, files)


# ----------------------------------------------------------------------------- outputs


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
    metrics_dir.mkdir(parents=True, exist_ok=True)
    csv_path = metrics_dir / "metrics.csv"
    columns, rows = read_metrics_csv(csv_path)  # first: a table it cannot keep stops before any write
    json_path = metrics_dir / f"step-{step}.json"
    record = {"step": step, **dict(provenance or {}), "metrics": dict(results)}
    write_atomic(json_path, json.dumps(record, indent=2) + "\n")

    columns += [k for k in results if k not in columns]
    row = rows.setdefault(step, {"step": str(step)})
    row.update({k: repr(float(v)) for k, v in results.items()})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for s in sorted(rows):
        writer.writerow(rows[s])
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

    ``eval-step-N-mi.png``: I(z_j; v_k) at 20 bins (codes x factors). Images:
    ``eval-step-N-traversal.png``, one row per latent sweeping the prior box
    from a real image (chosen by ``seed``) after its reconstruction. Sector2D:
    ``eval-step-N-grid.png`` (latent grid on the data plane) and
    ``eval-step-N-mu.png`` (codes of the cache's grid, coloured by radius).
    Uses the code table: no extra encoding.
    """
    from gdrae import viz
    from gdrae.metrics import histogram_mi
    from gdrae.pictures import model_pictures

    images_dir = Path(images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    mi = histogram_mi(codes, cache.factor_sizes, nbins=HEATMAP_BINS)
    pictures = {"mi": viz.figure_to_array(viz.mi_heatmap(mi, cache.factor_names, HEATMAP_BINS))}
    if cache.kind == "points":  # the whole grid, coloured by radius
        drawn = model_pictures(model, torch.from_numpy(cache.to_grid_order(cache.points[:])), torch.from_numpy(codes))
        pictures.update(grid=drawn["sector_grid"], mu=drawn["sector_mu"])
    else:
        row = int(np.random.RandomState(seed).randint(cache.n))  # a stored row, and its grid cell's code
        real = torch.from_numpy(cache.images[row:row + 1].astype(np.float32) / 255.0)
        drawn = model_pictures(model, real, torch.from_numpy(codes[cache.grid_index[row:row + 1]]))
        pictures["traversal"] = drawn["traversal_real"]
    paths = []
    for name, array in pictures.items():
        paths.append(images_dir / f"eval-step-{step}-{name}.png")
        viz.save_png(array, paths[-1])
    return paths
