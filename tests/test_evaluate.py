"""gdrae.codes, gdrae.evaluate, gdrae.reports: one encoding pass, the stored code table, metric orchestration, outputs."""
import csv
import json
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from evalkit import SIZES, block_images, make_cache, tiny_config
from gdrae import evaluate as ev
from gdrae.codes import cache_id, code_path, code_table, encode_cache, encoder_id
from gdrae.data.cache import check_compatible
from gdrae.errors import GdraeError
from gdrae.models import build_model
from gdrae.reports import format_table, write_metrics

# sample counts small enough for a 60-image grid and a quick test
QUICK = {
    "beta_vae": {"batch_size": 8, "num_train": 50, "num_eval": 30},
    "factor_vae": {"batch_size": 8, "num_train": 50, "num_eval": 30, "num_variance_estimate": 60},
    "mig": {"num_train": 200},
    "dci": {"num_train": 100, "num_test": 50},
    "sap": {"num_train": 100, "num_test": 50},
    "irs": {"num_train": 200},
    "modularity_explicitness": {"num_train": 100, "num_test": 50},
    "geometry": {"n_points": 4},
}
CODE_METRICS = [n for n in ev.METRIC_NAMES if n != "geometry"]  # those that read the code table
QUICK_CODE_METRICS = [n for n in CODE_METRICS if n != "dci"]  # DCI's boosted trees cost seconds even here


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return make_cache(tmp_path_factory.mktemp("cache"), chunk_rows=16)


@pytest.fixture
def model(tmp_path):
    torch.manual_seed(0)
    return build_model(tiny_config("image", tmp_path, tmp_path / "run"))


class Counter:
    """Wraps model.encode, counting calls and rows."""

    def __init__(self, model):
        self.calls = self.rows = 0
        self._encode = model.encode
        model.encode = self

    def __call__(self, x):
        self.calls += 1
        self.rows += len(x)
        return self._encode(x)


def test_code_table_is_mu_of_every_image_in_grid_order(model, cache):
    codes = encode_cache(model, cache, batch_size=7, progress=False)
    images = torch.from_numpy(block_images()).float() / 255
    with torch.no_grad():
        expected = model.encode(images).numpy()
    assert codes.shape == (60, 3) and codes.dtype == np.float32
    np.testing.assert_allclose(codes, expected, rtol=1e-5, atol=1e-6)
    # batches that straddle chunks and batches smaller than chunks give the same table (to rounding:
    # convolution kernels may sum in another order at another batch size)
    np.testing.assert_allclose(codes, encode_cache(model, cache, batch_size=1000, progress=False),
                               rtol=1e-6, atol=1e-7)


def test_evaluation_leaves_a_training_model_as_it_was(model, cache):
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ev.evaluate(model, cache, ["histogram"], progress=False)
    assert model.training  # the trainer's model goes on training
    assert all(p.is_contiguous() for p in model.parameters())  # the channels-last layout was undone
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_one_encoding_pass_per_evaluation(model, cache):
    counter = Counter(model)
    results = ev.evaluate(model, cache, seed=0, options=QUICK, progress=False)
    assert counter.rows == cache.n  # every image exactly once, whatever the number of metrics
    assert counter.calls == 4  # one call per 16-row chunk
    for key in ("hist3/mig", "hist50/dcimig", "hist20/mig_misum", "beta_vae/eval_accuracy",
                "factor_vae/num_active_dims", "mig/discrete_mig", "dci/disentanglement", "sap/sap_score",
                "irs/irs", "modularity_explicitness/explicitness_score_test", "geometry/ortho_sign",
                "geometry/sv_match_err"):
        assert key in results
    assert all(isinstance(v, float) and math.isfinite(v) for v in results.values())


def test_stored_codes_are_reused(model, cache, tmp_path):
    counter = Counter(model)
    first = ev.evaluate(model, cache, ["histogram"], code_dir=tmp_path / "codes", step=7, progress=False)
    assert counter.rows == cache.n
    stored = tmp_path / "codes" / f"step-7-{cache_id(cache)}-{encoder_id(model)}.npy"
    assert stored.is_file() and not list((tmp_path / "codes").glob(".*"))  # no temporary left behind
    second = ev.evaluate(model, cache, ["histogram"], code_dir=tmp_path / "codes", step=7, progress=False)
    assert counter.rows == cache.n  # nothing encoded the second time
    assert first == second
    ev.evaluate(model, cache, ["histogram"], code_dir=tmp_path / "codes", step=8, progress=False)
    assert counter.rows == 2 * cache.n  # another step is another model
    with torch.no_grad():
        model.encoder.net[0].bias.add_(1.0)  # other weights under the same step (e.g. another run, same --out)
    ev.evaluate(model, cache, ["histogram"], code_dir=tmp_path / "codes", step=8, progress=False)
    assert counter.rows == 3 * cache.n


