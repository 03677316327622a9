"""Fixed (semi-)orthogonal 1x1 channel mixing.

Reference: Pan, Niu, Zhang, AAAI 2023 (GDRAE), docs/model.md section 4.
"""
from __future__ import annotations

import torch
from torch import Tensor

from gdrae.nn.base import LinearBlock, Tape, channel_matmul


def random_orthogonal(n: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """A Haar-random n x n orthogonal matrix: QR of a Gaussian, signs fixed by diag(R).

    Draws from torch's default generator, so seeding torch fixes it.
    """
    q, r = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    return q.to(dtype)


class _ChannelMap(LinearBlock):
    """A fixed linear 1x1 channel map given by ``self.weight`` (out, in): its Jacobian is the weight itself."""

    weight: Tensor

    def forward(self, x: Tensor) -> Tensor:
        return channel_matmul(self.weight, x)

    def vjp(self, u: Tensor, ctx: None, tape: Tape | None = None) -> Tensor:
        return channel_matmul(self.weight.t(), u)


class FixedMix(_ChannelMap):
    """1x1 convolution by a fixed slice of an orthogonal matrix Q (a buffer, never trained).

    Q has size max(in, out); the weight is its first ``out`` rows and first
    ``in`` columns, so the map is an isometry when out >= in (then ``inverse``
    is an exact left inverse) and a co-isometry when out < in. Pass ``q`` to
    reuse a given matrix (the decoder's first coupling uses the transpose of
    the first mixing).
    """

    def __init__(self, in_channels: int, out_channels: int, q: Tensor | None = None):
        super().__init__()
        n = max(in_channels, out_channels)
        if q is None:
            q = random_orthogonal(n)
        if q.shape != (n, n):
            raise ValueError(f"FixedMix q: expected shape ({n}, {n}), got {tuple(q.shape)}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.register_buffer("q", q.clone())

    @property
    def weight(self) -> Tensor:
        """The (out, in) mixing matrix."""
        return self.q[: self.out_channels, : self.in_channels]

    def inverse(self, y: Tensor) -> Tensor:
        if self.out_channels < self.in_channels:
            raise TypeError(f"FixedMix({self.in_channels}, {self.out_channels}) reduces channels: no left inverse")
        return channel_matmul(self.weight.t(), y)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}"


class ProductMix(_ChannelMap):
    """Two fixed mixings in a row, ``second(first(x))``, run as one 1x1 mixing by their product matrix.

    The product (second.weight @ first.weight) is formed on every call, so it
    follows the buffers; it is cheap when ``first`` is thin (the Sector2D
    decoder's first mixing has nz = 2 input channels), and then every pass
    saves a full-width mixing.
    """

    def __init__(self, first: FixedMix, second: FixedMix):
        super().__init__()
        if second.in_channels != first.out_channels:
            raise ValueError(f"ProductMix: expected second.in_channels {first.out_channels}, got {second.in_channels}")
        self.first = first
        self.second = second

    @property
    def weight(self) -> Tensor:
        """The (second.out, first.in) product matrix, formed as the transpose of a thin-row product:
        first^T second^T has first.in rows, the shape CPU matrix kernels run fast (the (n, n) x (n, 2)
        form of the same product is tens of times slower there)."""
        return (self.first.weight.t() @ self.second.weight.t()).t()

    def inverse(self, y: Tensor) -> Tensor:
        return self.first.inverse(self.second.inverse(y))
