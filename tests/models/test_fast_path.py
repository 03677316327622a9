"""The fast routes of the training step compute what the plain reference computes."""
import pytest
import torch

from gdrae.models.jacobian import spectral_estimate
from tiny_models import tiny_gdrae


def _terms_and_grads(model, x, seed, route):
    torch.manual_seed(seed)
    model.zero_grad(set_to_none=True)
    terms = model.terms(x, route)
    loss = sum(v for k, v in terms.items() if not k.startswith("monitor/"))
    loss.backward()
    grads = {n: prm.grad.clone() for n, prm in model.named_parameters() if prm.grad is not None}
    return {k: v.detach() for k, v in terms.items()}, grads


@pytest.mark.parametrize("kind", ["image", "sector2d"])
@pytest.mark.parametrize("method", ["dense", "matrix_free"])
def test_loss_terms_and_gradients_match_the_reference(kind, method):
    model = tiny_gdrae(kind)
    for prm in model.decoder.parameters():  # larger than the N(0, 0.02) start, so every path matters
        torch.nn.init.normal_(prm, 0, 0.3)
    torch.manual_seed(1)
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64) if kind == "image" else torch.rand(5, 2, dtype=torch.float64) + 1
    ref_terms, ref_grads = _terms_and_grads(model, x, seed=2, route="reference")
    terms, grads = _terms_and_grads(model, x, seed=2, route=method)
    assert terms.keys() == ref_terms.keys()
    for k in ref_terms:
        torch.testing.assert_close(terms[k], ref_terms[k], atol=1e-10, rtol=1e-10, msg=k)
    assert grads.keys() == ref_grads.keys()
    for n in ref_grads:
        torch.testing.assert_close(grads[n], ref_grads[n], atol=1e-10, rtol=1e-10, msg=n)
    assert ref_terms["sn"].item() > 0 and any(g.abs().max() > 0 for n, g in ref_grads.items() if "decoder" in n)


@pytest.mark.parametrize("which", ["tiny_image_decoder", "tiny_sector_decoder"])
@pytest.mark.parametrize("n_steps", [1, 2, 5])
def test_fast_routes_equal_the_reference_route(which, n_steps, request):
    dec = request.getfixturevalue(which)
    nz = 3 if which == "tiny_image_decoder" else 2
    torch.manual_seed(3)
    p = torch.randn(4, nz, dtype=torch.float64)
    w = torch.rand(4, nz, dtype=torch.float64, requires_grad=True)
    u0 = torch.randn(4, *dec.out_shape, dtype=torch.float64)
    sn = {}
    grads = {}
    for method in ("reference", "matrix_free", "dense"):
        sn[method] = spectral_estimate(dec, p, w, n_steps, u0, method)
        weights = [prm for name, prm in dec.named_parameters() if name.endswith("weight")]  # biases do not enter A
        grads[method] = torch.autograd.grad(sn[method].square().sum(), [w, *weights])
    for method in ("matrix_free", "dense"):
        torch.testing.assert_close(sn[method], sn["reference"], atol=1e-10, rtol=1e-10, msg=method)
        for a, b in zip(grads[method], grads["reference"]):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=method)


def test_unknown_route_is_refused(tiny_sector_decoder):
    p = torch.zeros(1, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="route: expected one of auto, reference, dense, matrix_free, got 'x'"):
        spectral_estimate(tiny_sector_decoder, p, torch.ones_like(p), 2, torch.zeros(1, 6, 1, 1, dtype=torch.float64), "x")


@pytest.mark.parametrize("kind,noise", [("image", "independent"), ("image", "shared"), ("sector2d", "independent")])
def test_loss_terms_trace_as_one_graph(kind, noise):
    """The whole step is capturable (train.compile, CUDA graphs): no graph break anywhere in loss_terms."""
    import torch._dynamo as dynamo

    model = tiny_gdrae(kind)
    model.posterior_noise = noise
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64) if kind == "image" else torch.rand(3, 2, dtype=torch.float64) + 1
    dynamo.reset()
    explained = dynamo.explain(model.loss_terms)(x, torch.tensor(0))
    assert explained.graph_break_count == 0, [str(b.reason)[:200] for b in explained.break_reasons]
    assert explained.graph_count == 1