def test_same_seed_same_numbers(model, cache):
    a = ev.evaluate(model, cache, QUICK_CODE_METRICS, seed=3, options=QUICK, progress=False)
    b = ev.evaluate(model, cache, QUICK_CODE_METRICS, seed=3, options=QUICK, progress=False)
    assert a == b
    g3, g4 = (ev.evaluate(model, cache, ["geometry"], seed=s, options=QUICK, progress=False) for s in (3, 4))
    assert g3["geometry/ortho_sign"] != g4["geometry/ortho_sign"]  # the seed picks the latent points


def test_geometry_alone_encodes_nothing(model, cache):
    counter = Counter(model)
    results = ev.evaluate(model, cache, ["geometry"], diag_points=3, progress=False)
    assert counter.rows == 0
    assert set(results) == {"geometry/ortho_sign", "geometry/sv_match_err", "geometry/lt_err"}


def test_alignment_reads_the_given_code_table(model, cache):
    from gdrae.data.grid import all_factors

    counter = Counter(model)
    codes = all_factors(SIZES)[:, [1, 0, 2]].astype(np.float32)  # z0 = factor 1, z1 = factor 0, z2 = factor 2
    results = ev.evaluate(model, cache, ["alignment"], codes=codes, progress=False)
    assert counter.rows == 0  # the table given is the table used
    assert results == pytest.approx({
        "alignment/min_r2": 1.0, "alignment/mean_r2": 1.0,
        "alignment/axis0_r2": 1.0, "alignment/axis0_factor": 1.0,
        "alignment/axis1_r2": 1.0, "alignment/axis1_factor": 0.0,
        "alignment/axis2_r2": 1.0, "alignment/axis2_factor": 2.0}, abs=1e-6)


def test_single_valued_factor_gives_finite_numbers(model, tmp_path):
    flat = make_cache(tmp_path, "flat", sizes=(1, 4, 5))
    results = ev.evaluate(model, flat, CODE_METRICS, seed=0, options=QUICK, progress=False)
    assert results and all(math.isfinite(v) for v in results.values())


def test_unknown_metric_name(model, cache):
    with pytest.raises(GdraeError, match="expected metric names from .*got 'mgi'"):
        ev.evaluate(model, cache, ["histogram", "mgi"], progress=False)


def test_stored_table_of_another_latent_size_is_an_error(model, cache, tmp_path):
    np.save(code_path(tmp_path, 1, cache, model), np.zeros((cache.n, 5), np.float32))
    with pytest.raises(GdraeError, match=r"expected float \(60, 3\).*got float32 \(60, 5\)"):
        code_table(model, cache, tmp_path, step=1, progress=False)


@pytest.mark.parametrize("change, message", [
    ({"name": "other"}, "dataset expected 'other'"),
    ({"channels": 3}, "channels expected 3"),
    ({"kind": "sector2d"}, "expected points for model.kind=sector2d, got images"),
])
def test_checkpoint_and_cache_must_belong_together(cache, tmp_path, change, message):
    cfg = tiny_config("sector2d" if change.get("kind") else "image", tmp_path, tmp_path / "run",
                      name=change.get("name", "tiny2d"))
    if "channels" in change:
        cfg.model.channels = change["channels"]
    with pytest.raises(GdraeError, match=message):
        check_compatible(cfg, cache)


def test_image_size_must_match(tmp_path):
    small = make_cache(tmp_path, "tiny2d", side=32)
    with pytest.raises(GdraeError, match="image size expected 64x64 .*got 32x32"):
        check_compatible(tiny_config("image", tmp_path, tmp_path / "run"), small)


def test_channels_last_encoding_equals_the_plain_layout(model, cache, monkeypatch):
    """The fast path channels_last (gdrae.fastpaths): the same codes, the encoder's weights as they were."""
    monkeypatch.delenv("GDRAE_PLAIN", raising=False)
    weights = {name: p for name, p in model.encoder.named_parameters()}
    fast = encode_cache(model, cache, progress=False)
    assert all(p.is_contiguous() for p in model.encoder.parameters())
    assert all(p is weights[name] for name, p in model.encoder.named_parameters())  # an optimiser keeps its own
    monkeypatch.setenv("GDRAE_PLAIN", "channels_last")
    plain = encode_cache(model, cache, progress=False)
    np.testing.assert_allclose(fast, plain, rtol=1e-5, atol=1e-6)


