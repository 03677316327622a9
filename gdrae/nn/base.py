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
- ``jvp(v, ctx, tape=None) -> J(x) v`` and ``vjp(u, ctx, tape=None) -> J(x)^T u``:
  products with the Jacobian and its transpose, differentiable with respect
  to the block's weights (biases do not enter a Jacobian). Every block takes
  the ``tape`` (:class:`Tape`) the same way: containers (:class:`Chain`, the
  coupling, the decoder) hand it to their blocks, the blocks with weights in
  their Jacobian record on it (:meth:`Tape.product`, :meth:`Tape.cotangent`),
  the others ignore it.
- ``stacked(x, n, ctx=None) -> (y, ctx)``: ``forward`` of the rows ``x[:n]``
  and ``jvp`` of the rows ``x[n:]`` in one pass, so that both share every
  product with the weights (fewer, bigger matrix products). The rows
  ``x[n:]`` are k tangents per sample (row j·n + b belongs to sample b).
  Their Jacobian is the one at ``x[:n]`` (its context is returned, as
  ``linearize`` gives it), or, given ``ctx``, that of another point.
  Differentiable like ``forward`` and ``jvp``. The default runs
  ``linearize`` and ``jvp`` apart; linear blocks and the blocks of the
  published decoders run it as one.
- ``inverse(y) -> x``: a left inverse, only for the injective blocks that sit
  on the decoder's main path; the others raise ``TypeError``.

All tensors are batched: ``v`` has the input's shape, ``u`` the output's, and
each sample uses its own slopes. Every block is tested against autograd
through one shared helper (:func:`gdrae.nn.testing.assert_jacobian_products`).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

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

    def linearize(self, x: Tensor) -> tuple[Tensor, Ctx]:
        """Output at ``x`` and the detached context its Jacobian needs (None: linear)."""
        return self(x), None

    def jvp(self, v: Tensor, ctx: Ctx, tape: Tape | None = None) -> Tensor:
        """J(x) v for the point ``x`` that produced ``ctx``; ``tape`` records it (see :class:`Tape`)."""
        raise NotImplementedError(f"{type(self).__name__} must define jvp")

    def vjp(self, u: Tensor, ctx: Ctx, tape: Tape | None = None) -> Tensor:
        """J(x)^T u for the point ``x`` that produced ``ctx``; ``tape`` records it (see :class:`Tape`)."""
        raise NotImplementedError(f"{type(self).__name__} must define vjp")

    def stacked(self, x: Tensor, n: int, ctx: Ctx = None) -> tuple[Tensor, Ctx]:
        """forward of rows ``x[:n]``, jvp of rows ``x[n:]`` (at ``x[:n]``, or at ``ctx``'s point), and the context."""
        y, own = self.linearize(x[:n])
        ctx = own if ctx is None else ctx
        return torch.cat([y, self.jvp(x[n:], tile_ctx(ctx, x.shape[0] // n - 1))]), ctx

    def inverse(self, y: Tensor) -> Tensor:
        """Left inverse of ``forward``; only injective blocks have one."""
        raise TypeError(f"{type(self).__name__} is not injective: it has no left inverse")


class LinearBlock(Transposable):
    """A linear block without bias: its Jacobian is the block itself, so ``jvp`` is ``forward`` and a
    stacked pass is one ``forward`` of all rows. Subclasses define ``forward`` and ``vjp``."""

    def jvp(self, v: Tensor, ctx: None, tape: Tape | None = None) -> Tensor:
        return self(v)

    def stacked(self, x: Tensor, n: int, ctx: None = None) -> tuple[Tensor, None]:
        return self(x), None


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

    def jvp(self, v: Tensor, ctx: list, tape: Tape | None = None) -> Tensor:
        for layer, c in zip(self.layers, ctx):
            v = layer.jvp(v, c, tape)
        return v

    def vjp(self, u: Tensor, ctx: list, tape: Tape | None = None) -> Tensor:
        for layer, c in zip(reversed(self.layers), reversed(ctx)):
            u = layer.vjp(u, c, tape)
        return u

    def stacked(self, x: Tensor, n: int, ctx: list | None = None) -> tuple[Tensor, list]:
        ctxs = []
        for layer, c in zip(self.layers, ctx if ctx is not None else [None] * len(self.layers)):
            x, c = layer.stacked(x, n, c)
            ctxs.append(c)
        return x, ctxs

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
    tape to both passes (``vjp(c, ctx, tape)``, then ``jvp(t, ctx, tape)``).
    A block whose Jacobian holds trainable weights records itself:

    - in its ``vjp``, the cotangent arriving at its output
      (:meth:`cotangent`, appended to ``cotangents``);
    - in its ``jvp``, its output computed with autograd on, its input
      detached (:meth:`product`, appended to ``outputs``); the pass goes on
      detached.

    Then sum over blocks of <outputs[i], cotangents[i]> has the gradient
    <dJ/dweights t, c>, which is what backpropagating <J t, c> gives.
    Blocks are matched in pass order (the ``vjp`` visits them in reverse).
    """

    def __init__(self) -> None:
        self.cotangents: list[Tensor] = []
        self.outputs: list[Tensor] = []

    @staticmethod
    def product(tape: Tape | None, apply: Callable[[Tensor], Tensor], v: Tensor) -> Tensor:
        """``apply(v)``, a weighted block's Jacobian product; with a tape, its output is kept with a graph
        to the weights and returned detached."""
        if tape is None:
            return apply(v)
        # copies in and out: the pass may update its tensors in place, autograd keeps these.
        # A channel slice of a channels-last map is copied back to channels-last (the decoder's layout).
        layout = torch.channels_last if v.dim() == 4 else torch.contiguous_format
        with torch.enable_grad():
            out = apply(v.detach().clone(memory_format=layout))
        tape.outputs.append(out)
        return out.detach().clone()

    @staticmethod
    def cotangent(tape: Tape | None, u: Tensor) -> None:
        """Keep ``u``, the cotangent at a weighted block's output, when there is a tape."""
        if tape is not None:
            tape.cotangents.append(u)

    def pairing(self) -> Tensor:
        """Per sample, sum over blocks of <output, cotangent> (B,): differentiable in the weights."""
        if len(self.outputs) != len(self.cotangents):
            raise RuntimeError(f"Tape: {len(self.outputs)} jvp outputs against {len(self.cotangents)} vjp cotangents")
        total = 0
        for out, cot in zip(self.outputs, reversed(self.cotangents)):
            total = total + (out * cot).sum(dim=tuple(range(1, out.dim())))
        return total


def tile_ctx(ctx: Ctx, k: int) -> Ctx:
    """A Jacobian context for the batch repeated ``k`` times (sample j * B + b uses sample b's slopes);
    what every sample shares (None, a :class:`Shared` constant) stays as it is."""
    if ctx is None or isinstance(ctx, Shared):
        return ctx
    if isinstance(ctx, Tensor):
        return ctx.repeat(k, *([1] * (ctx.dim() - 1)))
    return type(ctx)(tile_ctx(c, k) for c in ctx)


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
