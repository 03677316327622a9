"""Named switches from each fast path that leans on another library's internals back to the plain library call.

Each fast path computes what a plain call of the library computes, only
faster, by relying on something that library does not promise
(docs/internals.md lists what, the versions tested, and the parity test
that holds each one to its plain call; tests/test_fastpaths.py tests the
switches themselves). Should a new version
of the library break one, name it in the environment variable
``GDRAE_PLAIN`` (names separated by commas, or ``all``) and gdrae takes the
plain call; the variable is read at each use::

    GDRAE_PLAIN=chunk_files gdrae-train --config configs/shapes2d.yaml
"""
from __future__ import annotations

import os

ENV = "GDRAE_PLAIN"
FAST_PATHS: dict[str, str] = {
    "chunk_files": "gdrae.data.cache reads a chunk file and decodes it itself (blosc, CRC32C) instead of "
                   "through zarr's read pipeline",
    "gbt": "DCI's GradientBoostingClassifier() computed by gdrae.metrics.gbt instead of scikit-learn's own",
    "positive_mask": "the ReLU slope written straight into a float tensor by torch.gt(x, 0, out=...) instead of "
                     "(x > 0).to(x.dtype)",
    "channels_last": "the encoder's weights in channels-last layout while a cache is encoded, instead of as "
                     "they are",
}


def fast(name: str) -> bool:
    """True unless ``GDRAE_PLAIN`` names the fast path ``name`` (or is ``all``)."""
    if name not in FAST_PATHS:
        raise ValueError(f"fast path: expected one of {', '.join(FAST_PATHS)}, got {name!r}")
    plain = os.environ.get(ENV)
    if not plain:
        return True
    names = {n.strip() for n in plain.split(",")}
    return not ("all" in names or name in names)
