import math

import pytest
import torch
import torch.nn.functional as F

from gdrae.nn import (
    AdditiveCoupling, Chain, ConcatZero, Conv1x1, ConvTranspose, FixedMix, MixedConvTranspose, ProductMix, ReLU, Sigmoid, Squeeze,
    Unsqueeze,
)
from gdrae.nn.activations import positive_mask
from gdrae.nn.base import Tape
from gdrae.nn.testing import assert_jacobian_products


def _coupling():
    return AdditiveCoupling(Chain([Squeeze(2), FixedMix(8, 6), ConvTranspose(6, 3, 4, 2, 1), ReLU(), FixedMix(3, 2)]))


# (block factory, input shape): every block goes through the same autograd check.
BLOCKS = {
    "fixedmix_up": (lambda: FixedMix(3, 7), (2, 3, 4, 4)),
    "fixedmix_down": (lambda: FixedMix(7, 3), (2, 7, 4, 4)),
    "fixedmix_square": (lambda: FixedMix(5, 5), (2, 5, 1, 1)),
    "squeeze": (lambda: Squeeze(2), (2, 3, 4, 6)),
    "unsqueeze": (lambda: Unsqueeze(2), (2, 8, 3, 3)),
    "concat_zero": (lambda: ConcatZero(), (2, 3, 4, 4)),
    "conv_transpose_s2": (lambda: ConvTranspose(3, 4, 4, 2, 1), (2, 3, 4, 4)),
    "conv_transpose_1x1_to_4x4": (lambda: ConvTranspose(3, 5, 4, 1, 0), (2, 3, 1, 1)),
    "conv1x1": (lambda: Conv1x1(6, 4), (2, 6, 1, 1)),
    "mixed_conv_transpose": (lambda: MixedConvTranspose(FixedMix(3, 5), ConvTranspose(5, 4, 4, 2, 1)), (2, 3, 4, 4)),
    "product_mix": (lambda: ProductMix(FixedMix(2, 6), FixedMix(6, 6)), (2, 2, 1, 1)),
    "relu": (lambda: ReLU(), (2, 3, 4, 4)),
    "sigmoid": (lambda: Sigmoid(), (2, 3, 4, 4)),
    "coupling": (_coupling, (2, 4, 4, 4)),
    "chain": (lambda: Chain([FixedMix(4, 16), Unsqueeze(2), _coupling(), Sigmoid()]), (2, 4, 2, 2)),
}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_jacobian_products_match_autograd(name):
    torch.manual_seed(0)
    factory, shape = BLOCKS[name]
    layer = factory().double()
    x = torch.randn(*shape, dtype=torch.float64)
    assert_jacobian_products(layer, x)
    # channels-last inputs (the decoder's layout) give the same products
    assert_jacobian_products(layer, x.contiguous(memory_format=torch.channels_last))


def test_mixed_conv_transpose_is_the_mixing_then_the_convolution():
    torch.manual_seed(5)
    mix, conv = FixedMix(3, 5).double(), ConvTranspose(5, 4, 4, 2, 1).double()
    fused = MixedConvTranspose(mix, conv)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(fused(x), conv(mix(x)))
    fused(x).square().sum().backward()
    assert conv.conv.weight.grad.abs().sum() > 0 and conv.conv.bias.grad.abs().sum() > 0


