"""numba kernels of the tree core: histograms, prediction and the packed forest layout.

Every kernel is compiled with ``nogil=True`` so that thread ranks run them in
parallel, and with ``cache=True`` so that the compilation is paid once per machine.
"""

__all__ = ["build_histograms", "build_histograms_rows", "build_histograms_nodes",
           "build_histograms_rows_nodes", "unpack_histograms", "unpacked_sum",
           "packed_word_fields", "apply_tree", "predict_walk", "predict_packed", "pack_forest",
           "NODE_NARROW", "NODE_WIDE"]

import numpy as np
from numba import njit

from ._prefetch import PREFETCH_DISTANCE, prefetch


@njit(nogil=True, cache=True, inline="always")
def _prefetch_four(c0, c1, c2, c3, row):
    """Prefetch ``row`` of four feature columns."""
    prefetch(c0, row)
    prefetch(c1, row)
    prefetch(c2, row)
    prefetch(c3, row)


@njit(nogil=True, cache=True)
def _four_features(binned, rows, start, ordered, features, out, slot, j, n_channels):
    """Histograms of features ``j..j+3`` in one pass (1, 2 or 3 channels)."""
    c0, c1 = binned[features[j]], binned[features[j + 1]]
    c2, c3 = binned[features[j + 2]], binned[features[j + 3]]
    h0, h1, h2, h3 = out[j, slot], out[j + 1, slot], out[j + 2, slot], out[j + 3, slot]
    m = ordered.shape[0]
    if n_channels == 1:
        for i in range(m):
            if i + PREFETCH_DISTANCE < m:
                _prefetch_four(c0, c1, c2, c3, rows[start + i + PREFETCH_DISTANCE])
            r = rows[start + i]
            g0 = ordered[i, 0]
            h0[c0[r], 0] += g0
            h1[c1[r], 0] += g0
            h2[c2[r], 0] += g0
            h3[c3[r], 0] += g0
    elif n_channels == 2:
        for i in range(m):
            if i + PREFETCH_DISTANCE < m:
                _prefetch_four(c0, c1, c2, c3, rows[start + i + PREFETCH_DISTANCE])
            r = rows[start + i]
            g0 = ordered[i, 0]
            g1 = ordered[i, 1]
            b = c0[r]
            h0[b, 0] += g0
            h0[b, 1] += g1
            b = c1[r]
            h1[b, 0] += g0
            h1[b, 1] += g1
            b = c2[r]
            h2[b, 0] += g0
            h2[b, 1] += g1
            b = c3[r]
            h3[b, 0] += g0
            h3[b, 1] += g1
    else:
        for i in range(m):
            if i + PREFETCH_DISTANCE < m:
                _prefetch_four(c0, c1, c2, c3, rows[start + i + PREFETCH_DISTANCE])
            r = rows[start + i]
            g0 = ordered[i, 0]
            g1 = ordered[i, 1]
            g2 = ordered[i, 2]
            b = c0[r]
            h0[b, 0] += g0
            h0[b, 1] += g1
            h0[b, 2] += g2
            b = c1[r]
            h1[b, 0] += g0
            h1[b, 1] += g1
            h1[b, 2] += g2
            b = c2[r]
            h2[b, 0] += g0
            h2[b, 1] += g1
            h2[b, 2] += g2
            b = c3[r]
            h3[b, 0] += g0
            h3[b, 1] += g1
            h3[b, 2] += g2


@njit(nogil=True, cache=True)
def build_histograms(binned, channels, rows, start, stop, features, out, slot):
    """Add the channels of ``rows[start:stop]`` into ``out[:, slot]``.

    Parameters
    ----------
    binned : ndarray of shape (n_features, n_rows), uint8
        Feature-major binned matrix.
    channels : ndarray of shape (n_rows, n_channels), int64
    rows : ndarray of shape (n_rows,), int32 or int64
        Row permutation; a node's rows are one contiguous segment of it.
    start, stop : int
        The node's segment.
    features : ndarray of shape (k,), int64
        Features to histogram; ``out[j]`` receives feature ``features[j]``.
    out : ndarray of shape (k, n_slots, n_bins, n_channels), int64
        Accumulated in place (zero it first).
    slot : int
        Which node slot of ``out`` to fill.
    """
    m = stop - start
    n_channels = channels.shape[1]
    ordered = np.empty((m, n_channels), np.int64)
    for i in range(m):
        if i + PREFETCH_DISTANCE < m:
            prefetch(channels, rows[start + i + PREFETCH_DISTANCE])
        r = rows[start + i]
        for c in range(n_channels):
            ordered[i, c] = channels[r, c]
    n_features = features.shape[0]
    first = 0
    if n_channels <= 3:
        # four features per pass over the rows: each row's channels are loaded once
        while first + 4 <= n_features:
            _four_features(binned, rows, start, ordered, features, out, slot, first, n_channels)
            first += 4
    for j in range(first, n_features):
        col = binned[features[j]]
        hist = out[j, slot]
        if n_channels == 1:
            for i in range(m):
                hist[col[rows[start + i]], 0] += ordered[i, 0]
        elif n_channels == 2:
            for i in range(m):
                b = col[rows[start + i]]
                hist[b, 0] += ordered[i, 0]
                hist[b, 1] += ordered[i, 1]
        elif n_channels == 3:
            for i in range(m):
                b = col[rows[start + i]]
                hist[b, 0] += ordered[i, 0]
                hist[b, 1] += ordered[i, 1]
                hist[b, 2] += ordered[i, 2]
        else:
            for i in range(m):
                b = col[rows[start + i]]
                for c in range(n_channels):
                    hist[b, c] += ordered[i, c]


