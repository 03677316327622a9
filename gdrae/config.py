"""Run configuration: the four sections of run.yaml as pydantic models, plus load and dump.

Every field has a default (the published settings of docs/model.md section 6 for
the image datasets) and a one-line description, which ``dump_config`` writes
as a comment. Unknown keys are errors naming the key.

``model.family`` picks the model (:data:`FAMILIES`; GDRAE when absent, so
every config written before families existed reads as before). The model
section is one pydantic class per family, told apart by ``family``; each
holds that family's hyperparameters under disentanglement_lib's names. The
loss section follows the family (one rule, docs/design.md section 4): GDRAE's
weights for GDRAE, only the data term's weight ``recon`` for a baseline.
This module imports neither torch nor the models.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator

from gdrae.atomic import write_atomic
from gdrae.device import DEVICES
from gdrae.errors import GdraeError

FAMILIES = ("gdrae", "beta_vae", "annealed_vae", "factor_vae", "dip_vae_i", "dip_vae_ii", "beta_tc_vae")
BASELINES = FAMILIES[1:]  # the six of Locatello et al. 2019, with disentanglement_lib's names
# how GDRAE's power iteration is computed (gdrae.models.jacobian.spectral_estimate): same numbers, other speed
SPECTRAL_ROUTES = ("auto", "reference", "dense", "matrix_free")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # .inf and .nan are never a setting


# a dataset name is one path component: it names the cache file and the default run directory
DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
LossWeight = Annotated[float | None, Field(ge=0)]
IMAGE_SIZE = 64  # the side of every image: the encoders of docs/model.md section 3 take 64x64
Beta = Annotated[float, Field(ge=0, lt=1)]


class DataConfig(_Section):
    name: str = Field("shapes2d", description="dataset / cache name, e.g. shapes2d, sector2dunif, shapes2d-synth-small")
    cache_dir: str = Field("cache", description="directory holding the <name>.zarr caches")
    batch_size: int = Field(64, ge=1, description="training batch size")
    in_memory: Literal["auto"] | bool = Field("auto", description="load the whole cache into RAM: auto, true or false")

    @model_validator(mode="after")
    def _plain_name(self) -> "DataConfig":
        if not DATASET_NAME.fullmatch(self.name) or ".." in self.name:
            raise ValueError(f"name: expected a dataset name like shapes2d (letters, digits, '_', '.', '-'; "
                             f"no '/' or '..'), got {self.name!r}")
        return self


class Sector2DConfig(_Section):
    input_nc: int = Field(1024, ge=2, description="width of the Sector2D flow (outputs of the first mixing)")
    hidden_nc: int = Field(1024, ge=1, description="hidden width of each Sector2D coupling network")
    n_flows: int = Field(3, ge=0, description="number of mixing + coupling steps of the Sector2D flow")


class _ModelSection(_Section):
    """What every family's model section holds, with the same meaning: the data kind, the latent size, the
    image channels and the image-size rule."""

    family: str = Field(description="model family: " + ", ".join(FAMILIES))  # each family's own Literal
    kind: Literal["image", "sector2d"] = Field("image", description="image autoencoder or the 2-D Sector2D model")
    nz: int = Field(10, ge=2, description="latent size")
    channels: Literal[1, 3] = Field(1, description="image channels (images only)")

    @model_validator(mode="before")
    @classmethod
    def _former_image_size(cls, raw: Any) -> Any:
        """Deprecated key ``image_size``: it could only be 64, so configs and checkpoints that carry it
        still validate (the key is dropped); any other value is refused."""
        if isinstance(raw, dict) and "image_size" in raw:
            raw = dict(raw)
            size = raw.pop("image_size")
            if size != IMAGE_SIZE or isinstance(size, bool):
                raise ValueError(f"image_size: expected {IMAGE_SIZE} or no key (a deprecated key: the encoders take "
                                 f"{IMAGE_SIZE}x{IMAGE_SIZE} images), got {size!r}")
        return raw

    @property
    def image_size(self) -> int:
        """Side of the images in pixels: always :data:`IMAGE_SIZE` (the encoders take 64x64)."""
        return IMAGE_SIZE


class GdraeModelConfig(_ModelSection):
    """GDRAE (docs/model.md sections 3-6): encoder, injective flow decoder, singular-value predictor."""

    family: Literal["gdrae"] = Field("gdrae", description="model family: " + ", ".join(FAMILIES))
    encoder_width: int = Field(
        128, ge=1, description="channels of the encoder's 4x4 conv: 128 shapes2d, 256 faces/small_norb/shapes3d/cars3d"
    )
    init_size: int = Field(4, ge=1, description="spatial size of the decoder's first feature map")
    ncs: list[int] = Field([128, 64, 32, 16, 4], description="decoder flow channels per resolution")
    hidden_ncs: list[int] = Field([256, 128, 64, 32, 16], description="coupling-network channels per resolution")
    middle_ns_flows: list[int] = Field([1, 1, 1, 1], description="flow steps after each 2x upsampling")
    sigma: float = Field(0.01, ge=0, description="fixed posterior std of the image encoder (Sector2D is deterministic)")
    posterior_noise: Literal["independent", "shared"] = Field(
        "independent", description="image posterior eps: independent per latent dim (paper) or one per sample (original code)"
    )
    prior_radius: float = Field(1.0, gt=0, description="prior is uniform on [-r, r]^nz")
    sv_hidden: int = Field(1024, ge=1, description="hidden width of the singular-value predictor")
    sn_power: int = Field(5, ge=1, description="power-iteration steps of the spectral-norm term")
    sector2d: Sector2DConfig = Field(default_factory=Sector2DConfig, description="Sector2D flow sizes")

    @model_validator(mode="after")
    def _consistent(self) -> "GdraeModelConfig":
        if self.kind == "sector2d":
            s = self.sector2d
            if s.input_nc % 2 or s.input_nc < self.nz:
                raise ValueError(f"sector2d.input_nc: expected an even number >= nz ({self.nz}), got {s.input_nc}")
            return self
        n = len(self.middle_ns_flows)
        if n == 0:
            raise ValueError("middle_ns_flows: expected at least one entry, got []")
        if len(self.ncs) != n + 1 or len(self.hidden_ncs) != n + 1:
            raise ValueError(
                f"ncs, hidden_ncs: expected {n + 1} entries each (len(middle_ns_flows) + 1), "
                f"got {len(self.ncs)} and {len(self.hidden_ncs)}"
            )
        if self.init_size * 2**n != IMAGE_SIZE:
            raise ValueError(
                f"init_size: expected init_size * 2**len(middle_ns_flows) == {IMAGE_SIZE} (the image side), "
                f"got {self.init_size} * 2**{n}"
            )
        if any(c < 2 or c % 2 for c in self.ncs) or any(c < 1 for c in self.hidden_ncs):
            raise ValueError(f"ncs: expected even channel counts >= 2, got {self.ncs}")
        if any(k < 0 for k in self.middle_ns_flows):
            raise ValueError(f"middle_ns_flows: expected counts >= 0, got {self.middle_ns_flows}")
        if self.ncs[0] // 2 * self.init_size**2 < self.nz:
            raise ValueError(f"ncs: expected ncs[0]/2 * init_size**2 >= nz ({self.nz}), got {self.ncs[0]}")
        for i in range(n):
            if 4 * self.ncs[i + 1] < self.ncs[i]:
                raise ValueError(f"ncs: expected 4*ncs[{i + 1}] >= ncs[{i}] (injective upsampling), got {self.ncs}")
        if self.channels > self.ncs[-1]:
            raise ValueError(f"channels: expected at most ncs[-1] ({self.ncs[-1]}), got {self.channels}")
        return self




ModelConfig = GdraeModelConfig  # the name this section had before families: GDRAE's


class _BaselineModel(_ModelSection):
    """A Gaussian VAE of disentanglement_lib (docs/model.md section 10): posterior N(mu, exp(logvar)), prior
    N(0, I), dlib's conv pair for images and its fc pair for Sector2D points."""


