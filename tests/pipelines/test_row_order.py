import numpy as np
import pytest

from pipelines.row_order import PermutedRows, row_order


def test_row_order_is_a_seeded_permutation():
    perm = row_order(1000, seed=0)
    assert sorted(perm.tolist()) == list(range(1000))
    np.testing.assert_array_equal(perm, row_order(1000, seed=0))
    assert not np.array_equal(perm, row_order(1000, seed=1))


@pytest.mark.parametrize("bucket_rows", [8, 40, 10_000])  # many buckets, a few, one
def test_grid_rows_come_out_in_stored_order_across_buckets(tmp_path, bucket_rows):
    n, row_shape = 203, (2, 3)
    rows = np.arange(n * 6, dtype=np.int32).reshape(n, *row_shape)  # row g holds 6g .. 6g+5
    perm = row_order(n, seed=5)
    permuted = PermutedRows(perm, row_shape, "int32", tmp_path / "work", align=4,
                            bucket_bytes=bucket_rows * 6 * 4)
    assert permuted.bucket_rows % 4 == 0  # pieces end on chunk boundaries
    for lo, hi in [(0, 1), (1, 50), (50, 51), (51, 203)]:  # blocks of any length, in grid order
        permuted.add(rows[lo:hi])
    pieces = list(permuted.stored())
    assert [lo for lo, _ in pieces] == list(range(0, n, permuted.bucket_rows))
    np.testing.assert_array_equal(np.concatenate([p for _, p in pieces]), rows[perm])
    assert list((tmp_path / "work").iterdir()) == []  # each bucket file goes once read


def test_missing_rows_are_an_error(tmp_path):
    permuted = PermutedRows(row_order(10, 0), (1,), "uint8", tmp_path / "work")
    permuted.add(np.zeros((9, 1), np.uint8))
    with pytest.raises(ValueError, match="rows expected 10, got 9"):
        next(permuted.stored())
