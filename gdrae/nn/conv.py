"""Trainable linear blocks of the coupling networks: transposed convolution, 1x1 convolution.

Their Jacobian is the weight alone (the bias is a shift), so ``jvp`` applies
the weight and ``vjp`` its adjoint; both record on a tape (gdrae.nn.base.Tape),
since the weight is trainable.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdrae.nn.base import Shared, Tape, Transposable, channel_matmul


class ConvTranspose(Transposable):
    """``nn.ConvTranspose2d`` with bias, PyTorch's default init (kept on purpose, docs/model.md section 3).

    Its adjoint is ``conv2d`` with the same weight, stride and padding.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding)

    def forward(self, x: Tensor) -> Tensor:
        if self._spreads_one_pixel(x):
            return self._patches(x) + self.conv.bias.view(1, -1, 1, 1)
        return self.conv(x)

    def jvp(self, v: Tensor, ctx: None, tape: Tape | None = None) -> Tensor:
        return Tape.product(tape, self._product, v)

    def _product(self, v: Tensor) -> Tensor:
        if self._spreads_one_pixel(v):
            return self._patches(v)
        c = self.conv
        return F.conv_transpose2d(v, c.weight, None, c.stride, c.padding)

    def vjp(self, u: Tensor, ctx: None, tape: Tape | None = None) -> Tensor:
        Tape.cotangent(tape, u)
        c = self.conv
        if u.shape[2:] == c.kernel_size and c.padding == (0, 0):  # the adjoint of _patches
            return (u.permute(0, 2, 3, 1).reshape(u.shape[0], -1) @ self._patch_matrix().t())[:, :, None, None]
        return F.conv2d(u, c.weight, None, c.stride, c.padding)

    def _spreads_one_pixel(self, x: Tensor) -> bool:
        """A 1x1 input without padding: each sample's output is its channel vector times the kernel."""
        return x.shape[2] == 1 and x.shape[3] == 1 and self.conv.padding == (0, 0)

    def _patches(self, x: Tensor) -> Tensor:
        """The transposed convolution of a 1x1 input as one matrix product, channels-last (the image
        decoder's first coupling: nz -> 256 channels at 4x4, where the convolution kernels are slower)."""
        kh, kw = self.conv.kernel_size
        return (x.flatten(1) @ self._patch_matrix()).view(x.shape[0], kh, kw, -1).permute(0, 3, 1, 2)

    def _patch_matrix(self) -> Tensor:
        """The kernel (in, out, kh, kw) as an (in, kh * kw * out) matrix: patches come out channels-last."""
        w = self.conv.weight
        return w.permute(0, 2, 3, 1).reshape(w.shape[0], -1)


class Conv1x1(Transposable):
    """Trainable 1x1 convolution with bias (``nn.Conv2d``, so the model's N(0, 0.02) init applies)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def _matrix(self) -> Tensor:
        return self.conv.weight.view(self.conv.out_channels, self.conv.in_channels)

    def forward(self, x: Tensor) -> Tensor:
        return channel_matmul(self._matrix(), x) + self.conv.bias.view(1, -1, 1, 1)

    def jvp(self, v: Tensor, ctx: None, tape: Tape | None = None) -> Tensor:
        return Tape.product(tape, lambda v: channel_matmul(self._matrix(), v), v)

    def stacked(self, x: Tensor, n: int, ctx: None = None) -> tuple[Tensor, None]:
        """One product for all rows; the bias only on the rows ``x[:n]`` (it is not in the Jacobian)."""
        y = channel_matmul(self._matrix(), x)
        y[:n] += self.conv.bias.view(1, -1, 1, 1)
        return y, None

    def vjp(self, u: Tensor, ctx: None, tape: Tape | None = None) -> Tensor:
        Tape.cotangent(tape, u)
        return channel_matmul(self._matrix().t(), u)


class MixedConvTranspose(Transposable):
    """A fixed 1x1 mixing followed by a transposed convolution, run as one transposed convolution.

    The same map as ``Chain([mix, conv])``: the mixing matrix (h, c) is
    contracted into the kernel (h, out, k, k), giving a kernel with c input
    channels. In the image decoder c < h (the mixing is an isometry that
    widens), so every pass of the decoder, its Jacobian products included,
    does fewer multiply-adds; the gradient still reaches ``conv``'s weight.

    ``linearize`` contracts the kernel once and hands it on in its context,
    so the constant products at that point (the power iteration's passes)
    share it; a product with autograd on contracts it again from the weight.
    """

    def __init__(self, mix: Transposable, conv: ConvTranspose):
        super().__init__()
        self.mix = mix
        self.conv = conv

    def fused_kernel(self) -> Tensor:
        """The kernel (c, out, k, k) of the mixing then the convolution, differentiable in the weight."""
        return torch.einsum("hc,hokl->cokl", self.mix.weight, self.conv.conv.weight)

    def forward(self, x: Tensor) -> Tensor:
        return self._transposed(x, self.fused_kernel(), self.conv.conv.bias)

    def linearize(self, x: Tensor) -> tuple[Tensor, Shared]:
        """The output at ``x`` and, as context, the fused kernel without a graph: kept channels-last (the
        decoder's layout, which the convolutions would otherwise copy it to on every call) and in the
        weight's dtype under autocast."""
        w = self.conv.conv.weight
        with torch.no_grad(), torch.autocast(w.device.type, enabled=False):
            kernel = self.fused_kernel().contiguous(memory_format=torch.channels_last)
        if torch.is_grad_enabled() and w.requires_grad:
            return self(x), Shared(kernel)
        return self._transposed(x, kernel, self.conv.conv.bias), Shared(kernel)

    def jvp(self, v: Tensor, ctx: Shared | None, tape: Tape | None = None) -> Tensor:
        return Tape.product(tape, lambda v: self._transposed(v, self._kernel(ctx), None), v)

    def vjp(self, u: Tensor, ctx: Shared | None, tape: Tape | None = None) -> Tensor:
        Tape.cotangent(tape, u)
        c = self.conv.conv
        return F.conv2d(u, self._kernel(ctx), None, c.stride, c.padding)

    def _kernel(self, ctx: Shared | None) -> Tensor:
        """The kernel of a product: the context's, unless autograd is to reach the weight (or there is none)."""
        if ctx is None or (torch.is_grad_enabled() and self.conv.conv.weight.requires_grad):
            return self.fused_kernel()
        return ctx.value

    def _transposed(self, x: Tensor, kernel: Tensor, bias: Tensor | None) -> Tensor:
        c = self.conv.conv
        return F.conv_transpose2d(x, kernel, bias, c.stride, c.padding)
