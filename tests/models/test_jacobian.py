import math

import pytest
import torch
from torch import nn

from gdrae.losses import spectral_loss
from gdrae.models import SingularValuePredictor
from gdrae.models.jacobian import (
    dense_jacobian, geometry_diagnostics, nmae, normalize, spectral_estimate, transpose_matrix,
)


def _scaled_dense(dec, p, w):
    """Dense A = J_Phi(p) diag(w), (B, D, nz), from autograd."""
    return dense_jacobian(dec, p) * w[:, None, :]


@pytest.mark.parametrize("which", ["tiny_image_decoder", "tiny_sector_decoder"])
def test_power_iteration_converges_to_top_squared_singular_value(which, request):
    dec = request.getfixturevalue(which)
    torch.manual_seed(5)
    nz = 3 if which == "tiny_image_decoder" else 2
    p = torch.randn(4, nz, dtype=torch.float64)
    # column scales spread the singular values, so convergence is fast enough to test
    w = (torch.rand(4, nz, dtype=torch.float64) * 0.2 + 0.9) * torch.tensor([2.0, 1.0, 0.5][:nz], dtype=torch.float64)
    u0 = torch.randn(4, *dec.out_shape, dtype=torch.float64)
    exact = torch.linalg.svdvals(_scaled_dense(dec, p, w))[:, 0] ** 2
    errors = []
    for k in (1, 3, 10, 40):
        with torch.no_grad():
            sn = spectral_estimate(dec, p, w, k, u0)
        errors.append(((sn - exact).abs() / exact).max().item())
    assert errors[-1] < 1e-8
    assert errors[0] > errors[-1] and errors[1] >= errors[2] >= errors[3]


def _dense_reference_loss(dec, sv_net, c, z, u0, n_steps, sigmoid):
    """L_sn built from a dense Jacobian: reverse-mode autograd through the pre-sigmoid flow
    (ReLU slopes have zero derivative there), the sigmoid slope frozen by hand, the first
    K-1 iterations and v_K without a graph, the point p detached."""
    p = torch.exp(c) * z
    w = torch.exp(-sv_net(p))
    pd = p.detach()
    columns = []
    for j in range(pd.shape[1]):  # J e_j by autograd's double-backward trick, graph kept to the weights
        e = torch.zeros_like(pd)
        e[:, j] = 1
        _, col = torch.autograd.functional.jvp(dec.pre_activation, pd, e, create_graph=True)
        columns.append(col.flatten(1))
    jac = torch.stack(columns, dim=2)  # (B, D, nz)
    if sigmoid:
        s = torch.sigmoid(dec.pre_activation(pd)).detach().flatten(1)
        jac = (s * (1 - s))[:, :, None] * jac
    a = jac * w[:, None, :]
    a_const = a.detach()
    u_prev = u0.flatten(1)
    v = torch.einsum("bdn,bd->bn", a_const, normalize(u_prev))
    for _ in range(n_steps - 1):
        u_prev = torch.einsum("bdn,bn->bd", a_const, normalize(v))
        v = torch.einsum("bdn,bd->bn", a_const, normalize(u_prev))
    u = torch.einsum("bdn,bn->bd", a, normalize(v))
    sn = (u * u_prev).sum(1)
    return torch.log(sn).square().mean()


@pytest.mark.parametrize("which", ["tiny_image_decoder", "tiny_sector_decoder"])
def test_spectral_loss_gradient_matches_dense_frozen_slope_reference(which, request):
    dec = request.getfixturevalue(which)
    nz = 3 if which == "tiny_image_decoder" else 2
    torch.manual_seed(6)
    sv_net = SingularValuePredictor(nz, 8).double()
    c = nn.Parameter(torch.tensor(0.3, dtype=torch.float64))
    z = torch.rand(4, nz, dtype=torch.float64) * 2 - 1
    u0 = torch.randn(4, *dec.out_shape, dtype=torch.float64)
    params = [c, *sv_net.parameters(), *dec.parameters()]

    p = torch.exp(c) * z
    w = torch.exp(-sv_net(p))
    loss = spectral_loss(spectral_estimate(dec, p, w, 3, u0))
    ours = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
    ref_loss = _dense_reference_loss(dec, sv_net, c, z, u0, 3, sigmoid=which == "tiny_image_decoder")
    ref = torch.autograd.grad(ref_loss, params, allow_unused=True)

    torch.testing.assert_close(loss, ref_loss, atol=1e-10, rtol=1e-10)
    n_nonzero = 0
    for g, r in zip(ours, ref):
        g = torch.zeros(()) if g is None else g
        r = torch.zeros(()) if r is None else r
        torch.testing.assert_close(g.double().expand_as(r) if g.ndim == 0 else g, r.double().expand_as(g) if r.ndim == 0 else r, atol=1e-9, rtol=1e-8)
        n_nonzero += bool(torch.is_tensor(r) and r.abs().sum() > 0)
    assert n_nonzero >= 5  # the capacity, the sv net and the coupling weights all get gradient
    # the capacity's gradient comes through w alone, the point p being detached in A: <dL/dw, dw/dc>
    (g_w,) = torch.autograd.grad(loss, w)
    (through_w,) = torch.autograd.grad(w, c, grad_outputs=g_w)
    assert torch.isfinite(ours[0]) and ours[0].abs() > 1e-6
    torch.testing.assert_close(ours[0], through_w, atol=0, rtol=1e-12)


