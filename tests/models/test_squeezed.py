"""The squeezed-coordinate products are the image decoder's own Jacobian products, rearranged."""
import pytest
import torch
import torch.nn.functional as F

from gdrae.models import image_decoder, sector2d_decoder
from gdrae.models.squeezed import SqueezedImageFlow, squeezed_mix
from gdrae.nn import FixedMix, Unsqueeze
from tiny_models import TINY_IMAGE, TINY_SECTOR


def _decoder(middle_ns_flows):
    torch.manual_seed(0)
    dec = image_decoder(**{**TINY_IMAGE, "middle_ns_flows": middle_ns_flows}).double()
    for prm in dec.parameters():  # larger than the default start, so every term matters
        torch.nn.init.normal_(prm, 0, 0.3)
    return dec


def test_squeezed_mix_is_the_mixing_one_level_up():
    torch.manual_seed(1)
    mix = FixedMix(3, 5).double()
    x = torch.randn(2, 3, 4, 6, dtype=torch.float64)
    torch.testing.assert_close(F.conv2d(F.pixel_unshuffle(x, 2), squeezed_mix(mix.weight)[..., None, None]),
                               F.pixel_unshuffle(mix(x), 2))


@pytest.mark.parametrize("middle_ns_flows", [[1, 1], [2, 1], [0, 2]])
def test_products_equal_the_reference_chain(middle_ns_flows):
    dec = _decoder(middle_ns_flows)
    fast = dec.squeezed
    assert isinstance(fast, SqueezedImageFlow)
    torch.manual_seed(2)
    p = torch.randn(4, 3, dtype=torch.float64)
    v = torch.randn(4, 3, dtype=torch.float64)
    u = torch.randn(4, *dec.out_shape, dtype=torch.float64)
    y, ctx = dec.linearize(p)
    y_fast, ctx_fast = fast.linearize(p)
    squeeze = fast.to_output_coordinates
    torch.testing.assert_close(y_fast, squeeze(y), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(fast.jvp(v, ctx_fast), squeeze(dec.jvp(v, ctx)), atol=1e-12, rtol=1e-12)
    u_fast = squeeze(u)
    kept = u_fast.clone()
    torch.testing.assert_close(fast.vjp(u_fast, ctx_fast), dec.vjp(u, ctx), atol=1e-12, rtol=1e-12)
    assert torch.equal(u_fast, kept)  # inputs are not updated in place


def test_only_the_image_flow_shape_is_recognised():
    torch.manual_seed(0)
    assert sector2d_decoder(**TINY_SECTOR).squeezed is None
    flow = image_decoder(**TINY_IMAGE).flow
    broken = type(flow)([layer for layer in flow.layers if not isinstance(layer, Unsqueeze)])
    assert SqueezedImageFlow.from_flow(broken, image_decoder(**TINY_IMAGE).head) is None
