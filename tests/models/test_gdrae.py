import math

import pytest
import torch
from torch import nn

from gdrae.config import config_from_dict
from gdrae.losses import bce_recon, prior_penalty, squared_error, weighted_total
from gdrae.models import GDRAE, SingularValuePredictor, build_model

from tiny_models import tiny_gdrae

PUBLISHED = {  # docs/model.md section 9: trainable parameters (encoder, decoder couplings, sv predictor, capacity)
    "shapes2d": ({"model": {"channels": 1, "encoder_width": 128}}, 2_055_748, 247_882),
    "faces_small_norb": ({"model": {"channels": 1, "encoder_width": 256}}, 2_188_228, 380_362),
    "shapes3d_cars3d": ({"model": {"channels": 3, "encoder_width": 256}}, 2_189_252, 381_386),
    "sector2d": ({"model": {"kind": "sector2d", "nz": 2}}, 5_258_756, 1_054_722),
}


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_the_published_architecture(name):
    raw, total, encoder = PUBLISHED[name]
    model = build_model(config_from_dict(raw))
    assert _count(model) == total
    assert _count(model.encoder) == encoder
    assert _count(model.decoder) == (3_150_336 if name == "sector2d" else 737_776)
    assert _count(model.sv_predictor) == (1_053_697 if name == "sector2d" else 1_070_089)


def test_initialisation():
    torch.manual_seed(0)
    model = build_model(config_from_dict({}))
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            assert abs(m.weight.std().item() - 0.02) < 0.004 and not m.bias.any()
        if isinstance(m, nn.ConvTranspose2d):  # PyTorch's default: uniform within 1/sqrt(fan_in)
            fan_in = m.weight.shape[1] * m.weight[0, 0].numel()
            assert m.weight.abs().max() <= 1 / math.sqrt(fan_in) and m.bias.abs().max() > 0
    assert model.log_capacity.item() == 0


