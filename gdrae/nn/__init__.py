"""Transposable building blocks of the flow decoder (contract in :mod:`gdrae.nn.base`)."""
from gdrae.nn.activations import ReLU, Sigmoid
from gdrae.nn.base import Chain, Transposable, channel_matmul
from gdrae.nn.conv import Conv1x1, ConvTranspose, MixedConvTranspose
from gdrae.nn.coupling import AdditiveCoupling
from gdrae.nn.mixing import FixedMix, ProductMix, random_orthogonal
from gdrae.nn.reshape import ConcatZero, Squeeze, Unsqueeze

__all__ = [
    "AdditiveCoupling", "Chain", "ConcatZero", "Conv1x1", "ConvTranspose", "FixedMix", "MixedConvTranspose", "ProductMix", "ReLU",
    "Sigmoid", "Squeeze", "Transposable", "Unsqueeze", "channel_matmul", "random_orthogonal",
]
