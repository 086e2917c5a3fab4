"""numba kernels that bin float64 values against each feature's sorted thresholds.

The bin of x is the number of thresholds strictly below x (NaN: the count). A binary
search over 255 thresholds is a chain of eight dependent loads per value. Here each
feature gets a lookup over equal cells of its thresholds' range: a value's cell gives
the number of thresholds below the cell, the bin is within the few thresholds in the
cell, and a fixed number of branch-free steps (as many for every value of the feature,
so no branch mispredicts) finds it there. Two correction loops then make the result exact whatever
rounding did to the cell: the cell decides only how fast the answer comes.

Cells are equal in value (``(x - lo) * inv``), which suits thresholds spread over a
bounded range, or equal in an order-preserving integer image of the floats (about equal
in log scale), which suits heavy tails; each feature takes the kind whose fullest cell
holds fewer thresholds. A feature whose thresholds are not in order (a NaN among them)
keeps the plain binary search, whose result is then the definition.

Every kernel is compiled with ``nogil=True`` so that thread ranks run them in parallel,
and with ``cache=True`` so that the compilation is paid once per machine.
"""

__all__ = ["build_bin_lookup", "bin_columns", "bin_rows", "bin_special", "sorted_values",
           "take_columns"]

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

#: cells per threshold: quantile thresholds of a smooth distribution then rarely share a
#: cell (one search step), and the lookup of 255 thresholds stays 4 KiB
CELLS_PER_EDGE = 4
#: rows per block: a block of row-major X stays in cache while its features are binned
#: one after another (each feature reads a cache line per row, shared by 8 features)
BLOCK = 1024

# per-feature integer parameters (columns of the lookup's ``ints``): kind of cells,
# threshold count, where the feature's thresholds and cells start, last cell, search
# steps, and for cells over keys: first key, the collapsed gap, log2 of a cell's keys
_MODE, _COUNT, _EDGE_AT, _CELL_AT, _LAST, _STEPS, _BASE, _GAP_AT, _GAP_LEN, _SHIFT = range(10)
_N_INTS = 10
# per-feature float parameters (columns of ``floats``), for cells over values: first
# value, cells per unit
_LO, _INV = range(2)
# kinds of cells (``_MODE``)
_LINEAR, _KEY, _SEARCH = 0, 1, 2
# indices are unsigned: numba then adds no code for negative indices
_U0 = np.uint64(0)
_U1 = np.uint64(1)


@intrinsic
def _float_bits(typingctx, x):
    """The bits of a float64 as an int64 (a register move, no trip through memory)."""
    if not isinstance(x, types.Float) or x.bitwidth != 64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@njit(nogil=True, cache=True, inline="always")
def _half_key(x):
    """An int64 in the order of the non-NaN floats, halved so that the difference of two
    fits in an int64: a float's magnitude bits, negated for negative floats (-0.0 and 0.0,
    equal floats, share 0)."""
    bits = _float_bits(x)
    sign = bits >> 63                       # 0 or -1
    return (((bits & 0x7FFFFFFFFFFFFFFF) ^ sign) - sign) >> 1


@njit(nogil=True, cache=True, inline="always")
def _linear_cell(x, lo, inv, last):
    """Cell of non-NaN x among equal cells from ``lo``; ``last`` is a float. Monotone in
    x: clamped to the end cells, where +-inf and values past the thresholds fall."""
    t = (x - lo) * inv
    t = t if t > 0.0 else 0.0
    t = t if t < last else last
    return np.uint64(np.int64(t))


@njit(nogil=True, cache=True, inline="always")
def _key_cell(x, base, gap_at, gap_len, shift, last):
    """Cell of non-NaN x among cells of ``2**shift`` keys from ``base``; monotone in x.
    Keys from ``gap_at`` on move down by ``gap_len``: the widest gap between two
    thresholds' keys (for signed values, the keys of the tiny floats around 0) takes
    one cell, not most of them."""
    h = _half_key(x)
    h = h if h < gap_at else max(gap_at, h - gap_len)
    c = (h - base) >> shift
    c = c if c > 0 else 0
    return np.uint64(c if c < last else last)


@njit(nogil=True, cache=True, inline="always")
def _refine(e, pos, x, steps):
    """Number of thresholds below non-NaN x, from ``pos``, the count below its cell.

    ``e`` holds the thresholds from index 1, after a NaN (``NaN >= x`` is false) and
    before +infs (``inf < x`` is false), so neither correction loop runs past an end and
    the search may look past the last threshold.
    """
    while steps != _U0:
        # a shifted 0/1 rather than a select: the compiler turns a select into a branch
        steps -= _U1
        pos += np.uint64(e[pos + (_U1 << steps)] < x) << steps
    # exact whatever the cell: a loop runs only if rounding put x in a neighbouring cell
    while e[pos + _U1] < x:
        pos += _U1
    while e[pos] >= x:
        pos -= _U1
    return pos


