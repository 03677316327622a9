"""Products with the decoder Jacobian: the power-iteration spectral estimate and dense checks.

The training step never forms J: it applies J(p) and J(p)^T through the
hand-written ``jvp``/``vjp`` of the transposable blocks (gdrae.nn.base), with
the activation slopes captured at p and held constant. Dense Jacobians from
autograd are for diagnostics and tests only.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor

from gdrae.nn.base import Ctx, Tape, Transposable


def normalize(x: Tensor) -> Tensor:
    """Each sample scaled to unit Euclidean norm over all its entries (as ``F.normalize``, eps 1e-12).

    Keeps the memory layout of ``x`` (the decoder's maps are channels-last).
    The original divides by (norm + 1e-8) instead of clamping the norm at
    1e-12: a relative difference of 1e-8 / norm, below 1e-6 for any norm above
    0.01 (the power iteration's vectors have norms near sigma_max(A), about 1).
    """
    norm = torch.linalg.vector_norm(x, dim=tuple(range(1, x.dim())), keepdim=True)
    return x / norm.clamp_min(1e-12)


def spectral_estimate(
    phi: Transposable, p: Tensor, w: Tensor, n_steps: int, u0: Tensor, method: str = "auto"
) -> Tensor:
    """Power-iteration estimate of sigma_max(A)^2 per sample, A = J_phi(p) diag(w).

    for k in 1..K: v_k = A^T normalize(u_{k-1}); u_k = A normalize(v_k);
    returns sn = <u_K, u_{K-1}> (B,). Only u_K carries an autograd graph: the
    gradient reaches ``w`` and the decoder weights, not the point ``p``, and
    the activation slopes are constants.

    Three routes compute the same numbers and gradients (to float rounding);
    ``method`` picks one ("auto": "dense" when it needs fewer decoder passes,
    see :func:`dense_route_is_cheaper`, else "matrix_free"):

    - "reference": the plain reading of the definition. Every product with A
      or A^T is a pass through the decoder's ``jvp`` / ``vjp`` (2K - 1
      constant passes at batch B); u_K is a ``jvp`` with autograd on, whose
      backward is another ``vjp`` pass plus the weight gradients.
    - "matrix_free": the same passes, but the backward ``vjp`` is not run: the
      last constant pass v_K = A^T normalize(u_{K-1}) already carries
      u_{K-1}'s cotangent through every block, so a :class:`Tape` keeps it
      at the weighted blocks and the gradient is assembled from those.
    - "dense": the nz columns A e_j from one ``jvp`` pass at batch nz·B, then
      the constant rounds as small matrix products (nz + 1 passes); u_K as in
      "reference".

    Reference: Pan, Niu, Zhang, AAAI 2023 (GDRAE), spectral-norm term; MODEL.md section 6.
    """
    if method == "auto":
        method = "dense" if dense_route_is_cheaper(p.shape[1], n_steps) else "matrix_free"
    if method not in ("reference", "matrix_free", "dense"):
        raise ValueError(
            f"spectral_estimate method: expected 'auto', 'reference', 'matrix_free' or 'dense', got {method!r}")
    if method == "matrix_free":
        return _taped_estimate(phi, p, w, n_steps, u0)
    w_const = w.detach()
    with torch.no_grad():
        _, ctx = phi.linearize(p.detach())
        u_prev = u0
        v = w_const * phi.vjp(normalize(u_prev), ctx)  # v_1
        if method == "reference":
            for _ in range(n_steps - 1):
                u_prev = phi.jvp(w_const * normalize(v), ctx)
                v = w_const * phi.vjp(normalize(u_prev), ctx)
        else:
            a = scaled_jacobian_columns(phi, ctx, w_const)  # (B, D, nz)
            u_prev = u_prev.flatten(1)
            for _ in range(n_steps - 1):
                u_prev = torch.einsum("bdn,bn->bd", a, normalize(v))
                v = torch.einsum("bdn,bd->bn", a, normalize(u_prev))
    u = phi.jvp(w * normalize(v), ctx)
    return (u.flatten(1) * u_prev.flatten(1)).sum(dim=1)


def _taped_estimate(phi: Transposable, p: Tensor, w: Tensor, n_steps: int, u0: Tensor) -> Tensor:
    """The "matrix_free" route of :func:`spectral_estimate`: every pass constant, the gradient from a tape.

    With t = w * normalize(v_K) and c = u_{K-1}, sn = <J t, c>. Its gradient
    in the decoder weights is the tape's pairing of the weighted blocks'
    outputs (the last ``jvp``) with c's cotangents, which are those of the
    last ``vjp`` times |c|; in ``w`` it is normalize(v_K) * J^T c. The value
    is computed without a graph and the gradient attached as
    ``sn + (g - g.detach())``.
    """
    squeezed = getattr(phi, "squeezed", None)  # the image decoder's faster products
    if squeezed is not None:
        phi, u0 = squeezed, squeezed.to_output_coordinates(u0)
    w_const = w.detach()
    tape = Tape()
    with torch.no_grad():
        _, ctx = phi.linearize(p.detach())
        u_prev = u0
        for k in range(n_steps):
            if k > 0:
                u_prev = phi.jvp(w_const * normalize(v), ctx)
            with tape.recording() if k == n_steps - 1 else nullcontext():
                jt = phi.vjp(normalize(u_prev), ctx)  # last: J^T normalize(u_{K-1}), taped
            v = w_const * jt
        direction = normalize(v)
        with tape.recording():
            u = phi.jvp(w_const * direction, ctx)
        scale = u_prev.flatten(1).norm(dim=1)  # |u_{K-1}|
        sn = (u.flatten(1) * u_prev.flatten(1)).sum(dim=1)
    graph = scale * tape.pairing() + (w * (direction * jt * scale[:, None])).sum(dim=1)
    return sn + (graph - graph.detach())


def dense_route_is_cheaper(nz: int, n_steps: int) -> bool:
    """True when nz + 1 decoder passes (dense A) beat the 2K - 1 of the matrix-free iteration.

    Sector2D (nz 2, K 5): 3 against 9. Images (nz 10): 11 against 9.
    """
    return nz + 1 < 2 * n_steps - 1


def scaled_jacobian_columns(phi: Transposable, ctx: Ctx, w: Tensor) -> Tensor:
    """A = J_phi(p) diag(w) as a dense (B, D, nz) tensor: all nz columns in one ``jvp`` pass at batch nz·B.

    ``ctx`` is ``phi.linearize(p)``'s context; it is tiled to the bigger batch.
    No graph is meant to be kept (call under ``torch.no_grad``).
    """
    b, nz = w.shape
    # directions[j * B + b] = w[b, j] e_j
    directions = (torch.eye(nz, dtype=w.dtype, device=w.device)[:, None, :] * w[None]).reshape(nz * b, nz)
    columns = phi.jvp(directions, tile_ctx(ctx, nz))
    return columns.reshape(nz, b, -1).permute(1, 2, 0)


def tile_ctx(ctx: Ctx, n: int) -> Ctx:
    """A Jacobian context for the batch repeated ``n`` times (sample j * B + b uses sample b's slopes)."""
    if ctx is None:
        return None
    if isinstance(ctx, Tensor):
        return ctx.repeat(n, *([1] * (ctx.dim() - 1)))
    return type(ctx)(tile_ctx(c, n) for c in ctx)


def dense_jacobian(fn, p: Tensor) -> Tensor:
    """Per-sample Jacobian (B, out_dim, nz) of ``fn``: (B, nz) -> (B, ...) by forward-mode autograd.

    ``fn`` must treat samples independently (a batched decoder does).
    """
    columns = []
    for j in range(p.shape[1]):
        e = torch.zeros_like(p)
        e[:, j] = 1
        _, col = torch.func.jvp(fn, (p,), (e,))
        columns.append(col.flatten(1))
    return torch.stack(columns, dim=2)


def nmae(a: Tensor, b: Tensor) -> Tensor:
    """Normalised mean absolute error mean|a - b| / (mean|b| + 1e-8), means over all entries (MODEL.md section 8)."""
    return (a - b).abs().mean() / (b.abs().mean() + 1e-8)


def geometry_diagnostics(jac: Tensor, sv: Tensor, kind: str) -> dict[str, float]:
    """ortho_sign and sv_match_err of MODEL.md section 8, as the original computes them.

    ``jac`` is the unscaled decoder Jacobian (B, D, nz), ``sv`` the predicted
    singular values (B, nz), ``kind`` "image" or "sector2d". With M = J^T J
    per sample: ortho_sign is the mean over samples of mean|off-diagonal M| /
    (mean|diag M| + 1e-8) (0: orthogonal columns); sv_match_err is
    NMAE(sv, sqrt(diag M)) for images and NMAE(sqrt(diag M) / sv, 1) for Sector2D.
    """
    m = jac.transpose(1, 2) @ jac
    diag = torch.diagonal(m, dim1=1, dim2=2)  # squared column norms (B, nz)
    nz = diag.shape[1]
    off_mean = (m - torch.diag_embed(diag)).abs().sum(dim=(1, 2)) / (nz * (nz - 1))
    ortho = (off_mean / (diag.abs().mean(dim=1) + 1e-8)).mean()
    col_norm = diag.clamp_min(0).sqrt()
    if kind == "image":
        sv_match = nmae(sv, col_norm)
    else:
        sv_match = nmae(col_norm / sv, torch.ones_like(sv))
    return {"ortho_sign": ortho.item(), "sv_match_err": sv_match.item()}


def transpose_matrix(phi: Transposable, p: Tensor, out_shape: tuple[int, ...]) -> Tensor:
    """The whole matrix of the hand-written transpose u -> phi.vjp(u, ctx) at p, (B, nz, D).

    That map is linear in u, so autograd's Jacobian of it is its matrix: nz
    reverse passes, one per input coordinate (row j is the gradient of the
    j-th output in u). Compared with the dense autograd J^T, it checks every
    entry of the hand-written transpose, not one random product.
    """
    with torch.no_grad():
        _, ctx = phi.linearize(p)
    u = torch.zeros(p.shape[0], *out_shape, dtype=p.dtype, device=p.device, requires_grad=True)
    with torch.enable_grad():
        out = phi.vjp(u, ctx).flatten(1)  # (B, nz)
        rows = [torch.autograd.grad(out[:, j].sum(), u, retain_graph=True)[0].flatten(1) for j in range(out.shape[1])]
    return torch.stack(rows, dim=1)
