"""The networks disentanglement_lib trains its six VAE baselines with, in PyTorch.

beta-VAE, AnnealedVAE, FactorVAE, DIP-VAE-I/II and beta-TC-VAE all share one
Gaussian encoder and one Bernoulli (logit) decoder; FactorVAE adds a total
correlation discriminator. The layers, widths and TensorFlow initialisation
are dlib's, so a baseline trained here is comparable with the published runs.

Reference: google-research/disentanglement_lib, methods/shared/architectures.py
(conv_encoder, deconv_decoder, fc_encoder, fc_decoder, fc_discriminator);
Locatello et al., "Challenging Common Assumptions in the Unsupervised Learning
of Disentangled Representations", ICML 2019.

Layout. The convolutional pair computes the same numbers for inputs and
weights in either memory format (``torch.contiguous_format`` or
``torch.channels_last``): the flatten before the encoder's dense layer and
the reshape after the decoder's dense layer always read and write in
PyTorch's (C, H, W) order, whatever the layout of the tensor. Use
:meth:`ConvEncoder.channels_last` / :meth:`DeconvDecoder.channels_last` (or
``module.to(memory_format=torch.channels_last)`` and a channels-last input)
for the faster layout on CPU; the default is PyTorch's contiguous layout.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["ConvEncoder", "DeconvDecoder", "Discriminator", "FCDecoder", "FCEncoder", "glorot_init_"]


class ConvEncoder(nn.Module):
    """64x64 image (B, C, 64, 64) -> Gaussian posterior ``(mu, logvar)``, each (B, nz).

    Four ReLU convs (32 k4 s2, 32 k4 s2, 64 k2 s2, 64 k2 s2, TF 'same'
    padding: 1 for the k4 convs, none for the k2 ones) take 64x64 to 4x4,
    then dense 256 + ReLU and two dense heads. 309,204 parameters at
    C = 1, nz = 10.

    Reference: disentanglement_lib methods/shared/architectures.py, conv_encoder
    (Locatello et al. 2019).
    """

    def __init__(self, channels: int, nz: int):
        super().__init__()
        self.channels, self.nz = channels, nz
        self.conv1 = nn.Conv2d(channels, 32, 4, 2, 1)
        self.conv2 = nn.Conv2d(32, 32, 4, 2, 1)
        self.conv3 = nn.Conv2d(32, 64, 2, 2, 0)
        self.conv4 = nn.Conv2d(64, 64, 2, 2, 0)
        self.fc = nn.Linear(64 * 4 * 4, 256)
        self.mu = nn.Linear(256, nz)
        self.logvar = nn.Linear(256, nz)

    def channels_last(self) -> "ConvEncoder":
        """Put the conv weights in channels-last layout (in place; returns self); feed channels-last images."""
        return self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.relu(self.conv1(x))
        h = torch.relu(self.conv2(h))
        h = torch.relu(self.conv3(h))
        h = torch.relu(self.conv4(h))
        # flatten in (C, H, W) order whatever the layout (a 64 KiB copy for channels-last h)
        h = torch.relu(self.fc(h.flatten(1)))
        return self.mu(h), self.logvar(h)


class DeconvDecoder(nn.Module):
    """Latent z (B, nz) -> Bernoulli logits (B, C, 64, 64).

    Dense 256 and 1024 (ReLU), read as (64, 4, 4), then transposed convs k4
    s2 padding 1 to 64, 32, 32 (ReLU) and C channels (logits, no
    activation), doubling 4x4 to 64x64. 381,313 parameters at nz = 10, C = 1.

    Reference: disentanglement_lib methods/shared/architectures.py, deconv_decoder
    (Locatello et al. 2019).
    """

    def __init__(self, nz: int, channels: int):
        super().__init__()
        self.nz, self.channels = nz, channels
        self.fc1 = nn.Linear(nz, 256)
        self.fc2 = nn.Linear(256, 64 * 4 * 4)
        self.deconv1 = nn.ConvTranspose2d(64, 64, 4, 2, 1)
        self.deconv2 = nn.ConvTranspose2d(64, 32, 4, 2, 1)
        self.deconv3 = nn.ConvTranspose2d(32, 32, 4, 2, 1)
        self.deconv4 = nn.ConvTranspose2d(32, channels, 4, 2, 1)

    def channels_last(self) -> "DeconvDecoder":
        """Put the transposed-conv weights in channels-last layout (in place; returns self)."""
        return self.to(memory_format=torch.channels_last)

    def forward(self, z: Tensor) -> Tensor:
        h = torch.relu(self.fc1(z))
        h = torch.relu(self.fc2(h))
        h = h.view(-1, 64, 4, 4)  # (C, H, W) order; the convs convert to their weights' layout
        h = torch.relu(self.deconv1(h))
        h = torch.relu(self.deconv2(h))
        h = torch.relu(self.deconv3(h))
        return self.deconv4(h)


class FCEncoder(nn.Module):
    """Flattened input (B, in_dim) -> ``(mu, logvar)``, each (B, nz): two dense ReLU layers of ``hidden``.

    For the 2-D Sector2D points in_dim is 2; an image batch is flattened first.

    Reference: disentanglement_lib methods/shared/architectures.py, fc_encoder
    (Locatello et al. 2019).
    """

    def __init__(self, in_dim: int, nz: int, hidden: int = 1200):
        super().__init__()
        self.in_dim, self.nz = in_dim, nz
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.mu = nn.Linear(hidden, nz)
        self.logvar = nn.Linear(hidden, nz)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.relu(self.fc1(x.flatten(1)))
        h = torch.relu(self.fc2(h))
        return self.mu(h), self.logvar(h)


class FCDecoder(nn.Module):
    """Latent z (B, nz) -> outputs (B, out_dim): three dense tanh layers of ``hidden``, then a dense layer.

    Reference: disentanglement_lib methods/shared/architectures.py, fc_decoder
    (Locatello et al. 2019).
    """

    def __init__(self, nz: int, out_dim: int, hidden: int = 1200):
        super().__init__()
        self.nz, self.out_dim = nz, out_dim
        self.net = nn.Sequential(
            nn.Linear(nz, hidden), nn.Tanh(),
            nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class Discriminator(nn.Module):
    """FactorVAE's total-correlation discriminator: z (B, nz) -> logits (B, 2).

    ``layers`` dense layers of ``hidden`` units with leaky ReLU (slope 0.2),
    then dense 2. Returns the logits only; the FactorVAE loss takes the
    softmax (dlib's function also returns the probabilities).

    Reference: disentanglement_lib methods/shared/architectures.py, fc_discriminator
    (Locatello et al. 2019).
    """

    def __init__(self, nz: int, hidden: int = 1000, layers: int = 6):
        super().__init__()
        self.nz = nz
        mods: list[nn.Module] = []
        n_in = nz
        for _ in range(layers):
            mods += [nn.Linear(n_in, hidden), nn.LeakyReLU(0.2)]
            n_in = hidden
        mods.append(nn.Linear(n_in, 2))
        self.net = nn.Sequential(*mods)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z.flatten(1))


def glorot_init_(module: nn.Module) -> nn.Module:
    """TF's default initialisation, as dlib trains: Glorot-uniform weights, zero biases (in place; returns module).

    Applies to every nn.Linear, nn.Conv2d and nn.ConvTranspose2d in ``module``.
    The bound is sqrt(6 / (fan_in + fan_out)), fans being the kernel area
    times the input / output channels; TF and PyTorch swap the two fans of
    a transposed conv, which leaves their sum, and so the bound, the same.

    Reference: disentanglement_lib methods/shared/architectures.py (tf.layers
    defaults: glorot_uniform kernel, zeros bias); Locatello et al. 2019.
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def glorot_bound(weight: Tensor) -> float:
    """sqrt(6 / (fan_in + fan_out)) of a Linear / conv weight, with PyTorch's fan convention."""
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(weight)
    return math.sqrt(6.0 / (fan_in + fan_out))
