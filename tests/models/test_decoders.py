import pytest
import torch

from gdrae.config import config_from_dict
from gdrae.models import build_model
from gdrae.nn.testing import assert_jacobian_products


def test_image_decoder_shapes(tiny_image_decoder):
    p = torch.randn(5, 3, dtype=torch.float64)
    assert tiny_image_decoder.out_shape == (4, 8, 8)
    y = tiny_image_decoder(p)
    assert y.shape == (5, 4, 8, 8) and ((y > 0) & (y < 1)).all()
    torch.testing.assert_close(y, torch.sigmoid(tiny_image_decoder.pre_activation(p)))


def test_whole_decoders_jacobian_products_match_autograd(tiny_image_decoder, tiny_sector_decoder):
    torch.manual_seed(1)
    assert_jacobian_products(tiny_image_decoder, torch.randn(4, 3, dtype=torch.float64))
    assert_jacobian_products(tiny_sector_decoder, torch.randn(4, 2, dtype=torch.float64))


def test_decoders_are_injective(tiny_image_decoder, tiny_sector_decoder):
    torch.manual_seed(2)
    for dec, nz in [(tiny_image_decoder, 3), (tiny_sector_decoder, 2)]:
        p = torch.randn(6, nz, dtype=torch.float64)
        torch.testing.assert_close(dec.inverse(dec(p)), p, atol=1e-6, rtol=1e-6)


def test_zero_padded_channels_stay_zero(tiny_image_decoder):
    """Undoing every block after ConcatZero leaves exactly zero in the padded half."""
    torch.manual_seed(3)
    layers = tiny_image_decoder.flow.layers
    h = tiny_image_decoder.pre_activation(torch.randn(4, 3, dtype=torch.float64))
    for layer in reversed(layers[3:]):
        h = layer.inverse(h)
    assert h.shape == (4, 8, 2, 2)
    assert h[:, 4:].abs().max() < 1e-6 and h[:, :4].abs().max() > 1e-2


def test_first_coupling_sees_p():
    """The first coupling's net starts by undoing the first mixing: it recovers p itself."""
    torch.manual_seed(4)
    dec = build_model(config_from_dict({})).decoder.double()
    layers = dec.flow.layers
    p = torch.randn(3, 10, dtype=torch.float64)
    h = layers[2](layers[1](layers[0](p[:, :, None, None])))
    a = h[:, :64]
    recovered = layers[3].net.layers[1](layers[3].net.layers[0](a))
    torch.testing.assert_close(recovered.flatten(1), p, atol=1e-5, rtol=1e-5)


def test_published_decoder_output_and_mixing_buffers():
    dec = build_model(config_from_dict({})).decoder
    assert dec.out_shape == (4, 64, 64)
    assert sum(b.numel() for b in dec.buffers()) == 2_363_168  # docs/model.md section 9


@pytest.mark.parametrize("which", ["tiny_image_decoder", "tiny_sector_decoder"])
def test_first_channels_only_equal_the_sliced_output(which, request):
    dec = request.getfixturevalue(which)
    torch.manual_seed(7)
    p = torch.randn(4, 3 if which == "tiny_image_decoder" else 2, dtype=torch.float64)
    torch.testing.assert_close(dec.pre_activation(p, 2), dec.pre_activation(p)[:, :2])


@pytest.mark.parametrize("which", ["tiny_image_decoder", "tiny_sector_decoder"])
def test_reconstruction_and_jacobian_product_in_one_pass_equal_them_apart(which, request):
    dec = request.getfixturevalue(which)
    for prm in dec.parameters():  # larger than the N(0, 0.02) start, so every slope matters
        torch.nn.init.normal_(prm, 0, 0.3)
    torch.manual_seed(8)
    nz = 3 if which == "tiny_image_decoder" else 2
    p, point, t = (torch.randn(4, nz, dtype=torch.float64) for _ in range(3))
    _, ctx = dec.linearize(point)
    logits, jt = dec.pre_activation_and_jvp(p, t, ctx, 2)
    torch.testing.assert_close(logits, dec.pre_activation(p, 2), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(jt, dec.jvp(t, ctx), atol=1e-12, rtol=1e-12)
    weights = list(dec.parameters())
    r1, r2 = torch.randn_like(logits), torch.randn_like(jt)
    got = torch.autograd.grad((logits * r1).sum() + (jt * r2).sum(), weights)
    want = torch.autograd.grad((dec.pre_activation(p, 2) * r1).sum() + (dec.jvp(t, ctx) * r2).sum(), weights)
    for g, e in zip(got, want):
        torch.testing.assert_close(g, e, atol=1e-12, rtol=1e-10)