@njit(nogil=True, cache=True, inline="always")
def _bin_linear(X, f, r0, r1, col, k, e, start, lo, inv, last, steps):
    for i in range(r0, r1):
        x = X[i, f]
        if x != x:
            col[i] = k
        else:
            col[i] = _refine(e, np.uint64(start[_linear_cell(x, lo, inv, last)]), x, steps)


@njit(nogil=True, cache=True, inline="always")
def _bin_key(X, f, r0, r1, col, k, e, start, base, gap_at, gap_len, shift, last, steps):
    for i in range(r0, r1):
        x = X[i, f]
        if x != x:
            col[i] = k
        else:
            cell = _key_cell(x, base, gap_at, gap_len, shift, last)
            col[i] = _refine(e, np.uint64(start[cell]), x, steps)


@njit(nogil=True, cache=True, inline="always")
def _bin_feature(X, f, r0, r1, col, ints, floats, cells, edges):
    """``col[i]`` = bin of ``X[i, f]`` for rows ``r0 <= i < r1``. The kind of cells and
    the steps are tested outside the row loops; one step (the common case) has loops of
    its own, where the step count is a constant the compiler folds."""
    p = ints[f]
    k = np.uint64(p[_COUNT])
    e = edges[p[_EDGE_AT]:]
    start = cells[p[_CELL_AT]:]
    steps = np.uint64(p[_STEPS])
    fu = np.uint64(f)
    if p[_MODE] == _LINEAR:
        lo = floats[f, _LO]
        inv = floats[f, _INV]
        last = float(p[_LAST])
        if steps == _U1:
            _bin_linear(X, fu, r0, r1, col, k, e, start, lo, inv, last, _U1)
        else:
            _bin_linear(X, fu, r0, r1, col, k, e, start, lo, inv, last, steps)
    elif p[_MODE] == _KEY:
        base, gap_at, gap_len, shift, last = (p[_BASE], p[_GAP_AT], p[_GAP_LEN], p[_SHIFT],
                                              p[_LAST])
        if steps == _U1:
            _bin_key(X, fu, r0, r1, col, k, e, start, base, gap_at, gap_len, shift, last, _U1)
        else:
            _bin_key(X, fu, r0, r1, col, k, e, start, base, gap_at, gap_len, shift, last, steps)
    else:
        # thresholds out of order: the binary search's result is the definition
        for i in range(r0, r1):
            x = X[i, fu]
            if x != x:
                col[i] = k
                continue
            pos = _U0
            b = steps
            while b != _U0:
                b -= _U1
                nxt = pos + (_U1 << b)
                if nxt <= k and e[nxt] < x:
                    pos = nxt
            col[i] = pos


@njit(nogil=True, cache=True)
def _fill_starts(e, p, q, start):
    """``start[c]`` = number of the thresholds ``e`` whose cell is below c, and
    ``start[n_cells]`` = their count, for the cells of parameters ``p``, ``q`` (a row of
    ``ints``, ``floats``): x of cell c has its bin in ``[start[c], start[c + 1]]``. Returns
    the most thresholds in one cell, so that the search covers any cell."""
    n_cells = p[_LAST] + 1
    start[:n_cells + 1] = 0
    for j in range(e.shape[0]):
        if p[_MODE] == _LINEAR:
            c = _linear_cell(e[j], q[_LO], q[_INV], float(p[_LAST]))
        else:
            c = _key_cell(e[j], p[_BASE], p[_GAP_AT], p[_GAP_LEN], p[_SHIFT], p[_LAST])
        start[np.int64(c) + 1] += 1
    most = 0
    for c in range(n_cells):
        most = max(most, start[c + 1])
        start[c + 1] += start[c]
    return most


@njit(nogil=True, cache=True)
def _bit_length(n):
    """Binary search steps (of 2**(b-1), ..., 2, 1) that cover n thresholds."""
    b = 0
    while n >> b:
        b += 1
    return b


