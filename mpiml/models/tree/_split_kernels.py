"""numba kernels of the split search: criteria on exact integer sums, per-node feature
sampling, the local (no communication) split search, and batched row partitions.

The built-in criteria are described by a small numeric spec so that one scalar function
computes a gain wherever it is needed (histogram scans of the distributed search and the
local search): the same exact integer sums always give the same float.

Spec: ``kind`` (0 gini, 1 entropy, 2 squared error), ``first`` (first class channel),
``n_classes``, ``scales`` (float64[3]: the class-weight scale for classification; the
scales of w, w*y, w*y^2 for regression) and ``count_channel`` (-1: the sum of all channels).
"""

__all__ = ["GINI", "ENTROPY", "SQUARED_ERROR", "gain_table", "node_stats", "sample_features",
           "search_local", "scan_histogram", "scan_histograms", "split_nodes", "take_candidates",
           "fill_leaves", "fill_range"]

import numpy as np
from numba import njit

from ._prefetch import PREFETCH_DISTANCE, prefetch

GINI, ENTROPY, SQUARED_ERROR = 0, 1, 2
_LN2 = np.log(2.0)
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _xlogx(x):
    return x * np.log(x) if x > 0.0 else 0.0


@njit(nogil=True, cache=True, error_model="numpy")
def _weighted_impurity(kind, first, n_classes, scales, s):
    """``N * impurity`` of one side from its channel sums ``s`` (C,). Scales are powers of
    two, so multiplying by their inverse is exact."""
    if kind == SQUARED_ERROR:
        w = s[1] * (1.0 / scales[0])
        sy = s[2] * (1.0 / scales[1])
        return -(sy * sy / w)  # the sum of squares cancels in a gain
    inv = 1.0 / scales[0]
    n = 0.0
    for k in range(n_classes):
        n += s[first + k] * inv
    acc = 0.0
    if kind == GINI:
        for k in range(n_classes):
            c = s[first + k] * inv
            acc += c * c
        return n - acc / n
    for k in range(n_classes):
        acc += _xlogx(s[first + k] * inv)
    return (_xlogx(n) - acc) / _LN2


@njit(nogil=True, cache=True, error_model="numpy")
def _gain(kind, first, n_classes, scales, parent_term, left, right):
    """Gain of one candidate given ``parent_term`` = the parent's weighted impurity."""
    return (parent_term - _weighted_impurity(kind, first, n_classes, scales, left)
            - _weighted_impurity(kind, first, n_classes, scales, right))


@njit(nogil=True, cache=True, error_model="numpy")
def gain_table(kind, first, n_classes, scales, left, right, parent):
    """Gains of N candidates: left, right (N, C) int64, parent (C,) -> (N,) float64."""
    out = np.empty(left.shape[0])
    parent_term = _weighted_impurity(kind, first, n_classes, scales, parent)
    for i in range(left.shape[0]):
        out[i] = _gain(kind, first, n_classes, scales, parent_term, left[i], right[i])
    return out


@njit(nogil=True, cache=True, error_model="numpy")
def node_stats(kind, first, n_classes, scales, sums, values, impurity):
    """Node values (S, n_outputs) and impurities (S,) from channel sums (S, C)."""
    for i in range(sums.shape[0]):
        s = sums[i]
        if kind == SQUARED_ERROR:
            w = s[1] / scales[0]
            sy = s[2] / scales[1]
            syy = s[3] / scales[2]
            if w > 0:
                mean = sy / w
                values[i, 0] = mean
                impurity[i] = max(syy / w - mean * mean, 0.0)
            else:
                values[i, 0] = 0.0
                impurity[i] = 0.0
            continue
        n = 0.0
        for k in range(n_classes):
            n += s[first + k] / scales[0]
        acc = 0.0
        for k in range(n_classes):
            p = s[first + k] / scales[0] / n if n > 0 else 0.0
            values[i, k] = p
            acc += p * p if kind == GINI else _xlogx(p)
        if n <= 0:
            impurity[i] = 0.0
        elif kind == GINI:
            impurity[i] = 1.0 - acc
        else:
            impurity[i] = -acc / _LN2


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _splitmix(state):
    state = (state + np.uint64(0x9E3779B97F4A7C15)) & _M64
    z = state
    z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
    z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
    return state, z ^ (z >> np.uint64(31))