def test_spectral_gradient_does_not_reach_the_point(tiny_sector_decoder):
    """With w fixed, the estimate depends on p only through frozen slopes: no gradient to p."""
    torch.manual_seed(7)
    p = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, 2, dtype=torch.float64, requires_grad=True)
    u0 = torch.randn(3, *tiny_sector_decoder.out_shape, dtype=torch.float64)
    sn = spectral_estimate(tiny_sector_decoder, p, w, 4, u0)
    gp, gw = torch.autograd.grad(sn.sum(), [p, w], allow_unused=True)
    assert gp is None and gw.abs().sum() > 0


def test_dense_jacobian_of_a_linear_map():
    m = torch.randn(5, 3, dtype=torch.float64)
    p = torch.randn(2, 3, dtype=torch.float64)
    jac = dense_jacobian(lambda q: q @ m.t(), p)
    torch.testing.assert_close(jac, m.expand(2, 5, 3))


def _f64(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_nmae():
    a, b = _f64([[1.0, 5.0], [2.0, 0.0]]), _f64([[2.0, 4.0], [-2.0, 0.0]])
    assert nmae(a, b).item() == pytest.approx((1 + 1 + 4 + 0) / 4 / ((2 + 4 + 2 + 0) / 4 + 1e-8), rel=1e-15)


def test_orthogonal_columns_give_ortho_sign_zero_and_sv_match_by_kind():
    """Columns of norms 1, 2, 3 along orthogonal directions: M = diag(1, 4, 9)."""
    q, _ = torch.linalg.qr(torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0)))
    jac = (q * _f64([1.0, 2.0, 3.0]))[None]
    exact = geometry_diagnostics(jac, _f64([[1.0, 2.0, 3.0]]), "image")
    assert exact["ortho_sign"] < 1e-15 and exact["sv_match_err"] < 1e-15
    assert geometry_diagnostics(jac, _f64([[1.0, 2.0, 3.0]]), "sector2d")["sv_match_err"] < 1e-15
    # sv = 1: images compare sv with the column norms, NMAE(sv, col) = (0 + 1 + 2) / 3 / 2;
    # Sector2D compares col / sv with 1, (0 + 1 + 2) / 3 / 1
    ones = torch.ones(1, 3, dtype=torch.float64)
    assert geometry_diagnostics(jac, ones, "image")["sv_match_err"] == pytest.approx(0.5 / (1 + 0.5e-8), rel=1e-14)
    assert geometry_diagnostics(jac, ones, "sector2d")["sv_match_err"] == pytest.approx(1 / (1 + 1e-8), rel=1e-14)


def test_ortho_sign_is_the_mean_of_per_sample_ratios():
    """J1 = [[1, 1], [0, 0]]: M1 = [[1, 1], [1, 1]], ratio 1. J2 = [[3, 1], [0, 1]]: M2 = [[9, 3], [3, 2]],
    ratio 3 / 5.5. Their mean 17/22 is not the ratio of the batch means, 2 / 3.25."""
    jac = _f64([[[1.0, 1.0], [0.0, 0.0]], [[3.0, 1.0], [0.0, 1.0]]])
    got = geometry_diagnostics(jac, torch.ones(2, 2, dtype=torch.float64), "image")["ortho_sign"]
    assert got == pytest.approx((1 / (1 + 1e-8) + 3 / (5.5 + 1e-8)) / 2, rel=1e-14)
    assert abs(got - 2 / 3.25) > 0.1


def test_ortho_sign_averages_the_off_diagonal_entries_only():
    """M = [[1, 1, 0], [1, 2, 0], [0, 0, 1]]: mean over the 6 off-diagonal entries 2/6, diagonal mean 4/3."""
    jac = _f64([[[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
    got = geometry_diagnostics(jac, torch.ones(1, 3, dtype=torch.float64), "image")["ortho_sign"]
    assert got == pytest.approx((2 / 6) / (4 / 3 + 1e-8), rel=1e-14)


@pytest.mark.parametrize("which", ["tiny_image_decoder", "tiny_sector_decoder"])
def test_transpose_matrix_is_the_transposed_autograd_jacobian(which, request):
    dec = request.getfixturevalue(which)
    nz = 3 if which == "tiny_image_decoder" else 2
    torch.manual_seed(8)
    p = torch.randn(4, nz, dtype=torch.float64)
    hand = transpose_matrix(dec, p, dec.out_shape)
    auto = dense_jacobian(dec, p).transpose(1, 2)
    assert hand.shape == (4, nz, math.prod(dec.out_shape))
    torch.testing.assert_close(hand, auto, atol=1e-13, rtol=1e-13)
    assert nmae(hand, auto) < 1e-14
