"""3DFaces (``faces``): Basel face model renders, 64x64 grey, on a 4-factor grid.

The ``.pth`` file holds one uint8 tensor (50, 21, 11, 11, 64, 64) whose
leading dimensions are the factor grid, already in grid order; the sizes are
read from ``shape[:-2]``. It is loaded with ``torch.load(weights_only=True)``
so a file carrying any other pickled object is refused instead of run.

Reference: Paysan et al., "A 3D Face Model for Pose and Illumination
Invariant Face Recognition" (AVSS 2009); renders as used by Kulkarni et al.,
"Deep Convolutional Inverse Graphics Network" (NeurIPS 2015).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import TYPE_CHECKING

from gdrae.errors import GdraeError
from pipelines.base import Converted, DatasetSpec, RawFile
from pipelines.checks import array_blocks

if TYPE_CHECKING:  # torch is imported by convert, so the dataset registry starts without it
    import torch

RAW = RawFile(
    relpath="3dfaces/basel_face_renders.pth",
    source="https://github.com/rtqichen/beta-tcvae (3D faces renders, as distributed with the beta-TCVAE code)",
)
UNAVAILABLE = (
    "the 3DFaces renders are not public and cannot be downloaded: they are the Basel face model renders of "
    "Kulkarni et al. (2015) that the beta-TCVAE authors shared with researchers (https://github.com/rtqichen/"
    f"beta-tcvae); ask them or a colleague for {Path(RAW.relpath).name} and place it at <raw-dir>/{RAW.relpath}, "
    "or pass --manifest with an entry for a copy you host")
_FACTORS = ("face_id", "azimuth", "elevation", "lighting")


def convert(raw_dir: Path) -> Converted:
    """Load the faces tensor safely and hand it out as (B, 1, 64, 64) blocks in grid order."""
    import torch

    path = Path(raw_dir) / RAW.relpath
    tensor = _load_tensor(path)
    if tensor.dtype != torch.uint8 or tensor.dim() != 6 or tuple(tensor.shape[-2:]) != (64, 64):
        raise GdraeError(
            f"{path}: expected a uint8 tensor (face_id, azimuth, elevation, lighting, 64, 64), "
            f"got {tensor.dtype} {tuple(tensor.shape)}"
        )
    sizes = [int(s) for s in tensor.shape[:-2]]
    if min(sizes) == 0:
        raise GdraeError(f"{path}: expected a non-empty factor grid, got sizes {sizes}")
    return Converted(factor_sizes=sizes, factor_values=[[float(i) for i in range(s)] for s in sizes],
                     row_shape=(1, 64, 64), blocks=array_blocks(tensor.reshape(-1, 1, 64, 64).numpy()),
                     pipeline={"loader": "torch.load(weights_only=True)"})


def _load_tensor(path: Path) -> torch.Tensor:
    """The one tensor in ``path``; anything else (or an unsafe pickle) is a GdraeError."""
    import torch

    from gdrae.checkpoint import torch_load

    try:
        obj = torch_load(path)  # a file holding pickled code is a GdraeError saying so
    except GdraeError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as e:
        raise GdraeError(f"{path}: expected a readable .pth file, got a corrupt or truncated file ({e})") from None
    if not isinstance(obj, torch.Tensor):
        raise GdraeError(f"{path}: expected one uint8 tensor, got {type(obj).__name__}")
    return obj


SPEC = DatasetSpec(
    name="faces",
    description="3DFaces: Basel face model renders, 64x64 greyscale",
    factor_names=_FACTORS,
    factor_sizes=(50, 21, 11, 11),
    raw_files=(RAW,),
    convert=convert,
    unavailable=UNAVAILABLE,
)