@njit(nogil=True, cache=True, error_model="numpy")
def sample_features(seed, tree_index, node_id, n_features, k, mask):
    """Mark ``k`` of ``n_features`` features in ``mask`` (bool, in place), drawn by a
    splitmix64 stream keyed by ``(seed, tree_index, node_id)``: the same on every rank."""
    state = np.uint64(seed)
    state, a = _splitmix(state)
    state = a ^ np.uint64(tree_index)
    state, a = _splitmix(state)
    state = a ^ np.uint64(node_id)
    perm = np.arange(n_features)
    for i in range(k):
        state, z = _splitmix(state)
        j = i + np.int64(z % np.uint64(n_features - i))
        perm[i], perm[j] = perm[j], perm[i]
    mask[:] = False
    for i in range(k):
        mask[perm[i]] = True


@njit(nogil=True, cache=True, error_model="numpy")
def _count(s, count_channel):
    if count_channel >= 0:
        return s[count_channel]
    total = 0
    for c in range(s.shape[0]):
        total += s[c]
    return total


@njit(nogil=True, cache=True, error_model="numpy")
def _sort_by_bin(col, rows, start, m, keys, order):
    """``order[:m]``: positions of the node's rows sorted (stably) by their bin in ``col``;
    ``keys[:m]`` their bins in row order."""
    for j in range(m):
        keys[j] = col[rows[start + j]]
    if m > 24:
        order[:m] = np.argsort(keys[:m], kind="mergesort")
        return
    for j in range(m):
        order[j] = j
    for j in range(1, m):
        o = order[j]
        key = keys[o]
        i = j - 1
        while i >= 0 and keys[order[i]] > key:
            order[i + 1] = order[i]
            i -= 1
        order[i + 1] = o


@njit(nogil=True, cache=True, error_model="numpy")
def search_local(binned, channels, rows, starts, stops, node_ids, node_sums, n_bins,
                 kind, first, n_classes, scales, count_channel, min_samples_leaf,
                 seed, tree_index, k_features, out_gain, out_feature, out_bin, out_left):
    """Best split of each node whose rows are all on this rank (no communication).

    Scans every bin boundary present in the node: a dense histogram per feature for large
    nodes, sorted bins for small ones. Candidates are met in (feature, bin) order and only
    a strictly larger gain replaces the best, so ties go to the lowest feature, then the
    lowest bin: the same split the histogram search picks from the same exact sums.
    """
    n_features = binned.shape[0]
    n_channels = channels.shape[1]
    width = 1
    for f in range(n_features):
        width = max(width, n_bins[f])
    hist = np.zeros((width, n_channels), np.int64)
    left = np.zeros(n_channels, np.int64)
    right = np.zeros(n_channels, np.int64)
    mask = np.ones(n_features, np.bool_)
    longest = 0
    for s in range(starts.shape[0]):
        longest = max(longest, stops[s] - starts[s])
    keys = np.empty(longest, np.uint8)
    order = np.empty(longest, np.int64)
    for s in range(starts.shape[0]):
        start = starts[s]
        stop = stops[s]
        m = stop - start
        parent = node_sums[s]
        if k_features < n_features:
            sample_features(seed, tree_index, node_ids[s], n_features, k_features, mask)
        parent_term = _weighted_impurity(kind, first, n_classes, scales, parent)
        best = -np.inf
        best_f = -1
        best_b = -1
        for f in range(n_features):
            nb = n_bins[f]
            if not mask[f] or nb < 2:
                continue
            col = binned[f]
            left[:] = 0
            if m > nb:
                hist[:nb] = 0
                for i in range(start, stop):
                    r = rows[i]
                    b = col[r]
                    for c in range(n_channels):
                        hist[b, c] += channels[r, c]
                for b in range(nb - 1):
                    empty = True
                    for c in range(n_channels):
                        if hist[b, c] != 0:
                            empty = False
                        left[c] += hist[b, c]
                    if empty:
                        continue
                    for c in range(n_channels):
                        right[c] = parent[c] - left[c]
                    if (_count(left, count_channel) < min_samples_leaf
                            or _count(right, count_channel) < min_samples_leaf):
                        continue
                    g = _gain(kind, first, n_classes, scales, parent_term, left, right)
                    if g > best:
                        best, best_f, best_b = g, f, b
                        out_left[s, :] = left
            else:
                _sort_by_bin(col, rows, start, m, keys, order)
                for j in range(m - 1):
                    r = rows[start + order[j]]
                    for c in range(n_channels):
                        left[c] += channels[r, c]
                    b = keys[order[j]]
                    if keys[order[j + 1]] == b:
                        continue
                    for c in range(n_channels):
                        right[c] = parent[c] - left[c]
                    if (_count(left, count_channel) < min_samples_leaf
                            or _count(right, count_channel) < min_samples_leaf):
                        continue
                    g = _gain(kind, first, n_classes, scales, parent_term, left, right)
                    if g > best:
                        best, best_f, best_b = g, f, b
                        out_left[s, :] = left
        out_gain[s] = best
        out_feature[s] = best_f
        out_bin[s] = best_b