class BetaVAEConfig(_BaselineModel):
    family: Literal["beta_vae"] = Field(description="model family: " + ", ".join(FAMILIES))
    beta: float = Field(4.0, ge=0, description="weight of the KL term (dlib's sweep: 1, 2, 4, 6, 8, 16)")


class AnnealedVAEConfig(_BaselineModel):
    family: Literal["annealed_vae"] = Field(description="model family: " + ", ".join(FAMILIES))
    gamma: float = Field(1000.0, ge=0, description="weight of |KL - C(step)|")
    c_max: float = Field(25.0, ge=0, description="final capacity C in nats (dlib's sweep: 5, 10, 25, 50, 75, 100)")
    iteration_threshold: int = Field(
        100000, ge=1, description="steps over which C grows linearly from 0 to c_max (dlib: 100000 of 300000)")


class FactorVAEConfig(_BaselineModel):
    family: Literal["factor_vae"] = Field(description="model family: " + ", ".join(FAMILIES))
    gamma: float = Field(30.0, ge=0, description="weight of the discriminator's TC estimate (dlib's sweep: 10, 20, "
                                                  "30, 40, 50, 100)")
    discriminator_lr: float = Field(1e-4, gt=0, description="Adam learning rate of the discriminator")
    discriminator_betas: tuple[Beta, Beta] = Field((0.5, 0.9), description="Adam betas of the discriminator")


