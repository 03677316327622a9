"""The one contract every decoder building block follows, and the chain of them.

Every block of the flow decoder (MODEL.md section 4) is linear or elementwise,
so its Jacobian at a point x is a cheap linear map we can apply both ways.
Each block is a :class:`Transposable` module with four methods:

- ``forward(x) -> y``: the ordinary map.
- ``linearize(x) -> (y, ctx)``: the same ``y`` plus ``ctx``, what the Jacobian
  at ``x`` needs beyond the block's weights: the *detached* activation slopes
  (ReLU mask, sigmoid ``s(1-s)``), a list of those for containers, ``None`` for
  linear blocks. Slopes are constants on purpose: the spectral loss treats
  them so (MODEL.md section 6).
- ``jvp(v, ctx) -> J(x) v`` and ``vjp(u, ctx) -> J(x)^T u``: products with the
  Jacobian and its transpose, differentiable with respect to the block's
  weights (biases do not enter a Jacobian).
- ``inverse(y) -> x``: a left inverse, only for the injective blocks that sit
  on the decoder's main path; the others raise ``TypeError``.

All tensors are batched: ``v`` has the input's shape, ``u`` the output's, and
each sample uses its own slopes. Every block is tested against autograd
through one shared helper (tests/nn/helpers.py).
"""
from __future__ import annotations

from typing import Any, Iterable

import torch.nn.functional as F
from torch import Tensor, nn

Ctx = Any  # None (linear block), a Tensor of slopes, or a list of sub-contexts


class Transposable(nn.Module):
    """A block with a forward map, its Jacobian products and (if injective) a left inverse."""

    def linearize(self, x: Tensor) -> tuple[Tensor, Ctx]:
        """Output at ``x`` and the detached context its Jacobian needs (None: linear)."""
        return self(x), None

    def jvp(self, v: Tensor, ctx: Ctx) -> Tensor:
        """J(x) v for the point ``x`` that produced ``ctx``."""
        raise NotImplementedError(f"{type(self).__name__} must define jvp")

    def vjp(self, u: Tensor, ctx: Ctx) -> Tensor:
        """J(x)^T u for the point ``x`` that produced ``ctx``."""
        raise NotImplementedError(f"{type(self).__name__} must define vjp")

    def inverse(self, y: Tensor) -> Tensor:
        """Left inverse of ``forward``; only injective blocks have one."""
        raise TypeError(f"{type(self).__name__} is not injective: it has no left inverse")


class Chain(Transposable):
    """Composition of transposable blocks, applied in order (its Jacobian is the chain rule)."""

    def __init__(self, layers: Iterable[Transposable]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def linearize(self, x: Tensor) -> tuple[Tensor, list]:
        ctxs = []
        for layer in self.layers:
            x, ctx = layer.linearize(x)
            ctxs.append(ctx)
        return x, ctxs

    def jvp(self, v: Tensor, ctx: list) -> Tensor:
        for layer, c in zip(self.layers, ctx):
            v = layer.jvp(v, c)
        return v

    def vjp(self, u: Tensor, ctx: list) -> Tensor:
        for layer, c in zip(reversed(self.layers), reversed(ctx)):
            u = layer.vjp(u, c)
        return u

    def inverse(self, y: Tensor) -> Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


def channel_matmul(weight: Tensor, x: Tensor) -> Tensor:
    """Apply a (out, in) matrix to the channels of ``x`` (B, in, H, W): a 1x1 convolution.

    Keeps the channels-last layout of the decoder (see ``FlowDecoder``). On
    1x1 feature maps a plain matrix product is fastest; on larger maps
    ``conv2d`` is (measured on CPU, bench/train_step.py).
    """
    if x.shape[2] == 1 and x.shape[3] == 1:
        return (x.permute(0, 2, 3, 1) @ weight.t()).permute(0, 3, 1, 2)
    return F.conv2d(x, weight.reshape(*weight.shape, 1, 1))