@njit(nogil=True, cache=True, error_model="numpy")
def scan_histogram(hist, parent, owned, n_bins, kind, first, n_classes, scales, count_channel,
                   min_samples_leaf, mask, out_left):
    """Best split in a node's summed histogram of the owned features.

    ``hist`` (n_own, B, C) int64, ``parent`` (C,), ``owned`` (n_own,) feature ids,
    ``mask`` (n_features,) features allowed at this node. Returns ``(gain, feature, bin)``
    (gain -inf when no split is valid) and the left sums in ``out_left``. Candidates are met
    in (feature, bin) order; only a strictly larger gain wins.
    """
    n_channels = hist.shape[2]
    left = np.zeros(n_channels, np.int64)
    right = np.zeros(n_channels, np.int64)
    parent_term = _weighted_impurity(kind, first, n_classes, scales, parent)
    best = -np.inf
    best_f = -1
    best_b = -1
    for j in range(owned.shape[0]):
        f = owned[j]
        if not mask[f]:
            continue
        left[:] = 0
        for b in range(n_bins[f] - 1):
            empty = True
            for c in range(n_channels):
                if hist[j, b, c] != 0:
                    empty = False
                left[c] += hist[j, b, c]
            if empty:
                continue
            for c in range(n_channels):
                right[c] = parent[c] - left[c]
            if (_count(left, count_channel) < min_samples_leaf
                    or _count(right, count_channel) < min_samples_leaf):
                continue
            g = _gain(kind, first, n_classes, scales, parent_term, left, right)
            if g > best:
                best, best_f, best_b = g, f, b
                out_left[:] = left
    return best, best_f, best_b


@njit(nogil=True, cache=True, error_model="numpy")
def scan_histograms(hists, parents, n_bins, kind, first, n_classes, scales, count_channel,
                    min_samples_leaf, masks, gains, best_j, best_b, lefts):
    """:func:`scan_histogram` of several nodes in one call: node ``i``'s histograms
    ``hists[i]`` (n_own, B, C) with sums ``parents[i]`` and allowed features ``masks[i]``
    (n_own,). Writes its gain (-inf: no valid split), the row ``j`` of ``hists[i]`` and
    the bin of its best candidate, and the candidate's left sums (zeros when none)."""
    own = np.arange(hists.shape[1])
    for i in range(hists.shape[0]):
        lefts[i, :] = 0
        g, j, b = scan_histogram(hists[i], parents[i], own, n_bins, kind, first, n_classes,
                                 scales, count_channel, min_samples_leaf, masks[i], lefts[i])
        if g == -np.inf:
            j, b = 0, 0
            lefts[i, :] = 0
        gains[i], best_j[i], best_b[i] = g, j, b


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _partition_segment(rows, start, stop, col, threshold, goes, use_table, buffer):
    """Stable partition of ``rows[start:stop]``: left the rows whose bin of ``col`` is
    ``<= threshold`` (or, with ``use_table``, whose bin ``goes`` left); returns the
    left count."""
    nl = 0
    nr = 0
    for j in range(start, stop):
        if j + PREFETCH_DISTANCE < stop:
            prefetch(col, rows[j + PREFETCH_DISTANCE])
        # branch-free: write both places, advance one (the test is a coin flip)
        r = rows[j]
        if use_table:
            go_left = np.int64(goes[col[r]])
        else:
            go_left = np.int64(col[r] <= threshold)
        rows[start + nl] = r
        buffer[nr] = r
        nl += go_left
        nr += 1 - go_left
    for j in range(nr):
        rows[start + nl + j] = buffer[j]
    return nl


