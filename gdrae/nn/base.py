"""The one contract every decoder building block follows, and the chain of them.

Every block of the flow decoder (docs/model.md section 4) is linear or elementwise,
so its Jacobian at a point x is a cheap linear map we can apply both ways.
Each block is a :class:`Transposable` module with four methods:

- ``forward(x) -> y``: the ordinary map.
- ``linearize(x) -> (y, ctx)``: the same ``y`` plus ``ctx``, what the Jacobian
  at ``x`` needs beyond the block's weights: the *detached* activation slopes
  (ReLU mask, sigmoid ``s(1-s)``), a list of those for containers, ``None`` for
  linear blocks (a :class:`Shared` constant where a linear block prepares
  something once for all products, e.g. a fused kernel). Slopes are
  constants on purpose: the spectral loss treats them so (docs/model.md section 6).
- ``jvp(v, ctx) -> J(x) v`` and ``vjp(u, ctx) -> J(x)^T u``: products with the
  Jacobian and its transpose, differentiable with respect to the block's
  weights (biases do not enter a Jacobian). Containers (blocks made of
  blocks: :class:`Chain`, the coupling, the decoder) also take a ``tape``
  (:class:`Tape`) and pass it to their blocks through :func:`block_jvp` /
  :func:`block_vjp`.
- ``inverse(y) -> x``: a left inverse, only for the injective blocks that sit
  on the decoder's main path; the others raise ``TypeError``.

All tensors are batched: ``v`` has the input's shape, ``u`` the output's, and
each sample uses its own slopes. Every block is tested against autograd
through one shared helper (:func:`gdrae.nn.testing.assert_jacobian_products`).
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Ctx = Any  # None (linear block), a Tensor of slopes, a Shared constant, or a list of sub-contexts


class Shared:
    """A context entry that every sample shares (not a per-sample slope): tiling a context for a
    bigger batch leaves it as it is."""

    def __init__(self, value: Tensor):
        self.value = value


class Transposable(nn.Module):
    """A block with a forward map, its Jacobian products and (if injective) a left inverse."""

    #: True for blocks whose Jacobian depends on trainable weights (the convolutions);
    #: a :class:`Tape` records the passes through them.
    weights_in_jacobian = False
    #: True for containers: their ``jvp`` / ``vjp`` take a ``tape`` and pass it to their blocks.
    passes_tape = False

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

    passes_tape = True

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

    def jvp(self, v: Tensor, ctx: list, tape: Tape | None = None) -> Tensor:
        for layer, c in zip(self.layers, ctx):
            v = block_jvp(layer, v, c, tape)
        return v

    def vjp(self, u: Tensor, ctx: list, tape: Tape | None = None) -> Tensor:
        for layer, c in zip(reversed(self.layers), reversed(ctx)):
            u = block_vjp(layer, u, c, tape)
        return u

    def inverse(self, y: Tensor) -> Tensor:
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


class Tape:
    """What one ``vjp`` and one ``jvp`` pass saw at the blocks with weights in their Jacobian.

    For a product J(x) t whose weight gradient is wanted against a cotangent
    c at the output, autograd would keep the whole pass and run a ``vjp``
    back through it. When a ``vjp`` of c has already been run (the power
    iteration's last one), recording it spares that second pass: pass the
    tape to both passes (``vjp(c, ctx, tape)``, then ``jvp(t, ctx, tape)``):

    - the ``vjp`` appends, for each weighted block, the cotangent arriving at
      its output (``cotangents``);
    - the ``jvp`` computes each weighted block's output with autograd on (its
      input detached) and appends it to ``outputs``; the pass goes on
      detached.

    Then sum over blocks of <outputs[i], cotangents[i]> has the gradient
    <dJ/dweights t, c>, which is what backpropagating <J t, c> gives.
    Blocks are matched in pass order (the ``vjp`` visits them in reverse).
    """

    def __init__(self) -> None:
        self.cotangents: list[Tensor] = []
        self.outputs: list[Tensor] = []

    def jvp(self, layer: Transposable, v: Tensor, ctx: Ctx) -> Tensor:
        """``layer.jvp(v, ctx)``, its output kept with a graph to the layer's weights; returns it detached."""
        # copies in and out: the pass may update its tensors in place, autograd keeps these.
        # A channel slice of a channels-last map is copied back to channels-last (the decoder's layout).
        layout = torch.channels_last if v.dim() == 4 else torch.contiguous_format
        with torch.enable_grad():
            out = layer.jvp(v.detach().clone(memory_format=layout), ctx)
        self.outputs.append(out)
        return out.detach().clone()

    def vjp(self, layer: Transposable, u: Tensor, ctx: Ctx) -> Tensor:
        """``layer.vjp(u, ctx)``, the cotangent ``u`` at its output kept."""
        self.cotangents.append(u)
        return layer.vjp(u, ctx)

    def pairing(self) -> Tensor:
        """Per sample, sum over blocks of <output, cotangent> (B,): differentiable in the weights."""
        if len(self.outputs) != len(self.cotangents):
            raise RuntimeError(f"Tape: {len(self.outputs)} jvp outputs against {len(self.cotangents)} vjp cotangents")
        total = 0
        for out, cot in zip(self.outputs, reversed(self.cotangents)):
            total = total + (out * cot).sum(dim=tuple(range(1, out.dim())))
        return total


def block_jvp(layer: Transposable, v: Tensor, ctx: Ctx, tape: Tape | None = None) -> Tensor:
    """``layer.jvp(v, ctx)`` inside a container: recorded on ``tape`` if the layer has weights in its
    Jacobian, the tape handed on if the layer is itself a container."""
    if tape is None:
        return layer.jvp(v, ctx)
    if layer.weights_in_jacobian:
        return tape.jvp(layer, v, ctx)
    return layer.jvp(v, ctx, tape) if layer.passes_tape else layer.jvp(v, ctx)


def block_vjp(layer: Transposable, u: Tensor, ctx: Ctx, tape: Tape | None = None) -> Tensor:
    """``layer.vjp(u, ctx)`` inside a container: recorded on ``tape`` if the layer has weights in its
    Jacobian, the tape handed on if the layer is itself a container."""
    if tape is None:
        return layer.vjp(u, ctx)
    if layer.weights_in_jacobian:
        return tape.vjp(layer, u, ctx)
    return layer.vjp(u, ctx, tape) if layer.passes_tape else layer.vjp(u, ctx)


def compiling() -> bool:
    """True while ``torch.compile`` traces the code (always False on torch < 2.3)."""
    check = getattr(torch.compiler, "is_compiling", None)
    return bool(check is not None and check())


def as_latent_map(p: Tensor) -> Tensor:
    """(B, nz) -> (B, nz, 1, 1) in channels-last layout, which the whole flow then keeps.

    Channels-last makes every fixed mixing one matrix product without copies
    and runs the convolutions several times faster on CPU.
    """
    return p[:, :, None, None].contiguous(memory_format=torch.channels_last)


def channel_matmul(weight: Tensor, x: Tensor) -> Tensor:
    """Apply a (out, in) matrix to the channels of ``x`` (B, in, H, W): a 1x1 convolution.

    Keeps the channels-last layout of the decoder (see ``FlowDecoder``). On
    1x1 feature maps a plain matrix product is fastest; on larger maps
    ``conv2d`` is (measured on CPU, bench/train_step.py).
    """
    if x.shape[2] == 1 and x.shape[3] == 1:
        return (x.permute(0, 2, 3, 1) @ weight.t()).permute(0, 3, 1, 2)
    return F.conv2d(x, weight.reshape(*weight.shape, 1, 1))
