"""Which torch device a setting names: the one place "auto", "cpu" and "cuda" are read."""
from __future__ import annotations

from typing import TYPE_CHECKING

from gdrae.errors import GdraeError

if TYPE_CHECKING:
    import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, key: str = "device") -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda``; ``key`` names the setting in errors.

    A GdraeError when the name is none of those, or when it asks for CUDA and none is available.
    """
    import torch  # here, not at the top: the command-line options read DEVICES without loading torch

    if name not in DEVICES:
        raise GdraeError(f"{key}: expected {', '.join(DEVICES[:-1])} or {DEVICES[-1]}, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise GdraeError(f"{key}: expected a CUDA device ({key}=cuda), got none available")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")
