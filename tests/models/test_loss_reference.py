"""GDRAE.loss_terms against docs/model.md section 6 recomputed from scratch, in float64.

The recomputation shares none of gdrae's Jacobian code (no linearize, jvp,
vjp, normalize or spectral_estimate): the decoder Jacobian is autograd's, of
the decoder's forward map with every activation slope frozen at the
evaluation point; the draws, the power iteration and every term are written
out here as the section reads. Every term and the gradient of the weighted
total in every parameter must agree to float64 rounding.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gdrae.losses import weighted_total
from gdrae.nn import ReLU, Sigmoid
from tiny_models import tiny_gdrae

# distinct weights, so a term's gradient cannot hide behind another's
WEIGHTS = {"recon": 0.7, "prior": 3.0, "sn": 5.0, "sv": 2.0, "cap": 1.5, "norm_sv": 0.3}
BATCH = 5


def _model(kind: str, noise: str):
    """A tiny model far from its near-zero start, so that every term and every path matters."""
    model = tiny_gdrae(kind)
    model.posterior_noise = noise
    torch.manual_seed(11)
    for prm in model.decoder.parameters():
        nn.init.normal_(prm, 0, 0.3)
    for prm in model.encoder.parameters():  # codes beyond the prior box: the prior term is live
        nn.init.normal_(prm, 0, 0.3 if kind == "image" else 1.0)
    for prm in model.sv_predictor.parameters():  # log sv far from 0
        nn.init.normal_(prm, 0, 0.8)
    with torch.no_grad():
        model.log_capacity.fill_(0.3)  # p != z
    if kind == "image":
        model.sigma = 0.2
    return model


def _data(kind: str) -> Tensor:
    torch.manual_seed(12)
    if kind == "image":
        return torch.rand(BATCH, 1, 8, 8, dtype=torch.float64)
    return torch.rand(BATCH, 2, dtype=torch.float64) + 1


def frozen_slope_jacobian(decoder: nn.Module, p: Tensor) -> Tensor:
    """J_Phi(p) (B, D, nz) by autograd, differentiable in the decoder's weights, with every ReLU
    mask and sigmoid slope s(1 - s) taken at p and held constant (docs/model.md section 6).

    A first forward at p records the slopes; the second replaces each activation by its input
    times that constant slope, a map whose Jacobian in p is J_Phi(p) with the slopes frozen.
    """
    activations = [m for m in decoder.modules() if isinstance(m, (ReLU, Sigmoid))]
    slopes: dict[nn.Module, Tensor] = {}

    def record(module, args, out):
        x = args[0].detach()
        slopes[module] = (x > 0).to(x.dtype) if isinstance(module, ReLU) else torch.sigmoid(x) * (1 - torch.sigmoid(x))

    def linear(module, args, out):
        return args[0] * slopes[module]

    handles = [m.register_forward_hook(record) for m in activations]
    try:
        with torch.no_grad():
            decoder(p)
    finally:
        for h in handles:
            h.remove()
    assert len(slopes) == len(activations) > 0
    handles = [m.register_forward_hook(linear) for m in activations]
    q = p.detach().requires_grad_()
    try:
        y = decoder(q).flatten(1)
    finally:
        for h in handles:
            h.remove()
    # row d of every sample's Jacobian at once (samples are independent): one reverse pass per output
    rows = [torch.autograd.grad(y[:, d].sum(), q, create_graph=True)[0] for d in range(y.shape[1])]
    return torch.stack(rows, dim=1)


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=1, keepdim=True)


def reference_terms(model, x: Tensor, seed: int) -> dict[str, Tensor]:
    """docs/model.md section 6 as written, with the draws of loss_terms replayed from ``seed``."""
    torch.manual_seed(seed)
    c, r, nz, b = model.log_capacity, model.prior_radius, model.nz, x.shape[0]
    dec = model.decoder
    image = model.kind == "image"

    # data term: posterior noise (images) is the first draw
    mu = model.encoder(x)
    if image:
        shared = model.posterior_noise == "shared"
        eps = torch.randn(b, 1, dtype=torch.float64) if shared else torch.randn(b, nz, dtype=torch.float64)
        z = mu + model.sigma * eps
        logits = dec.pre_activation(torch.exp(c) * z)[:, : model.data_channels]
        recon = (F.softplus(logits) - x * logits).sum() / b  # BCE with logits
    else:
        x_hat = dec(torch.exp(c) * mu).flatten(1)[:, :2]
        recon = ((x - x_hat) ** 2).sum() / b
    prior = torch.relu(mu.abs() - r).sum(dim=1).mean()

    # geometric terms: the prior batch, then u0
    z_prior = (2 * torch.rand(b, nz, dtype=torch.float64) - 1) * r
    p = torch.exp(c) * z_prior
    head = model.sv_predictor.net(p)
    logsv = torch.cat([head, -head.sum(dim=1, keepdim=True)], dim=1)  # section 5: sum(logsv) = 0
    w = torch.exp(-logsv)
    u0 = torch.randn(b, *dec.out_shape, dtype=torch.float64)

    jac = frozen_slope_jacobian(dec, p.detach())  # the evaluation point is detached
    a = jac * w[:, None, :]  # column j scaled by 1 / sv_j
    a_const = a.detach()
    u = u0.flatten(1)
    for k in range(1, model.sn_power + 1):
        v = torch.einsum("bdn,bd->bn", a_const, _unit(u))  # v_k = A^T normalize(u_{k-1})
        u_prev = u
        u = torch.einsum("bdn,bn->bd", a if k == model.sn_power else a_const, _unit(v))  # u_k = A normalize(v_k)
    sn = (u * u_prev).sum(dim=1)
    log_sn = torch.log(sn)
    finite = torch.isfinite(log_sn)
    sn_loss = (log_sn[finite] ** 2).mean()

    prob = torch.exp(logsv) / torch.exp(logsv).sum(dim=1, keepdim=True)
    terms = {
        "recon": recon,
        "prior": prior,
        "sn": sn_loss,
        "sv": -(prob * torch.log(prob)).sum(dim=1).mean(),
        "cap": c,
    }
    if image:
        terms["norm_sv"] = (torch.exp(logsv) ** 2).mean()
    return terms


def _gradients(model, total: Tensor) -> dict[str, Tensor]:
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad(total, params, allow_unused=True)
    return {n: torch.zeros_like(prm) if g is None else g for n, prm, g in zip(names, params, grads)}


CASES = [("image", "independent"), ("image", "shared"), ("sector2d", "independent")]


@pytest.mark.parametrize("method", ["auto", "reference", "matrix_free", "dense"])
@pytest.mark.parametrize("kind,noise", CASES)
def test_loss_terms_and_gradients_equal_the_section_6_recomputation(kind, noise, method):
    model = _model(kind, noise)
    x = _data(kind)

    torch.manual_seed(13)
    terms = model.terms(x, method)
    ref = reference_terms(model, x, seed=13)

    assert {k for k in terms if not k.startswith("monitor/")} == set(ref)
    for key, value in ref.items():
        torch.testing.assert_close(terms[key], value, rtol=1e-10, atol=0, msg=key)
    # the setup makes every term matter: live prior, log sv far from 0, p != z
    assert ref["prior"] > 0.01 and ref["sn"] > 0.01 and ref["recon"] > 0
    with torch.no_grad():
        assert model.sv_predictor(torch.rand(8, model.nz, dtype=torch.float64)).abs().max() > 0.5

    grads = _gradients(model, weighted_total(terms, WEIGHTS))
    ref_grads = _gradients(model, weighted_total(ref, WEIGHTS))
    for name, expected in ref_grads.items():
        scale = expected.abs().max().item()
        torch.testing.assert_close(grads[name], expected, rtol=1e-10, atol=1e-10 * scale, msg=name)
    live = {n.split(".")[0] for n, g in ref_grads.items() if g.abs().max() > 0}
    assert live == {"log_capacity", "encoder", "decoder", "sv_predictor"}


def test_frozen_slope_jacobian_is_the_decoder_jacobian():
    """Its values are autograd's Jacobian of the decoder itself; only its derivatives in the weights differ."""
    model = _model("image", "independent")
    p = torch.rand(3, 3, dtype=torch.float64) * 2 - 1
    jac = frozen_slope_jacobian(model.decoder, p)
    for i in range(3):
        plain = torch.autograd.functional.jacobian(lambda q: model.decoder(q[None]).flatten(), p[i])
        torch.testing.assert_close(jac[i], plain, rtol=1e-12, atol=1e-14)


def test_the_sigmoid_slope_is_frozen():
    """Through the sigmoid's slope s(1 - s) the weights would get more gradient: the reference leaves it out."""
    model = _model("image", "independent")
    p = torch.rand(3, 3, dtype=torch.float64) * 2 - 1
    weights = [prm for name, prm in model.decoder.named_parameters() if name.endswith("weight")]  # biases: no Jacobian
    frozen = torch.autograd.grad(frozen_slope_jacobian(model.decoder, p).square().sum(), weights)
    q = p.clone().requires_grad_()
    y = model.decoder(q).flatten(1)
    live = torch.stack([torch.autograd.grad(y[:, d].sum(), q, create_graph=True)[0] for d in range(y.shape[1])], dim=1)
    free = torch.autograd.grad(live.square().sum(), weights)
    assert max((a - b).abs().max().item() for a, b in zip(frozen, free)) > 1e-3
