"""Feature binning whose edges do not depend on how rows are spread over ranks."""

__all__ = ["BinEdges", "fit_bin_edges", "bin_data"]

import numpy as np

from ...comm.partition import block_range
from ._bin_kernels import (bin_columns, bin_special, build_bin_lookup, sorted_values,
                           take_columns)

DEFAULT_SAMPLE_SIZE = 200_000


class BinEdges:
    """Bins of every feature: upper edges of numeric ones, category codes of categorical
    ones, and a missing-value bin where the training data has missing values.

    Attributes
    ----------
    edges : list of ndarray, float64
        ``edges[f]`` is sorted: a numeric value x of feature f falls in bin ``b`` = number
        of edges strictly below x, so ``x <= edges[f][b]`` exactly when x's bin is
        ``<= b``. Empty for a categorical feature.
    categorical : ndarray of shape (n_features,), bool
    code_bins : list of (ndarray of int64 or None)
        For a categorical feature, the bin of each category code (``bin = code`` unless
        the feature has more categories than bins: see :func:`fit_bin_edges`).
    missing : ndarray of shape (n_features,), bool
        Whether the feature has a missing-value bin: the last one,
        ``n_value_bins[f]``, where NaN falls.
    n_value_bins : ndarray of shape (n_features,), int64
    n_bins : ndarray of shape (n_features,), int64
        ``n_value_bins + missing``.
    """

    def __init__(self, edges, missing=None, code_bins=None):
        self.edges = [np.asarray(e, dtype=np.float64) for e in edges]
        n = len(self.edges)
        self.code_bins = list(code_bins) if code_bins is not None else [None] * n
        self.categorical = np.array([c is not None for c in self.code_bins], dtype=bool)
        self.missing = (np.zeros(n, dtype=bool) if missing is None
                        else np.asarray(missing, dtype=bool))
        self.n_value_bins = np.array(
            [len(e) + 1 if c is None else int(c.max(initial=0)) + 1
             for e, c in zip(self.edges, self.code_bins)], dtype=np.int64)
        self.n_bins = self.n_value_bins + self.missing

    @property
    def n_features(self):
        return len(self.edges)

    @property
    def max_n_bins(self):
        """Histogram width: the largest bin count of any feature (at least 1)."""
        return int(self.n_bins.max(initial=1))

    @property
    def special(self):
        """Whether any feature is categorical or has a missing-value bin."""
        return bool(self.missing.any() or self.categorical.any())

    @property
    def bitset_words(self):
        """uint32 words of a categorical split's set of left category codes."""
        longest = max((len(c) for c in self.code_bins if c is not None), default=0)
        return -(-longest // 32)

    def threshold(self, feature, threshold_bin):
        """The float threshold of a split ``bin <= threshold_bin`` of ``feature``."""
        return float(self.edges[feature][threshold_bin])

    def padded(self):
        """``(edges (n_features, 2**d - 1) float64 padded with +inf, n_edges (n_features,) int64)``."""
        longest = max((len(e) for e in self.edges), default=0)
        width = (1 << int(longest).bit_length()) - 1 if longest else 1  # 2**d - 1 >= longest
        table = np.full((self.n_features, max(width, self.max_n_bins)), np.inf)
        for f, e in enumerate(self.edges):
            table[f, :len(e)] = e
        return table, self.n_value_bins - 1

    def lookup(self):
        """The edges as :func:`~._bin_kernels.build_bin_lookup` arranges them for binning."""
        table = np.concatenate(self.edges) if self.edges else np.empty(0)
        starts = np.zeros(self.n_features + 1, dtype=np.int64)
        np.cumsum([len(e) for e in self.edges], out=starts[1:])
        return build_bin_lookup(table, starts)


def _feature_edges(column, max_bins):
    """Edges of one feature from its sample values (scikit-learn's HistGradientBoosting rule:
    midpoints between distinct values when there are few, else midpoint quantiles)."""
    column = sorted_values(column)
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


def fit_bin_edges(X, max_bins=255, *, comm=None, sample_size=DEFAULT_SAMPLE_SIZE, seed=0,
                  n_categories=None):
    """Bins of every feature, equal on every rank for any row distribution.

    Collective when ``comm`` is given. Numeric edges are computed from a sample of at most
    ``sample_size`` rows chosen by *global* row index (seeded by ``seed``), gathered in
    global order onto every rank; each rank computes the edges of its block of features
    and the blocks are allgathered.

    A feature with a missing value (NaN) on any rank gets a missing-value bin, the last
    one. A categorical feature (``n_categories[f] = K > 0``; values are category codes
    0..K-1) is binned by its code. At most ``min(max_bins, 255)`` bins hold categories
    (with the missing bin, 256 bins fit a uint8): a feature with more categories keeps
    the ``cap - 1`` most frequent ones (counted over every rank; equal counts: the lower
    code first) in bins of their own, in code order, and puts the others in one shared
    last bin.

    Parameters
    ----------
    X : ndarray of shape (n_local, n_features)
        This rank's rows (rank r holds the r-th contiguous block of the global rows).
    max_bins : int, 2..256
    comm : Communicator or None
        ``None``: one rank holds every row.
    sample_size : int
    seed : int
    n_categories : ndarray of shape (n_features,), int, optional
        Vocabulary size of each categorical feature, 0 for a numeric one (default: all
        numeric).

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
    n_categories = (np.zeros(n_features, dtype=np.int64) if n_categories is None
                    else np.asarray(n_categories, dtype=np.int64))
    missing = _global_sum(_nan_counts(X), comm) > 0
    cap = min(int(max_bins), 255)
    value_bins = cap if missing.any() else int(max_bins)
    n_total = int(sum(counts))
    offset = int(sum(counts[:rank]))
    if n_total > sample_size:
        chosen = np.sort(np.random.default_rng(seed).choice(n_total, sample_size, replace=False))
    else:
        chosen = np.arange(n_total)
    lo, hi = np.searchsorted(chosen, [offset, offset + X.shape[0]])
    local_rows = chosen[lo:hi] - offset
    f0, f1 = block_range(n_features, size, rank)
    if comm is None or size == 1:
        sample = take_columns(X, local_rows, 0, n_features)
    else:
        sample = _gather_own_columns(comm, X, local_rows, chosen, counts)
    mine = [np.empty(0) if n_categories[f] else
            _feature_edges(sample[f - f0], value_bins if missing[f] else max_bins)
            for f in range(f0, f1)]
    if comm is not None and size > 1:
        mine = [e for block in comm.allgather(mine) for e in block]
    return BinEdges(mine, missing, _category_bins(X, n_categories, cap, comm))


def _nan_counts(X, block=1 << 16):
    """Missing values of each column of ``X``, counted in blocks of rows (no mask as
    large as the data)."""
    counts = np.zeros(X.shape[1], dtype=np.int64)
    for lo in range(0, X.shape[0], block):
        counts += np.isnan(X[lo:lo + block]).sum(axis=0)
    return counts


def _gather_own_columns(comm, X, local_rows, chosen, counts):
    """Collective: the sample rows ``chosen`` (global indices, sorted) of the columns
    this rank finds the edges of (its block of features), feature-major
    (n_own, len(chosen)), each feature's values in global row order. ``local_rows`` are
    this rank's sample rows (indices into ``X``); rank ``q`` receives only its block of
    columns, one Gatherv per rank."""
    n_features = X.shape[1]
    bounds = np.searchsorted(chosen, np.cumsum([0] + list(counts)))
    rows_per_rank = np.diff(bounds)
    mine = None
    for q in range(comm.size):
        g0, g1 = block_range(n_features, comm.size, q)
        part = take_columns(X, local_rows, g0, g1)
        if q == comm.rank:
            width = g1 - g0
            flat = np.empty(chosen.size * width)
            comm.Gatherv(part.reshape(-1), [flat, rows_per_rank * width], root=q)
            # rank p's block is its (width, rows) part: each feature's rows go after
            # the rows of the ranks before p
            mine = np.empty((width, chosen.size))
            for p in range(comm.size):
                block = flat[bounds[p] * width:bounds[p + 1] * width].reshape(width, rows_per_rank[p])
                mine[:, bounds[p]:bounds[p + 1]] = block
        else:
            comm.Gatherv(part.reshape(-1), None, root=q)
    return mine


def _global_sum(local, comm):
    if comm is None or comm.size == 1:
        return local
    total = np.empty_like(local)
    comm.Allreduce(np.ascontiguousarray(local), total)
    return total


def _category_bins(X, n_categories, cap, comm):
    """Each categorical feature's code -> bin map (None for a numeric feature). Collective
    when a feature has more than ``cap`` categories (their counts are summed)."""
    wide = np.flatnonzero(n_categories > cap)
    frequency = {}
    if wide.size:
        local = np.concatenate([_code_counts(X[:, f], n_categories[f]) for f in wide])
        total = _global_sum(local, comm)
        at = np.concatenate(([0], np.cumsum(n_categories[wide])))
        frequency = {f: total[at[i]:at[i + 1]] for i, f in enumerate(wide)}
    maps = []
    for f, k in enumerate(n_categories):
        if k <= 0:
            maps.append(None)
        elif k <= cap:
            maps.append(np.arange(k, dtype=np.int64))
        else:
            count = frequency[f]
            by_count = np.lexsort((np.arange(k), -count))   # most frequent, then lowest code
            kept = np.sort(by_count[:cap - 1])
            code_bin = np.full(k, cap - 1, dtype=np.int64)
            code_bin[kept] = np.arange(cap - 1)
            maps.append(code_bin)
    return maps


def _code_counts(column, k):
    codes = column[~np.isnan(column)].astype(np.int64)
    return np.bincount(codes, minlength=k).astype(np.int64)[:k]


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
    for f in np.flatnonzero(bin_edges.missing | bin_edges.categorical):
        codes = bin_edges.code_bins[f]
        bin_special(X, f, np.empty(0, np.int64) if codes is None else codes,
                    codes is not None, bin_edges.n_value_bins[f], out[f])
    return out
