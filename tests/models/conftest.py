import pytest
import torch

from gdrae.models import image_decoder, sector2d_decoder
from tiny_models import TINY_IMAGE, TINY_SECTOR


@pytest.fixture(autouse=True)
def _single_thread(one_thread):
    """Every test here runs on one thread (the fixture is in tests/conftest.py)."""


@pytest.fixture
def tiny_image_decoder():
    torch.manual_seed(0)
    return image_decoder(**TINY_IMAGE).double()


@pytest.fixture
def tiny_sector_decoder():
    torch.manual_seed(0)
    dec = sector2d_decoder(**TINY_SECTOR).double()
    # the published 1x1 convs start at N(0, 0.02); larger weights make the check meaningful
    for prm in dec.parameters():
        torch.nn.init.normal_(prm, 0, 0.5)
    return dec
