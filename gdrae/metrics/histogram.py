"""The histogram family: the GDRAE original's own evaluation, computed exactly.

Every score comes from one MI matrix I (D, K), the conditional entropies
H(z_j | v_k) and H(v_k) = log n_k. Codes are binned per dimension over
mean +- 3 std (see :func:`gdrae.metrics.information.bins_mean_std`).
H(z_j | v_k) is the average over the values of v_k of the histogram entropy
on that slice of the grid. By default every row of the grid is used, which
is exact: the grid is uniform, so each slice is a fixed set of rows and one
``np.bincount`` over (slice, code, bin) keys gives every histogram at once.
``max_samples`` reproduces the original's sampled estimate instead.

Factors with a single value are dropped (see ``check_inputs``). Mutual
informations are clipped at 0 (the sampled estimate can go slightly below).
"""
from __future__ import annotations

import numpy as np

from gdrae.data.grid import factors_to_index, sample_factors
from gdrae.metrics.information import bins_mean_std, entropy_from_counts
from gdrae.metrics.mig import mig_from_mi, top_two
from gdrae.metrics.modularity import modularity_from_mi
from gdrae.metrics.sampling import check_count, check_inputs


def mig_misum_from_mi(mi: np.ndarray) -> float:
    """The original code's MIG: mean over factors of the top-two gap / sum_j I(z_j; v_k).

    Not Chen et al.'s MIG (which divides by H(v_k)); kept to compare with the
    original's numbers. A factor no code informs about scores 0.
    """
    first, second = top_two(mi, axis=0)
    total = np.asarray(mi, dtype=np.float64).sum(axis=0)
    return float(np.mean(np.where(total > 0, (first - second) / np.where(total > 0, total, 1.0), 0.0)))


def jemmig_from(mi: np.ndarray, cond_entropy: np.ndarray, factor_entropy: np.ndarray,
                nbins: int) -> float:
    """JEMMIG: mean over k of (H(z_j*, v_k) - I_(1) + I_(2)) / (H(v_k) + log nbins).

    j* is the code with the largest I(z_j; v_k) and
    H(z_j*, v_k) = H(v_k) + H(z_j* | v_k). Lower is better.
    Reference: Do & Tran 2020, "Theory and Evaluation Metrics for Learning
    Disentangled Representations".
    """
    mi = np.asarray(mi, dtype=np.float64)
    factor_entropy = np.asarray(factor_entropy, dtype=np.float64)
    first, second = top_two(mi, axis=0)
    best = np.argmax(mi, axis=0)
    joint = factor_entropy + cond_entropy[best, np.arange(mi.shape[1])]
    return float(np.mean((joint - first + second) / (factor_entropy + np.log(nbins))))


def migsup_from_mi(mi: np.ndarray, factor_entropy: np.ndarray) -> float:
    """MIG-sup: mean over codes of the gap between its top two I(z_j; v_k) / H(v_k).

    Reference: Li et al. 2020, "Progressive Learning and Disentanglement of
    Hierarchical Representations".
    """
    normalised = np.asarray(mi, dtype=np.float64) / np.asarray(factor_entropy, dtype=np.float64)
    first, second = top_two(normalised, axis=1)
    return float(np.mean(first - second))


def dcimig_from_mi(mi: np.ndarray, factor_entropy: np.ndarray) -> float:
    """DCIMIG: sum_k S_k / sum_k H(v_k).

    Each code's gap between its top two I over factors is credited to its
    top factor; S_k is the largest gap credited to factor k (0 if none).
    Reference: Sepliarskaia et al. 2019, "Evaluating Disentangled
    Representations".
    """
    mi = np.asarray(mi, dtype=np.float64)
    first, second = top_two(mi, axis=1)
    credit = np.zeros(mi.shape[1])
    np.maximum.at(credit, np.argmax(mi, axis=1), first - second)
    return float(credit.sum() / np.sum(factor_entropy))


def histogram_family(codes, factor_sizes, nbins: int = 20, max_samples: int | None = None,
                     seed: int = 0) -> dict:
    """MIG, the original's MIG, JEMMIG, MIG-sup, modularity and DCIMIG from histograms.

    Exact over the whole grid by default; ``max_samples`` estimates H(z_j)
    and each slice's histogram from that many uniformly drawn rows (with
    replacement, seeded by ``seed``), as the original did with 10000.
    Returns ``{"mig", "mig_misum", "jemmig", "migsup", "modularity", "dcimig"}``.
    """
    mi, h_cond, sizes = _mi_and_conditional_entropy(codes, factor_sizes, nbins, max_samples, seed)
    nbins = int(nbins)
    h_v = np.log(np.asarray(sizes, dtype=np.float64))
    return {
        "mig": mig_from_mi(mi, h_v),
        "mig_misum": mig_misum_from_mi(mi),
        "jemmig": jemmig_from(mi, h_cond, h_v, nbins),
        "migsup": migsup_from_mi(mi, h_v),
        "modularity": modularity_from_mi(mi),
        "dcimig": dcimig_from_mi(mi, h_v),
    }