class DIPVAEIConfig(_BaselineModel):
    family: Literal["dip_vae_i"] = Field(description="model family: " + ", ".join(FAMILIES))
    lambda_od: float = Field(5.0, ge=0, description="weight of the off-diagonal covariance terms (dlib's sweep: 1, "
                                                     "2, 5, 10, 20, 50)")
    lambda_d_factor: float = Field(10.0, ge=0, description="weight of the diagonal terms over lambda_od")


class DIPVAEIIConfig(_BaselineModel):
    family: Literal["dip_vae_ii"] = Field(description="model family: " + ", ".join(FAMILIES))
    lambda_od: float = Field(5.0, ge=0, description="weight of the off-diagonal covariance terms (dlib's sweep: 1, "
                                                     "2, 5, 10, 20, 50)")
    lambda_d_factor: float = Field(1.0, ge=0, description="weight of the diagonal terms over lambda_od")


class BetaTCVAEConfig(_BaselineModel):
    family: Literal["beta_tc_vae"] = Field(description="model family: " + ", ".join(FAMILIES))
    beta: float = Field(4.0, ge=0, description="weight of the total correlation (dlib's sweep: 1, 2, 4, 6, 8, 10)")


MODEL_SECTIONS: dict[str, type[_ModelSection]] = {
    "gdrae": GdraeModelConfig, "beta_vae": BetaVAEConfig, "annealed_vae": AnnealedVAEConfig,
    "factor_vae": FactorVAEConfig, "dip_vae_i": DIPVAEIConfig, "dip_vae_ii": DIPVAEIIConfig,
    "beta_tc_vae": BetaTCVAEConfig,
}
AnyModelConfig = Annotated[Union[tuple(MODEL_SECTIONS.values())], Field(discriminator="family")]


TAG = "model.family, copied here by RunConfig to choose the loss section: not a key of run.yaml"


class LossConfig(_Section):
    """GDRAE's loss weights (docs/model.md section 6)."""

    family: Literal["gdrae"] = Field("gdrae", exclude=True, description=TAG)
    recon: LossWeight = Field(1.0, description="weight of the reconstruction term (Sector2D: 1000)")
    prior: LossWeight = Field(1000.0, description="weight of relu(|mu| - r), keeps codes in the prior box")
    sn: LossWeight = Field(1000.0, description="weight of (log spectral norm of J diag(1/sv))^2")
    sv: LossWeight = Field(0.01, description="weight of the entropy of softmax(log sv) (Sector2D: 1)")
    cap: LossWeight = Field(10.0, description="weight of the log capacity c")
    norm_sv: LossWeight = Field(0.01, description="weight of mean sv^2 (images only; null disables)")


