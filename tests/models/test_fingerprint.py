"""A freshly built model at seed 0 is the one it has always been: its fixed orthogonal mixings in their
draw order, and its initial weights.

Checkpoints hold the mixings, but a run started again from its seed, and
every published result, rely on the order in which the decoder draws them
from torch's generator. A silent change of that order (a mixing built before
another) changes the numbers below. They were measured once; the tolerance
covers another BLAS/LAPACK (a sign-fixed QR is unique), not another order.
"""
from pathlib import Path

import pytest
import torch

from gdrae.config import load_config
from gdrae.models import build_model
from gdrae.nn import FixedMix

REPO = Path(__file__).resolve().parents[2]
SMALL_IMAGE = ["model.nz=3", "model.ncs=[8,4,4,4,4]", "model.hidden_ncs=[8,4,4,4,4]", "model.encoder_width=8",
               "model.sv_hidden=16"]

# config, overrides -> (Q[0, 0] of every FixedMix in module order, sum of squares of all parameters)
FINGERPRINTS = {
    "sector2dunif": ([], (
        [0.0068315649, -0.03734611, 0.0082722781, -0.027186995, 0.037518267],
        2098.47887)),
    "demo": (SMALL_IMAGE, (
        [0.01716076, 0.01716076, -0.33287698, 0.40053675, -0.74021935, -0.2423555, 0.3068262, 0.11642291,
         -0.54995316, -0.30154172, -0.87795824, 0.1832214, -0.46774068, 0.3585766, 0.052754041, -0.015399775,
         -0.22868785, 0.013328696, 0.49877995, -0.82038891],
        57.57285293)),
}


@pytest.mark.parametrize("name", FINGERPRINTS)
def test_a_model_built_at_seed_0_has_its_known_mixings_and_weights(name):
    overrides, (mixings, sum_of_squares) = FINGERPRINTS[name]
    torch.manual_seed(0)
    model = build_model(load_config(REPO / "configs" / f"{name}.yaml", overrides))
    with torch.no_grad():
        got = [float(m.q[0, 0]) for m in model.modules() if isinstance(m, FixedMix)]
        squares = float(sum((p.double() ** 2).sum() for p in model.parameters()))
    assert got == pytest.approx(mixings, rel=1e-5, abs=1e-7)
    assert squares == pytest.approx(sum_of_squares, rel=1e-5)
