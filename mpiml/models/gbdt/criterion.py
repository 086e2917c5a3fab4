"""The gradient-boosting split criterion on exact fixed-point gradient sums.

Per row, in int64 fixed point: the gradient ``g`` (scale ``grad_scale``), the hessian
``h`` (scale ``hess_scale``) and the row's count (1 if the row is in the round's
sample, else 0, with ``g = h = 0``). Two channels carry them (histogram work grows
with the channel count):

* ``[g, (h << count_bits) + count]``: the hessian and the count share one int64; the
  hessian's scale leaves ``count_bits`` low bits free, so sums never carry into each
  other (:func:`channel_layout` picks the widths);
* ``[g, count]`` when the hessian is the count (squared error without weights);
* ``[g, h, count]`` when there are too many rows to leave the packed hessian enough
  bits (more than about 8 million training rows).

From the exact integer sums ``G``, ``H`` of a node (as reals: ``G / grad_scale``) and
the L2 regularisation ``l2``:

* split gain ``GL^2/(HL+l2) + GR^2/(HR+l2) - G^2/(H+l2)`` (twice the decrease of the
  second-order approximation of the loss, as in XGBoost and LightGBM);
* node value ``-learning_rate * G / (H + l2)``, the Newton step, already shrunk.

Every quantity is an elementwise function of exact integers, so each rank computes the
same float for the same candidate whatever the number of ranks.
"""

__all__ = ["GradientCriterion", "channel_layout", "make_channels", "MIN_HESSIAN"]

import numpy as np
from numba import njit

from ..tree import Criterion, fixed_point_scale

#: a child whose hessian sum is below this is not a valid split (as scikit-learn's
#: ``min_hessian_to_split`` and LightGBM's ``min_sum_hessian_in_leaf``)
MIN_HESSIAN = 1e-3
_MIN_HESSIAN_BITS = 16  # packing needs at least this many bits per row's hessian


def channel_layout(n_total, count_is_hessian):
    """``count_bits`` for packing hessian and count into one channel; 0 for
    ``[g, count]`` (hessian = count); -1 for three channels ``[g, h, count]``.
    Local; depends only on the global row count."""
    if count_is_hessian:
        return 0
    count_bits = max(int(n_total), 1).bit_length()
    if 62 - 2 * count_bits < _MIN_HESSIAN_BITS:
        return -1
    return count_bits


def make_channels(grad, hess, sampled, grad_scale, hess_scale, count_bits):
    """The (n, 2) or (n, 3) int64 channels of one tree. Local.

    Parameters
    ----------
    grad, hess : ndarray of shape (n,)
    sampled : ndarray of shape (n,) bool, or True
    grad_scale, hess_scale : float
    count_bits : int
        From :func:`channel_layout` (0: the hessian is the count; -1: three channels).
    """
    channels = np.empty((len(grad), 3 if count_bits < 0 else 2), dtype=np.int64)
    _fill_channels(np.ascontiguousarray(grad, dtype=np.float64),
                   np.ascontiguousarray(hess, dtype=np.float64), float(grad_scale),
                   float(hess_scale), int(count_bits), channels)
    if sampled is not True:
        channels[~sampled] = 0
    return channels


@njit(nogil=True, cache=True)
def _fill_channels(grad, hess, grad_scale, hess_scale, count_bits, out):
    """One pass of :func:`make_channels`: the same ``rint(v * scale)`` as
    :func:`mpiml.models.tree.to_fixed` (exact operations, so the same bits)."""
    for i in range(grad.shape[0]):
        out[i, 0] = np.int64(np.rint(grad[i] * grad_scale))
        if count_bits > 0:
            out[i, 1] = (np.int64(np.rint(hess[i] * hess_scale)) << count_bits) + 1
        elif count_bits == 0:
            out[i, 1] = 1
        else:
            out[i, 1] = np.int64(np.rint(hess[i] * hess_scale))
            out[i, 2] = 1


def hessian_scale(max_hess, n_total, count_bits):
    """Fixed-point scale of the hessian: its sums stay below ``2**(62 - count_bits)``
    (``2**62`` when the hessian has a channel of its own)."""
    return fixed_point_scale(max_hess, n_total, bits=62 - max(int(count_bits), 0))


