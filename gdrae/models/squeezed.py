"""The production path of the image decoder's Jacobian products: FlowDecoder's linearize/jvp/vjp, rearranged.

:class:`SqueezedImageFlow` computes the same maps as the image
:class:`gdrae.models.decoders.FlowDecoder` - its ``linearize``, ``jvp`` and
``vjp`` through the chain of blocks, equal to float rounding (tested in
float64, tests/models/test_squeezed.py) - with outputs in squeezed
coordinates and fewer passes over memory. The training step's power
iteration (``gdrae.models.jacobian``, route "matrix_free") runs its ten
constant passes through it.

Why it is faster: about half of each pass of the chain on CPU is not the
transposed convolutions but moving data: pixel shuffles, channel splits and
concatenations, and 1x1 mixings over few channels at high resolution. Here:

- Each stage's state is kept *squeezed*: (C, 2R, 2R) is held as
  Squeeze(2) of it, (4C, R, R), whose channel c*4 + offset is channel c at
  that offset. A coupling's first half a is then the first 2C channels, and
  Squeeze(2)(a), the input of its network, is that slice itself.
- A 1x1 mixing Q at 2R is the mixing kron(Q, I4) at R. So "grow mixing,
  Unsqueeze(2), step mixing" is one matrix, kron(Q_step, I4) Q_grow.
- The last stage's final mixing also runs squeezed, and the output stays
  squeezed: the power iteration only needs norms and inner products, which
  a permutation of the output coordinates does not change.
- Intermediates are owned by the pass, so slopes and coupling updates are
  applied in place: no concatenation and no extra copy.

It is built with the decoder, from the same blocks (``image_decoder``), and
refuses blocks of another shape (ValueError) rather than fall back. A
:class:`gdrae.nn.base.Tape` passed to ``jvp`` / ``vjp`` is handed to the
weighted blocks (the transposed convolutions), so it sees them as in the
chain. No autograd graph is built.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from gdrae.nn import AdditiveCoupling, FixedMix, MixedConvTranspose, ReLU, Sigmoid, Squeeze, Transposable
from gdrae.nn.activations import positive_mask
from gdrae.nn.base import Ctx, Tape, as_latent_map, channel_matmul


def squeezed_mix(q: Tensor) -> Tensor:
    """The 1x1 mixing at R, on squeezed coordinates, that equals the mixing ``q`` (out, in) at 2R."""
    return torch.kron(q.contiguous(), torch.eye(4, dtype=q.dtype, device=q.device))


@dataclass
class _Coupling:
    """One flow step's coupling: its network is Squeeze(2), a mixed transposed convolution, ReLU, a mixing."""

    conv: MixedConvTranspose
    out_mix: FixedMix


@dataclass
class _Stage:
    """Grow mixing + Unsqueeze(2), then (step mixing, coupling) pairs, all at the stage's squeezed resolution."""

    grow: FixedMix
    steps: list[tuple[FixedMix, _Coupling]]


