"""Weighted medians over every rank's rows, the same for any rank count.

Absolute-error boosting needs the weighted median of the target (the baseline) and of
the residuals in every leaf of every tree. Each rank maps its float64 values to int64
keys in the same order; a bisection on the key, one small allreduce of exact integer
weights per step (every group at once), finds the smallest value whose share of the
group's weight reaches one half. Each rank sorts its rows by (group, key) once, so a
step costs a binary search per group instead of a pass over the rows.
"""

__all__ = ["group_medians"]

import numpy as np

from ...comm.ops import MAX, MIN, SUM

_SIGN = np.int64(0x7FFFFFFFFFFFFFFF)


def _keys(values):
    """int64 keys in the order of the float64 values (NaN-free input)."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.int64)
    return np.where(bits >= 0, bits, -(bits & _SIGN) - 1)


def _values(keys):
    bits = np.where(keys >= 0, keys, -(keys + 1) | ~_SIGN)
    return bits.astype(np.int64).view(np.float64)


def group_medians(comm, values, groups, n_groups, weights):
    """Weighted lower median of ``values`` within each group. Collective.

    Parameters
    ----------
    comm : Communicator
    values : ndarray of shape (n_local,), float64, finite
    groups : ndarray of shape (n_local,), int64 in [0, n_groups)
    n_groups : int
    weights : ndarray of shape (n_local,), int64 >= 0
        Exact (fixed-point) weights whose total over all ranks is below ``2**52``;
        rows of weight 0 are ignored.

    Returns
    -------
    ndarray of shape (n_groups,)
        The smallest value ``v`` of each group with ``2 * W(x <= v) >= W``; 0.0 for a
        group without weight.
    """
    live = weights > 0
    groups, keys, weights = groups[live], _keys(values[live]), weights[live]
    order = np.argsort(groups, kind="stable")
    groups, keys, weights = groups[order], keys[order], weights[order]
    ids = np.arange(n_groups)
    starts = np.searchsorted(groups, ids)
    stops = np.searchsorted(groups, ids, side="right")
    lo = np.full(n_groups, np.iinfo(np.int64).max)
    hi = np.full(n_groups, np.iinfo(np.int64).min)
    for j in np.flatnonzero(stops > starts):  # each group's rows sorted by key
        seg = slice(starts[j], stops[j])
        by_key = np.argsort(keys[seg], kind="stable")
        keys[seg], weights[seg] = keys[seg][by_key], weights[seg][by_key]
        lo[j], hi[j] = keys[starts[j]], keys[stops[j] - 1]
    below = np.concatenate([[0], np.cumsum(weights)])  # exact: the total is below 2**52
    bounds = np.empty_like(lo)
    comm.Allreduce(lo, bounds, op=MIN)
    lo = bounds.copy()
    comm.Allreduce(hi, bounds, op=MAX)
    hi = bounds.copy()
    total = np.empty(n_groups, dtype=np.int64)
    comm.Allreduce(below[stops] - below[starts], total, op=SUM)
    empty = lo > hi
    lo[empty] = hi[empty] = 0
    local = np.zeros(n_groups, dtype=np.int64)
    summed = np.empty_like(local)
    mine = np.flatnonzero(stops > starts)
    while True:  # the answer is in [lo, hi]; every rank takes the same steps
        open_ = lo < hi
        if not open_.any():
            break
        mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)  # floor((lo + hi) / 2), no overflow
        for j in mine[open_[mine]]:
            pos = starts[j] + np.searchsorted(keys[starts[j]:stops[j]], mid[j], side="right")
            local[j] = below[pos] - below[starts[j]]
        comm.Allreduce(local, summed, op=SUM)
        enough = 2 * summed >= total
        hi = np.where(open_ & enough, mid, hi)
        lo = np.where(open_ & ~enough, mid + 1, lo)
    out = _values(lo)
    out[empty] = 0.0
    return out


