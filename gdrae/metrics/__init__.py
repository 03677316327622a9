"""Disentanglement metrics as pure functions of a code table in grid order.

``codes[i]`` (N, D) is the representation of the image whose factor classes
are ``np.unravel_index(i, factor_sizes)``; every metric that samples
observations looks codes up in that table. Each function returns a dict of
floats (keys, definitions and defaults: docs/metrics.md).

- :func:`histogram_family` - the GDRAE original's histogram metrics, exact
  over the whole grid (mig, mig_misum, jemmig, migsup, modularity, dcimig);
  :func:`histogram_mi` gives the mutual-information matrix behind them.
- disentanglement_lib family (Locatello et al. 2019 study defaults, seeded
  with ``numpy.random.RandomState(seed)``): :func:`beta_vae`,
  :func:`factor_vae`, :func:`mig`, :func:`dci`, :func:`sap`, :func:`irs`,
  :func:`modularity_explicitness`.
- :func:`alignment` - each code dimension's share of variance explained
  by its one assigned factor (correlation ratio, exact over the grid; the
  Sector2D polar-grid claim); :func:`explained_variance` gives the matrix.
- :func:`seed_agreement` - two runs' codes of the same points compared:
  matched squared correlations of their axes (identifiability across seeds).
"""
from gdrae.metrics.alignment import alignment, explained_variance
from gdrae.metrics.betavae import beta_vae
from gdrae.metrics.dci import dci
from gdrae.metrics.factorvae import factor_vae
from gdrae.metrics.histogram import histogram_family, histogram_mi
from gdrae.metrics.irs import irs
from gdrae.metrics.mig import mig
from gdrae.metrics.modularity import modularity_explicitness
from gdrae.metrics.sap import sap
from gdrae.metrics.seed_agreement import seed_agreement
from gdrae.metrics.udr import active_latents, udr_pair, udr_scores

__all__ = ["active_latents", "alignment", "beta_vae", "dci", "explained_variance", "factor_vae",
           "histogram_family", "histogram_mi", "irs", "mig", "modularity_explicitness", "sap",
           "seed_agreement", "udr_pair", "udr_scores"]