@njit(nogil=True, cache=True)
def build_histograms_rows(binned_rows, channels, rows, start, stop, out, slot):
    """:func:`build_histograms` of every feature from the row-major binned matrix.

    Each row's bins are one short contiguous read, which beats the feature-major
    matrix when a node holds most rows (streaming) or few, scattered ones (one cache
    line per row instead of one per feature); in between the feature-major one wins.

    Parameters
    ----------
    binned_rows : ndarray of shape (n_rows, n_features), uint8
    channels : ndarray of shape (n_rows, n_channels), int64
    rows : ndarray of shape (n_rows,), int32 or int64
    start, stop : int
    out : ndarray of shape (n_features, n_slots, n_bins, n_channels), int64
    slot : int
    """
    n_features = binned_rows.shape[1]
    n_channels = channels.shape[1]
    hist = out[:, slot]
    i = start
    if n_channels == 1:
        # one packed channel: a single add per feature; four rows at a time
        while i + 3 < stop:
            if i + PREFETCH_DISTANCE + 3 < stop:
                for d in range(PREFETCH_DISTANCE, PREFETCH_DISTANCE + 4):
                    ahead = rows[i + d]
                    prefetch(binned_rows, ahead)
                    prefetch(channels, ahead)
            r0 = rows[i]
            r1 = rows[i + 1]
            r2 = rows[i + 2]
            r3 = rows[i + 3]
            g0 = channels[r0, 0]
            g1 = channels[r1, 0]
            g2 = channels[r2, 0]
            g3 = channels[r3, 0]
            for f in range(n_features):
                h = hist[f]
                h[binned_rows[r0, f], 0] += g0
                h[binned_rows[r1, f], 0] += g1
                h[binned_rows[r2, f], 0] += g2
                h[binned_rows[r3, f], 0] += g3
            i += 4
    elif n_channels == 2:
        # two rows at a time: twice the independent updates in flight
        while i + 1 < stop:
            if i + PREFETCH_DISTANCE + 1 < stop:
                for d in range(PREFETCH_DISTANCE, PREFETCH_DISTANCE + 2):
                    ahead = rows[i + d]
                    prefetch(binned_rows, ahead)
                    prefetch(channels, ahead)
            r = rows[i]
            s = rows[i + 1]
            g0 = channels[r, 0]
            g1 = channels[r, 1]
            k0 = channels[s, 0]
            k1 = channels[s, 1]
            for f in range(n_features):
                b = binned_rows[r, f]
                c = binned_rows[s, f]
                hist[f, b, 0] += g0
                hist[f, b, 1] += g1
                hist[f, c, 0] += k0
                hist[f, c, 1] += k1
            i += 2
    elif n_channels == 3:
        while i < stop:
            if i + PREFETCH_DISTANCE < stop:
                ahead = rows[i + PREFETCH_DISTANCE]
                prefetch(binned_rows, ahead)
                prefetch(channels, ahead)
            r = rows[i]
            g0 = channels[r, 0]
            g1 = channels[r, 1]
            g2 = channels[r, 2]
            for f in range(n_features):
                b = binned_rows[r, f]
                hist[f, b, 0] += g0
                hist[f, b, 1] += g1
                hist[f, b, 2] += g2
            i += 1
    for j in range(i, stop):
        r = rows[j]
        for f in range(n_features):
            b = binned_rows[r, f]
            for c in range(n_channels):
                hist[f, b, c] += channels[r, c]


