import numpy as np
import pytest

from gdrae.errors import GdraeError
from gdrae.metrics import dci
from gdrae.metrics.dci import dci_completeness, dci_disentanglement

SMALL = dict(num_train=200, num_test=100)


@pytest.fixture
def small(grid):
    """Perfect and row-permuted codes on a (3, 3, 3) grid: few classes keep the trees cheap."""
    sizes = (3, 3, 3)
    codes = grid(sizes).astype(float)
    rng = np.random.RandomState(1)
    shuffled = np.stack([rng.permutation(c) for c in codes.T], axis=1)
    return codes, shuffled, sizes


def test_closed_forms_on_hand_written_importances():
    assert dci_disentanglement(np.eye(3)) == pytest.approx(1.0)
    assert dci_completeness(np.eye(3)) == pytest.approx(1.0)
    # two codes share factor 0: rows stay one-hot, column 0 is uniform over 2 of 3 codes
    r = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    assert dci_disentanglement(r) == pytest.approx(1.0)
    column0 = 1 - np.log(2) / np.log(3)
    assert dci_completeness(r) == pytest.approx(2 / 3 * column0 + 1 / 3 * 1.0)
    # one code serves both factors equally, the other code is unused
    r = np.array([[1.0, 1.0], [0.0, 0.0]])
    assert dci_disentanglement(r) == pytest.approx(0.0)
    assert dci_completeness(r) == pytest.approx(1.0)
    assert dci_disentanglement(np.zeros((3, 2))) == 0.0
    assert dci_completeness(np.zeros((3, 2))) == 0.0
    assert dci_disentanglement(np.ones((4, 4))) == pytest.approx(0.0)
    # a single factor: every used code is fully disentangled
    assert dci_disentanglement(np.array([[0.5], [0.0]])) == pytest.approx(1.0)


def test_perfect_codes(small):
    codes, _, sizes = small
    scores = dci(codes, sizes, **SMALL)
    assert set(scores) == {"disentanglement", "completeness", "informativeness_train",
                           "informativeness_test"}
    assert scores["disentanglement"] > 0.95 and scores["completeness"] > 0.95
    assert scores["informativeness_test"] > 0.95


def test_zero_and_permuted_codes(small):
    codes, shuffled, sizes = small
    zero = dci(np.zeros_like(codes), sizes, **SMALL)
    assert zero["disentanglement"] == 0.0 and zero["completeness"] == 0.0
    scores = dci(shuffled, sizes, **SMALL)
    assert scores["disentanglement"] < 0.2 and scores["completeness"] < 0.2


def test_seeded_and_independent_of_n_jobs(small):
    codes, _, sizes = small
    noisy = codes + 0.5 * np.random.RandomState(0).randn(*codes.shape)
    a = dci(noisy, sizes, seed=2, **SMALL)
    assert a == dci(noisy, sizes, seed=2, n_jobs=2, **SMALL)
    assert a != dci(noisy, sizes, seed=3, **SMALL)


