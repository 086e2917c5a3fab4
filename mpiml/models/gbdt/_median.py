"""Weighted medians over every rank's rows, the same for any rank count.

Absolute-error boosting needs the weighted median of the target (the baseline) and of
the residuals in every leaf of every tree. Each rank maps its float64 values to int64
keys in the same order; a bisection on the key, one small allreduce of exact integer
weights per step (every group at once), finds the smallest value whose share of the
group's weight reaches one half.
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
    keys = _keys(values)
    live = weights > 0
    lo = np.full(n_groups, np.iinfo(np.int64).max)
    hi = np.full(n_groups, np.iinfo(np.int64).min)
    if live.any():
        np.minimum.at(lo, groups[live], keys[live])
        np.maximum.at(hi, groups[live], keys[live])
    bounds = np.empty_like(lo)
    comm.Allreduce(lo, bounds, op=MIN)
    lo = bounds.copy()
    comm.Allreduce(hi, bounds, op=MAX)
    hi = bounds.copy()
    total = np.empty(n_groups, dtype=np.int64)
    comm.Allreduce(_weight_sums(groups, weights, n_groups), total, op=SUM)
    empty = lo > hi
    lo[empty] = hi[empty] = 0
    while True:  # the answer is in [lo, hi]; every rank runs the same steps
        open_ = lo < hi
        if not open_.any():
            break
        mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)  # floor((lo + hi) / 2), no overflow
        below = _weight_sums(groups, np.where(keys <= mid[groups], weights, 0), n_groups)
        summed = np.empty_like(below)
        comm.Allreduce(below, summed, op=SUM)
        enough = 2 * summed >= total
        hi = np.where(open_ & enough, mid, hi)
        lo = np.where(open_ & ~enough, mid + 1, lo)
    out = _values(lo)
    out[empty] = 0.0
    return out


def _weight_sums(groups, weights, n_groups):
    """Sums of ``weights`` per group: exact, as the weights' total is below 2**52."""
    return np.bincount(groups, weights=weights.astype(np.float64),
                       minlength=n_groups).astype(np.int64)