def test_conv_transpose_on_one_pixel_is_the_convolution():
    """The 1x1-input shortcut (a matrix product) against PyTorch's transposed convolution and its adjoint."""
    torch.manual_seed(4)
    block = ConvTranspose(3, 5, 4, 1, 0).double()
    c = block.conv
    x = torch.randn(2, 3, 1, 1, dtype=torch.float64)
    u = torch.randn(2, 5, 4, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(block(x), c(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(block.jvp(x, None), F.conv_transpose2d(x, c.weight), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(block.vjp(u, None), F.conv2d(u, c.weight), rtol=1e-12, atol=1e-12)
    assert block(x).is_contiguous(memory_format=torch.channels_last)  # the decoder's layout
    block(x).square().sum().backward()
    torch.testing.assert_close(c.bias.grad, (2 * c(x)).sum(dim=(0, 2, 3)))



def test_mixed_conv_transpose_kernel_is_contracted_once_per_point_and_follows_weight_updates():
    torch.manual_seed(7)
    fused = MixedConvTranspose(FixedMix(3, 5), ConvTranspose(5, 4, 4, 2, 1)).double()
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    v = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        _, ctx = fused.linearize(x)  # the kernel, contracted once for the constant products at x
        torch.testing.assert_close(ctx.value, fused.fused_kernel())
        before = fused.jvp(v, ctx)
        fused.conv.conv.weight.add_(0.5)  # as an optimizer step does
        _, ctx = fused.linearize(x)  # the next step linearizes again
        after = fused.jvp(v, ctx)
    assert not torch.allclose(before, after)
    reference = Chain([fused.mix, fused.conv])
    torch.testing.assert_close(after, reference.jvp(v, [None, None]))


def test_product_mix_is_the_two_mixings_in_a_row():
    torch.manual_seed(6)
    first, second = FixedMix(2, 6).double(), FixedMix(6, 6).double()
    both = ProductMix(first, second)
    x = torch.randn(3, 2, 1, 1, dtype=torch.float64)
    torch.testing.assert_close(both(x), second(first(x)))
    torch.testing.assert_close(both.inverse(both(x)), x)


def test_helper_detects_a_wrong_transpose():
    class WrongVjp(FixedMix):
        def vjp(self, u, ctx, tape=None):
            return super().vjp(u, ctx, tape) * 1.001

    layer = WrongVjp(3, 5).double()
    with pytest.raises(AssertionError, match="vjp"):
        assert_jacobian_products(layer, torch.randn(2, 3, 2, 2, dtype=torch.float64))


def test_helper_detects_a_block_that_does_not_record_on_the_tape():
    class Unrecorded(Conv1x1):
        def vjp(self, u, ctx, tape=None):
            return super().vjp(u, ctx)  # the cotangent never reaches the tape

    torch.manual_seed(2)
    with pytest.raises((AssertionError, RuntimeError), match="tape|Tape"):
        assert_jacobian_products(Chain([Unrecorded(3, 4), ReLU(), Conv1x1(4, 3)]).double(),
                                 torch.randn(2, 3, 1, 1, dtype=torch.float64))


def test_helper_detects_a_stacked_pass_that_adds_the_bias_to_the_tangents():
    class BiasEverywhere(Conv1x1):
        def stacked(self, x, n, ctx=None):
            return self(x), None

    torch.manual_seed(4)
    with pytest.raises(AssertionError, match="stacked"):
        assert_jacobian_products(BiasEverywhere(3, 4).double(), torch.randn(2, 3, 1, 1, dtype=torch.float64))


@pytest.mark.parametrize("n_in,n_out", [(3, 7), (7, 3), (5, 5)])
def test_fixed_mix_is_a_fixed_semi_orthogonal_buffer(n_in, n_out):
    torch.manual_seed(1)
    mix = FixedMix(n_in, n_out).double()
    w = mix.weight
    assert w.shape == (n_out, n_in)
    gram = w.t() @ w if n_out >= n_in else w @ w.t()
    # drawn in float64, stored in float32: orthogonal to float32 precision
    torch.testing.assert_close(gram, torch.eye(min(n_in, n_out), dtype=torch.float64), atol=1e-6, rtol=0)
    assert list(mix.parameters()) == []
    assert mix.q.shape == (max(n_in, n_out),) * 2 and "q" in mix.state_dict()


def test_fixed_mix_is_drawn_from_the_seed():
    torch.manual_seed(3)
    a = FixedMix(4, 6).q
    torch.manual_seed(3)
    assert torch.equal(a, FixedMix(4, 6).q)


def test_squeeze_channel_order():
    s = 2
    x = torch.arange(2 * 4 * 4, dtype=torch.float64).view(1, 2, 4, 4)
    y = Squeeze(s)(x)
    assert y.shape == (1, 8, 2, 2)
    for c in range(2):
        for i in range(s):
            for j in range(s):
                torch.testing.assert_close(y[0, c * s * s + i * s + j], x[0, c, i::s, j::s])
    torch.testing.assert_close(Unsqueeze(s)(y), x)


def test_concat_zero_pads_with_zeros():
    x = torch.randn(2, 3, 2, 2)
    y = ConcatZero()(x)
    assert y.shape == (2, 6, 2, 2) and torch.equal(y[:, :3], x) and not y[:, 3:].any()


def test_coupling_output_is_a_plus_net():
    torch.manual_seed(2)
    layer = _coupling().double()
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    y = layer(x)
    torch.testing.assert_close(y[:, :2], x[:, :2])
    torch.testing.assert_close(y[:, 2:], x[:, 2:] + layer.net(x[:, :2]))


@pytest.mark.parametrize(
    "factory,shape",
    [
        (lambda: FixedMix(3, 7), (2, 3, 2, 2)),
        (lambda: FixedMix(5, 5), (2, 5, 2, 2)),
        (lambda: Squeeze(2), (2, 3, 4, 4)),
        (lambda: Unsqueeze(2), (2, 8, 2, 2)),
        (lambda: ConcatZero(), (2, 3, 2, 2)),
        (lambda: Sigmoid(), (2, 3, 2, 2)),
        (_coupling, (2, 4, 4, 4)),
    ],
)
def test_injective_blocks_have_left_inverses(factory, shape):
    torch.manual_seed(4)
    layer = factory().double()
    x = torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(layer.inverse(layer(x)), x, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    "layer",
    [ReLU(), FixedMix(7, 3), ConvTranspose(3, 4, 4, 2, 1), Conv1x1(3, 3),
     MixedConvTranspose(FixedMix(3, 5), ConvTranspose(5, 4, 4, 2, 1))],
)
def test_non_injective_blocks_have_no_inverse(layer):
    with pytest.raises(TypeError, match="left inverse"):
        layer.inverse(torch.randn(1, 3, 2, 2))


def test_activation_slopes_are_detached_and_scale_both_products():
    x = torch.tensor([[-1.0, 2.0]], requires_grad=True).view(1, 2, 1, 1)
    v = torch.tensor([[5.0, 7.0]]).view(1, 2, 1, 1)
    relu = ReLU()
    y, slope = relu.linearize(x)
    assert y.flatten().tolist() == [0.0, 2.0] and relu(x).flatten().tolist() == [0.0, 2.0]
    assert not slope.requires_grad and slope.flatten().tolist() == [0.0, 1.0]
    assert relu.jvp(v, slope).flatten().tolist() == [0.0, 7.0] and relu.vjp(v, slope).flatten().tolist() == [0.0, 7.0]
    sigmoid = Sigmoid()
    y, s = sigmoid.linearize(x)
    expected = torch.tensor([math.exp(1) / (1 + math.exp(1)) ** 2, math.exp(-2) / (1 + math.exp(-2)) ** 2])
    assert not s.requires_grad
    torch.testing.assert_close(s.flatten(), expected)
    torch.testing.assert_close(y.flatten(), torch.tensor([1 / (1 + math.e), 1 / (1 + math.exp(-2))]))
    torch.testing.assert_close(sigmoid.jvp(v, s).flatten(), expected * v.flatten())
    torch.testing.assert_close(sigmoid.vjp(v, s).flatten(), expected * v.flatten())


def test_tape_pairing_has_the_gradient_of_the_jacobian_product():
    torch.manual_seed(8)
    chain = Chain([FixedMix(4, 16), Unsqueeze(2), _coupling(), _coupling(), Sigmoid()]).double()
    x = torch.randn(3, 4, 2, 2, dtype=torch.float64)
    t = torch.randn_like(x)
    _, ctx = chain.linearize(x)
    c = torch.randn_like(chain(x))
    weights = [prm for name, prm in chain.named_parameters() if name.endswith("weight")]
    expected = torch.autograd.grad((chain.jvp(t, ctx) * c).sum(), weights)

    tape = Tape()
    with torch.no_grad():
        chain.vjp(c, ctx, tape)
        out = chain.jvp(t, ctx, tape)
    torch.testing.assert_close(out, chain.jvp(t, ctx))  # the pass itself is unchanged
    assert len(tape.outputs) == len(tape.cotangents) == 2  # the two couplings' convolutions
    got = torch.autograd.grad(tape.pairing().sum(), weights)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12)


def test_tape_refuses_unmatched_passes():
    torch.manual_seed(9)
    chain = Chain([_coupling()]).double()
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    _, ctx = chain.linearize(x)
    tape = Tape()
    with torch.no_grad():
        chain.jvp(x, ctx, tape)
    assert chain.jvp(x, ctx) is not None and len(tape.outputs) == 1  # a pass without the tape records nothing
    with pytest.raises(RuntimeError, match="1 jvp outputs against 0 vjp cotangents"):
        tape.pairing()


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_positive_mask_equals_the_plain_comparison(monkeypatch, layout, dtype):
    """The fast path positive_mask (torch.gt with out=, gdrae.fastpaths) against (x > 0).to(x.dtype)."""
    x = torch.randn(3, 4, 5, 6).to(dtype).contiguous(memory_format=layout)
    x[0, 0, 0, :3] = torch.tensor([0.0, -0.0, float("nan")], dtype=dtype)
    monkeypatch.delenv("GDRAE_PLAIN", raising=False)
    fast = positive_mask(x)
    monkeypatch.setenv("GDRAE_PLAIN", "positive_mask")
    plain = positive_mask(x)
    assert torch.equal(fast, plain) and torch.equal(plain, (x > 0).to(dtype))
    assert fast.dtype == plain.dtype == dtype and not fast.requires_grad
    assert fast.is_contiguous(memory_format=layout) and plain.is_contiguous(memory_format=layout)
