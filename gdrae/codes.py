"""The code table: every row of a cache encoded once, in grid order, stored and reused.

The cache holds every combination of its factors exactly once (stored in a
shuffled order, each row with its factors), so one encoding pass gives the
representation of any factor combination. :func:`code_table` makes that
pass (batched, no_grad, on the model's device), puts the codes in grid
order (``codes[ravel_multi_index(factors)]``, :meth:`Cache.to_grid_order`)
and stores the table as ``<out>/codes/step-<N>-<cache id>-<encoder id>.npy``,
so a second evaluation of the same checkpoint on the same cache encodes
nothing.

Reference: Locatello et al., "Challenging Common Assumptions in the
Unsupervised Learning of Disentangled Representations", ICML 2019 (encode
once, metrics as lookups).
"""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import torch

from gdrae.atomic import write_atomic
from gdrae.errors import GdraeError, writing
from gdrae.fastpaths import fast

ENCODE_BATCH = 1024  # rows per encoder call


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


def as_input(rows: np.ndarray, device: torch.device) -> torch.Tensor:
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
    layout = _channels_last(model.encoder) if data.name == "images" and fast("channels_last") else nullcontext()
    with model.evaluating(), layout, ThreadPoolExecutor(max_workers=1) as pool, \
            tqdm(total=cache.n, unit="row", desc=f"encode {cache.name}", disable=not progress, leave=False) as bar:
        pending = pool.submit(data.read_chunk, 0) if data.nchunks else None
        for i in range(data.nchunks):
            rows = pending.result()
            pending = pool.submit(data.read_chunk, i + 1) if i + 1 < data.nchunks else None
            lo, _ = data.chunk_range(i)
            for start in range(0, len(rows), batch_size):
                mu = model.encode(as_input(rows[start:start + batch_size], device))
                codes[cache.grid_index[lo + start:lo + start + len(mu)]] = mu.float().cpu().numpy()
            bar.update(len(rows))
    return codes


@contextmanager
def _channels_last(module: torch.nn.Module):
    """Convolution weights in channels-last layout inside (about 1.6x faster encoding on CPU), as before after.

    The parameters stay the same objects with the same values, so an
    optimiser holding them is unaffected (``Module.to`` swaps their ``.data``
    in place: see docs/internals.md). The fast path ``channels_last``
    (gdrae.fastpaths) leaves the weights as they are.
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
    with writing(path.parent, "the code table"):
        path.parent.mkdir(parents=True, exist_ok=True)  # before the encoding pass: fail early
    codes = encode_cache(model, cache, batch_size, progress)
    with writing(path, "the code table"):
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
