"""Injective flow decoders p -> Phi(p) built from transposable blocks (MODEL.md section 4).

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
from gdrae.nn.base import Ctx, as_latent_map, channel_matmul


def image_flow(nz: int, init_size: int, ncs: list[int], hidden_ncs: list[int], middle_ns_flows: list[int]) -> Chain:
    """The image flow (before the sigmoid): (B, nz, 1, 1) -> (B, ncs[-1], S, S), S = init_size * 2**len(middle_ns_flows)."""
    half0 = ncs[0] // 2
    mixed = half0 * init_size**2
    first = FixedMix(nz, mixed)
    undo_first = FixedMix(mixed, nz, q=first.q.t())  # its first nz rows are Q0[:, :nz]^T: recovers p
    layers: list[Transposable] = [
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
    for i, n_steps in enumerate(middle_ns_flows):
        nc = ncs[i + 1]
        layers += [FixedMix(ncs[i], 4 * nc), Unsqueeze(2)]
        for _ in range(n_steps):
            layers += [
                FixedMix(nc, nc),
                AdditiveCoupling(Chain([
                    Squeeze(2),
                    # FixedMix(2 * nc, hidden_ncs[i]) then ConvTranspose, run as one convolution
                    MixedConvTranspose(
                        FixedMix(2 * nc, hidden_ncs[i]), ConvTranspose(hidden_ncs[i], hidden_ncs[i + 1], 4, 2, 1)
                    ),
                    ReLU(),
                    FixedMix(hidden_ncs[i + 1], nc // 2),
                ])),
            ]
    layers.append(FixedMix(ncs[-1], ncs[-1]))
    return Chain(layers)


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
    logits); ``forward``, ``jvp`` and ``vjp`` are those of Phi itself, whose
    Jacobian the geometric terms use (all output channels).
    """

    def __init__(self, flow: Chain, out_shape: tuple[int, ...], sigmoid: bool):
        super().__init__()
        self.flow = flow
        self.out_shape = tuple(out_shape)
        self.head = Chain([Sigmoid()] if sigmoid else [])
        # the same Jacobian products with less data movement, for the power iteration (None: none)
        self.squeezed = SqueezedImageFlow.from_flow(flow, self.head) if sigmoid else None

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
        if isinstance(last, FixedMix):
            return channel_matmul(last.weight[:n_channels], x)
        return last(x)[:, :n_channels]

    def forward(self, p: Tensor) -> Tensor:
        return self.head(self.pre_activation(p))

    def linearize(self, p: Tensor) -> tuple[Tensor, Ctx]:
        h, flow_ctx = self.flow.linearize(as_latent_map(p))
        y, head_ctx = self.head.linearize(h)
        return y, (flow_ctx, head_ctx)

    def jvp(self, v: Tensor, ctx: Ctx) -> Tensor:
        return self.head.jvp(self.flow.jvp(as_latent_map(v), ctx[0]), ctx[1])

    def vjp(self, u: Tensor, ctx: Ctx) -> Tensor:
        u = u.contiguous(memory_format=torch.channels_last)
        return self.flow.vjp(self.head.vjp(u, ctx[1]), ctx[0]).flatten(1)

    def inverse(self, y: Tensor) -> Tensor:
        return self.flow.inverse(self.head.inverse(y)).flatten(1)


def image_decoder(nz: int, init_size: int, ncs: list[int], hidden_ncs: list[int], middle_ns_flows: list[int]) -> FlowDecoder:
    """Image Phi: p -> sigmoid(flow(p)), output (ncs[-1], S, S)."""
    size = init_size * 2 ** len(middle_ns_flows)
    flow = image_flow(nz, init_size, ncs, hidden_ncs, middle_ns_flows)
    return FlowDecoder(flow, (ncs[-1], size, size), sigmoid=True)


def sector2d_decoder(nz: int, input_nc: int, hidden_nc: int, n_flows: int) -> FlowDecoder:
    """Sector2D Phi: p -> flow(p), output (input_nc, 1, 1), no sigmoid."""
    return FlowDecoder(sector2d_flow(nz, input_nc, hidden_nc, n_flows), (input_nc, 1, 1), sigmoid=False)