class GradientCriterion(Criterion):
    """Second-order gain and Newton leaf values for boosting (see the module docstring).

    Parameters
    ----------
    grad_scale, hess_scale : float
        Fixed-point scales of gradient and hessian (``hess_scale`` unused when
        ``count_bits`` is 0).
    l2_regularization, learning_rate : float
    count_bits : int
        Channel layout from :func:`channel_layout`.
    """

    n_outputs = 1
    count_channel = None

    def __init__(self, grad_scale, hess_scale, l2_regularization, learning_rate, count_bits):
        self.inv_grad_scale = 1.0 / float(grad_scale)  # powers of two: exact
        self.inv_hess_scale = 1.0 / float(hess_scale) if count_bits else 1.0
        self.count_bits = int(count_bits)
        self.shift = max(self.count_bits, 0)  # of the hessian in channel 1
        self.n_channels = 3 if self.count_bits < 0 else 2
        self.count_mask = (1 << self.shift) - 1
        self.l2 = float(l2_regularization)
        self.learning_rate = float(learning_rate)

    def n_samples(self, sums):
        s = np.asarray(sums)
        if self.count_bits < 0:
            return s[..., 2]
        return s[..., 1] & self.count_mask if self.count_bits else s[..., 1]

    def _grad_hess(self, sums):
        s = np.asarray(sums)
        g = s[..., 0].astype(np.float64)
        g *= self.inv_grad_scale
        h = (s[..., 1] >> self.shift).astype(np.float64)
        h *= self.inv_hess_scale
        return g, h

    def node_value(self, sums):
        g, h = self._grad_hess(sums)
        denominator = h + self.l2
        return np.array([-self.learning_rate * g / denominator if denominator > 0 else 0.0])

    def impurity(self, sums):
        """``inf``: boosting has no impurity; whether a split helps is the gain's business."""
        return np.inf

    def split_gain(self, left, right, parent):
        left = np.asarray(left, dtype=np.int64)
        shape = left.shape[:-1]
        out = np.empty(shape, dtype=np.float64)
        c = self.n_channels
        _split_gains(np.ascontiguousarray(left).reshape(-1, c),
                     np.ascontiguousarray(right, dtype=np.int64).reshape(-1, c),
                     np.ascontiguousarray(parent, dtype=np.int64).reshape(c),
                     self.inv_grad_scale, self.inv_hess_scale, self.shift, self.l2,
                     MIN_HESSIAN, out.reshape(-1))
        return out

    def best_split(self, hist, parent, min_samples_leaf, feature_mask):
        """Best candidate of a node's histograms in one pass, or None when none is valid.

        hist (n_feat, n_bins, C) int64, parent (C,), feature_mask (n_feat,) bool.
        Returns ``(gain, f, b, left (C,))``: the first maximum in (feature, bin) order
        of :meth:`split_gain` over the candidates with ``min_samples_leaf`` rows on both
        sides — what the generic search picks, without its temporaries.
        """
        left = np.zeros(self.n_channels, dtype=np.int64)
        gain, f, b = _best_split(hist, np.ascontiguousarray(parent, dtype=np.int64),
                                 self.inv_grad_scale, self.inv_hess_scale, self.shift, self.l2,
                                 MIN_HESSIAN, self.count_bits, self.count_mask,
                                 int(min_samples_leaf), feature_mask, left)
        return None if gain == -np.inf else (gain, f, b, left)


@njit(nogil=True, cache=True, error_model="numpy")
def _count(sums, count_bits, count_mask):
    if count_bits < 0:
        return sums[2]
    return sums[1] & count_mask if count_bits else sums[1]


@njit(nogil=True, cache=True, error_model="numpy")
def _best_split(hist, parent, inv_grad_scale, inv_hess_scale, shift, l2, min_hessian,
                count_bits, count_mask, min_samples_leaf, feature_mask, out_left):
    """The gains of :func:`_split_gains` on running sums of ``hist``, arg-max kept."""
    n_feat, n_bins, c = hist.shape
    gp = np.float64(parent[0]) * inv_grad_scale
    hp = np.float64(parent[1] >> shift) * inv_hess_scale
    base = gp * gp / (hp + l2)
    left = np.empty(c, np.int64)
    right = np.empty(c, np.int64)
    best, best_f, best_b = -np.inf, 0, 0
    for f in range(n_feat):
        if not feature_mask[f]:
            continue
        left[:] = 0
        for b in range(n_bins - 1):
            for k in range(c):
                left[k] += hist[f, b, k]
                right[k] = parent[k] - left[k]
            if (_count(left, count_bits, count_mask) < min_samples_leaf
                    or _count(right, count_bits, count_mask) < min_samples_leaf):
                continue
            hl = np.float64(left[1] >> shift) * inv_hess_scale
            hr = np.float64(right[1] >> shift) * inv_hess_scale
            if hl < min_hessian or hr < min_hessian:
                continue
            gl = np.float64(left[0]) * inv_grad_scale
            gr = np.float64(right[0]) * inv_grad_scale
            g = gl * gl / (hl + l2) + gr * gr / (hr + l2) - base
            if g > best:  # NaN never wins; ties keep the first (feature, bin)
                best, best_f, best_b = g, f, b
                out_left[:] = left
    return best, best_f, best_b


@njit(nogil=True, cache=True, error_model="numpy")
def _split_gains(left, right, parent, inv_grad_scale, inv_hess_scale, shift, l2,
                 min_hessian, out):
    """``GL^2/(HL+l2) + GR^2/(HR+l2) - G^2/(H+l2)`` of every candidate (rows of ``left``
    and ``right``, (N, C) int64: gradient in channel 0, hessian in channel 1 above
    ``shift`` bits), ``-inf`` where a side's hessian is below ``min_hessian``. Only
    correctly rounded operations on exact sums, element by element."""
    gp = np.float64(parent[0]) * inv_grad_scale
    hp = np.float64(parent[1] >> shift) * inv_hess_scale
    base = gp * gp / (hp + l2)
    for i in range(left.shape[0]):
        hl = np.float64(left[i, 1] >> shift) * inv_hess_scale
        hr = np.float64(right[i, 1] >> shift) * inv_hess_scale
        if hl < min_hessian or hr < min_hessian:
            out[i] = -np.inf
            continue
        gl = np.float64(left[i, 0]) * inv_grad_scale
        gr = np.float64(right[i, 0]) * inv_grad_scale
        out[i] = gl * gl / (hl + l2) + gr * gr / (hr + l2) - base
