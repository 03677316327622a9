"""Products with the decoder Jacobian: the spectral-norm term's power iteration, and dense checks.

:func:`reference_spectral_estimate` is docs/model.md section 6's power iteration
written as the section reads; :func:`spectral_estimate` computes the same
numbers along the route the config asks for (``train.spectral_route``).
Neither forms J: they apply J(p) and J(p)^T through the decoder's Jacobian
operator (``FlowDecoder.linearize`` / ``jvp`` / ``vjp``, the hand-written
products of the transposable blocks, gdrae.nn.base), with the activation
slopes captured at p and held constant. Dense Jacobians from autograd are
for diagnostics and tests only.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Union

import torch
from torch import Tensor

from gdrae.config import SPECTRAL_ROUTES
from gdrae.nn.base import Ctx, Tape, Transposable

if TYPE_CHECKING:
    from gdrae.models.decoders import FlowDecoder
    from gdrae.models.squeezed import SqueezedImageFlow

    Jacobian = Union[FlowDecoder, SqueezedImageFlow]  # linearize / jvp / vjp / to_output_coordinates


def normalize(x: Tensor) -> Tensor:
    """Each sample scaled to unit Euclidean norm over all its entries (as ``F.normalize``, eps 1e-12).

    Keeps the memory layout of ``x`` (the decoder's maps are channels-last).
    The original divides by (norm + 1e-8) instead of clamping the norm at
    1e-12: a relative difference of 1e-8 / norm, below 1e-6 for any norm above
    0.01 (the power iteration's vectors have norms near sigma_max(A), about 1).
    """
    norm = torch.linalg.vector_norm(x, dim=tuple(range(1, x.dim())), keepdim=True)
    return x / norm.clamp_min(1e-12)


ROUTES = SPECTRAL_ROUTES  # stated in gdrae.config, which imports no torch


def spectral_estimate(phi: FlowDecoder, p: Tensor, w: Tensor, n_steps: int, u0: Tensor, route: str = "auto") -> Tensor:
    """Power-iteration estimate of sigma_max(A)^2 per sample (B,), A = J_phi(p) diag(w) (docs/model.md section 6).

    ``route`` picks how it is computed; all give :func:`reference_spectral_estimate`'s
    numbers and gradients (to float rounding, tested in float64,
    tests/models/test_fast_path.py):

    - "reference": :func:`reference_spectral_estimate`, the plain reading.
    - "dense": A as a dense (B, D, nz) tensor from one stacked pass of
      (nz + 1)·B rows (the point and its nz tangent columns share every
      product), the constant rounds as small matrix products
      (:func:`dense_rounds`), then u_K as in the reference: the work of
      nz + 1 decoder passes (Sector2D: 3). The training step stacks u_K's
      pass with the reconstruction's (``FlowDecoder.pre_activation_and_jvp``).
    - "matrix_free": every pass constant, through ``phi.fast_jacobian`` (the
      image decoder's squeezed products), and the gradient from a
      :class:`Tape` of the last two passes instead of a backward pass:
      2K decoder passes (images: 10).
    - "auto": "dense" when it needs fewer decoder passes
      (:func:`dense_route_is_cheaper`), else "matrix_free".

    Reference: Pan, Niu, Zhang, AAAI 2023 (GDRAE), spectral-norm term; docs/model.md section 6.
    """
    route = resolve_route(route, p.shape[1], n_steps)
    if route == "reference":
        return reference_spectral_estimate(phi, p, w, n_steps, u0)
    if route == "dense":
        return _dense_estimate(phi, p, w, n_steps, u0)
    if route == "matrix_free":
        return _taped_estimate(phi.fast_jacobian, p, w, n_steps, u0)
    raise ValueError(f"spectral_estimate route: expected one of {', '.join(ROUTES)}, got {route!r}")


def reference_spectral_estimate(phi: FlowDecoder, p: Tensor, w: Tensor, n_steps: int, u0: Tensor) -> Tensor:
    """docs/model.md section 6, line by line: sn = <u_K, u_{K-1}>, which estimates sigma_max(A)^2, A = J_phi(p) diag(w).

    The iteration runs without a graph; only u_K carries one, so the
    gradient reaches ``w`` and the decoder weights but not the point ``p``,
    and the activation slopes (``linearize``'s context) are constants.
    """
    w_const = w.detach()
    with torch.no_grad():
        _, ctx = phi.linearize(p.detach())                # J = J_phi(p), its activation slopes frozen

        def a(v: Tensor) -> Tensor:                       # A v = J diag(w) v
            return phi.jvp(w_const * v, ctx)

        def a_t(u: Tensor) -> Tensor:                     # A^T u = diag(w) J^T u
            return w_const * phi.vjp(u, ctx)

        u_prev = power_rounds(a, a_t, u0, n_steps)        # u_{K-1}, from u_0 ~ N(0, I) in output space
        v = a_t(normalize(u_prev))                        # v_K = A^T normalize(u_{K-1})
    u = phi.jvp(w * normalize(v), ctx)                    # u_K = A normalize(v_K): the one product with a graph
    return inner(u, u_prev)                               # sn = <u_K, u_{K-1}>, u_{K-1} unnormalised


def power_rounds(a: Callable[[Tensor], Tensor], a_t: Callable[[Tensor], Tensor], u0: Tensor, n_steps: int) -> Tensor:
    """u_{K-1} of the power iteration, K = ``n_steps``: for k in 1..K-1, v_k = A^T normalize(u_{k-1}) and
    u_k = A normalize(v_k), with ``a`` and ``a_t`` the products with A and A^T."""
    u = u0
    for _ in range(n_steps - 1):
        v = a_t(normalize(u))
        u = a(normalize(v))
    return u


def inner(u: Tensor, u_prev: Tensor) -> Tensor:
    """Per-sample inner product over all entries, (B,)."""
    return (u.flatten(1) * u_prev.flatten(1)).sum(dim=1)


def _dense_estimate(phi: FlowDecoder, p: Tensor, w: Tensor, n_steps: int, u0: Tensor) -> Tensor:
    """Route "dense" of :func:`spectral_estimate`: the reference with A as a matrix for the constant rounds."""
    ctx, t, u_prev = dense_rounds(phi, p, w, n_steps, u0)
    return inner(phi.jvp(t, ctx), u_prev)                  # u_K = J t, sn = <u_K, u_{K-1}>


def dense_rounds(phi: FlowDecoder, p: Tensor, w: Tensor, n_steps: int, u0: Tensor) -> tuple[Ctx, Tensor, Tensor]:
    """The constant part of route "dense": (ctx, t, u_{K-1}), from which sn = <J(p) t, u_{K-1}>.

    ``ctx`` is the Jacobian's context at p, t = w * normalize(v_K) the input
    of the last product (its gradient reaches ``w``), u_{K-1} flattened
    (B, D). A = J diag(w) is formed once as a dense (B, D, nz) tensor and the
    rounds are small matrix products with it.
    """
    w_const = w.detach()
    with torch.no_grad():
        ctx, matrix = scaled_jacobian_columns(phi, p.detach(), w_const)  # A: (B, D, nz)

        def a(v: Tensor) -> Tensor:
            return torch.einsum("bdn,bn->bd", matrix, v)

        def a_t(u: Tensor) -> Tensor:
            return torch.einsum("bdn,bd->bn", matrix, u)

        u_prev = power_rounds(a, a_t, u0.flatten(1), n_steps)
        v = a_t(normalize(u_prev))
    return ctx, w * normalize(v), u_prev


def resolve_route(route: str, nz: int, n_steps: int) -> str:
    """The route ``spectral_estimate`` takes: ``route`` itself, or for "auto" the one with fewer decoder
    passes (:func:`dense_route_is_cheaper`)."""
    if route == "auto":
        return "dense" if dense_route_is_cheaper(nz, n_steps) else "matrix_free"
    return route


def _taped_estimate(op: Jacobian, p: Tensor, w: Tensor, n_steps: int, u0: Tensor) -> Tensor:
    """Route "matrix_free" of :func:`spectral_estimate`: every pass constant, the gradient from a tape.

    The reference's last product u_K = J (w * normalize(v_K)) is what carries
    the gradient. Write t = w * normalize(v_K) and c = u_{K-1}, so
    sn = <J t, c>. Its gradient in the decoder weights is the tape's pairing
    of the weighted blocks' outputs in the pass J t with the cotangents of c
    at those blocks, which are those of the last constant pass
    v_K = w * J^T normalize(c) times |c| (the tape records both passes, see
    :class:`gdrae.nn.base.Tape`); its gradient in ``w`` is
    normalize(v_K) * J^T c. The value is computed without a graph and takes
    that gradient through :func:`with_gradient_of`. Passes through ``op``
    may use their own output coordinates (the squeezed ones): norms and
    inner products do not change.
    """
    u0 = op.to_output_coordinates(u0)
    w_const = w.detach()
    tape = Tape()
    with torch.no_grad():
        _, ctx = op.linearize(p.detach())
        u_prev = power_rounds(lambda v: op.jvp(w_const * v, ctx), lambda u: w_const * op.vjp(u, ctx), u0, n_steps)
        jt = op.vjp(normalize(u_prev), ctx, tape)      # J^T normalize(u_{K-1}), cotangents taped
        direction = normalize(w_const * jt)            # normalize(v_K)
        u = op.jvp(w_const * direction, ctx, tape)     # u_K, the weighted blocks' outputs taped with a graph
        scale = u_prev.flatten(1).norm(dim=1)          # |u_{K-1}|
        sn = inner(u, u_prev)
    surrogate = scale * tape.pairing() + (w * (direction * jt * scale[:, None])).sum(dim=1)
    return with_gradient_of(sn, surrogate)


def with_gradient_of(value: Tensor, surrogate: Tensor) -> Tensor:
    """``value`` (computed without a graph) carrying the gradient of ``surrogate``: value + (s - s.detach()),
    whose forward value is ``value`` and whose backward is that of ``surrogate``."""
    return value + (surrogate - surrogate.detach())


def dense_route_is_cheaper(nz: int, n_steps: int) -> bool:
    """True when nz + 1 decoder passes (dense A) beat the 2K - 1 of the matrix-free iteration.

    Sector2D (nz 2, K 5): 3 against 9. Images (nz 10): 11 against 9.
    """
    return nz + 1 < 2 * n_steps - 1


def scaled_jacobian_columns(phi: Transposable, p: Tensor, w: Tensor) -> tuple[Ctx, Tensor]:
    """The Jacobian's context at p and A = J_phi(p) diag(w) as a dense (B, D, nz) tensor.

    One stacked pass of (nz + 1)·B rows: the point p and its nz scaled
    tangent columns go through every product together (``phi.stacked``).
    No graph is meant to be kept (call under ``torch.no_grad``).
    """
    b, nz = w.shape
    # directions[j * B + b] = w[b, j] e_j
    directions = (torch.eye(nz, dtype=w.dtype, device=w.device)[:, None, :] * w[None]).reshape(nz * b, nz)
    out, ctx = phi.stacked(torch.cat([p, directions]), b)
    return ctx, out[b:].reshape(nz, b, -1).permute(1, 2, 0)


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
    """Normalised mean absolute error mean|a - b| / (mean|b| + 1e-8), means over all entries (docs/model.md section 8)."""
    return (a - b).abs().mean() / (b.abs().mean() + 1e-8)


def ortho_sign(jac: Tensor) -> tuple[Tensor, Tensor]:
    """(ortho_sign, diag M) of Jacobians ``jac`` (B, D, nz), M = J^T J per sample: the mean over samples of
    mean|off-diagonal M| / (mean|diag M| + 1e-8) (0: orthogonal columns), and the squared column norms (B, nz)."""
    m = jac.transpose(1, 2) @ jac
    diag = torch.diagonal(m, dim1=1, dim2=2)
    nz = diag.shape[1]
    off_mean = (m - torch.diag_embed(diag)).abs().sum(dim=(1, 2)) / (nz * (nz - 1))
    return (off_mean / (diag.abs().mean(dim=1) + 1e-8)).mean(), diag


def geometry_diagnostics(jac: Tensor, sv: Tensor, kind: str) -> dict[str, float]:
    """ortho_sign and sv_match_err of docs/model.md section 8, as the original computes them.

    ``jac`` is the unscaled decoder Jacobian (B, D, nz), ``sv`` the predicted
    singular values (B, nz), ``kind`` "image" or "sector2d". With M = J^T J
    per sample: ortho_sign is the mean over samples of mean|off-diagonal M| /
    (mean|diag M| + 1e-8) (0: orthogonal columns); sv_match_err is
    NMAE(sv, sqrt(diag M)) for images and NMAE(sqrt(diag M) / sv, 1) for Sector2D.
    """
    ortho, diag = ortho_sign(jac)
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
