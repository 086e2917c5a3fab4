"""The grower's per-step kernels against plain numpy references: several nodes'
histograms in one call, batched split scans, the split of the chosen nodes and the pick
of every node's best candidate over the ranks."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from mpiml.models.gbdt.criterion import (
    GradientCriterion,
    PackedGradientCriterion,
    packed_layout,
)
from mpiml.models.tree._kernels import (
    build_histograms,
    build_histograms_nodes,
    build_histograms_rows,
    build_histograms_rows_nodes,
    unpack_histograms,
    unpacked_sum,
)
from mpiml.models.tree._split_kernels import (
    GINI,
    SQUARED_ERROR,
    scan_histogram,
    scan_histograms,
    split_nodes,
    take_candidates,
)

# node segments of 0..300: empty, one row, a prime length, the whole range
_STARTS = np.array([5, 0, 40, 9, 0], dtype=np.int64)
_STOPS = np.array([5, 1, 40 + 97, 300, 301], dtype=np.int64)


@pytest.mark.parametrize("row_major", [False, True])
@pytest.mark.parametrize("n_channels", [1, 2, 3, 4])
def test_histograms_of_several_nodes_equal_one_call_per_node(n_channels, row_major):
    rng = np.random.default_rng(n_channels)
    n, n_features, n_bins = 301, 6, 11
    binned = rng.integers(0, n_bins, (n_features, n), dtype=np.uint8)
    channels = rng.integers(-1000, 1000, (n, n_channels))
    rows = rng.permutation(n).astype(np.int32)
    features = np.arange(n_features, dtype=np.int64)
    shape = (n_features, len(_STARTS), n_bins, n_channels)
    batched, single = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    if row_major:
        binned_rows = np.ascontiguousarray(binned.T)
        build_histograms_rows_nodes(binned_rows, channels, rows, _STARTS, _STOPS, batched)
        for i, (a, b) in enumerate(zip(_STARTS, _STOPS)):
            build_histograms_rows(binned_rows, channels, rows, a, b, single, i)
    else:
        build_histograms_nodes(binned, channels, rows, _STARTS, _STOPS, features, batched)
        for i, (a, b) in enumerate(zip(_STARTS, _STOPS)):
            build_histograms(binned, channels, rows, a, b, features, single, i)
    assert_array_equal(batched, single)
    for i, (a, b) in enumerate(zip(_STARTS, _STOPS)):      # and against numpy
        want = np.zeros((n_features, n_bins, n_channels), np.int64)
        for f in range(n_features):
            np.add.at(want[f], binned[f, rows[a:b]], channels[rows[a:b]])
        assert_array_equal(batched[:, i], want)
    assert not batched[:, 0].any()                          # the empty segment


def _random_hists(rng, n_nodes, n_features, n_bins, n_channels, make_row):
    """Histograms of random rows (``make_row(rng)``, (C,)) per node, so that every parent
    is their sum; node 0 has no rows at all."""
    hists = np.zeros((n_nodes, n_features, n_bins, n_channels), np.int64)
    for i in range(1, n_nodes):
        for _ in range(int(rng.integers(0, 60))):
            hists[i, np.arange(n_features), rng.integers(0, n_bins, n_features)] += make_row(rng)
    return hists, hists[:, 0].sum(axis=1)


@pytest.mark.parametrize("min_samples_leaf", [1, 5])
def test_batched_packed_scan_equals_the_node_by_node_scan(min_samples_leaf):
    rng = np.random.default_rng(1)
    layout = packed_layout(10_000, False)
    crit = PackedGradientCriterion(8.0, 16.0, 0.5, 0.1, layout)
    shift = layout.count_bits + layout.hess_bits

    def row(r):
        g = int(r.integers(-layout.grad_levels, layout.grad_levels + 1))
        h = int(r.integers(0, layout.hess_levels + 1))
        return np.array([(g << shift) + (h << layout.count_bits) + 1], np.int64)

    hists, parents = _random_hists(rng, 9, 5, 7, 1, row)
    masks = rng.random((9, 5)) < 0.7
    masks[3] = False                                       # no allowed feature
    gains, f, b, lefts = crit.best_splits(hists, parents, min_samples_leaf, masks)
    for i in range(9):
        best = crit.best_split(hists[i], parents[i], min_samples_leaf, masks[i])
        if best is None:
            assert gains[i] == -np.inf and f[i] == 0 and b[i] == 0 and not lefts[i].any()
        else:
            assert (gains[i], f[i], b[i]) == best[:3]
            assert_array_equal(lefts[i], best[3])
    assert np.isfinite(gains).sum() >= 3                   # the test saw real splits


def test_batched_exact_gradient_scan_equals_the_node_by_node_scan():
    rng = np.random.default_rng(2)
    count_bits = 20
    crit = GradientCriterion(2.0 ** 10, 2.0 ** 12, 1.0, 0.1, count_bits)

    def row(r):
        h = int(r.integers(0, 4096))
        return np.array([int(r.integers(-4000, 4000)), (h << count_bits) + 1], np.int64)

    hists, parents = _random_hists(rng, 7, 4, 6, 2, row)
    masks = np.ones((7, 4), bool)
    gains, f, b, lefts = crit.best_splits(hists, parents, 3, masks)
    for i in range(7):
        best = crit.best_split(hists[i], parents[i], 3, masks[i])
        if best is None:
            assert gains[i] == -np.inf and not lefts[i].any()
        else:
            assert (gains[i], f[i], b[i]) == best[:3]
            assert_array_equal(lefts[i], best[3])
    assert np.isfinite(gains).sum() >= 3


@pytest.mark.parametrize("min_samples_leaf", [1, 15])
@pytest.mark.parametrize("count_bits", [20, 0, -1])
def test_exact_gradient_scan_equals_the_generic_search(count_bits, min_samples_leaf):
    """The one-pass scan of every channel layout ([g, (h << count_bits) + count],
    [g, count], [g, h, count]) against cumulative sums, ``split_gain`` and a first
    arg-max over the valid candidates."""
    rng = np.random.default_rng(7)
    crit = GradientCriterion(2.0 ** 10, 2.0 ** 12, 0.5, 0.1, count_bits)

    def row(r):
        g, h = int(r.integers(-4000, 4000)), int(r.integers(0, 4096))
        if count_bits > 0:
            return np.array([g, (h << count_bits) + 1], np.int64)
        if count_bits == 0:
            return np.array([g, 1], np.int64)
        return np.array([g, h, 1], np.int64)

    hists, parents = _random_hists(rng, 12, 4, 6, crit.n_channels, row)
    seen = 0
    for i in range(12):
        mask = rng.random(4) < 0.8
        best = crit.best_split(hists[i], parents[i], min_samples_leaf, mask)
        left = np.cumsum(hists[i][:, :-1], axis=1)
        right = parents[i] - left
        gain = crit.split_gain(left, right, parents[i])
        valid = ((crit.n_samples(left) >= min_samples_leaf)
                 & (crit.n_samples(right) >= min_samples_leaf) & ~np.isnan(gain) & mask[:, None])
        gain = np.where(valid, gain, -np.inf)
        k = int(np.argmax(gain))
        j, b = divmod(k, gain.shape[1])
        if gain[j, b] == -np.inf:
            assert best is None
            continue
        seen += 1
        assert best[:3] == (gain[j, b], j, b)
        assert_array_equal(best[3], left[j, b])
    assert seen >= 4


@pytest.mark.parametrize("kind", [GINI, SQUARED_ERROR])
def test_batched_builtin_scan_equals_the_node_by_node_scan(kind):
    rng = np.random.default_rng(3)
    if kind == GINI:           # channels: count, class 0, class 1
        spec, n_channels = (GINI, 1, 2, np.array([1.0, 1.0, 1.0]), 0), 3

        def row(r):
            k = int(r.integers(0, 2))
            return np.array([1, 1 - k, k], np.int64)
    else:                      # channels: count, w, w y, w y^2
        spec, n_channels = (SQUARED_ERROR, 0, 0, np.array([1.0, 4.0, 16.0]), 0), 4

        def row(r):
            y = int(r.integers(-5, 6))
            return np.array([1, 1, 4 * y, 16 * y * y], np.int64)
    hists, parents = _random_hists(rng, 8, 4, 6, n_channels, row)
    n_bins = np.array([6, 3, 6, 2], dtype=np.int64)      # features with fewer bins
    masks = rng.random((8, 4)) < 0.8
    n = len(hists)
    gains, j, b = np.empty(n), np.zeros(n, np.int64), np.zeros(n, np.int64)
    lefts = np.zeros((n, hists.shape[3]), np.int64)
    scan_histograms(hists, parents, n_bins, *spec, 2, masks, gains, j, b, lefts)
    for i in range(n):
        left = np.zeros(hists.shape[3], np.int64)
        g, jj, bb = scan_histogram(hists[i], parents[i], np.arange(4), n_bins, *spec, 2,
                                   masks[i], left)
        assert gains[i] == g
        if g > -np.inf:
            assert (j[i], b[i]) == (jj, bb)
            assert_array_equal(lefts[i], left)
        else:
            assert (j[i], b[i]) == (0, 0) and not lefts[i].any()
    assert np.isfinite(gains).sum() >= 3


def _take_reference(every, ids, min_gain, n_channels):
    """The pick as numpy's lexsort makes it: largest gain, lowest feature, lowest bin,
    lowest rank."""
    gains = every[:, :, 0].copy().view(np.float64)
    winner = np.lexsort((every[:, :, 2], every[:, :, 1], -gains), axis=0)[0]
    pick = every[winner, np.arange(len(ids))]
    gain = gains[winner, np.arange(len(ids))]
    return gain, pick, (gain > -np.inf) & (gain >= min_gain)


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_best_candidate_over_ranks_follows_the_tie_break(size):
    rng = np.random.default_rng(size)
    n, c, words = 40, 2, 4
    every = np.zeros((size, n, 4 + c + words), np.int64)
    # few distinct values: many ties in gain, then feature, then bin
    gains = rng.choice([-np.inf, 0.0, 0.5, 1.0], size=(size, n))
    every[:, :, 0] = gains.view(np.int64)
    every[:, :, 1] = rng.integers(0, 3, (size, n))
    every[:, :, 2] = rng.integers(0, 3, (size, n))
    every[:, :, 3:] = rng.integers(-9, 9, (size, n, c + 1 + words))  # tells ranks apart
    ids = np.arange(3, 3 + n, dtype=np.int64)
    cap = 3 + n
    cand_gain, cand_feature = np.zeros(cap), np.zeros(cap, np.int64)
    cand_bin, cand_left = np.zeros(cap, np.int64), np.zeros((cap, c), np.int64)
    cand_missing, cand_mask = np.zeros(cap, np.int64), np.zeros((cap, words), np.int64)
    is_open = np.zeros(cap, bool)
    take_candidates(ids, every, np.ascontiguousarray(every[:, :, 0]).view(np.float64), 0.5,
                    cand_gain, cand_feature, cand_bin, cand_left, cand_missing, cand_mask,
                    is_open)
    gain, pick, want_open = _take_reference(every, ids, 0.5, c)
    assert_array_equal(cand_gain[ids], gain)
    assert_array_equal(cand_feature[ids], pick[:, 1])
    assert_array_equal(cand_bin[ids], pick[:, 2])
    assert_array_equal(cand_left[ids], pick[:, 3:3 + c])
    assert_array_equal(cand_missing[ids], pick[:, 3 + c])
    assert_array_equal(cand_mask[ids], pick[:, 4 + c:])
    assert_array_equal(is_open[ids], want_open)
    assert not is_open[:3].any() and not cand_gain[:3].any()   # other nodes untouched


@pytest.mark.parametrize("use_table", [False, True])
def test_split_nodes_partitions_stably_and_records_the_splits(use_table):
    rng = np.random.default_rng(7)
    n, n_features, n_bins = 500, 4, 9
    binned = rng.integers(0, n_bins, (n_features, n), dtype=np.uint8)
    edge_table = rng.normal(size=(n_features, n_bins))
    rows = rng.permutation(n).astype(np.int32)
    cap = 12
    start, stop = np.zeros(cap, np.int64), np.zeros(cap, np.int64)
    depth = np.zeros(cap, np.int64)
    # nodes 1, 2 and 3 own rows [0, 0), [0, 211) and [211, 500); 2 and 3 are split
    start[1:4], stop[1:4], depth[1:4] = (0, 0, 211), (0, 211, 500), (1, 2, 2)
    chosen = np.array([2, 3], dtype=np.int64)
    cand_feature, cand_bin = np.zeros(cap, np.int64), np.zeros(cap, np.int64)
    cand_feature[chosen], cand_bin[chosen] = (3, 1), (4, 0)
    cand_gain = np.arange(cap, dtype=np.float64)
    categorical = np.zeros(cap, np.uint8)
    tables = np.zeros((2, n_bins), np.uint8)
    if use_table:
        tables[0, [0, 5, 7]] = 1
        tables[1, [2, 3]] = 1
        categorical[3] = 1
    feature, threshold_bin = np.full(cap, -1, np.int64), np.full(cap, -1, np.int64)
    threshold, gain = np.full(cap, -2.0), np.zeros(cap)
    left, right = np.full(cap, -1, np.int64), np.full(cap, -1, np.int64)
    is_open = np.ones(cap, bool)
    before = rows.copy()
    split_nodes(chosen, 5, rows, np.empty(n, np.int32), binned, tables, use_table, edge_table,
                start, stop, depth, cand_feature, cand_bin, cand_gain, categorical, feature,
                threshold_bin, threshold, left, right, gain, is_open)
    for i, nid in enumerate(chosen):
        a, b = (0, 211) if nid == 2 else (211, 500)
        col = binned[cand_feature[nid], before[a:b]]
        goes = tables[i][col] == 1 if use_table else col <= cand_bin[nid]
        want = np.concatenate([before[a:b][goes], before[a:b][~goes]])   # stable
        assert_array_equal(rows[a:b], want)
        lc, rc = 5 + 2 * i, 6 + 2 * i
        assert (left[nid], right[nid]) == (lc, rc)
        assert (start[lc], stop[lc], start[rc], stop[rc]) == (a, a + goes.sum(), a + goes.sum(), b)
        assert depth[lc] == depth[rc] == 3
        assert (feature[nid], threshold_bin[nid], gain[nid]) == (cand_feature[nid], cand_bin[nid],
                                                                 nid)
        if categorical[nid]:
            assert np.isnan(threshold[nid])
        else:
            assert threshold[nid] == edge_table[cand_feature[nid], cand_bin[nid]]
        assert not is_open[nid]
    assert is_open[1] and left[1] == -1                 # a node not chosen is untouched


@pytest.mark.parametrize("packed", [False, True])
def test_node_values_of_many_nodes_equal_one_node_at_a_time(packed):
    rng = np.random.default_rng(11)
    if packed:
        layout = packed_layout(50_000, False)
        crit = PackedGradientCriterion(8.0, 16.0, 0.5, 0.1, layout)
        shift = layout.count_bits + layout.hess_bits
        n = rng.integers(0, 1000, 50)
        g = rng.integers(-4, 5, 50) * n
        h = rng.integers(0, layout.hess_levels + 1, 50) * n
        sums = ((g << shift) + (h << layout.count_bits) + n).reshape(-1, 1)
    else:
        crit = GradientCriterion(2.0 ** 10, 2.0 ** 12, 0.0, 0.1, 20)
        h = rng.integers(0, 4096, 50)
        h[:3] = 0                                        # no hessian: value 0
        sums = np.column_stack([rng.integers(-10 ** 6, 10 ** 6, 50), (h << 20) + 7])
    values, impurity = crit.node_stats(sums)
    assert values.shape == (50, 1) and np.isinf(impurity).all()
    for i in range(50):
        assert values[i, 0] == crit.node_value(sums[i])[0]     # the same bits
    assert np.count_nonzero(values) >= 40


def _packed_rows(rng, layout, n):
    """``n`` packed words at random levels (extremes included) and their fields
    ``[G, H, count]`` (``[G, count]`` when the hessian is the count)."""
    g = rng.integers(-layout.grad_levels, layout.grad_levels + 1, n)
    g[:2] = (-layout.grad_levels, layout.grad_levels)
    count = rng.integers(0, 2, n)               # rows outside the sample count 0
    g *= count
    shift = layout.count_bits + layout.hess_bits
    words = (g << shift) + count
    fields = [g]
    if layout.hess_bits:
        h = rng.integers(0, layout.hess_levels + 1, n) * count
        words += h << layout.count_bits
        fields.append(h)
    fields.append(count)
    return words.astype(np.int64), np.stack(fields, axis=1).astype(np.int64)


@pytest.mark.parametrize("count_is_hessian", [False, True])
def test_unpacked_histograms_and_sums_equal_the_fields_summed(count_is_hessian):
    """Pieces of at most ``max_rows`` rows, histogrammed packed and unpacked into their
    nodes, equal the histograms of the fields; the chunked sum equals the fields' sum,
    also where one packed sum of every row would carry."""
    rng = np.random.default_rng(3)
    layout = packed_layout(40, count_is_hessian)
    n, n_features, n_bins = 301, 4, 9
    words, fields = _packed_rows(rng, layout, n)
    binned = rng.integers(0, n_bins, (n_features, n), dtype=np.uint8)
    rows = rng.permutation(n).astype(np.int32)
    features = np.arange(n_features, dtype=np.int64)
    # pieces of nodes 0..2 (node 1 has none of its rows left: an empty piece)
    starts = np.array([0, 40, 80, 80, 110, 150], dtype=np.int64)
    stops = np.array([40, 80, 80, 110, 150, 151], dtype=np.int64)
    piece_node = np.array([0, 0, 1, 2, 2, 2], dtype=np.int64)
    packed = np.zeros((n_features, 6, n_bins, 1), dtype=np.int64)
    build_histograms_nodes(binned, words[:, None], rows, starts, stops, features, packed)
    out = np.full((n_features, 3, n_bins, layout.n_unpacked), 7, dtype=np.int64)
    unpack_histograms(packed, piece_node, layout.count_bits, layout.hess_bits, out)
    want = np.full_like(out, 7)
    for node, (a, b) in enumerate([(0, 80), (80, 80), (80, 151)]):
        for f in range(n_features):
            np.add.at(want[f, node], binned[f, rows[a:b]], fields[rows[a:b]])
    assert_array_equal(out, want)

    total = np.zeros(layout.n_unpacked, dtype=np.int64)
    unpacked_sum(words[:, None], rows, layout.max_rows, layout.count_bits, layout.hess_bits,
                 total)
    assert_array_equal(total, fields.sum(axis=0))
    # 301 rows at the extreme levels in one sum carry between the fields
    carried = np.zeros_like(total)
    unpacked_sum(words[:, None], rows, n, layout.count_bits, layout.hess_bits, carried)
    assert not np.array_equal(carried, total)
