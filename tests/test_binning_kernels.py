"""The lookup binning kernels equal a binary search exactly, on every kind of value."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mpiml.models.tree import BinEdges, bin_data, fit_bin_edges
from mpiml.models.tree import _bin_kernels
from mpiml.models.tree._bin_kernels import bin_columns, bin_rows, build_bin_lookup

SPECIALS = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e308, -1e308, 5e-324, -5e-324,
                     np.finfo(np.float64).max, -np.finfo(np.float64).max, 1.0, -1.0])


def _reference(edges, x):
    """Number of edges strictly below each x; NaN -> the number of edges."""
    out = np.searchsorted(edges, x, side="left")
    out[np.isnan(x)] = len(edges)
    return out


def _old_search(edges, x):
    """The binary search the kernels replace (its result defines edges out of order)."""
    k = len(edges)
    step = 1 << (k.bit_length() - 1) if k else 0
    out = np.empty(len(x), dtype=np.int64)
    for i, v in enumerate(x):
        if v != v:
            out[i] = k
            continue
        pos, s = 0, step
        while s > 0:
            if pos + s <= k and edges[pos + s - 1] < v:
                pos += s
            s >>= 1
        out[i] = pos
    return out


def _probes(edges, rng, n_random=3000):
    """Random values over (and past) the edges' range, the edges themselves, their float
    neighbours on both sides, and the special values."""
    finite = edges[np.isfinite(edges)]
    parts = [SPECIALS, edges, np.nextafter(edges, np.inf), np.nextafter(edges, -np.inf)]
    if finite.size:
        lo, hi = finite.min(), finite.max()
        u = rng.uniform(-0.1, 1.1, n_random)
        pick = rng.choice(finite, n_random)
        with np.errstate(over="ignore", invalid="ignore"):
            parts.append(lo * (1.0 - u) + hi * u)     # no hi - lo, which may overflow
            # values picked among the edges, nudged by a few ulps
            parts.append(pick + rng.integers(-3, 4, n_random) * np.spacing(pick))
    parts.append(rng.standard_normal(n_random))
    x = np.concatenate(parts)
    return x[rng.permutation(x.size)]


def _edge_sets():
    rng = np.random.default_rng(0)
    normal = rng.standard_normal((20_000, 1))
    heavy = rng.lognormal(0.0, 10.0, (20_000, 1))
    sets = {
        "none": np.empty(0),
        "zero": np.array([0.0]),
        "negative zero": np.array([-0.0]),
        "one": np.array([5.0]),
        "only +inf": np.array([np.inf]),
        "only -inf": np.array([-np.inf]),
        "both infs": np.array([-np.inf, np.inf]),
        "infs around": np.array([-np.inf, -1.0, 0.0, 1.0, np.inf]),
        "around -0.0": np.array([-1.0, -0.0, 1.0]),
        "around 0.0": np.array([-1.0, 0.0, 1.0]),
        "quantiles 255": fit_bin_edges(normal, 256).edges[0],
        "lognormal 255": fit_bin_edges(heavy, 256).edges[0],
        "signed lognormal 255": fit_bin_edges(heavy * rng.choice([-1.0, 1.0], heavy.shape),
                                              256).edges[0],
        "random 5000": np.unique(rng.standard_normal(5000)),
        "integers 255": np.arange(255.0),
        "logspace": np.logspace(-300, 300, 255),
        "signed logspace": np.concatenate((-np.logspace(300, -300, 100), [0.0],
                                           np.logspace(-300, 300, 100))),
        "span overflows": np.array([-1e308, -1.0, 0.0, 1.0, 1e308]),
        "subnormal": np.array([5e-324, 1e-323, 1.5e-323, 2e-323]),
        "adjacent floats": 1.0 + np.arange(255) * np.spacing(1.0),
        "cluster and outlier": np.concatenate((np.linspace(0.0, 1e-10, 254), [1e10])),
        "with duplicates": np.array([0.0, 1.0, 1.0, 1.0, 2.0, 3.0, 3.0]),
    }
    return {name: np.asarray(e, dtype=np.float64) for name, e in sets.items()}


EDGE_SETS = _edge_sets()


def _bin_both(edge_list, X, dtype=np.int32):
    table = np.concatenate(edge_list) if edge_list else np.empty(0)
    starts = np.concatenate(([0], np.cumsum([len(e) for e in edge_list]))).astype(np.int64)
    lookup = build_bin_lookup(table, starts)
    columns = np.empty((X.shape[1], X.shape[0]), dtype=dtype)
    bin_columns(X, *lookup, columns)
    rows = np.empty(X.shape, dtype=dtype)
    bin_rows(X, *lookup, rows)
    return columns, rows


def test_edge_sets_take_every_path():
    """The edge sets reach both kinds of cells, with one search step and with several."""
    paths = set()
    for edges in EDGE_SETS.values():
        ints = build_bin_lookup(edges, np.array([0, len(edges)]))[0]
        paths.add((int(ints[0, _bin_kernels._MODE]), int(ints[0, _bin_kernels._STEPS]) > 1))
    for mode in (_bin_kernels._LINEAR, _bin_kernels._KEY):
        assert (mode, False) in paths and (mode, True) in paths


@pytest.mark.parametrize("name", sorted(EDGE_SETS))
def test_one_feature_equals_searchsorted(name):
    edges = EDGE_SETS[name]
    x = _probes(edges, np.random.default_rng(1))
    columns, rows = _bin_both([edges], x[:, None])
    expected = _reference(edges, x)
    assert_array_equal(columns[0], expected)
    assert_array_equal(rows[:, 0], expected)


def test_many_features_at_once():
    """Every edge set side by side (row blocks and features interleave), each feature
    probed with values of every other, in the three bin widths of prediction."""
    rng = np.random.default_rng(2)
    names = sorted(EDGE_SETS)
    edge_list = [EDGE_SETS[n] for n in names]
    pool = np.concatenate([_probes(e, rng, 200) for e in edge_list])
    X = rng.choice(pool, (1237, len(names)))
    for dtype, limit in ((np.uint8, 255), (np.uint16, 65535), (np.int32, None)):
        keep = [f for f, e in enumerate(edge_list) if limit is None or len(e) <= limit]
        sub = np.ascontiguousarray(X[:, keep])
        columns, rows = _bin_both([edge_list[f] for f in keep], sub, dtype)
        for j, f in enumerate(keep):
            expected = _reference(edge_list[f], sub[:, j])
            assert_array_equal(columns[j], expected)
            assert_array_equal(rows[:, j], expected)


def test_rows_of_a_wider_matrix():
    """Prediction bins the first columns of a wider X (a strided view)."""
    rng = np.random.default_rng(3)
    edge_list = [EDGE_SETS["quantiles 255"], EDGE_SETS["lognormal 255"]]
    wide = rng.standard_normal((500, 5)) * np.array([1.0, 1e4, 1.0, 1.0, 1.0])
    table = np.concatenate(edge_list)
    starts = np.array([0, 255, 510], dtype=np.int64)
    rows = np.empty((500, 2), dtype=np.uint16)
    bin_rows(wide[:, :2], *build_bin_lookup(table, starts), rows)
    for f in range(2):
        assert_array_equal(rows[:, f], _reference(edge_list[f], wide[:, f]))


@pytest.mark.parametrize("edges", [[1.0, np.nan], [-np.inf, np.nan], [np.nan], [np.nan, np.nan],
                                   [3.0, 1.0, 2.0], [0.0, np.nan, 1.0, 2.0, np.nan],
                                   list(np.linspace(0, 1, 40)) + [np.nan] + [-5.0]])
def test_edges_out_of_order_keep_the_binary_search(edges):
    """Edges out of order (a NaN among them) have no count to find; they give what the
    binary search gave."""
    edges = np.array(edges)
    ints = build_bin_lookup(edges, np.array([0, len(edges)]))[0]
    assert ints[0, _bin_kernels._MODE] == _bin_kernels._SEARCH
    x = _probes(edges, np.random.default_rng(4), 300)
    columns, rows = _bin_both([edges, EDGE_SETS["quantiles 255"]], np.column_stack((x, x)))
    expected = _old_search(edges, x)
    assert_array_equal(columns[0], expected)
    assert_array_equal(rows[:, 0], expected)
    assert_array_equal(rows[:, 1], _reference(EDGE_SETS["quantiles 255"], x))


def test_bin_data_equals_searchsorted():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3000, 6))
    X[:, 1] = rng.lognormal(0.0, 10.0, 3000)
    X[:, 2] = rng.integers(0, 7, 3000)
    X[:, 3] = 0.0
    X[::7, 4] = np.nan
    X[::11, 5] = -0.0
    X[::13, 5] = np.inf
    edges = fit_bin_edges(X, 255, sample_size=1000)
    binned = bin_data(X, edges)
    assert binned.dtype == np.uint8 and binned.shape == (6, 3000)
    for f in range(6):
        expected = _reference(edges.edges[f], X[:, f])
        if edges.missing[f]:   # NaN in the missing-value bin after the value bins
            expected[np.isnan(X[:, f])] = len(edges.edges[f]) + 1
        assert_array_equal(binned[f], expected)
    assert edges.missing.tolist() == [False, False, False, False, True, False]
    # hand-made edges, including none at all
    hand = BinEdges([np.empty(0), [-0.0], np.arange(200.0), [-np.inf, 0.0, np.inf], [0.5], [0.0]])
    probe = np.column_stack([_probes(np.arange(200.0), rng, 100)[:700] for _ in range(6)])
    binned = bin_data(probe, hand)
    for f in range(6):
        assert_array_equal(binned[f], _reference(hand.edges[f], probe[:, f]))


@pytest.mark.parametrize("name", ["specials", "normal", "heavy tails", "few values", "empty",
                                  "all missing", "one value"])
def test_sorted_values_equal_numpy_sort(name):
    rng = np.random.default_rng(6)
    x = {"specials": np.tile(SPECIALS, 40)[rng.permutation(40 * SPECIALS.size)],
         "normal": rng.standard_normal(20_011),
         "heavy tails": rng.standard_cauchy(5000) * 1e300,
         "few values": rng.integers(-3, 4, 3001).astype(np.float64),
         "empty": np.empty(0),
         "all missing": np.full(17, np.nan),
         "one value": np.full(9, -2.5)}[name]
    got = _bin_kernels.sorted_values(x)
    expected = np.sort(x[~np.isnan(x)])
    assert got.dtype == np.float64
    assert_array_equal(got, expected)
    assert not np.signbit(got[got == 0.0]).any()     # every zero is +0.0


@pytest.mark.parametrize("order", ["C", "F"])
def test_take_columns_equals_fancy_indexing(order):
    rng = np.random.default_rng(7)
    X = np.asarray(rng.standard_normal((301, 9)), order=order)
    rows = rng.integers(0, 301, 500)          # any order, with repeats
    for f0, f1 in ((0, 9), (2, 5), (4, 4)):
        got = _bin_kernels.take_columns(X, rows, f0, f1)
        assert got.flags.c_contiguous and got.shape == (f1 - f0, rows.size)
        assert_array_equal(got, X[rows, f0:f1].T)


def _quantile_edges(column, max_bins):
    """The edges of one feature by their definition (scikit-learn's HistGradientBoosting
    rule, with numpy): midpoints of the distinct values when there are at most
    ``max_bins``, else the distinct midpoint percentiles."""
    column = column[~np.isnan(column)]
    distinct = np.unique(column)
    if distinct.size <= max_bins:
        return (distinct[:-1] + distinct[1:]) * 0.5
    percentiles = np.linspace(0, 100, max_bins + 1)[1:-1]
    return np.unique(np.percentile(column, percentiles, method="midpoint"))


@pytest.mark.parametrize("ranks", [1, 3])
def test_bin_edges_equal_their_definition(ranks):
    """Every row in the sample (fewer rows than ``sample_size``): each feature's edges are
    the quantile rule's over the whole column, on any number of ranks."""
    import mpiml
    from mpiml.comm.partition import block_range
    rng = np.random.default_rng(8)
    X = rng.standard_normal((4001, 5))
    X[:, 1] = rng.integers(0, 9, 4001)
    X[:, 2] = rng.lognormal(0.0, 8.0, 4001)
    X[::5, 3] = np.nan
    X[::3, 4] = -0.0

    def body(comm):
        lo, hi = block_range(len(X), comm.size, comm.rank)
        return fit_bin_edges(X[lo:hi], 64, comm=comm)

    for edges in mpiml.run(body, threads=ranks):
        for f in range(5):
            assert_array_equal(edges.edges[f], _quantile_edges(X[:, f], 64))
        assert edges.missing.tolist() == [False, False, False, True, False]
