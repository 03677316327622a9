"""Singular-value predictor: p -> log singular values that sum to zero (docs/model.md section 5).

Reference: Pan, Niu, Zhang, AAAI 2023 (GDRAE), section on the predicted singular values.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from gdrae.models.encoders import mlp


class SingularValuePredictor(nn.Module):
    """MLP nz -> hidden -> hidden -> nz-1, plus minus their sum as the last entry.

    The predicted singular values exp(logsv) thus have product 1; the overall
    scale of the decoder lives in the capacity parameter.
    """

    def __init__(self, nz: int, hidden: int = 1024):
        super().__init__()
        self.net = mlp([nz, hidden, hidden, nz - 1])

    def forward(self, p: Tensor) -> Tensor:
        head = self.net(p)
        return torch.cat([head, -head.sum(dim=1, keepdim=True)], dim=1)
