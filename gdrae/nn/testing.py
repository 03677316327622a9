"""The one check every transposable block (and the whole decoder) must pass.

Compares the hand-written Jacobian products of a :class:`Transposable` with
autograd at a point: ``jvp`` against forward-mode autograd, ``vjp`` against
reverse-mode autograd, ``linearize`` against ``forward``, ``stacked`` against
``forward`` and ``jvp`` apart (values and weight gradients, at the point's
own Jacobian and at another point's), and the :class:`Tape` of a ``vjp``
then a ``jvp`` pass against the weight gradient that backpropagating
<J v, u> gives. Use float64 inputs.
"""
from __future__ import annotations

import torch
from torch import Tensor

from gdrae.nn.base import Tape, Transposable, tile_ctx


def assert_jacobian_products(layer: Transposable, x: Tensor, atol: float = 1e-8, rtol: float = 1e-8) -> None:
    """Raise AssertionError unless layer.jvp / layer.vjp equal autograd's JVP / VJP at ``x``, layer.stacked
    equals forward and jvp apart, and the tape's pairing has the weight gradient of <J v, u>."""
    y, ctx = layer.linearize(x)
    torch.testing.assert_close(y, layer(x), atol=atol, rtol=rtol, msg="linearize output differs from forward")
    v = torch.randn_like(x)
    u = torch.randn_like(y)
    y_ad, jv_ad = torch.func.jvp(layer, (x,), (v,))
    _, vjp_fn = torch.func.vjp(layer, x)
    (jtu_ad,) = vjp_fn(u)
    torch.testing.assert_close(layer.jvp(v, ctx), jv_ad, atol=atol, rtol=rtol, msg="jvp differs from autograd")
    torch.testing.assert_close(layer.vjp(u, ctx), jtu_ad, atol=atol, rtol=rtol, msg="vjp differs from autograd")

    weights = [w for w in layer.parameters() if w.requires_grad]
    _assert_stacked(layer, x, ctx, weights, atol, rtol)
    if not weights:
        return
    with torch.enable_grad():
        expected = torch.autograd.grad((layer.jvp(v, ctx) * u).sum(), weights, allow_unused=True)
    tape = Tape()
    with torch.no_grad():
        layer.vjp(u, ctx, tape)
        layer.jvp(v, ctx, tape)
    pairing = tape.pairing()
    if isinstance(pairing, Tensor) and pairing.requires_grad:
        got = torch.autograd.grad(pairing.sum(), weights, allow_unused=True)
    else:
        got = (None,) * len(weights)
    for w, e, g in zip(weights, expected, got):
        e = torch.zeros_like(w) if e is None else e
        g = torch.zeros_like(w) if g is None else g
        torch.testing.assert_close(g, e, atol=atol, rtol=rtol, msg="tape pairing's weight gradient differs from autograd")


def _assert_stacked(layer: Transposable, x: Tensor, ctx, weights: list, atol: float, rtol: float) -> None:
    """``stacked`` against ``forward`` and ``jvp`` apart: two tangents per sample at x's own Jacobian, then
    one tangent per sample at the Jacobian of another point, with the weight gradients of the second."""
    n = x.shape[0]
    tangents = torch.randn(2 * n, *x.shape[1:], dtype=x.dtype)
    out, own = layer.stacked(torch.cat([x, tangents]), n)
    expected = torch.cat([layer(x), layer.jvp(tangents, tile_ctx(ctx, 2))])
    torch.testing.assert_close(out, expected, atol=atol, rtol=rtol, msg="stacked differs from forward and jvp")
    v = tangents[:n]
    torch.testing.assert_close(layer.jvp(v, own), layer.jvp(v, ctx), atol=atol, rtol=rtol,
                               msg="stacked's context differs from linearize's")
    _, other = layer.linearize(x + 0.5 * torch.randn_like(x))
    probe = torch.randn_like(out[: 2 * n])
    with torch.enable_grad():
        out, _ = layer.stacked(torch.cat([x, v]), n, other)
        apart = torch.cat([layer(x), layer.jvp(v, other)])
        torch.testing.assert_close(out, apart, atol=atol, rtol=rtol, msg="stacked at another point's Jacobian differs")
        if weights:
            got = torch.autograd.grad((out * probe).sum(), weights, allow_unused=True)
            want = torch.autograd.grad((apart * probe).sum(), weights, allow_unused=True)
            for g, e in zip(got, want):
                if g is not None or e is not None:
                    torch.testing.assert_close(g, e, atol=atol, rtol=rtol, msg="stacked's weight gradient differs")
