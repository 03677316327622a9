"""Injective flow decoders p -> Phi(p) built from transposable blocks (docs/model.md section 4).

Reference: Pan, Niu, Zhang, AAAI 2023 (GDRAE), injective flow decoder.
"""
from __future__ import annotations

import torch
from torch import Tensor

from gdrae.models.squeezed import SqueezedImageFlow
from gdrae.nn import (
    AdditiveCoupling, Chain, ConcatZero, Conv1x1, ConvTranspose, FixedMix, MixedConvTranspose, ProductMix, ReLU, Sigmoid, Squeeze,
    Transposable, Unsqueeze,
)
from gdrae.nn.base import Ctx, Tape, as_latent_map, channel_matmul


def _image_blocks(nz: int, init_size: int, ncs: list[int], hidden_ncs: list[int], middle_ns_flows: list[int]):
    """The blocks of the image flow, grouped as both the chain and the squeezed products read them:
    the initial blocks, per 2x upsampling (grow mixing, [(step mixing, coupling), ...]), the final mixing."""
    half0 = ncs[0] // 2
    mixed = half0 * init_size**2
    first = FixedMix(nz, mixed)
    undo_first = FixedMix(mixed, nz, q=first.q.t())  # its first nz rows are Q0[:, :nz]^T: recovers p
    start: list[Transposable] = [
        first,
        Unsqueeze(init_size),
        ConcatZero(),
        AdditiveCoupling(Chain([
            Squeeze(init_size),
            undo_first,
            ConvTranspose(nz, hidden_ncs[0], init_size, 1, 0),
            ReLU(),
            FixedMix(hidden_ncs[0], half0),
        ])),
    ]
    stages = []
    for i, n_steps in enumerate(middle_ns_flows):
        nc = ncs[i + 1]
        grow = FixedMix(ncs[i], 4 * nc)  # drawn before the stage's steps: the published construction order
        steps = [
            (FixedMix(nc, nc), AdditiveCoupling(Chain([
                Squeeze(2),
                # FixedMix(2 * nc, hidden_ncs[i]) then ConvTranspose, run as one convolution
                MixedConvTranspose(
                    FixedMix(2 * nc, hidden_ncs[i]), ConvTranspose(hidden_ncs[i], hidden_ncs[i + 1], 4, 2, 1)
                ),
                ReLU(),
                FixedMix(hidden_ncs[i + 1], nc // 2),
            ])))
            for _ in range(n_steps)
        ]
        stages.append((grow, steps))
    return start, stages, FixedMix(ncs[-1], ncs[-1])


def _image_chain(start: list[Transposable], stages: list, final: FixedMix) -> Chain:
    """The chain of the image flow: start blocks; per stage grow mixing, Unsqueeze(2), (mixing, coupling) pairs; final."""
    layers = list(start)
    for grow, steps in stages:
        layers += [grow, Unsqueeze(2)]
        for mix, coupling in steps:
            layers += [mix, coupling]
    return Chain(layers + [final])


def sector2d_flow(nz: int, input_nc: int, hidden_nc: int, n_flows: int) -> Chain:
    """The Sector2D flow: (B, nz, 1, 1) -> (B, input_nc, 1, 1), couplings with 1x1-conv MLPs.

    The first mixing (nz -> input_nc) and the first flow step's mixing run as
    one thin product matrix (``ProductMix``), the same map.
    """
    first = FixedMix(nz, input_nc)
    layers: list[Transposable] = [] if n_flows else [first]
    for step in range(n_flows):
        mix = FixedMix(input_nc, input_nc)
        layers.append(ProductMix(first, mix) if step == 0 else mix)
        layers.append(
            AdditiveCoupling(Chain([Conv1x1(input_nc // 2, hidden_nc), ReLU(), Conv1x1(hidden_nc, input_nc // 2)]))
        )
    layers.append(FixedMix(input_nc, input_nc))
    return Chain(layers)


class FlowDecoder(Transposable):
    """Phi: p (B, nz) -> (B, *out_shape), the flow followed by a sigmoid for images.

    ``pre_activation`` is the flow output before the sigmoid (reconstruction
    logits); ``forward``, ``linearize``, ``jvp`` and ``vjp`` are those of Phi
    itself, through the chain of blocks: the Jacobian operator the geometric
    terms use (all output channels), in its plain form. ``fast_jacobian`` is
    the same operator as the training step runs it (for images the squeezed
    products, built with the decoder; otherwise the decoder itself).
    """

    def __init__(self, flow: Chain, out_shape: tuple[int, ...], sigmoid: Sigmoid | None = None,
                 squeezed: SqueezedImageFlow | None = None):
        super().__init__()
        self.flow = flow
        self.out_shape = tuple(out_shape)
        self.head = Chain([sigmoid] if sigmoid is not None else [])
        self.squeezed = squeezed

    @property
    def fast_jacobian(self) -> "FlowDecoder | SqueezedImageFlow":
        """The Jacobian operator of the production route (``linearize``, ``jvp``, ``vjp``,
        ``to_output_coordinates``): the squeezed products when built, else this decoder."""
        return self if self.squeezed is None else self.squeezed

    def pre_activation(self, p: Tensor, n_channels: int | None = None) -> Tensor:
        """Flow output before the final sigmoid, (B, *out_shape), or only its first ``n_channels``.

        With ``n_channels`` and a flow that ends in a fixed mixing (both
        published decoders), that mixing computes only the rows needed: the
        reconstruction uses 2 of Sector2D's 1024 outputs.
        """
        if n_channels is None:
            return self.flow(as_latent_map(p))
        *body, last = self.flow.layers
        x = as_latent_map(p)
        for layer in body:
            x = layer(x)
        return _first_channels(last, x, n_channels)

    def pre_activation_and_jvp(self, p: Tensor, t: Tensor, ctx: Ctx, n_channels: int) -> tuple[Tensor, Tensor]:
        """``pre_activation(p, n_channels)`` and ``jvp(t, ctx)`` in one stacked pass, with autograd.

        The reconstruction at p and the Jacobian product at another point
        (``ctx``'s) share every product with the weights but the last
        mixing's, where the reconstruction keeps its first ``n_channels``
        rows only. One backward then runs products of twice the rows.
        """
        n = p.shape[0]
        *body, last = self.flow.layers
        x = as_latent_map(torch.cat([p, t]))
        for layer, c in zip(body, ctx[0]):
            x, _ = layer.stacked(x, n, c)
        logits = _first_channels(last, x[:n], n_channels)
        return logits, self.head.jvp(last.jvp(x[n:], ctx[0][-1]), ctx[1])

    def stacked(self, p: Tensor, n: int, ctx: Ctx = None) -> tuple[Tensor, Ctx]:
        flow_ctx, head_ctx = (None, None) if ctx is None else ctx
        h, flow_ctx = self.flow.stacked(as_latent_map(p), n, flow_ctx)
        y, head_ctx = self.head.stacked(h, n, head_ctx)
        return y, (flow_ctx, head_ctx)

    def forward(self, p: Tensor) -> Tensor:
        return self.head(self.pre_activation(p))

    def linearize(self, p: Tensor) -> tuple[Tensor, Ctx]:
        h, flow_ctx = self.flow.linearize(as_latent_map(p))
        y, head_ctx = self.head.linearize(h)
        return y, (flow_ctx, head_ctx)

    def jvp(self, v: Tensor, ctx: Ctx, tape: Tape | None = None) -> Tensor:
        return self.head.jvp(self.flow.jvp(as_latent_map(v), ctx[0], tape), ctx[1], tape)

    def vjp(self, u: Tensor, ctx: Ctx, tape: Tape | None = None) -> Tensor:
        u = u.contiguous(memory_format=torch.channels_last)
        return self.flow.vjp(self.head.vjp(u, ctx[1], tape), ctx[0], tape).flatten(1)

    @staticmethod
    def to_output_coordinates(u: Tensor) -> Tensor:
        """A tensor of the output shape in this operator's output coordinates: itself."""
        return u

    def inverse(self, y: Tensor) -> Tensor:
        return self.flow.inverse(self.head.inverse(y)).flatten(1)


def _first_channels(last: Transposable, x: Tensor, n_channels: int) -> Tensor:
    """The first ``n_channels`` output channels of the flow's last block at its input ``x``: a fixed
    mixing (both published decoders) computes only those rows."""
    if isinstance(last, FixedMix):
        return channel_matmul(last.weight[:n_channels], x)
    return last(x)[:, :n_channels]


def image_decoder(nz: int, init_size: int, ncs: list[int], hidden_ncs: list[int], middle_ns_flows: list[int]) -> FlowDecoder:
    """Image Phi: p -> sigmoid(flow(p)), output (ncs[-1], S, S), with its squeezed Jacobian products."""
    size = init_size * 2 ** len(middle_ns_flows)
    start, stages, final = _image_blocks(nz, init_size, ncs, hidden_ncs, middle_ns_flows)
    sigmoid = Sigmoid()
    squeezed = SqueezedImageFlow(start, stages, final, sigmoid)  # the same blocks, not copies
    return FlowDecoder(_image_chain(start, stages, final), (ncs[-1], size, size), sigmoid, squeezed)


def sector2d_decoder(nz: int, input_nc: int, hidden_nc: int, n_flows: int) -> FlowDecoder:
    """Sector2D Phi: p -> flow(p), output (input_nc, 1, 1), no sigmoid."""
    return FlowDecoder(sector2d_flow(nz, input_nc, hidden_nc, n_flows), (input_nc, 1, 1))


