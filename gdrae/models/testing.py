"""The one check every model family must pass (gdrae.models.contract), as gdrae.nn.testing is for the blocks.

:func:`assert_model_contract` checks, on a small batch: encode, decode and
data_logits shapes and dtypes, prior draws, the parameter groups (disjoint,
covering every parameter, one weight table per group), the loss terms (0-d
or per-latent tensors, ``monitor/`` detached, the same seed giving the same
terms, each group's total backpropagating into its own group alone where
asked), and a state-dict round trip into a freshly built model.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from gdrae.losses import weighted_total
from gdrae.models.contract import Model


def assert_model_contract(model: Model, x: Tensor, rebuild: Callable[[], Model]) -> None:
    """Raise AssertionError unless ``model`` meets the contract on the batch ``x``.

    ``rebuild`` makes a fresh model of the same config (other weights), for the round trip.
    """
    b, nz = x.shape[0], model.nz
    dtype = next(model.parameters()).dtype
    assert isinstance(model.encoder, torch.nn.Module) and isinstance(model.decoder, torch.nn.Module)
    with model.evaluating(), torch.no_grad():
        mu = model.encode(x)
        assert mu.shape == (b, nz) and mu.dtype == dtype, f"encode gave {mu.dtype} {tuple(mu.shape)}"
        z = model.sample_prior(b, generator=torch.Generator().manual_seed(0))
        again = model.sample_prior(b, generator=torch.Generator().manual_seed(0))
        assert z.shape == (b, nz) and torch.equal(z, again), "sample_prior ignores its generator"
        out = model.decode(z)
        assert out.shape == x.shape and out.dtype == dtype, f"decode gave {out.dtype} {tuple(out.shape)}"
        assert model.data_logits(z).shape == x.shape
        if model.kind == "image":
            assert out.min() >= 0 and out.max() <= 1, "decoded images leave [0, 1]"
        if hasattr(model, "posterior"):
            mu2, logvar = model.posterior(x)
            torch.testing.assert_close(mu2, mu)
            assert logvar.shape == (b, nz)
    assert model.latent_range > 0

    groups = model.parameter_groups()
    assert list(groups) == list(model.groups), f"groups {list(groups)} differ from model.groups {model.groups}"
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids)), "a parameter is in two groups"
    assert set(ids) == {id(p) for p in model.parameters()}, "the groups do not cover every parameter"
    assert set(model.weights) == set(groups), "one weight table per parameter group expected"

    step = torch.tensor(3)
    torch.manual_seed(1)
    terms = model.loss_terms(x, step)
    torch.manual_seed(1)
    same = model.loss_terms(x, step)
    assert list(terms) == list(groups), f"loss_terms groups {list(terms)} differ from {list(groups)}"
    for group, group_terms in terms.items():
        assert any(k in model.weights[group] for k in group_terms), f"group {group}: no weighted term"
        for name, value in group_terms.items():
            assert value.ndim == 0 or (name.startswith("monitor/") and value.shape == (nz,)), (
                f"{group}/{name}: expected a 0-d tensor (or a per-latent monitor), got {tuple(value.shape)}")
            assert torch.isfinite(value).all(), f"{group}/{name} is not finite"
            if name.startswith("monitor/"):
                assert not value.requires_grad, f"{group}/{name}: a monitor must be detached"
            torch.testing.assert_close(value, same[group][name], msg=f"{group}/{name}: same seed, other value")
        total = weighted_total(group_terms, model.weights[group])
        grads = torch.autograd.grad(total, groups[group], allow_unused=True, retain_graph=True)
        assert any(g is not None and g.abs().sum() > 0 for g in grads), f"group {group}: its total moves none of it"

    fresh = rebuild()
    fresh.load_state_dict(model.state_dict())
    for (name, a), b_ in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b_), f"state dict round trip changed {name}"
    with model.evaluating(), fresh.evaluating(), torch.no_grad():
        torch.testing.assert_close(fresh.encode(x), model.encode(x))