class BaselineLossConfig(_Section):
    """A baseline's loss section: the weight of its data term only; its regulariser's weights are model keys."""

    family: Literal[BASELINES] = Field(exclude=True, description=TAG)
    recon: float = Field(1.0, ge=0, description="weight of the data term (Sector2D: 1000, a Gaussian decoder of "
                                                "variance 1/2000)")


AnyLossConfig = Annotated[Union[LossConfig, BaselineLossConfig], Field(discriminator="family")]


class TrainConfig(_Section):
    steps: int = Field(100000, ge=1, description="optimisation steps")
    seed: int = Field(0, description="seed of torch, numpy and the data order")
    device: Literal[DEVICES] = Field("auto", description="auto picks cuda when available")
    lr: float = Field(1e-4, gt=0, description="Adam learning rate")
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="Adam betas, each in [0, 1)")
    run_dir: str | None = Field(None, description="run directory; empty means runs/<data.name>")
    log_every: int = Field(100, ge=1, description="steps between scalar logs")
    image_every: int = Field(5000, ge=1, description="steps between qualitative images")
    eval_every: int = Field(10000, ge=1, description="steps between geometric diagnostics")
    ckpt_every: int = Field(5000, ge=1, description="steps between checkpoints")
    keep_checkpoints: int = Field(3, ge=1, description="numbered checkpoints kept besides latest.pt")
    keep_steps: list[PositiveInt] = Field(
        [], description="steps whose numbered checkpoint is written whatever ckpt_every says and never pruned (evaluation points)"
    )
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="autocast dtype of the training step")
    compile: bool = Field(False, description="torch.compile the training step")
    spectral_route: Literal[SPECTRAL_ROUTES] | None = Field(
        None, description="GDRAE only: how the power iteration is computed (same numbers): auto picks the fastest; reference is docs/model.md section 6 as written"
    )
    max_nonfinite: int = Field(20, ge=1, description="consecutive non-finite losses before the run stops")
    diag_points: int = Field(64, ge=1, description="latent points of the diagnostics at each evaluation")
    metrics: list[str] = Field([], description="disentanglement metrics at each evaluation via gdrae.evaluate; [] for none")


class RunConfig(_Section):
    data: DataConfig = Field(default_factory=DataConfig, description="what to train on")
    model: AnyModelConfig = Field(default_factory=GdraeModelConfig, description="architecture")
    loss: AnyLossConfig = Field(default_factory=LossConfig, description="loss weights")
    train: TrainConfig = Field(default_factory=TrainConfig, description="optimisation and logging")

    @model_validator(mode="before")
    @classmethod
    def _family_everywhere(cls, raw: Any) -> Any:
        """``model.family`` defaults to gdrae and tells the loss section which weights it holds."""
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        model, loss = raw.get("model", {}), raw.get("loss", {})
        if isinstance(model, dict):
            model = raw["model"] = {"family": "gdrae", **model}
            if isinstance(loss, dict):
                if "family" in loss:
                    raise ValueError("loss.family: unknown key (the family is model.family)")
                raw["loss"] = {**loss, "family": model["family"]}
        return raw

    @model_validator(mode="after")
    def _derive(self) -> "RunConfig":
        if not self.train.run_dir:
            self.train.run_dir = f"runs/{self.data.name}"
        route = self.train.spectral_route
        if self.model.family == "gdrae" and route is None:
            self.train.spectral_route = "auto"
        elif self.model.family != "gdrae" and route is not None:
            raise ValueError(f"train.spectral_route: GDRAE's only (its power iteration); a {self.model.family} "
                             f"run has none: remove the key, got {route!r}")
        return self


def _owners(section: str, key: str) -> list[str]:
    """The families whose ``section`` (model or loss) has ``key``."""
    classes = MODEL_SECTIONS if section == "model" else {f: LossConfig if f == "gdrae" else BaselineLossConfig
                                                         for f in FAMILIES}
    return [f for f, c in classes.items() if key in c.model_fields and key != "family"]


def _untagged(loc: tuple) -> tuple:
    """A pydantic error location without the family tag that the model and loss unions add after the section."""
    if len(loc) > 1 and loc[0] in ("model", "loss") and loc[1] in FAMILIES:
        return (loc[0], *loc[2:])
    return tuple(loc)


