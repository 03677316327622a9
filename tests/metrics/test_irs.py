import numpy as np
import pytest

from gdrae.errors import GdraeError
from gdrae.metrics import irs
from gdrae.metrics.irs import irs_from_samples


def test_irs_by_hand():
    # z0 = v0 exactly; z1 ignores both factors and swings +-1 within every group
    labels = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    latents = np.array([[0.0, 1.0], [0.0, -1.0], [1.0, -1.0], [1.0, 1.0]])
    # z0: deviation 0 given v0 -> IRS 1, max deviation 0.5;
    # z1: deviation 1 in every group, max deviation 1 -> IRS 0, weight 1
    assert irs_from_samples(labels, latents, 1.0) == pytest.approx(0.5 * 1 / 1.5)
    assert irs_from_samples(labels, np.zeros((4, 2))) == 0.0


def test_perfect_zero_permuted(perfect, permuted):
    codes, sizes = perfect
    assert irs(codes, sizes, num_train=2000)["irs"] == pytest.approx(1.0)
    assert irs(np.zeros_like(codes), sizes, num_train=2000)["irs"] == 0.0
    codes, sizes = permuted
    assert irs(codes, sizes, num_train=2000)["irs"] < 0.2
    assert irs(codes, sizes, seed=4, num_train=300) == irs(codes, sizes, seed=4, num_train=300)
    with pytest.raises(GdraeError, match="diff_quantile"):
        irs(codes, sizes, diff_quantile=2)
