"""Feature binning whose edges do not depend on how rows are spread over ranks."""

__all__ = ["BinEdges", "fit_bin_edges", "bin_data"]

import numpy as np

from ...comm.partition import block_range
from ._bin_kernels import bin_columns, build_bin_lookup

DEFAULT_SAMPLE_SIZE = 200_000


class BinEdges:
    """Upper edges of every feature's bins.

    Attributes
    ----------
    edges : list of ndarray, float64
        ``edges[f]`` is sorted, of length ``n_bins[f] - 1``: value x of feature f falls
        in bin ``b`` = number of edges strictly below x, so ``x <= edges[f][b]`` exactly
        when x's bin is ``<= b``. NaN falls in the last bin.
    n_bins : ndarray of shape (n_features,), int64
    """

    def __init__(self, edges):
        self.edges = [np.asarray(e, dtype=np.float64) for e in edges]
        self.n_bins = np.array([len(e) + 1 for e in self.edges], dtype=np.int64)

    @property
    def n_features(self):
        return len(self.edges)

    @property
    def max_n_bins(self):
        """Histogram width: the largest bin count of any feature (at least 1)."""
        return int(self.n_bins.max(initial=1))

    def threshold(self, feature, threshold_bin):
        """The float threshold of a split ``bin <= threshold_bin`` of ``feature``."""
        return float(self.edges[feature][threshold_bin])

    def padded(self):
        """``(edges (n_features, 2**d - 1) float64 padded with +inf, n_edges (n_features,) int64)``."""
        longest = max((len(e) for e in self.edges), default=0)
        width = (1 << int(longest).bit_length()) - 1 if longest else 1  # 2**d - 1 >= longest
        table = np.full((self.n_features, width), np.inf)
        for f, e in enumerate(self.edges):
            table[f, :len(e)] = e
        return table, self.n_bins - 1

    def lookup(self):
        """The edges as :func:`~._bin_kernels.build_bin_lookup` arranges them for binning."""
        table = np.concatenate(self.edges) if self.edges else np.empty(0)
        starts = np.zeros(self.n_features + 1, dtype=np.int64)
        np.cumsum(self.n_bins - 1, out=starts[1:])
        return build_bin_lookup(table, starts)


def _feature_edges(column, max_bins):
    """Edges of one feature from its sample values (scikit-learn's HistGradientBoosting rule:
    midpoints between distinct values when there are few, else midpoint quantiles)."""
    column = np.sort(column[~np.isnan(column)])
    if column.size == 0:
        return np.empty(0)
    distinct = column[np.concatenate(([True], column[1:] != column[:-1]))]
    # a * 0.5 + b * 0.5 equals (a + b) * 0.5 but cannot overflow near the float64 maximum
    if distinct.size <= max_bins:
        return distinct[:-1] * 0.5 + distinct[1:] * 0.5
    # numpy.percentile(column, q, method="midpoint") on the already sorted column
    position = np.linspace(0, 100, max_bins + 1)[1:-1] / 100 * (column.size - 1)
    lower = np.floor(position).astype(np.int64)
    upper = np.ceil(position).astype(np.int64)
    edges = column[lower] * 0.5 + column[upper] * 0.5
    return np.unique(edges)


def fit_bin_edges(X, max_bins=255, *, comm=None, sample_size=DEFAULT_SAMPLE_SIZE, seed=0):
    """Bin edges of every feature, equal on every rank for any row distribution.

    Collective when ``comm`` is given. The edges are computed from a sample of at most
    ``sample_size`` rows chosen by *global* row index (seeded by ``seed``), gathered in
    global order onto every rank; each rank computes the edges of its block of features
    and the blocks are allgathered.

    Parameters
    ----------
    X : ndarray of shape (n_local, n_features)
        This rank's rows (rank r holds the r-th contiguous block of the global rows).
    max_bins : int, 2..256
    comm : Communicator or None
        ``None``: one rank holds every row.
    sample_size : int
    seed : int

    Returns
    -------
    BinEdges
    """
    X = np.asarray(X, dtype=np.float64)
    n_features = X.shape[1]
    if comm is None:
        counts = [X.shape[0]]
        rank, size = 0, 1
    else:
        counts = comm.allgather(X.shape[0])
        rank, size = comm.rank, comm.size
    n_total = int(sum(counts))
    offset = int(sum(counts[:rank]))
    if n_total > sample_size:
        chosen = np.sort(np.random.default_rng(seed).choice(n_total, sample_size, replace=False))
    else:
        chosen = np.arange(n_total)
    lo, hi = np.searchsorted(chosen, [offset, offset + X.shape[0]])
    local = np.ascontiguousarray(X[chosen[lo:hi] - offset])
    if comm is None or size == 1:
        sample = local
    else:
        bounds = np.searchsorted(chosen, np.cumsum([0] + list(counts)))
        rows_per_rank = np.diff(bounds)
        sample = np.empty((chosen.size, n_features))
        comm.Allgatherv(local.reshape(-1), [sample.reshape(-1), rows_per_rank * n_features])
    f0, f1 = block_range(n_features, size, rank)
    mine = [_feature_edges(sample[:, f], max_bins) for f in range(f0, f1)]
    if comm is None or size == 1:
        return BinEdges(mine)
    return BinEdges([e for block in comm.allgather(mine) for e in block])


def bin_data(X, bin_edges):
    """Feature-major uint8 binned matrix of ``X``.

    Parameters
    ----------
    X : ndarray of shape (n, n_features)
    bin_edges : BinEdges

    Returns
    -------
    ndarray of shape (n_features, n), uint8
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    out = np.empty((X.shape[1], X.shape[0]), dtype=np.uint8)
    bin_columns(X, *bin_edges.lookup(), out)
    return out
