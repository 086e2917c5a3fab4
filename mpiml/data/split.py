"""Train/test split by global row index: the same rows for any rank count."""

__all__ = ["holdout_mask", "take_rows", "train_test_split"]

import numpy as np

from ..checks import check_float, check_int
from .tables import Table

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(z):
    z = z + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def holdout_mask(offset, n_local, test_fraction, seed=0):
    """Local: boolean mask of the rows ``offset .. offset+n_local-1`` that go to the test set.

    Row ``i`` is a test row when a hash of ``(seed, i)``, as a uniform number in [0, 1),
    is below ``test_fraction``: a pure function of the global index.
    """
    test_fraction = check_float("test_fraction", test_fraction, low=0, high=1, high_open=True)
    seed = check_int("seed", seed, low=0)
    with np.errstate(over="ignore"):
        key = _splitmix64(np.uint64(seed))
        idx = np.arange(offset, offset + n_local, dtype=np.uint64)
        u = (_splitmix64(idx ^ key) >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return u < test_fraction


def train_test_split(dataset, test_fraction, seed=0):
    """Local: split a :class:`~mpiml.data.Dataset` shard into train and test shards.

    The test rows are chosen by :func:`holdout_mask` on the global row index, so the split is
    the same for any rank count. Both parts keep rank order (contiguous ``offset``s are
    not recomputed; estimators take their offsets from ``allgather(len(X))``).

    Returns
    -------
    (X_train, y_train, X_test, y_test)
        ``X`` parts of the dataset's kind (array or Table).
    """
    X = dataset.X
    mask = holdout_mask(dataset.offset, len(X), test_fraction, seed)
    keep = ~mask
    return take_rows(X, keep), dataset.y[keep], take_rows(X, mask), dataset.y[mask]


def take_rows(X, rows):
    """Local: the rows ``rows`` (a mask, indices or a slice) of an array or a
    :class:`~mpiml.data.tables.Table`."""
    return X.take(rows) if isinstance(X, Table) else X[rows]
