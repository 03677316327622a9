"""Name -> DatasetSpec, for every module in ``pipelines/datasets/`` (each defines ``SPEC`` or ``SPECS``)."""
from __future__ import annotations

import pkgutil
from importlib import import_module

from gdrae.errors import GdraeError
from pipelines import datasets
from pipelines.base import DatasetSpec


def _discover() -> dict[str, DatasetSpec]:
    """Import every dataset module and collect its specs; two modules claiming one name is a bug."""
    specs: dict[str, DatasetSpec] = {}
    for module_info in sorted(pkgutil.iter_modules(datasets.__path__), key=lambda m: m.name):
        module = import_module(f"{datasets.__name__}.{module_info.name}")
        found = getattr(module, "SPECS", None) or {module.SPEC.name: module.SPEC}
        for name, spec in found.items():
            if name in specs or name != spec.name:
                raise RuntimeError(f"{module.__file__}: dataset name {name!r} is declared twice or mislabelled")
            specs[name] = spec
    return specs


SPECS = _discover()
NAMES = tuple(SPECS)


def get_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; a GdraeError lists the known names otherwise."""
    if name not in SPECS:
        raise GdraeError(f"unknown dataset {name!r}: expected one of {', '.join(NAMES)}")
    return SPECS[name]
