"""Every model family against the contract, the baselines' initialisation and weights, and what each regulariser does."""
import pytest
import torch

from gdrae import losses
from gdrae.config import BASELINES, FAMILIES, config_from_dict
from gdrae.models import build_model
from gdrae.models.registry import BUILDERS
from gdrae.models.testing import assert_model_contract
from gdrae.train import make_optimizers, train_step

# a small GDRAE of each kind (the baselines use dlib's fixed architectures)
SMALL_GDRAE = {"image": {"ncs": [8, 4, 4, 4, 4], "hidden_ncs": [8, 4, 4, 4, 4], "encoder_width": 8, "sv_hidden": 16},
               "sector2d": {"sector2d": {"input_nc": 8, "hidden_nc": 8, "n_flows": 1}, "sv_hidden": 8}}


def config(family: str, kind: str, **model):
    nz = 2 if kind == "sector2d" else 3
    extra = SMALL_GDRAE[kind] if family == "gdrae" else {}
    data = "sector2dunif" if kind == "sector2d" else "tiny"
    return config_from_dict({"data": {"name": data}, "model": {"family": family, "kind": kind, "nz": nz, **extra,
                                                               **model}})


def batch(kind: str, n: int = 4) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    if kind == "image":
        return (torch.rand(n, 1, 64, 64, generator=gen) > 0.5).float()
    return torch.rand(n, 2, generator=gen) + 1


def test_every_config_family_has_one_builder():
    assert tuple(BUILDERS) == FAMILIES


@pytest.mark.parametrize("kind", ["image", "sector2d"])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_meets_the_contract(family, kind):
    cfg = config(family, kind)
    torch.manual_seed(0)
    model = build_model(cfg)
    assert model.family == family and model.kind == kind
    assert_model_contract(model, batch(kind), rebuild=lambda: build_model(cfg))


def test_the_contract_check_can_fail():
    cfg = config("beta_vae", "sector2d")
    model = build_model(cfg)
    model.parameter_groups = lambda: {"vae": list(model.encoder.parameters())}  # the decoder left out
    with pytest.raises(AssertionError, match="do not cover every parameter"):
        assert_model_contract(model, batch("sector2d"), rebuild=lambda: build_model(cfg))


def test_dlib_architecture_sizes_at_nz_10():
    model = build_model(config("beta_vae", "image", nz=10))
    assert sum(p.numel() for p in model.encoder.parameters()) == 309_204
    assert sum(p.numel() for p in model.decoder.parameters()) == 381_313


def test_baselines_start_glorot_uniform_with_zero_biases_and_gdrae_keeps_its_normal_init():
    torch.manual_seed(0)
    vae = build_model(config("factor_vae", "sector2d"))
    for name, p in vae.named_parameters():
        if name.endswith("bias"):
            assert torch.count_nonzero(p) == 0, name
        else:
            fan_out, fan_in = p.shape[:2]
            bound = (6 / (fan_in + fan_out)) ** 0.5
            assert p.abs().max() <= bound and p.abs().max() > 0.95 * bound, name  # uniform up to the bound
    gdrae = build_model(config("gdrae", "sector2d"))
    first = gdrae.encoder.net[0].weight
    assert abs(first.std().item() - 0.02) < 0.003  # N(0, 0.02)


def test_each_family_weights_its_terms_with_its_own_keys():
    weights = {f: build_model(config(f, "sector2d", **keys)).weights for f, keys in [
        ("beta_vae", {"beta": 6}), ("annealed_vae", {"gamma": 500}), ("factor_vae", {"gamma": 40}),
        ("dip_vae_i", {"lambda_od": 2}), ("dip_vae_ii", {"lambda_od": 2}), ("beta_tc_vae", {"beta": 6})]}
    assert weights["beta_vae"] == {"vae": {"recon": 1.0, "kl": 6}}
    assert weights["annealed_vae"] == {"vae": {"recon": 1.0, "kl_gap": 500}}
    assert weights["factor_vae"] == {"vae": {"recon": 1.0, "kl": 1.0, "tc": 40}, "discriminator": {"loss": 1.0}}
    assert weights["dip_vae_i"]["vae"]["dip_diagonal"] == 20 and weights["dip_vae_ii"]["vae"]["dip_diagonal"] == 2
    assert weights["beta_tc_vae"] == {"vae": {"recon": 1.0, "kl": 1.0, "tc": 5}}
    sector = config_from_dict({"data": {"name": "sector2dunif"}, "loss": {"recon": 1000},
                               "model": {"family": "beta_vae", "kind": "sector2d", "nz": 2}})
    assert build_model(sector).weights["vae"]["recon"] == 1000


def test_baseline_terms_are_dlibs_formulas_on_the_same_draws():
    """Each regulariser recomputed from the posterior the model gives, with the same noise replayed."""
    x = batch("sector2d", 16)
    for family in BASELINES:
        model = build_model(config(family, "sector2d"))
        torch.manual_seed(5)
        terms = model.loss_terms(x, torch.tensor(1000))["vae"]
        mu, logvar = model.posterior(x)
        torch.manual_seed(5)
        z = mu + torch.exp(logvar / 2) * torch.randn_like(mu)
        kl = 0.5 * (mu ** 2 + logvar.exp() - logvar - 1).sum(1).mean()
        torch.testing.assert_close(terms["recon"], (model.decoder(z) - x).square().sum(1).mean())
        if family == "annealed_vae":
            torch.testing.assert_close(terms["kl_gap"], (kl - 25 * 1000 / 100000).abs())
            continue
        torch.testing.assert_close(terms["kl"], kl)
        if family == "beta_tc_vae":
            torch.testing.assert_close(terms["tc"], losses.total_correlation(z, mu, logvar))
        if family.startswith("dip"):
            c = torch.cov(mu.T, correction=0) + (torch.diag(logvar.exp().mean(0)) if family == "dip_vae_ii" else 0)
            torch.testing.assert_close(terms["dip_off_diagonal"], (c - torch.diag(c.diag())).square().sum())
            torch.testing.assert_close(terms["dip_diagonal"], (c.diag() - 1).square().sum())


