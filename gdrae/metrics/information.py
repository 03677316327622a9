"""Discretisation, entropy and mutual information of discrete labels (nats).

Two discretisers exist because two conventions are in use:

* :func:`bins_mean_std` - the GDRAE original's: equal-width bins over
  mean +- 3 std (population std over the given rows), values outside clamp to
  the end bins, a zero-width range puts everything in bin 0.
* :func:`bins_sample_range` - disentanglement_lib's: ``np.histogram`` edges
  over the sample's own range, then ``np.digitize`` on all edges but the last.

Both return 0-based bin indices so they can feed ``np.bincount`` directly.
"""
from __future__ import annotations

import numpy as np


def entropy_from_counts(counts: np.ndarray, axis: int = -1) -> np.ndarray:
    """Plug-in entropy (nats) of the histograms ``counts`` along ``axis``.

    An all-zero histogram has entropy 0.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=axis, keepdims=True)
    p = counts / np.where(total > 0, total, 1.0)
    logp = np.log(np.where(p > 0, p, 1.0))
    return -(p * logp).sum(axis=axis)


def bins_mean_std(codes: np.ndarray, nbins: int, mean: np.ndarray | None = None,
                  std: np.ndarray | None = None) -> np.ndarray:
    """Bin each column of ``codes`` (N, D) into ``nbins`` bins over mean +- 3 std.

    ``mean``/``std`` default to the column statistics of ``codes``; pass the
    whole data set's when binning a subset. Returns int32 (N, D) in [0, nbins).
    """
    codes = np.asarray(codes, dtype=np.float64)
    mean = codes.mean(axis=0) if mean is None else mean
    std = codes.std(axis=0) if std is None else std
    width = 6.0 * std / nbins
    live = width > 0
    scaled = codes - (mean - 3.0 * std)
    scaled *= np.where(live, 1.0 / np.where(live, width, 1.0), 0.0)
    np.floor(scaled, out=scaled)
    np.clip(scaled, 0, nbins - 1, out=scaled)
    return scaled.astype(np.int32)


def bins_sample_range(x: np.ndarray, nbins: int) -> np.ndarray:
    """Bin each column of ``x`` (n, D) on ``np.histogram`` edges of that column.

    Matches disentanglement_lib's histogram discretiser (its labels minus 1).
    Returns int64 (n, D) in [0, nbins).
    """
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(x.shape, dtype=np.int64)
    for j in range(x.shape[1]):
        edges = np.histogram(x[:, j], nbins)[1]
        out[:, j] = np.digitize(x[:, j], edges[:-1]) - 1
    return out


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """Plug-in mutual information (nats) of two non-negative int label vectors."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    nb = int(b.max()) + 1
    joint = np.bincount(a * nb + b, minlength=(int(a.max()) + 1) * nb).reshape(-1, nb)
    h_a = entropy_from_counts(joint.sum(axis=1))
    h_b = entropy_from_counts(joint.sum(axis=0))
    h_ab = entropy_from_counts(joint.ravel())
    return float(max(h_a + h_b - h_ab, 0.0))


def mi_matrix(code_labels: np.ndarray, factor_labels: np.ndarray) -> np.ndarray:
    """Mutual information (D, K) between each discrete code and each factor."""
    d, k = code_labels.shape[1], factor_labels.shape[1]
    return np.array([[mutual_information(code_labels[:, j], factor_labels[:, i])
                      for i in range(k)] for j in range(d)], dtype=np.float64).reshape(d, k)


def label_entropy(labels: np.ndarray) -> np.ndarray:
    """Plug-in entropy (nats) of each column of non-negative int labels (n, K)."""
    return np.array([entropy_from_counts(np.bincount(labels[:, i]))
                     for i in range(labels.shape[1])], dtype=np.float64)
