"""Time the metrics on a dSprites-size synthetic code table.

Codes: 737,280 x 10 for factor sizes (3, 6, 40, 32, 32): five codes are the
factors plus noise, mixed pairwise, five are noise. Prints one
``name=seconds`` line per figure, e.g.

    python bench/metrics.py                    # everything at study defaults
    GDRAE_PLAIN=gbt python bench/metrics.py    # DCI with scikit-learn's own booster (~20 min)
"""
import argparse
import time

import numpy as np

from gdrae import metrics

SIZES = (3, 6, 40, 32, 32)


def synthetic_codes(seed: int = 0) -> np.ndarray:
    """Grid-order codes: noisy factors (two of them mixed) and pure-noise codes."""
    rng = np.random.RandomState(seed)
    n = int(np.prod(SIZES))
    factors = np.stack(np.unravel_index(np.arange(n), SIZES), axis=1) / np.array(SIZES)
    signal = factors + 0.05 * rng.randn(n, len(SIZES))
    signal[:, 3], signal[:, 4] = signal[:, 3] + 0.3 * signal[:, 4], signal[:, 4] - 0.3 * signal[:, 3]
    return np.concatenate([signal, rng.randn(n, 5)], axis=1).astype(np.float32)


def timed(name: str, fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    print(f"{name}={seconds:.2f}", flush=True)
    return result, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, default=2, help="factors fitted at once in DCI")
    parser.add_argument("--show", action="store_true", help="also print the scores")
    args = parser.parse_args()

    codes = synthetic_codes()

    def run_histograms():
        return [metrics.histogram_family(codes, SIZES, nbins=b) for b in (3, 5, 10, 20, 50)]

    scores, _ = timed("histogram_family_5_bin_counts", run_histograms)
    results = {"histogram_nbins20": scores[3]}
    total = 0.0
    for fn in (metrics.beta_vae, metrics.factor_vae, metrics.mig, metrics.sap, metrics.irs,
               metrics.modularity_explicitness):
        results[fn.__name__], seconds = timed(fn.__name__, fn, codes, SIZES)
        total += seconds
    print(f"dlib_family_without_dci={total:.2f}", flush=True)
    results["dci"], seconds = timed("dci", metrics.dci, codes, SIZES, n_jobs=args.n_jobs)
    print(f"dlib_family_with_dci={total + seconds:.2f}", flush=True)
    if args.show:
        for name, value in results.items():
            print(f"# {name}: {value}")


if __name__ == "__main__":
    main()
