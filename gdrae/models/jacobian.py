"""Products with the decoder Jacobian: the power-iteration spectral estimate and dense checks.

The training step never forms J: it applies J(p) and J(p)^T through the
hand-written ``jvp``/``vjp`` of the transposable blocks (gdrae.nn.base), with
the activation slopes captured at p and held constant. Dense Jacobians from
autograd are for diagnostics and tests only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gdrae.nn.base import Transposable


def normalize(x: Tensor) -> Tensor:
    """Each sample scaled to unit Euclidean norm over all its entries."""
    return F.normalize(x.flatten(1), dim=1).view_as(x)


def spectral_estimate(phi: Transposable, p: Tensor, w: Tensor, n_steps: int, u0: Tensor) -> Tensor:
    """Power-iteration estimate of sigma_max(A)^2 per sample, A = J_phi(p) diag(w).

    for k in 1..K: v_k = A^T normalize(u_{k-1}); u_k = A normalize(v_k);
    returns sn = <u_K, u_{K-1}> (B,). Only u_K carries an autograd graph: the
    gradient reaches ``w`` and the decoder weights, not the point ``p``, and
    the activation slopes are constants.

    Reference: Pan, Niu, Zhang, AAAI 2023 (GDRAE), spectral-norm term; MODEL.md section 6.
    """
    w_const = w.detach()
    with torch.no_grad():
        _, ctx = phi.linearize(p.detach())
        u_prev = u0
        v = w_const * phi.vjp(normalize(u_prev), ctx)
        for _ in range(n_steps - 1):
            u_prev = phi.jvp(w_const * normalize(v), ctx)
            v = w_const * phi.vjp(normalize(u_prev), ctx)
    u = phi.jvp(w * normalize(v), ctx)
    return (u * u_prev).flatten(1).sum(dim=1)


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