def _key_path(loc: tuple) -> str:
    """Dotted key of a pydantic error location, without union tags or tuple indices."""
    parts, cls = [], RunConfig
    family = loc[1] if len(loc) > 1 and loc[0] in ("model", "loss") and loc[1] in FAMILIES else None
    for part in _untagged(loc):
        if not (isinstance(part, str) and cls is not None and part in cls.model_fields):
            break
        parts.append(part)
        if cls is RunConfig and part in ("model", "loss"):
            cls = (MODEL_SECTIONS[family] if part == "model" else
                   LossConfig if family == "gdrae" else BaselineLossConfig) if family else None
            continue
        annotation = cls.model_fields[part].annotation
        cls = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return ".".join(parts)


def _error_line(source: str, err: dict) -> str:
    loc = _untagged(err["loc"])
    if err["type"] == "extra_forbidden":
        key = ".".join(str(p) for p in loc)
        owners = _owners(loc[0], loc[-1]) if len(loc) == 2 and loc[0] in ("model", "loss") else []
        family = err["loc"][1] if owners else None
        if owners:
            return f"{source}: {key}: unknown key for model.family {family} (a key of {', '.join(owners)})"
        return f"{source}: {key}: unknown key"
    if err["type"] == "union_tag_invalid":
        return f"{source}: model.family: expected one of {', '.join(FAMILIES)}, got {err['ctx']['tag']!r}"
    key = _key_path(err["loc"])
    if err["type"] == "value_error":  # our consistency checks say "<field>: expected ..., got ..."
        msg = err["msg"].removeprefix("Value error, ")
        return f"{source}: {key}.{msg}" if key else f"{source}: {msg}"
    msg = err['msg'][:1].lower() + err['msg'][1:]
    return f"{source}: {key or '(top level)'}: {msg}, got {err['input']!r}"


def _apply_override(raw: dict, source: str, override: str) -> None:
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise GdraeError(f"{source}: override {override!r}: expected KEY=VALUE, e.g. train.steps=10")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GdraeError(f"{source}: {key}: expected a YAML value, got {text!r} ({exc.problem})") from None
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise GdraeError(f"{source}: {'.'.join(parts[: i + 1])}: expected a section, got {child!r}")
        node = child
    node[parts[-1]] = value


def config_from_dict(raw: Any, source: str = "config", overrides: Iterable[str] = ()) -> RunConfig:
    """Validate a parsed run.yaml (plus KEY=VALUE overrides) into a :class:`RunConfig`."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise GdraeError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    raw = yaml.safe_load(yaml.safe_dump(raw))  # a deep copy the overrides may edit
    for override in overrides:
        _apply_override(raw, source, override)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise GdraeError(_error_line(source, exc.errors()[0])) from None


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> RunConfig:
    """Read run.yaml, apply overrides like "train.steps=10" (values parsed as YAML) and validate.

    Raises GdraeError naming the file and the key path for any problem.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise GdraeError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise GdraeError(f"{path}: expected a UTF-8 text file, got byte {exc.object[exc.start]:#04x} "
                         f"at offset {exc.start}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GdraeError(f"{path}: expected valid YAML, got a parse error ({exc})".replace("\n", " ")) from None
    return config_from_dict(raw, str(path), overrides)


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...").strip()


def _dump_lines(model: BaseModel, indent: int) -> list[str]:
    lines = []
    pad = "  " * indent
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if field.exclude or (value is None and field.default is None):  # not a key of run.yaml, or not set
            continue
        comment = f"  # {field.description}" if field.description else ""
        if isinstance(value, BaseModel):
            lines.append(f"{pad}{name}:{comment}")
            lines.extend(_dump_lines(value, indent + 1))
        else:
            dumped = list(value) if isinstance(value, tuple) else value
            lines.append(f"{pad}{name}: {_yaml_value(dumped)}{comment}")
    return lines


def dump_config(cfg: RunConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as commented YAML (field order kept), atomically."""
    write_atomic(path, "\n".join(_dump_lines(cfg, 0)) + "\n")