@njit(nogil=True, cache=True)
def build_histograms_nodes(binned, channels, rows, starts, stops, features, out):
    """:func:`build_histograms` of several nodes in one call: node ``i``'s segment
    ``rows[starts[i]:stops[i]]`` into ``out[:, i]`` (no interpreter between nodes)."""
    for i in range(starts.shape[0]):
        if stops[i] > starts[i]:
            build_histograms(binned, channels, rows, starts[i], stops[i], features, out, i)


@njit(nogil=True, cache=True)
def build_histograms_rows_nodes(binned_rows, channels, rows, starts, stops, out):
    """:func:`build_histograms_rows` of several nodes in one call (as
    :func:`build_histograms_nodes`)."""
    for i in range(starts.shape[0]):
        if stops[i] > starts[i]:
            build_histograms_rows(binned_rows, channels, rows, starts[i], stops[i], out, i)


@njit(nogil=True, cache=True)
def unpack_histograms(packed, piece_node, count_bits, hess_bits, out):
    """Add the packed histograms of row pieces to their nodes' exact channels.

    Piece ``p``'s histogram ``packed[:, p, :, 0]`` (words ``(G << (hess_bits +
    count_bits)) + (H << count_bits) + count`` whose fields never carried) is added to
    ``out[:, piece_node[p]]`` as ``[G, H, count]``, or ``[G, count]`` when ``hess_bits``
    is 0.

    Parameters
    ----------
    packed : ndarray of shape (n_features, n_pieces, n_bins, 1), int64
    piece_node : ndarray of shape (n_pieces,), int64
    count_bits, hess_bits : int
    out : ndarray of shape (n_features, n_nodes, n_bins, 2 or 3), int64
    """
    for f in range(packed.shape[0]):
        for p in range(packed.shape[1]):
            node = piece_node[p]
            for b in range(packed.shape[2]):
                word = packed[f, p, b, 0]
                if word != 0:
                    _add_fields(word, count_bits, hess_bits, out[f, node, b])


@njit(nogil=True, cache=True)
def unpacked_sum(channels, rows, chunk, count_bits, hess_bits, out):
    """The packed channel ``channels[:, 0]`` of ``rows`` summed ``chunk`` rows at a time
    (sums of that many rows never carry) and added to ``out`` as ``[G, H, count]`` (or
    ``[G, count]`` when ``hess_bits`` is 0)."""
    n = rows.shape[0]
    for lo in range(0, n, chunk):
        total = np.int64(0)
        for i in range(lo, min(lo + chunk, n)):
            total += channels[rows[i], 0]
        _add_fields(total, count_bits, hess_bits, out)


@njit(nogil=True, cache=True, inline="always")
def packed_word_fields(word, count_bits, hess_bits):
    """``(G, H, count)`` of a packed word ``(G << (hess_bits + count_bits)) + (H <<
    count_bits) + count`` whose fields never carried (H is 0 when ``hess_bits`` is 0)."""
    g = word >> np.int64(count_bits + hess_bits)   # arithmetic: G keeps its sign
    count = word & ((np.int64(1) << np.int64(count_bits)) - 1)
    h = np.int64(0)
    if hess_bits > 0:
        h = (word >> np.int64(count_bits)) & ((np.int64(1) << np.int64(hess_bits)) - 1)
    return g, h, count


@njit(nogil=True, cache=True, inline="always")
def _add_fields(word, count_bits, hess_bits, out):
    g, h, count = packed_word_fields(word, count_bits, hess_bits)
    out[0] += g
    if hess_bits > 0:
        out[1] += h
        out[2] += count
    else:
        out[1] += count


@njit(nogil=True, cache=True, inline="always")
def _goes_left(x, node, threshold, missing_left, categorical, bitset):
    """Whether raw value ``x`` goes left at ``node``: NaN by the learned side, a category
    code by the node's set of left codes, a number by ``x <= threshold``."""
    if x != x:
        return missing_left[node] != 0
    if categorical[node] != 0:
        c = np.int64(x)
        word = c >> 5
        if c < 0 or word >= bitset.shape[1]:
            return False
        return (bitset[node, word] >> np.uint32(c & 31)) & np.uint32(1) != 0
    return x <= threshold[node]


@njit(nogil=True, cache=True)
def apply_tree(feature, threshold, missing_left, categorical, bitset, left, right, X, out):
    """Leaf index of every row of ``X`` (float64, (n, n_features)) into ``out`` (int64)."""
    for i in range(X.shape[0]):
        node = 0
        while left[node] >= 0:
            if _goes_left(X[i, feature[node]], node, threshold, missing_left, categorical,
                          bitset):
                node = left[node]
            else:
                node = right[node]
        out[i] = node