def test_predicted_log_singular_values_sum_to_zero():
    torch.manual_seed(1)
    net = SingularValuePredictor(4, 16).double()
    for prm in net.parameters():
        nn.init.normal_(prm, 0, 1)
    logsv = net(torch.randn(7, 4, dtype=torch.float64))
    assert logsv.shape == (7, 4) and logsv.abs().max() > 0.1
    torch.testing.assert_close(logsv.sum(1), torch.zeros(7, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(logsv[:, -1], -logsv[:, :-1].sum(1))


def test_image_model_encode_decode_predict_sv():
    torch.manual_seed(2)
    model = tiny_gdrae("image")
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    assert model.encode(x).shape == (3, 3)
    z = torch.rand(5, 3, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        model.log_capacity.fill_(0.7)
    img = model.decode(z)
    assert img.shape == (5, 1, 8, 8) and ((img > 0) & (img < 1)).all()
    torch.testing.assert_close(img, model.decoder(math.exp(0.7) * z)[:, :1])  # decoder sees exp(c) z
    sv = model.predict_sv(z)
    torch.testing.assert_close(sv.prod(1), torch.ones(5, dtype=torch.float64))


def test_sector2d_model_decodes_points():
    model = tiny_gdrae("sector2d")
    z = torch.rand(4, 2, dtype=torch.float64)
    out = model.decode(z)
    assert out.shape == (4, 2)
    torch.testing.assert_close(out, model.decoder(z)[:, :2, 0, 0])


def _model_and_batch(kind: str):
    """A tiny model of ``kind`` and a float64 batch of 4 for it."""
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64) if kind == "image" else torch.rand(4, 2, dtype=torch.float64)
    return tiny_gdrae(kind), x


@pytest.mark.parametrize("kind", ["image", "sector2d"])
def test_loss_terms_keys_values_and_reproducibility(kind):
    model, x = _model_and_batch(kind)
    torch.manual_seed(3)
    terms = model.terms(x)
    expected = {"recon", "prior", "sn", "sv", "cap"} | ({"norm_sv"} if kind == "image" else set())
    assert {k for k in terms if not k.startswith("monitor/")} == expected
    for key in expected:
        assert terms[key].shape == () and torch.isfinite(terms[key])
    assert terms["monitor/mu_abs"].shape == (model.nz,) and terms["monitor/sv_mean"].shape == (model.nz,)
    assert all(not v.requires_grad for k, v in terms.items() if k.startswith("monitor/"))
    assert terms["cap"] is model.log_capacity
    assert 0 <= terms["sv"] <= math.log(model.nz) + 1e-12
    torch.manual_seed(3)
    again = model.terms(x)
    for key in expected:
        assert torch.equal(terms[key], again[key])
    torch.manual_seed(4)
    assert not torch.equal(model.terms(x)["sn"], terms["sn"])  # fresh prior batch and u0


@pytest.mark.parametrize("kind", ["image", "sector2d"])
def test_without_the_spectral_terms_the_rest_and_the_draws_are_the_same(kind):
    model, x = _model_and_batch(kind)
    torch.manual_seed(3)
    full = model.terms(x)
    after_full = torch.rand(3)
    torch.manual_seed(3)
    ablation = model.terms(x, spectral=False)
    assert torch.equal(torch.rand(3), after_full)  # the random stream does not depend on the weights
    assert set(full) - set(ablation) == {"sn", "sv", "monitor/sn_mean"}
    for key in ablation:
        torch.testing.assert_close(ablation[key], full[key], atol=1e-12, rtol=1e-12, msg=key)


def test_posterior_noise_independent_per_dimension_or_shared_per_sample():
    model = tiny_gdrae("image")
    model.sigma = 0.5
    mu = torch.randn(6, 3, dtype=torch.float64)
    torch.manual_seed(8)
    eps = (model.sample_posterior(mu) - mu) / 0.5
    torch.manual_seed(8)
    torch.testing.assert_close(eps, torch.randn(6, 3, dtype=torch.float64), atol=1e-15, rtol=0)
    assert (eps[:, 1:] - eps[:, :1]).abs().min() > 0  # a draw per dimension

    model.posterior_noise = "shared"
    torch.manual_seed(8)
    eps = (model.sample_posterior(mu) - mu) / 0.5
    torch.manual_seed(8)
    expected = torch.randn(6, 1, dtype=torch.float64)
    torch.testing.assert_close(eps, expected.expand(6, 3), atol=1e-15, rtol=0)  # one draw per sample
    assert expected.std() > 0.1


def test_sector2d_posterior_is_the_mean_and_draws_nothing():
    model = tiny_gdrae("sector2d")
    mu = torch.randn(4, 2, dtype=torch.float64)
    state = torch.get_rng_state()
    assert model.sample_posterior(mu) is mu
    assert torch.equal(state, torch.get_rng_state())


def test_unknown_posterior_noise_is_refused():
    with pytest.raises(ValueError, match="posterior_noise: expected 'independent' or 'shared', got 'x'"):
        GDRAE("image", nn.Identity(), tiny_gdrae("image").decoder, nn.Identity(), nz=3, data_channels=1,
              sigma=0.1, prior_radius=1.0, sn_power=5, posterior_noise="x")


def test_data_terms_on_the_code():
    model = tiny_gdrae("image")
    model.sigma = 0.0  # deterministic code, so the term can be recomputed
    with torch.no_grad():
        model.log_capacity.fill_(0.2)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    terms = model.terms(x)
    mu = model.encode(x)
    logits = model.decoder.pre_activation(math.exp(0.2) * mu)[:, :1]
    torch.testing.assert_close(terms["recon"], bce_recon(logits, x))
    torch.testing.assert_close(terms["prior"], prior_penalty(mu, 1.0))
    torch.testing.assert_close(terms["monitor/recon_l1"], (torch.sigmoid(logits) - x).abs().mean())

    points = tiny_gdrae("sector2d")
    y = torch.rand(3, 2, dtype=torch.float64) * 3
    terms = points.terms(y)
    torch.testing.assert_close(terms["recon"], squared_error(points.decode(points.encode(y)), y))
    torch.testing.assert_close(terms["prior"], prior_penalty(points.encode(y), 1.0))


def test_every_parameter_gets_a_finite_gradient():
    torch.manual_seed(5)
    cfg = config_from_dict({"model": {"kind": "sector2d", "nz": 2, "sector2d": {"input_nc": 8, "hidden_nc": 6}},
                            "loss": {"norm_sv": None}})
    model = build_model(cfg).double()
    x = torch.rand(8, 2, dtype=torch.float64) + 1
    weighted_total(model.terms(x), cfg.loss).backward()
    for name, prm in model.named_parameters():
        assert prm.grad is not None and torch.isfinite(prm.grad).all(), name
    assert model.log_capacity.grad != 0


def _diagnostics_by_hand(model, n_points, seed):
    """docs/model.md section 8 written out sample by sample, on autograd's Jacobian of the decoder."""
    gen = torch.Generator().manual_seed(seed)
    z = (2 * torch.rand(n_points, model.nz, generator=gen, dtype=torch.float64) - 1) * model.prior_radius
    p = torch.exp(model.log_capacity.detach()) * z
    sv = torch.exp(model.sv_predictor(p)).detach()
    ratios, sv_err, col_ref, sv_ref = [], [], [], []
    for b in range(n_points):
        jac = torch.autograd.functional.jacobian(lambda q: model.decoder(q[None]).flatten(), p[b])  # (D, nz)
        m = jac.t() @ jac
        off = [m[i, j].abs() for i in range(model.nz) for j in range(model.nz) if i != j]
        ratios.append(sum(off) / len(off) / (m.diagonal().abs().mean() + 1e-8))
        col = m.diagonal().sqrt()
        col_ref.append(col)
        sv_ref.append(sv[b])
        sv_err.append((col / sv[b] - 1).abs())
    col, svs = torch.stack(col_ref), torch.stack(sv_ref)
    if model.kind == "image":
        sv_match = (svs - col).abs().mean() / (col.abs().mean() + 1e-8)
    else:
        sv_match = torch.stack(sv_err).mean() / (1 + 1e-8)
    return {"ortho_sign": (sum(ratios) / n_points).item(), "sv_match_err": sv_match.item()}


@pytest.mark.parametrize("kind", ["image", "sector2d"])
def test_diagnostics_match_the_definitions(kind):
    model = tiny_gdrae(kind)
    torch.manual_seed(9)
    for prm in [*model.decoder.parameters(), *model.sv_predictor.parameters()]:  # far from the near-zero start
        nn.init.normal_(prm, 0, 0.5)
    with torch.no_grad():
        model.log_capacity.fill_(0.3)
    state = torch.get_rng_state()
    d = model.diagnostics(n_points=6, seed=2)
    assert torch.equal(state, torch.get_rng_state())  # training randomness untouched
    assert set(d) == {"ortho_sign", "sv_match_err", "lt_err"}
    assert all(isinstance(v, float) and math.isfinite(v) for v in d.values())
    expected = _diagnostics_by_hand(model, 6, seed=2)
    assert expected["ortho_sign"] > 0.01 and expected["sv_match_err"] > 0.01
    for key, value in expected.items():
        assert d[key] == pytest.approx(value, rel=1e-10, abs=0), key
    assert d["lt_err"] < 1e-13
    assert d == model.diagnostics(n_points=6, seed=2)


def test_lt_err_sees_a_wrong_transpose():
    """A hand-written transpose off by 1% everywhere gives lt_err 0.01."""
    model = tiny_gdrae("sector2d")
    right = model.decoder.vjp
    model.decoder.vjp = lambda u, ctx: 1.01 * right(u, ctx)
    assert model.diagnostics(n_points=4)["lt_err"] == pytest.approx(0.01, rel=1e-6)


def test_ortho_sign_is_zero_for_orthogonal_columns():
    """A decoder without couplings is a product of isometries: J^T J = exp(0)^2 I."""
    torch.manual_seed(6)
    cfg = config_from_dict({"model": {"kind": "sector2d", "nz": 2, "sector2d": {"input_nc": 8, "n_flows": 0}}})
    model = build_model(cfg).double()
    d = model.diagnostics(n_points=8)
    assert d["ortho_sign"] < 1e-6
