"""Tiny float64 models with every kind of stage of the published ones, for dense checks."""
import torch
from torch import nn

from gdrae.models import GDRAE, PointEncoder, SingularValuePredictor, image_decoder, init_weights_, sector2d_decoder

# A tiny image flow with every kind of stage of the real one: 8x8 output, 4 channels.
TINY_IMAGE = dict(nz=3, init_size=2, ncs=[8, 4, 4], hidden_ncs=[6, 4, 4], middle_ns_flows=[1, 1])
TINY_SECTOR = dict(nz=2, input_nc=6, hidden_nc=5, n_flows=2)



def tiny_gdrae(kind: str) -> GDRAE:
    """A float64 GDRAE small enough for dense checks; the image variant takes 8x8 images
    (the published encoders need 64x64, so it uses a linear one)."""
    torch.manual_seed(0)
    if kind == "image":
        encoder, decoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), image_decoder(**TINY_IMAGE)
        model = GDRAE("image", encoder, decoder, SingularValuePredictor(3, 8), nz=3, data_channels=1,
                      sigma=0.01, prior_radius=1.0, sn_power=5)
    else:
        encoder, decoder = PointEncoder(2, hidden=8), sector2d_decoder(**TINY_SECTOR)
        model = GDRAE("sector2d", encoder, decoder, SingularValuePredictor(2, 8), nz=2, data_channels=2,
                      sigma=0.0, prior_radius=1.0, sn_power=5)
    init_weights_(model)
    return model.double()
