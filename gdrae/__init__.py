"""gdrae: the GDRAE autoencoder with its data caches, trainer and metrics.

Nothing is imported eagerly (torch is heavy and the data commands do not need
it); the public names below resolve on first use.
"""
from importlib import import_module

__version__ = "0.1.0"

_PUBLIC = {
    "GdraeError": "gdrae.errors",
    "open_cache": "gdrae.data.cache",
    "load_config": "gdrae.config",
    "build_model": "gdrae.models",
    "load_checkpoint": "gdrae.checkpoint",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'gdrae' has no attribute {name!r}")