def test_cache_id_follows_content():
    attrs = {"dataset": "tiny2d", "factor_sizes": [3, 4, 5], "source": [], "pipeline": {},
             "created": "2026-01-01T00:00:00+00:00"}
    same = cache_id(SimpleNamespace(attrs=dict(attrs)))
    assert same.startswith("tiny2d-") and same == cache_id(SimpleNamespace(attrs=dict(attrs)))
    assert same != cache_id(SimpleNamespace(attrs={**attrs, "created": "2026-01-02T00:00:00+00:00"}))
    assert same != cache_id(SimpleNamespace(attrs={**attrs, "source": [{"name": "x", "sha256": "ab"}]}))


def test_metrics_files(tmp_path):
    d = tmp_path / "metrics"
    write_metrics(d, 10, {"hist20/mig": 0.5, "dci/disentanglement": 0.25}, {"seed": 0})
    write_metrics(d, 20, {"hist20/mig": 0.75, "sap/sap_score": 0.125})
    write_metrics(d, 10, {"sap/sap_score": 0.0625})  # the same step again: its row is updated
    with open(d / "metrics.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["step", "hist20/mig", "dci/disentanglement", "sap/sap_score"]  # header once, new key at the end
    assert rows[1:] == [["10", "0.5", "0.25", "0.0625"], ["20", "0.75", "", "0.125"]]
    record = json.loads((d / "step-20.json").read_text())
    assert record["step"] == 20 and record["metrics"] == {"hist20/mig": 0.75, "sap/sap_score": 0.125}
    assert json.loads((d / "step-10.json").read_text())["metrics"] == {"sap/sap_score": 0.0625}


@pytest.mark.parametrize("table, problem", [
    ("epoch,hist20/mig\n1,0.5\n", "expected step as the first column, got 'epoch'"),
    ("step,hist20/mig\n10,0.5\nlast,0.7\n", "line 3: step: expected an integer, got 'last'"),
    ("step,hist20/mig\n10,0.5,0.9\n", "line 2: expected at most 2 cells (one per column), got more"),
    ("step,hist20/mig\n10,0.5\n10,0.6\n", "line 3: step: expected one row per step, got 10 again"),
])
def test_a_metrics_table_it_cannot_keep_whole_is_refused_and_left_alone(tmp_path, table, problem):
    d = tmp_path / "metrics"
    d.mkdir()
    (d / "metrics.csv").write_text(table)
    message = f"{d / 'metrics.csv'}: {problem}; the file is left as it is: move it aside and evaluate again"
    with pytest.raises(GdraeError, match=re.escape(message) + "$"):
        write_metrics(d, 20, {"hist20/mig": 0.75})
    assert (d / "metrics.csv").read_text() == table
    assert sorted(p.name for p in d.iterdir()) == ["metrics.csv"]  # no step-20.json either


def test_an_empty_metrics_table_is_started_afresh(tmp_path):
    (tmp_path / "metrics.csv").write_text("")
    write_metrics(tmp_path, 5, {"hist20/mig": 0.5})
    assert (tmp_path / "metrics.csv").read_text() == "step,hist20/mig\n5,0.5\n"


def test_format_table_groups_by_metric():
    text = format_table({"hist20/mig": 0.5, "hist20/jemmig": 0.25, "dci/completeness": 1.0})
    assert text.splitlines() == ["hist20/mig        0.5000", "hist20/jemmig     0.2500", "",
                                 "dci/completeness  1.0000"]


def test_histogram_mi_has_a_column_per_factor():
    from gdrae.data.grid import all_factors
    from gdrae.metrics import histogram_family, histogram_mi

    codes = all_factors((1, 4, 5)).astype(float)  # a perfect code, with a constant first dimension
    mi = histogram_mi(codes, (1, 4, 5), nbins=20)
    # every value of a varying factor falls in its own bin: I(z_k; v_k) = H(v_k) = log n_k, else 0
    np.testing.assert_allclose(mi, np.diag([0.0, np.log(4), np.log(5)]), atol=1e-12)
    assert histogram_family(codes, (1, 4, 5))["mig"] == pytest.approx(1.0)
