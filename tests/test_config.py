from pathlib import Path

import pytest
import torch
import yaml

from gdrae.config import RunConfig, config_from_dict, dump_config, load_config
from gdrae.errors import GdraeError
from gdrae.models import GDRAE, build_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DATASETS = ["cars3d", "faces", "sector2d", "sector2dunif", "shapes2d", "shapes3d", "small_norb"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_configs_load_and_build(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.data.name == name and cfg.train.steps == 100000 and cfg.data.batch_size == 64
    model = build_model(cfg)
    assert isinstance(model, GDRAE) and model.sn_power == 5
    if name.startswith("sector2d"):
        assert cfg.model.kind == "sector2d" and cfg.model.nz == 2
        assert (cfg.loss.recon, cfg.loss.prior, cfg.loss.sn, cfg.loss.sv, cfg.loss.cap) == (1000, 1000, 1000, 1, 10)
        assert cfg.loss.norm_sv is None
    else:
        assert cfg.model.channels == (3 if name in ("shapes3d", "cars3d") else 1)
        assert cfg.model.encoder_width == (128 if name == "shapes2d" else 256)
        assert cfg.model.sigma == 0.01
        assert cfg.model.posterior_noise == "independent" and model.posterior_noise == "independent"
        assert cfg.loss.model_dump() == dict(recon=1, prior=1000, sn=1000, sv=0.01, cap=10, norm_sv=0.01)


def test_quickstart_is_the_published_sector2dunif_model_and_losses():
    quick, published = load_config(CONFIGS / "quickstart.yaml"), load_config(CONFIGS / "sector2dunif.yaml")
    assert quick.data.model_dump() == published.data.model_dump()
    assert quick.model.model_dump() == published.model.model_dump()
    assert quick.loss.model_dump() == published.loss.model_dump()
    assert (quick.train.lr, quick.train.betas, quick.train.seed) == (published.train.lr, published.train.betas, 0)
    assert quick.train.steps == 1500 and quick.train.metrics == ["histogram", "alignment"]


def test_defaults_are_the_published_image_settings():
    cfg = RunConfig()
    assert cfg.model.ncs == [128, 64, 32, 16, 4] and cfg.model.hidden_ncs == [256, 128, 64, 32, 16]
    assert cfg.train.lr == 1e-4 and cfg.train.betas == (0.9, 0.999) and cfg.train.run_dir == "runs/shapes2d"
    for section in (cfg.data, cfg.model, cfg.loss, cfg.train, cfg.model.sector2d, cfg):
        for name, field in type(section).model_fields.items():
            assert field.description, name


def _write(tmp_path, raw) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_posterior_noise_is_independent_by_default_and_shared_on_request():
    assert RunConfig().model.posterior_noise == "independent"
    assert build_model(config_from_dict({"model": {"posterior_noise": "shared"}})).posterior_noise == "shared"
    with pytest.raises(GdraeError, match=r"model\.posterior_noise: .*'independent' or 'shared', got 'per_sample'"):
        config_from_dict({"model": {"posterior_noise": "per_sample"}})


def test_unknown_key_is_named(tmp_path):
    path = _write(tmp_path, {"train": {"stepz": 3}})
    with pytest.raises(GdraeError, match=r"x\.yaml: train\.stepz: unknown key"):
        load_config(path)
    with pytest.raises(GdraeError, match=r"x\.yaml: model\.sector2d\.nflows: unknown key"):
        load_config(_write(tmp_path, {"model": {"sector2d": {"nflows": 3}}}))
    with pytest.raises(GdraeError, match=r"optimizer: unknown key"):
        load_config(_write(tmp_path, {"optimizer": {}}))


def test_ill_typed_value_is_named(tmp_path):
    with pytest.raises(GdraeError, match=r"x\.yaml: train\.steps: .*integer.*'ten'"):
        load_config(_write(tmp_path, {"train": {"steps": "ten"}}))
    with pytest.raises(GdraeError, match=r"model\.channels: .*got 2"):
        load_config(_write(tmp_path, {"model": {"channels": 2}}))
    with pytest.raises(GdraeError, match=r"data\.in_memory"):
        load_config(_write(tmp_path, {"data": {"in_memory": "sometimes"}}))


def test_inconsistent_model_is_named(tmp_path):
    with pytest.raises(GdraeError, match=r"model\.ncs, hidden_ncs: expected 5 entries"):
        load_config(_write(tmp_path, {"model": {"ncs": [128, 64]}}))
    with pytest.raises(GdraeError, match=r"model\.init_size: expected"):
        load_config(_write(tmp_path, {"model": {"init_size": 8}}))


def test_overrides(tmp_path):
    path = _write(tmp_path, {"data": {"name": "faces"}})
    cfg = load_config(path, ["train.steps=10", "loss.sn=0", "loss.norm_sv=null", "model.ncs=[64, 32, 16, 8, 4]",
                             "train.device=cpu"])
    assert cfg.train.steps == 10 and cfg.loss.sn == 0 and cfg.loss.norm_sv is None
    assert cfg.model.ncs == [64, 32, 16, 8, 4] and cfg.train.device == "cpu"
    assert cfg.train.run_dir == "runs/faces"
    assert load_config(path, ["data.name=shapes3d"]).train.run_dir == "runs/shapes3d"


@pytest.mark.parametrize(
    "override,pattern",
    [
        ("train.stepz=3", r"train\.stepz: unknown key"),
        ("train.steps=abc", r"train\.steps: .*integer"),
        ("train.steps", r"expected KEY=VALUE"),
        ("train.steps.deep=1", r"train\.steps: expected a section"),
        ("model.nz=[1", r"model\.nz: expected a YAML value"),
    ],
)
def test_bad_override_is_named(tmp_path, override, pattern):
    with pytest.raises(GdraeError, match=pattern):
        load_config(_write(tmp_path, {"train": {"steps": 5}}), [override])


def test_bad_files(tmp_path):
    with pytest.raises(GdraeError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(GdraeError, match="bad.yaml: expected valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(GdraeError, match="bad.yaml: expected a mapping"):
        load_config(bad)
    bad.write_text("")
    assert load_config(bad) == RunConfig()


@pytest.mark.parametrize("name", ["shapes3d", "sector2dunif"])
def test_dump_load_round_trip_keeps_order_and_comments(tmp_path, name):
    cfg = load_config(CONFIGS / f"{name}.yaml", ["train.steps=7"])
    out = tmp_path / "run.yaml"
    dump_config(cfg, out)
    assert load_config(out) == cfg
    text = out.read_text()
    assert [line.split(":")[0] for line in text.splitlines() if not line.startswith(" ")] == [
        "data", "model", "loss", "train"]
    assert "steps: 7  # " in text
    assert list(yaml.safe_load(text)["train"])[:3] == ["steps", "seed", "device"]


def test_config_from_dict_does_not_modify_its_input():
    raw = {"train": {"steps": 3}}
    config_from_dict(raw, overrides=["train.steps=4"])
    assert raw == {"train": {"steps": 3}}


@pytest.mark.parametrize("override,pattern", [
    ("train.lr=.inf", r"x\.yaml: train\.lr: input should be a finite number, got inf"),
    ("loss.recon=.nan", r"x\.yaml: loss\.recon: input should be a finite number, got nan"),
    ("model.prior_radius=.inf", r"model\.prior_radius: input should be a finite number"),
    ("model.sigma=.inf", r"model\.sigma: input should be a finite number"),
    ("loss.sn=-1", r"x\.yaml: loss\.sn: input should be greater than or equal to 0, got -1"),
    ("train.betas=[2, 3]", r"x\.yaml: train\.betas: input should be less than 1, got 2"),
    ("train.betas=[0.9, -0.1]", r"train\.betas: input should be greater than or equal to 0"),
])
def test_infinite_nan_negative_and_out_of_range_values_are_refused(tmp_path, override, pattern):
    with pytest.raises(GdraeError, match=pattern):
        load_config(_write(tmp_path, {}), [override])


def test_loss_weights_may_be_zero_or_null(tmp_path):
    cfg = load_config(_write(tmp_path, {}), ["loss.sn=0", "loss.cap=null"])
    assert cfg.loss.sn == 0 and cfg.loss.cap is None


@pytest.mark.parametrize("name", ["../../escaped", "a/b", "/abs", "..", ".hidden", "", "x..y"])
def test_dataset_name_is_one_plain_path_component(tmp_path, name):
    with pytest.raises(GdraeError, match=r"x\.yaml: data\.name: expected a dataset name like shapes2d .*got "):
        load_config(_write(tmp_path, {"data": {"name": name}}))


@pytest.mark.parametrize("name", ["shapes2d-synth-small", "my_faces.v2", "Cars3D"])
def test_user_named_caches_keep_working(tmp_path, name):
    assert load_config(_write(tmp_path, {"data": {"name": name}})).train.run_dir == f"runs/{name}"


def test_config_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("train:\n  seed: 3  # caf\xe9\n".encode("latin-1"))
    with pytest.raises(GdraeError, match=r"latin1\.yaml: expected a UTF-8 text file, got byte 0xe9 at offset 23"):
        load_config(path)


def test_former_image_size_key_still_validates_and_is_dropped(tmp_path):
    """Configs and checkpoints written when ``model.image_size`` was a setting (it could only be 64) still load."""
    cfg = config_from_dict({"model": {"image_size": 64}})
    assert cfg.model.image_size == 64 and "image_size" not in cfg.model.model_dump()
    dump_config(cfg, tmp_path / "config.yaml")
    assert "image_size" not in (tmp_path / "config.yaml").read_text()
    with pytest.raises(GdraeError, match=r"x.yaml: model.image_size: expected 64 or no key .*, got 32$"):
        load_config(_write(tmp_path, {"model": {"image_size": 32}}))
