"""Name -> DatasetSpec. Each pipeline module defines ``SPEC`` (or ``SPECS``); imported on demand."""
from __future__ import annotations

from importlib import import_module

from gdrae.errors import GdraeError
from pipelines.base import DatasetSpec

# CLI name -> module under pipelines/ that defines it
_MODULES = {
    "shapes2d": "shapes2d",
    "shapes3d": "shapes3d",
    "faces": "faces",
    "cars3d": "cars3d",
    "small_norb": "small_norb",
    "sector2d": "sector2d",
    "sector2dunif": "sector2d",
    "shapes2d-synth": "shapes2d_synth",
    "shapes2d-synth-small": "shapes2d_synth",
}

NAMES = tuple(_MODULES)


def get_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; a GdraeError lists the known names otherwise."""
    if name not in _MODULES:
        raise GdraeError(f"unknown dataset {name!r}: expected one of {', '.join(NAMES)}")
    module = import_module(f"pipelines.{_MODULES[name]}")
    specs = getattr(module, "SPECS", None) or {module.SPEC.name: module.SPEC}
    return specs[name]
