"""Row sums over fixed global blocks: the same bits for any rank count and any row split."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mpiml.comm.rowblocks import RowBlocks

RNG = np.random.default_rng(3)
N = 61
X = RNG.standard_normal((N, 4)) * 10.0 ** RNG.integers(-8, 9, (N, 4))
T = RNG.integers(0, 3, N)
W = RNG.uniform(0.1, 2.0, N)


def _terms(Xb, tb, wb):
    weighted = Xb if wb is None else Xb * wb[:, None]
    return np.concatenate([weighted.sum(axis=0), np.bincount(tb, minlength=3),
                           [Xb.shape[0]]])


def _serial(block_rows, weighted):
    """The definition: block sums in block order, one block at a time."""
    sums = [_terms(X[j:j + block_rows], T[j:j + block_rows],
                   W[j:j + block_rows] if weighted else None)
            for j in range(0, N, block_rows)]
    return np.stack(sums).sum(axis=0)


def _split(size, pattern):
    """Uneven row counts for ``size`` ranks, with empty ranks for some patterns."""
    weights = np.array([(pattern * (r + 3)) % 5 for r in range(size)], dtype=float)
    if not weights.any():
        weights[-1] = 1
    counts = np.floor(weights / weights.sum() * N).astype(int)
    counts[np.argmax(weights)] += N - counts.sum()
    return np.concatenate([[0], np.cumsum(counts)])


def _sums(comm, block_rows, pattern, weighted):
    starts = _split(comm.size, pattern)
    lo, hi = starts[comm.rank], starts[comm.rank + 1]
    blocks = RowBlocks(comm, (X[lo:hi], T[lo:hi], W[lo:hi] if weighted else None), 8,
                       block_rows=block_rows)
    return blocks.sums(_terms, 8), blocks.n_blocks


@pytest.mark.parametrize("block_rows", [1, 7, 16, 100])
@pytest.mark.parametrize("pattern", [1, 2, 4])
@pytest.mark.parametrize("weighted", [False, True])
def test_sums_are_the_same_bits_for_any_split(spmd, block_rows, pattern, weighted):
    expected = _serial(block_rows, weighted)
    for sums, n_blocks in spmd(_sums, block_rows, pattern, weighted):
        assert n_blocks == -(-N // block_rows)
        assert_array_equal(sums, expected)
    assert_array_equal(expected[4:7], np.bincount(T, minlength=3))


def _grown(comm):
    lo, hi = (0, N) if comm.rank == 0 else (N, N)
    return RowBlocks(comm, (X[lo:hi],), 1 << 20, block_rows=2).block_rows


def test_blocks_grow_to_keep_the_buffer_small(spmd):
    # 31 blocks of 2 rows times a width of 2^20 would pass MAX_SLOTS = 2^21
    assert set(spmd(_grown)) == {32}