class SqueezedImageFlow:
    """``linearize`` / ``jvp`` / ``vjp`` of an image FlowDecoder, with outputs in squeezed coordinates.

    ``start``: the initial blocks (first mixing, Unsqueeze, ConcatZero, first
    coupling), run as they are. ``stages``: per 2x upsampling, its grow
    mixing and its (step mixing, coupling) pairs, each coupling's network
    Squeeze(2), MixedConvTranspose, ReLU, FixedMix. ``final``: the last
    mixing; ``sigmoid``: the head. The output space is Squeeze(2) of the
    decoder's output (see :meth:`to_output_coordinates`). Holds references
    to the decoder's blocks, not copies, so it follows their weights and
    devices.
    """

    def __init__(self, start: list[Transposable], stages: list[tuple[FixedMix, list[tuple[FixedMix, AdditiveCoupling]]]],
                 final: FixedMix, sigmoid: Sigmoid):
        if not stages:
            raise ValueError("SqueezedImageFlow: expected at least one upsampling stage, got none")
        self.start = list(start)
        self.stages = [_Stage(_checked(grow, FixedMix, "grow mixing"),
                              [(_checked(mix, FixedMix, "step mixing"), _squeezed_coupling(coupling))
                               for mix, coupling in steps])
                       for grow, steps in stages]
        self.final = _checked(final, FixedMix, "final mixing")
        self.sigmoid = _checked(sigmoid, Sigmoid, "head")

    @staticmethod
    def to_output_coordinates(u: Tensor) -> Tensor:
        """A tensor of the decoder's output shape (B, C, H, W) in this object's output coordinates."""
        return F.pixel_unshuffle(u, 2).contiguous(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ passes

    @torch.no_grad()
    def linearize(self, p: Tensor) -> tuple[Tensor, Ctx]:
        """Squeezed output at ``p`` (B, nz) and the context: the start blocks' contexts, the stages' maps,
        the couplings' kernels and slopes, the sigmoid's slope."""
        x = as_latent_map(p)
        start_ctx = []
        for layer in self.start:
            x, c = layer.linearize(x)
            start_ctx.append(c)
        maps, kernels, masks = self._maps(), [], []

        def hidden(k: int, coupling: _Coupling, a: Tensor) -> Tensor:
            pre, kernel = coupling.conv.linearize(a)
            kernels.append(kernel)
            masks.append(positive_mask(pre))
            return pre.clamp_(min=0)

        x = self._through_stages(x, maps, hidden)
        y, slope = self.sigmoid.linearize(channel_matmul(maps[-1], x))
        return y, (start_ctx, maps, kernels, masks, slope)

    @torch.no_grad()
    def jvp(self, v: Tensor, ctx: Ctx, tape: Tape | None = None) -> Tensor:
        """J(p) v for v (B, nz), in squeezed output coordinates."""
        start_ctx, maps, kernels, masks, slope = ctx
        x = as_latent_map(v)
        for layer, c in zip(self.start, start_ctx):
            x = layer.jvp(x, c, tape)

        def hidden(k: int, coupling: _Coupling, a: Tensor) -> Tensor:
            return coupling.conv.jvp(a, kernels[k], tape).mul_(masks[k])

        x = self._through_stages(x, maps, hidden)
        return channel_matmul(maps[-1], x).mul_(slope)

    @torch.no_grad()
    def vjp(self, u: Tensor, ctx: Ctx, tape: Tape | None = None) -> Tensor:
        """J(p)^T u for u in squeezed output coordinates, (B, nz)."""
        start_ctx, maps, kernels, masks, slope = ctx
        squeezed = channel_matmul(maps[-1].t(), u * slope)
        k = len(masks)
        for s in reversed(range(len(self.stages))):
            stage = self.stages[s]
            if s < len(self.stages) - 1:
                squeezed = F.pixel_unshuffle(x, 2)
            for j in reversed(range(len(stage.steps))):
                coupling = stage.steps[j][1]
                k -= 1
                half = squeezed.shape[1] // 2
                hidden = channel_matmul(coupling.out_mix.weight.t(), F.pixel_shuffle(squeezed[:, half:], 2))
                squeezed[:, :half].add_(coupling.conv.vjp(hidden.mul_(masks[k]), kernels[k], tape))
                if j > 0:
                    squeezed = channel_matmul(maps[s][j].t(), squeezed)
            x = channel_matmul(maps[s][0].t(), squeezed)
        for layer, c in zip(reversed(self.start), reversed(start_ctx)):
            x = layer.vjp(x, c, tape)
        return x.flatten(1)

    def _through_stages(self, x: Tensor, maps: list, hidden: Callable[[int, _Coupling, Tensor], Tensor]) -> Tensor:
        """The walk through the stages shared by ``linearize`` and ``jvp``, squeezed output of the last stage.

        ``hidden(k, coupling, a)`` gives coupling k's network up to its output
        mixing (activated, or masked for a product) at its squeezed first half a.
        """
        k = 0
        for s, stage in enumerate(self.stages):
            squeezed = channel_matmul(maps[s][0], x)
            for j, (_, coupling) in enumerate(stage.steps):
                if j > 0:
                    squeezed = channel_matmul(maps[s][j], squeezed)
                half = squeezed.shape[1] // 2
                update = channel_matmul(coupling.out_mix.weight, hidden(k, coupling, squeezed[:, :half]))
                squeezed[:, half:].add_(F.pixel_unshuffle(update, 2))
                k += 1
            x = squeezed if s == len(self.stages) - 1 else F.pixel_shuffle(squeezed, 2)
        return x

    def _maps(self) -> list:
        """Per stage, its step mixings on squeezed coordinates, the first one times the grow mixing;
        last, the final mixing on squeezed coordinates."""
        maps: list = []
        for stage in self.stages:
            grow = stage.grow.weight
            if not stage.steps:
                maps.append([grow])
                continue
            first = squeezed_mix(stage.steps[0][0].weight) @ grow
            maps.append([first] + [squeezed_mix(mix.weight) for mix, _ in stage.steps[1:]])
        maps.append(squeezed_mix(self.final.weight))
        return maps


def _checked(block, kind: type, role: str):
    if not isinstance(block, kind):
        raise ValueError(f"SqueezedImageFlow: {role} expected a {kind.__name__}, got {type(block).__name__}")
    return block


def _squeezed_coupling(coupling: AdditiveCoupling) -> _Coupling:
    """The parts of a coupling the squeezed passes use; ValueError unless its network has the image flow's shape."""
    _checked(coupling, AdditiveCoupling, "flow step")
    layers = list(coupling.net.layers)
    kinds = [Squeeze, MixedConvTranspose, ReLU, FixedMix]
    if len(layers) != 4 or not all(isinstance(b, k) for b, k in zip(layers, kinds)) or layers[0].factor != 2:
        raise ValueError("SqueezedImageFlow: a coupling network expected Squeeze(2), MixedConvTranspose, ReLU, "
                         f"FixedMix, got {', '.join(type(b).__name__ for b in layers)}")
    return _Coupling(conv=layers[1], out_mix=layers[3])