@njit(nogil=True, cache=True)
def _choose_cells(e, p, q, scratch):
    """Fill the parameters ``p``, ``q`` (rows of ``ints``, ``floats``) of the cells of
    the sorted thresholds ``e`` (no NaN); returns the most thresholds in one cell."""
    k = e.shape[0]
    # the cells span the finite thresholds; infinite ones fall in the end cells
    first = 0
    while first < k and np.isinf(e[first]):
        first += 1
    final = k - 1
    while final >= 0 and np.isinf(e[final]):
        final -= 1
    p[_MODE] = _LINEAR
    p[_LAST] = 0                            # one cell: inv = 0 puts every x there
    q[:] = 0.0
    most = k
    if first >= final:
        return most
    target = CELLS_PER_EDGE * k
    span = e[final] - e[first]
    inv = target / span
    if np.isfinite(span) and np.isfinite(inv) and inv > 0.0:    # else too wide or too narrow
        q[_LO] = e[first]
        q[_INV] = inv
        p[_LAST] = target - 1
        most = _fill_starts(e, p, q, scratch)
    # cells over keys (powers of two: a shift, not a multiplication), the widest gap
    # between consecutive thresholds kept or collapsed to one cell, at most target or
    # twice as many cells; the fullest cell decides among all
    lo = _half_key(e[first])
    gap_at = lo
    gap = 0
    for j in range(first, final):
        at, nxt = _half_key(e[j]), _half_key(e[j + 1])
        if nxt - at > gap:
            gap_at, gap = at, nxt - at
    kept = _half_key(e[final]) - lo
    key = p.copy()
    key[_MODE] = _KEY
    key[_BASE] = lo
    key[_GAP_AT] = gap_at
    for collapse in (False, True):
        shift = 0
        while ((kept - gap if collapse else kept) >> shift) >= target:
            shift += 1
        for finer in (0, 1):
            if shift - finer < 0:
                continue
            key[_SHIFT] = shift - finer
            key[_GAP_LEN] = max(0, gap - (1 << key[_SHIFT])) if collapse else 0
            key[_LAST] = (kept - key[_GAP_LEN]) >> key[_SHIFT]
            most_key = _fill_starts(e, key, q, scratch)
            if most_key < most:
                p[:] = key
                q[:] = 0.0
                most = most_key
    return most


@njit(nogil=True, cache=True)
def build_bin_lookup(table, starts):
    """Lookup for :func:`bin_columns` and :func:`bin_rows` of the thresholds
    ``table[starts[f]:starts[f + 1]]`` of each feature f (sorted for binning by count).

    Returns ``(ints, floats, cells, edges)``: per-feature parameters (n_features, 10)
    int64 and (n_features, 2) float64, then every feature's cell table (int32) and its
    thresholds between a NaN and +infs (float64), one feature after another.
    """
    n_features = starts.shape[0] - 1
    ints = np.zeros((n_features, _N_INTS), np.int64)
    floats = np.zeros((n_features, 2), np.float64)
    longest = 1
    for f in range(n_features):
        longest = max(longest, starts[f + 1] - starts[f])
    scratch = np.empty(2 * CELLS_PER_EDGE * longest + 2, np.int64)
    n_cells = 0
    n_edges = 0
    for f in range(n_features):
        e = table[starts[f]:starts[f + 1]]
        k = e.shape[0]
        p = ints[f]
        p[_COUNT] = k
        ordered = True
        for j in range(k):
            if not (e[j] == e[j]) or (j > 0 and not (e[j - 1] <= e[j])):
                ordered = False
        if ordered:
            p[_STEPS] = _bit_length(_choose_cells(e, p, floats[f], scratch))
            p[_CELL_AT] = n_cells
            n_cells += p[_LAST] + 2
        else:
            p[_MODE] = _SEARCH
            p[_STEPS] = _bit_length(k)
        p[_EDGE_AT] = n_edges
        # the search may look up to 2**steps - 1 places past the last threshold
        n_edges += 1 + k + max(1, 1 << p[_STEPS])
    cells = np.zeros(n_cells, np.int32)
    edges = np.full(n_edges, np.inf)
    for f in range(n_features):
        e = table[starts[f]:starts[f + 1]]
        p = ints[f]
        edges[p[_EDGE_AT]] = np.nan
        edges[p[_EDGE_AT] + 1:p[_EDGE_AT] + 1 + e.shape[0]] = e
        if p[_MODE] != _SEARCH:
            _fill_starts(e, p, floats[f], scratch)
            cells[p[_CELL_AT]:p[_CELL_AT] + p[_LAST] + 2] = scratch[:p[_LAST] + 2]
    return ints, floats, cells, edges


