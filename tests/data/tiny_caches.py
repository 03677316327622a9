"""Small caches built from in-memory arrays whose content encodes the row index."""
import json

import numpy as np


def index_images(n: int) -> np.ndarray:
    """uint8 (n, 3, 2, 2) images whose first pixel of each channel spells the row index in base 256."""
    images = np.zeros((n, 3, 2, 2), np.uint8)
    rows = np.arange(n)
    for c in range(3):
        images[:, c, 0, 0] = (rows >> (8 * c)) & 255
    images[:, :, 1, 1] = 7
    return images


def decode_index(images) -> np.ndarray:
    images = np.asarray(images).astype(np.int64)
    return images[:, 0, 0, 0] + (images[:, 1, 0, 0] << 8) + (images[:, 2, 0, 0] << 16)


def chunk_file(cache, i: int):
    """The file holding chunk ``i`` of the cache's data array."""
    array = cache.data.zarr
    return cache.path / cache.data.name / array.metadata.encode_chunk_key((i,) + (0,) * (array.ndim - 1))


def corrupt(path) -> None:
    """Flip one byte in the middle of a file."""
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def edit_metadata(cache_path, key: str, edit) -> None:
    """Rewrite ``<cache>/<key>/zarr.json`` with ``edit(metadata dict)`` applied, or with the text ``edit``."""
    path = cache_path / key / "zarr.json"
    if isinstance(edit, str):
        path.write_text(edit)
        return
    metadata = json.loads(path.read_text())
    edit(metadata)
    path.write_text(json.dumps(metadata))
