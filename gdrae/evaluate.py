"""Evaluation: every metric from one code table, plus the geometry; what ``gdrae-eval`` does.

:func:`evaluate` runs the chosen metrics of :mod:`gdrae.metrics` on the code
table of a cache (:mod:`gdrae.codes`: one encoding pass, none when stored)
and the geometric diagnostics (docs/model.md section 8) on random latent points,
and returns flat keys such as ``hist20/mig``, ``dci/disentanglement``,
``geometry/ortho_sign``.

:func:`evaluate_checkpoint` is what ``gdrae-eval`` does: read a checkpoint
once, find and check its cache, evaluate, and write the reports of
:mod:`gdrae.reports` (``metrics/step-N.json``, a row of
``metrics/metrics.csv``, pictures under ``images/``). The trainer's
periodic evaluation (``gdrae.train.evaluate_step``) is :func:`evaluate`
too, written by the same :func:`gdrae.reports.write_metrics` into the same
record.

Reference: docs/metrics.md (definitions, defaults); Locatello et al., "Challenging
Common Assumptions in the Unsupervised Learning of Disentangled
Representations", ICML 2019 (encode once, metrics as lookups).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from gdrae.codes import cache_id, code_table
from gdrae.data.cache import open_run_cache
from gdrae.device import resolve_device
from gdrae.errors import GdraeError
from gdrae.reports import write_images, write_metrics

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
    "geometry": "GDRAE's ortho_sign, sv_match_err, lt_err at random latent points (docs/model.md section 8)",
    "jacobian": "ortho_sign of the decoder's data-space Jacobian at prior draws, alike for every family",
}
METRIC_NAMES: tuple[str, ...] = tuple(METRICS)
DIAGNOSTICS = ("geometry", "jacobian")  # of the model itself, at latent points: they read no data
NBINS: tuple[int, ...] = (3, 5, 10, 20, 50)  # the histogram family's bin counts (docs/metrics.md section A)


# ----------------------------------------------------------------------------- metrics


def check_metric_names(names: Sequence[str], source: str = "metrics", model=None) -> list[str]:
    """The names, checked against :data:`METRIC_NAMES` (GdraeError naming the first unknown one) and, with
    ``model``, against what that model can be asked (a diagnostic it lacks is refused)."""
    names = list(names)
    for name in names:
        if name not in METRICS:
            raise GdraeError(f"{source}: expected metric names from {', '.join(METRIC_NAMES)}, got {name!r}")
        if model is not None and name in DIAGNOSTICS and name not in model.evaluations:
            raise GdraeError(f"{source}: {name!r} is not a diagnostic of a {model.family} model (it has "
                             f"{', '.join(model.evaluations)})")
    return names


def metrics_of(model) -> list[str]:
    """Every metric that ``model`` can be asked: the code-table metrics and its own diagnostics."""
    return [n for n in METRIC_NAMES if n not in DIAGNOSTICS or n in model.evaluations]


def jacobian_diagnostics(model, n_points: int = 64, seed: int = 0) -> dict[str, float]:
    """ortho_sign (:func:`gdrae.models.jacobian.ortho_sign`) of J = d data_logits / dz at ``n_points`` draws
    of the model's prior (its own generator, ``seed``): image logits of every channel or the two Sector2D
    coordinates, so it compares across families (GDRAE's geometry/ortho_sign is of its flow in p = exp(c)·z)."""
    from gdrae.models.jacobian import dense_jacobian, ortho_sign

    gen = torch.Generator(device=model.device).manual_seed(seed)
    with model.evaluating(), torch.no_grad():
        z = model.sample_prior(n_points, generator=gen)
    jac = dense_jacobian(model.data_logits, z).detach()
    return {"ortho_sign": ortho_sign(jac)[0].item()}


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
    ``cache`` may be None when only "geometry" is asked (it reads no data).
    """
    names = metrics_of(model) if metrics is None else check_metric_names(metrics, model=model)
    options = options or {}
    if any(n not in DIAGNOSTICS for n in names):  # metrics of the code table (scikit-learn: imported only for them)
        from gdrae import metrics as m

        if codes is None:
            codes = code_table(model, cache, code_dir, step, progress=progress)
    sizes = None if cache is None else tuple(cache.factor_sizes)
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
        elif name == "jacobian":
            values = jacobian_diagnostics(model, n_points=kwargs.pop("n_points", diag_points), seed=seed)
            results.update(_prefixed("jacobian", values))
        else:  # the disentanglement_lib family: gdrae.metrics.<name>(codes, factor_sizes, seed, **options)
            results.update(_prefixed(name, getattr(m, name)(codes, sizes, seed=seed, **kwargs)))
    return results


def _prefixed(prefix: str, values: Mapping[str, Any]) -> dict[str, float]:
    return {f"{prefix}/{k}": float(v) for k, v in values.items()}


def provenance(seed: int, cache=None, checkpoint: str | Path | None = None) -> dict[str, Any]:
    """What an evaluation's record says of its inputs: the checkpoint and cache when there are, and the seed."""
    found = {} if checkpoint is None else {"checkpoint": str(checkpoint)}
    if cache is not None:
        found.update(cache=str(cache.path), cache_id=cache_id(cache))
    return {**found, "seed": seed}


# ----------------------------------------------------------------------------- a checkpoint


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
    ``metrics/metrics.csv`` and, with ``images``, ``images/step-N-*.png``: the
    run's one record, which the trainer's evaluations write too.
    """
    from gdrae.checkpoint import model_from_checkpoint, read_checkpoint

    if metrics is not None:
        check_metric_names(metrics)
    device = resolve_device(device) if isinstance(device, str) else device
    state = read_checkpoint(ckpt)  # read once: its step, config and weights
    step = int(state["step"])
    model, cfg = model_from_checkpoint(state, ckpt, map_location=device)
    names = metrics_of(model) if metrics is None else check_metric_names(metrics, f"checkpoint {ckpt}", model)
    cache = open_run_cache(cfg, cache_dir, source=f"checkpoint {ckpt}")
    out = run_dir_of(ckpt) if out is None else Path(out)
    try:
        codes = code_table(model, cache, out / "codes", step, progress=progress)
        results = evaluate(model, cache, names, nbins, seed, codes=codes, options=options,
                           diag_points=cfg.train.diag_points, progress=progress)
        files = write_metrics(out / "metrics", step, results, provenance(seed, cache, ckpt))
        if images:
            files += write_images(model, cache, codes, out / "images", step, seed)
    except OSError as exc:  # the cache's own read errors are GdraeErrors already
        raise GdraeError(f"{out}: cannot write the evaluation results there: "
                         f"{exc.strerror or exc} ({exc.filename or out})") from None
    return Report(step, results, files)