@njit(nogil=True, cache=True)
def bin_columns(X, ints, floats, cells, edges, out):
    """Bin ``X`` (n, n_features) into feature-major ``out`` (n_features, n), integer.

    ``ints, floats, cells, edges``: :func:`build_bin_lookup` of the features' sorted
    edges; the bin of x is the number of edges strictly below x, NaN's the number of
    edges. Rows go in blocks, each block feature by feature.
    """
    n, n_features = X.shape
    for r0 in range(0, n, BLOCK):
        r1 = min(n, r0 + BLOCK)
        for f in range(n_features):
            _bin_feature(X, f, np.uint64(r0), np.uint64(r1), out[f], ints, floats, cells, edges)


@njit(nogil=True, cache=True)
def bin_rows(X, ints, floats, cells, edges, out):
    """Row-major bins of ``X`` (n, n_features) into ``out`` (n, n_features), integer.

    ``ints, floats, cells, edges``: :func:`build_bin_lookup` of each feature's sorted
    distinct thresholds; the bin of x is the number of them strictly below x, so that
    ``x <= threshold number b`` exactly when ``bin < b + 1``. NaN goes past every
    threshold (never left, as with ``x <= threshold``). Rows go in blocks, each block
    feature by feature.
    """
    n, n_features = X.shape
    for r0 in range(0, n, BLOCK):
        r1 = min(n, r0 + BLOCK)
        for f in range(n_features):
            _bin_feature(X, f, np.uint64(r0), np.uint64(r1), out[:, f], ints, floats, cells,
                         edges)


@njit(nogil=True, cache=True)
def bin_special(X, f, code_bins, categorical, missing_bin, out):
    """Bins of feature ``f`` of ``X`` into ``out`` (n,): NaN in ``missing_bin``; a
    categorical feature's code ``c`` in ``code_bins[c]`` (a numeric feature's other values
    keep the bins :func:`bin_columns` gave them)."""
    for i in range(X.shape[0]):
        x = X[i, f]
        if x != x:
            out[i] = missing_bin
        elif categorical:
            out[i] = code_bins[np.int64(x)]


# radix sort of floats: digits of this many bits, enough passes for 64
_DIGIT = 11
_PASSES = 6
_DIGIT_MASK = (1 << _DIGIT) - 1


@njit(nogil=True, cache=True)
def sorted_values(values):
    """The non-NaN values of ``values`` (n,) in ascending order, -0.0 as 0.0: the values of
    ``numpy.sort(values[~numpy.isnan(values)])`` (up to the sign of zeros, which compare
    equal), by a radix sort of keys in the floats' order (three times faster than numpy's
    sort on 200,000 values)."""
    n = values.shape[0]
    keys = np.empty(n, dtype=np.int64)
    counts = np.zeros((_PASSES, 1 << _DIGIT), dtype=np.int64)
    m = 0
    for i in range(n):
        x = values[i]
        if x != x:
            continue
        # key: the bits as unsigned, with the order of the floats (negative floats
        # flipped, positive ones past them); every zero is +0.0
        bits = _float_bits(x) if x != 0.0 else np.int64(0)
        key = ~bits if bits < 0 else bits ^ np.int64(-0x8000000000000000)
        keys[m] = key
        for p in range(_PASSES):
            counts[p, (key >> (_DIGIT * p)) & _DIGIT_MASK] += 1
        m += 1
    keys = keys[:m]
    other = np.empty(m, dtype=np.int64)
    for p in range(_PASSES):
        c = counts[p]
        one_digit = False
        total = 0
        for d in range(c.shape[0]):
            here = c[d]
            one_digit |= here == m
            c[d] = total
            total += here
        if one_digit:       # every key has this digit: the pass would move nothing
            continue
        for i in range(m):
            key = keys[i]
            d = (key >> (_DIGIT * p)) & _DIGIT_MASK
            other[c[d]] = key
            c[d] += 1
        keys, other = other, keys
    out = np.empty(m, dtype=np.int64)
    for i in range(m):
        key = keys[i]
        out[i] = key ^ np.int64(-0x8000000000000000) if key < 0 else ~key
    return out.view(np.float64)


@njit(nogil=True, cache=True)
def take_columns(X, rows, f0, f1):
    """``X[rows, f0:f1].T`` as a new C-ordered array (f1 - f0, len(rows)): each feature's
    values of the rows in one stream (numpy's fancy indexing of a few columns of many
    rows, and its transposing copy, are each several times slower)."""
    out = np.empty((f1 - f0, rows.shape[0]), dtype=X.dtype)
    for i in range(rows.shape[0]):
        r = rows[i]
        for j in range(f1 - f0):
            out[j, i] = X[r, f0 + j]
    return out
