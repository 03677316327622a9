"""Family name -> builder, for every model module that defines families (each exposes ``FAMILIES``).

Adding a family: its config section in :mod:`gdrae.config` (``MODEL_SECTIONS``), a module under
``gdrae/models/`` whose ``FAMILIES`` maps the name to ``build(cfg)``, and that module in :data:`MODULES`.
"""
from __future__ import annotations

from importlib import import_module
from typing import Callable

from gdrae.config import FAMILIES as NAMES
from gdrae.errors import GdraeError
from gdrae.models.contract import Model

MODULES = ("gdrae.models.gdrae", "gdrae.models.vae")


def _collect() -> dict[str, Callable[..., Model]]:
    """Every module's builders; a name claimed twice, or one the config does not know, is a bug."""
    builders: dict[str, Callable[..., Model]] = {}
    for name in MODULES:
        for family, build in import_module(name).FAMILIES.items():
            if family in builders or family not in NAMES:
                raise RuntimeError(f"{name}: model family {family!r} is declared twice or unknown to gdrae.config")
            builders[family] = build
    if missing := set(NAMES) - set(builders):
        raise RuntimeError(f"gdrae.config names model families without a builder: {sorted(missing)}")
    return builders


BUILDERS = _collect()


def build_model(cfg) -> Model:
    """The model described by ``cfg`` (a ``RunConfig`` or its ``model`` section), of any family.

    Random draws (initial weights, GDRAE's fixed orthogonal mixings) come from
    torch's default generator: seed torch first for a reproducible model.
    """
    family = getattr(cfg, "model", cfg).family
    if family not in BUILDERS:
        raise GdraeError(f"model.family: expected one of {', '.join(BUILDERS)}, got {family!r}")
    return BUILDERS[family](cfg)