@njit(nogil=True, cache=True)
def predict_walk(feature, threshold, missing_left, categorical, bitset, left, right, value,
                 offsets, X, rows, out):
    """Add each tree's leaf values, in tree order, to ``out[i]`` for the rows ``i`` in
    ``rows``, walking the stacked trees on raw values (the same sums as
    :func:`predict_packed`)."""
    n_out = value.shape[1]
    for j in range(rows.shape[0]):
        i = rows[j]
        for t in range(offsets.shape[0] - 1):
            base = offsets[t]
            if offsets[t + 1] == base:
                continue
            node = base
            while left[node] >= 0:
                if _goes_left(X[i, feature[node]], node, threshold, missing_left, categorical,
                              bitset):
                    node = base + left[node]
                else:
                    node = base + right[node]
            for k in range(n_out):
                out[i, k] += value[node, k]


#: Nodes of a packed forest, in depth-first order: a node's left child is the next slot,
#: ``right`` is the slot of its right child, and a walk goes left when the row's bin
#: (see :func:`._bin_kernels.bin_rows`) is below ``bound``. A leaf is its own right child with bound 0,
#: so a walk that reaches it stays there; its values (float64) fill the slots after it.
#: The narrow form (8 bytes, eight to a cache line) serves up to 65,536 features and
#: 65,535 distinct thresholds per feature; the wide form (16 bytes) the rest.
NODE_NARROW = np.dtype([("right", np.int32), ("feature", np.uint16), ("bound", np.uint16)])
NODE_WIDE = np.dtype([("right", np.int32), ("feature", np.int32), ("bound", np.int32),
                      ("unused", np.int32)])


@njit(nogil=True, cache=True)
def pack_forest(feature, left, right, bound, value, offsets, nodes, values, stride):
    """Fill ``nodes`` and ``values`` with the stacked trees, tree by tree, depth-first.

    ``bound[i]`` is the packed bound of inner node ``i``. ``values`` is a float64 view
    of ``nodes``'s memory: leaf slot ``s`` keeps its k-th value at ``(s + 1) * stride + k``
    (``stride`` = node size / 8). Returns the slots of the tree roots (-1 for an empty tree).
    """
    n_out = value.shape[1]
    per_leaf = 1 + (n_out + stride - 1) // stride
    stack = np.empty(max(1, left.shape[0]), np.int64)
    where = np.empty(max(1, left.shape[0]), np.int64)   # old node -> slot
    roots = np.full(offsets.shape[0] - 1, -1, np.int64)
    pos = 0
    for t in range(offsets.shape[0] - 1):
        base = offsets[t]
        if offsets[t + 1] == base:
            continue
        roots[t] = pos
        top = 0
        stack[0] = base
        while top >= 0:
            old = stack[top]
            top -= 1
            where[old] = pos
            if left[old] >= 0:
                pos += 1
                top += 1
                stack[top] = base + right[old]
                top += 1
                stack[top] = base + left[old]
            else:
                pos += per_leaf
        for old in range(base, offsets[t + 1]):
            new = where[old]
            if left[old] < 0:
                nodes[new].right = new
                nodes[new].feature = 0
                nodes[new].bound = 0
                for k in range(n_out):
                    values[(new + 1) * stride + k] = value[old, k]
            else:
                nodes[new].right = where[base + right[old]]
                nodes[new].feature = feature[old]
                nodes[new].bound = bound[old]
    return roots


@njit(nogil=True, cache=True)
def predict_packed(nodes, values, stride, roots, depths, binned, out):
    """Add each tree's leaf values, in tree order, to every row of ``out`` (n, n_out).

    A walk of ``depths[t]`` steps from ``roots[t]`` ends at the row's leaf whatever its
    depth: a loop without data-dependent branches. A group of rows walks a tree in
    lockstep, so their node loads are independent and many cache misses are in flight.
    Rows go in blocks, each block through every tree, so a tree stays in cache for the
    whole block.
    """
    n = binned.shape[0]
    n_out = out.shape[1]
    group = 32
    block = 2048
    at = np.empty(group, np.int64)
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        for t in range(roots.shape[0]):
            root = roots[t]
            depth = depths[t]
            for g in range(lo, hi, group):
                m = min(group, hi - g)
                for j in range(m):
                    at[j] = root
                for _ in range(depth):
                    for j in range(m):
                        node = at[j]
                        rec = nodes[node]
                        right = np.int64(rec.right)
                        go_left = np.int64(binned[g + j, rec.feature] < rec.bound)
                        at[j] = right + go_left * (node + 1 - right)  # no branch to mispredict
                for j in range(m):
                    first = (at[j] + 1) * stride
                    for k in range(n_out):
                        out[g + j, k] += values[first + k]