def histogram_mi(codes, factor_sizes, nbins: int = 20, max_samples: int | None = None,
                 seed: int = 0) -> np.ndarray:
    """The mutual information I(z_j; v_k) (D, K), nats, behind :func:`histogram_family`.

    One column per entry of ``factor_sizes``: a factor with a single value
    carries no information and gets a zero column (the scores leave it out).
    """
    mi, _, _ = _mi_and_conditional_entropy(codes, factor_sizes, nbins, max_samples, seed)
    varying = np.array([int(s) > 1 for s in factor_sizes])
    full = np.zeros((mi.shape[0], len(varying)))
    full[:, varying] = mi
    return full


def _mi_and_conditional_entropy(codes, factor_sizes, nbins, max_samples, seed):
    """I(z_j; v_k) and H(z_j | v_k) (D, K') over the K' factors that vary, and their sizes."""
    codes, sizes = check_inputs(codes, factor_sizes)
    nbins = check_count("nbins", nbins, 2)
    bins = bins_mean_std(codes, nbins)
    if max_samples is None:
        h_z, h_cond = _entropies_exact(bins, sizes, nbins)
    else:
        max_samples = check_count("max_samples", max_samples)
        h_z, h_cond = _entropies_sampled(bins, sizes, nbins, max_samples,
                                         np.random.RandomState(seed))
    return np.clip(h_z[:, None] - h_cond, 0.0, None), h_cond, sizes


def _code_keys(bins: np.ndarray, nbins: int) -> np.ndarray:
    """Bin index j * nbins + b per entry, so one bincount histograms all codes."""
    return bins + np.arange(bins.shape[1], dtype=bins.dtype) * nbins


def _entropies_exact(bins: np.ndarray, sizes: tuple[int, ...], nbins: int):
    """H(z_j) (D,) and H(z_j | v_k) (D, K) from every row of the grid.

    Consecutive factors are grouped while their joint histogram stays small,
    so one bincount over (cell of the group, code, bin) serves the whole
    group; each factor's slices are marginals of it.
    """
    n, d = bins.shape
    keys = _code_keys(bins, nbins)
    h_cond = np.empty((d, len(sizes)))
    for start, stop in _factor_groups(sizes, d * nbins):
        group = sizes[start:stop]
        cells = int(np.prod(group))
        grid = keys.reshape(int(np.prod(sizes[:start])), cells, -1, d)
        offset = (np.arange(cells, dtype=keys.dtype) * (d * nbins)).reshape(1, cells, 1, 1)
        counts = np.bincount((grid + offset).ravel(), minlength=cells * d * nbins)
        counts = counts.reshape(group + (d, nbins))
        axes = tuple(range(len(group)))
        for i, k in enumerate(range(start, stop)):
            per_value = counts.sum(axis=axes[:i] + axes[i + 1:])
            h_cond[:, k] = entropy_from_counts(per_value).mean(axis=0)
    h_z = entropy_from_counts(counts.sum(axis=axes))
    return h_z, h_cond


def _factor_groups(sizes: tuple[int, ...], per_cell: int, limit: int = 1 << 22):
    """Runs [start, stop) of consecutive factors whose joint histogram has <= ``limit`` entries."""
    groups, start, cells = [], 0, 1
    for k, n_k in enumerate(sizes):
        if k > start and cells * n_k * per_cell > limit:
            groups.append((start, k))
            start, cells = k, 1
        cells *= n_k
    groups.append((start, len(sizes)))
    return groups


def _entropies_sampled(bins: np.ndarray, sizes: tuple[int, ...], nbins: int, max_samples: int,
                       rng: np.random.RandomState):
    """H(z_j) and H(z_j | v_k) each from ``max_samples`` random rows (whole slice if smaller)."""
    n, d = bins.shape
    keys = _code_keys(bins, nbins)

    def entropy_of(rows: np.ndarray) -> np.ndarray:
        return entropy_from_counts(np.bincount(rows.ravel(), minlength=d * nbins).reshape(d, nbins))

    h_z = entropy_of(keys if max_samples >= n else keys[rng.randint(n, size=max_samples)])
    grid = keys.reshape(sizes + (d,))
    h_cond = np.empty((d, len(sizes)))
    for k, n_k in enumerate(sizes):
        per_value = []
        for value in range(n_k):
            if max_samples >= n // n_k:
                rows = np.take(grid, value, axis=k)
            else:
                factors = sample_factors(max_samples, sizes, rng)
                factors[:, k] = value
                rows = keys[factors_to_index(factors, sizes)]
            per_value.append(entropy_of(rows))
        h_cond[:, k] = np.mean(per_value, axis=0)
    return h_z, h_cond