@njit(nogil=True, cache=True, error_model="numpy")
def split_nodes(chosen, first_child, rows, buffer, binned, tables, use_table, edge_table,
                start, stop, depth, cand_feature, cand_bin, cand_gain, categorical, feature,
                threshold_bin, threshold, left, right, gain, is_open):
    """Split the nodes ``chosen`` on their candidates: partition each node's rows (stable;
    by ``bin <= cand_bin`` of ``cand_feature``, or by ``tables[i]`` (S, B), 1 = left, with
    ``use_table``), give the children ``first_child + 2 i`` (left) and ``+ 1`` (right)
    their row segments and depth, and record the split in the parent's fields (a
    categorical split's threshold is NaN). The children's sums are the caller's."""
    for i in range(chosen.shape[0]):
        nid = chosen[i]
        f = cand_feature[nid]
        b = cand_bin[nid]
        s = start[nid]
        e = stop[nid]
        goes = tables[i] if use_table else tables[0]
        nl = _partition_segment(rows, s, e, binned[f], b, goes, use_table, buffer)
        lc = first_child + 2 * i
        rc = lc + 1
        start[lc], stop[lc], start[rc], stop[rc] = s, s + nl, s + nl, e
        depth[lc] = depth[nid] + 1
        depth[rc] = depth[nid] + 1
        feature[nid] = f
        threshold_bin[nid] = b
        threshold[nid] = np.nan if categorical[nid] != 0 else edge_table[f, max(b, 0)]
        left[nid] = lc
        right[nid] = rc
        gain[nid] = cand_gain[nid]
        is_open[nid] = False


@njit(nogil=True, cache=True, error_model="numpy")
def take_candidates(ids, every, gains, min_gain, cand_gain, cand_feature, cand_bin, cand_left,
                    cand_missing, cand_mask, is_open):
    """Every rank's best candidate of each node ``ids[i]`` is ``every[rank, i]`` (gain
    bits, feature, bin, left sums, missing side, left-bin mask words; ``gains[rank, i]``
    its gain): keep the best (largest gain, then lowest feature, then lowest bin, then
    lowest rank) as the node's candidate; the node is open when that gain is finite
    and at least ``min_gain``."""
    n_channels = cand_left.shape[1]
    n_words = cand_mask.shape[1]
    for i in range(ids.shape[0]):
        w = 0
        for r in range(1, every.shape[0]):
            g, gw = gains[r, i], gains[w, i]
            if np.isnan(g):     # a NaN gain loses to any other
                continue
            if np.isnan(gw) or g > gw or (g == gw and (every[r, i, 1] < every[w, i, 1] or (
                    every[r, i, 1] == every[w, i, 1] and every[r, i, 2] < every[w, i, 2]))):
                w = r
        nid = ids[i]
        g = gains[w, i]
        if np.isnan(g):
            g = -np.inf
        cand_gain[nid] = g
        cand_feature[nid] = every[w, i, 1]
        cand_bin[nid] = every[w, i, 2]
        for c in range(n_channels):
            cand_left[nid, c] = every[w, i, 3 + c]
        cand_missing[nid] = every[w, i, 3 + n_channels]
        for k in range(n_words):
            cand_mask[nid, k] = every[w, i, 4 + n_channels + k]
        is_open[nid] = g > -np.inf and g >= min_gain


@njit(nogil=True, cache=True)
def fill_leaves(rows, starts, stops, leaves, out):
    """``out[rows[starts[i]:stops[i]]] = leaves[i]`` for every leaf ``i``."""
    for i in range(leaves.shape[0]):
        for j in range(starts[i], stops[i]):
            out[rows[j]] = leaves[i]


@njit(nogil=True, cache=True)
def fill_range(out):
    """``out[i] = i`` in place."""
    for i in range(out.shape[0]):
        out[i] = i
