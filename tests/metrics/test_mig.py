import numpy as np
import pytest

from gdrae.metrics import mig
from gdrae.metrics.mig import mig_from_mi, top_two


def test_mig_maths_on_hand_written_matrix():
    mi = np.array([[0.6, 0.0, 0.2], [0.2, 0.0, 0.2]])
    # factor 0: (0.6 - 0.2) / 0.8; factor 1 has zero entropy and is left out; factor 2 ties -> 0
    assert mig_from_mi(mi, np.array([0.8, 0.0, 1.0])) == pytest.approx(0.25)
    assert mig_from_mi(mi, np.zeros(3)) == 0.0
    first, second = top_two(np.array([[3.0, 1.0]]), axis=0)
    assert first.tolist() == [3.0, 1.0] and second.tolist() == [0.0, 0.0]


def test_perfect_zero_duplicated_permuted(perfect, permuted):
    codes, sizes = perfect
    assert mig(codes, sizes, num_train=2000)["discrete_mig"] == pytest.approx(1.0, abs=0.01)
    assert mig(np.zeros_like(codes), sizes, num_train=2000)["discrete_mig"] == 0.0
    assert mig(np.repeat(codes, 2, 1), sizes, num_train=2000)["discrete_mig"] == pytest.approx(0.0)
    codes, sizes = permuted
    assert mig(codes, sizes, num_train=2000)["discrete_mig"] < 0.05


def test_seeded(permuted):
    codes, sizes = permuted
    assert mig(codes, sizes, seed=5, num_train=500) == mig(codes, sizes, seed=5, num_train=500)
    assert mig(codes, sizes, seed=5, num_train=500) != mig(codes, sizes, seed=6, num_train=500)
