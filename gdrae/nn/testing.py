"""The one check every transposable block (and the whole decoder) must pass.

Compares the hand-written Jacobian products of a :class:`Transposable` with
autograd at a point: ``jvp`` against forward-mode autograd, ``vjp`` against
reverse-mode autograd, ``linearize`` against ``forward``. Use float64 inputs.
"""
from __future__ import annotations

import torch
from torch import Tensor

from gdrae.nn.base import Transposable


def assert_jacobian_products(layer: Transposable, x: Tensor, atol: float = 1e-8, rtol: float = 1e-8) -> None:
    """Raise AssertionError unless layer.jvp / layer.vjp equal autograd's JVP / VJP at ``x``."""
    y, ctx = layer.linearize(x)
    torch.testing.assert_close(y, layer(x), atol=atol, rtol=rtol, msg="linearize output differs from forward")
    v = torch.randn_like(x)
    u = torch.randn_like(y)
    y_ad, jv_ad = torch.func.jvp(layer, (x,), (v,))
    _, vjp_fn = torch.func.vjp(layer, x)
    (jtu_ad,) = vjp_fn(u)
    torch.testing.assert_close(layer.jvp(v, ctx), jv_ad, atol=atol, rtol=rtol, msg="jvp differs from autograd")
    torch.testing.assert_close(layer.vjp(u, ctx), jtu_ad, atol=atol, rtol=rtol, msg="vjp differs from autograd")
