"""The squeezed-coordinate products are the image decoder's own Jacobian products, rearranged."""
import pytest
import torch
import torch.nn.functional as F

from gdrae.models import image_decoder, sector2d_decoder
from gdrae.models.squeezed import SqueezedImageFlow, squeezed_mix
from gdrae.nn import AdditiveCoupling, Chain, FixedMix, Squeeze, Unsqueeze
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


def test_built_with_the_image_decoder_from_its_own_blocks():
    torch.manual_seed(0)
    dec = image_decoder(**TINY_IMAGE)
    assert dec.fast_jacobian is dec.squeezed
    fast_blocks = {id(m) for m in dec.squeezed.start} | {id(dec.squeezed.final)}
    fast_blocks |= {id(s.grow) for s in dec.squeezed.stages}
    assert fast_blocks <= {id(m) for m in dec.flow.modules()}  # references, not copies
    sector = sector2d_decoder(**TINY_SECTOR)
    assert sector.squeezed is None and sector.fast_jacobian is sector  # its chain is its fast form


def test_blocks_of_another_shape_are_refused_loudly():
    torch.manual_seed(0)
    dec = image_decoder(**TINY_IMAGE)
    fast = dec.squeezed
    stages = [(s.grow, [(mix, AdditiveCoupling(Chain([Squeeze(2), FixedMix(8, 4)])))]) for s in fast.stages for mix, _ in s.steps]
    with pytest.raises(ValueError, match="a coupling network expected Squeeze.2., MixedConvTranspose, ReLU, FixedMix, "
                                         "got Squeeze, FixedMix"):
        SqueezedImageFlow(fast.start, stages, fast.final, fast.sigmoid)
    with pytest.raises(ValueError, match="grow mixing expected a FixedMix, got Unsqueeze"):
        SqueezedImageFlow(fast.start, [(Unsqueeze(2), [])], fast.final, fast.sigmoid)
    with pytest.raises(ValueError, match="expected at least one upsampling stage"):
        SqueezedImageFlow(fast.start, [], fast.final, fast.sigmoid)