def _fit(model, x, weights, steps: int, lr: float = 1e-3):
    model.weights = weights
    cfg = config_from_dict({"data": {"name": "sector2dunif"}, "train": {"lr": lr},
                            "model": {"family": model.family, "kind": "sector2d", "nz": model.nz}})
    optimizers = make_optimizers(model, cfg)
    for step in range(steps):
        train_step(model, optimizers, model.loss_terms, x, step)


@pytest.mark.parametrize("family", ["dip_vae_i", "dip_vae_ii"])
def test_dip_vae_drives_the_covariance_toward_the_identity(family):
    torch.manual_seed(0)
    model = build_model(config(family, "sector2d"))
    with torch.no_grad():
        model.encoder.logvar.bias.fill_(-3.0)  # posterior variances near 0.05: far from I for DIP-VAE-II too
    x = batch("sector2d", 64)

    def distance():
        mu, logvar = model.posterior(x)
        return (losses.dip_covariance(mu, logvar, family.removeprefix("dip_vae_")) - torch.eye(2)).abs().max().item()

    before = distance()
    _fit(model, x, {"vae": {"dip_off_diagonal": 1.0, "dip_diagonal": 1.0}}, steps=150)
    assert before > 0.9 and distance() < 0.05


def test_factor_vae_discriminator_tells_correlated_codes_from_their_permutation():
    from gdrae.models.architectures import Discriminator

    torch.manual_seed(0)
    disc = Discriminator(2, hidden=100)  # dlib's six leaky-ReLU layers, narrower so that the test is quick
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3, betas=(0.5, 0.9))

    def codes(n, correlated):
        a = torch.randn(n, 1)
        return torch.cat([a, a + 0.1 * torch.randn(n, 1) if correlated else torch.randn(n, 1)], dim=1)

    def accuracy(z):
        with torch.no_grad():
            real, fake = disc(z), disc(losses.permute_dims(z))
        return ((real[:, 0] > real[:, 1]).float().mean() + (fake[:, 1] > fake[:, 0]).float().mean()).item() / 2

    for _ in range(150):
        z = codes(64, True)
        opt.zero_grad()
        losses.discriminator_loss(disc(z), disc(losses.permute_dims(z))).backward()
        opt.step()
    assert accuracy(codes(2000, True)) > 0.8  # chance is 0.5
    assert abs(accuracy(codes(2000, False)) - 0.5) < 0.1  # independent codes: their permutation looks the same


def test_factor_vae_each_total_moves_only_its_own_group():
    torch.manual_seed(0)
    model = build_model(config("factor_vae", "sector2d"))
    cfg = config("factor_vae", "sector2d")
    optimizers = make_optimizers(model, cfg)
    assert optimizers["discriminator"].param_groups[0]["lr"] == 1e-4
    assert optimizers["discriminator"].param_groups[0]["betas"] == (0.5, 0.9)
    terms = model.loss_terms(batch("sector2d", 8), torch.tensor(0))
    vae_total = losses.weighted_total(terms["vae"], model.weights["vae"])
    disc_params = list(model.discriminator.parameters())
    own = [*model.encoder.parameters(), *model.decoder.parameters()]
    assert torch.autograd.grad(vae_total, disc_params[0], retain_graph=True)[0].abs().sum() > 0  # TC reads the critic
    disc_total = losses.weighted_total(terms["discriminator"], model.weights["discriminator"])
    assert all(g is None for g in torch.autograd.grad(disc_total, own, allow_unused=True, retain_graph=True))
    before = {n: p.detach().clone() for n, p in model.discriminator.named_parameters()}
    model.weights = {"vae": model.weights["vae"], "discriminator": {"loss": 0.0}}  # only the VAE's total counts
    optimizers = make_optimizers(model, cfg)
    train_step(model, optimizers, model.loss_terms, batch("sector2d", 8), 0)
    after = dict(model.discriminator.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before)  # the VAE loss never changed the critic


def test_annealed_capacity_grows_with_the_step_given_to_loss_terms():
    model = build_model(config("annealed_vae", "sector2d", c_max=8, iteration_threshold=4))
    caps = [model.loss_terms(batch("sector2d"), torch.tensor(s))["vae"]["monitor/capacity"].item() for s in range(7)]
    assert caps == [0, 2, 4, 6, 8, 8, 8]


@pytest.mark.parametrize("family", BASELINES)
def test_baseline_loss_terms_trace_as_one_graph(family):
    """train.compile gets one graph per step: the step is a 0-d tensor, nothing breaks the trace."""
    import torch._dynamo as dynamo

    model = build_model(config(family, "sector2d"))
    dynamo.reset()
    explained = dynamo.explain(model.loss_terms)(batch("sector2d"), torch.tensor(3))
    assert explained.graph_break_count == 0, [str(b.reason)[:200] for b in explained.break_reasons]
    assert explained.graph_count == 1
