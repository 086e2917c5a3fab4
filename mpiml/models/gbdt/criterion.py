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

__all__ = ["GradientCriterion", "channel_layout", "make_channels", "MIN_HESSIAN",
           "PackedGradientCriterion", "packed_layout", "packed_scales", "make_packed_channels",
           "quantized_layout", "unpacked_criterion", "PACKED_CHUNK_ROWS",
           "renew_node_values", "add_leaf_values"]

import numpy as np
from numba import njit

from ..tree import CATEGORY_EPS, Criterion, fixed_point_scale, leaf_slots
from ..tree._kernels import packed_word_fields
from ..tree._profile import collective as timed_collective

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


def newton_step(g, h, l2, learning_rate):
    """Node values ``-learning_rate * g / (h + l2)``, 0 where ``h + l2`` is not positive
    (elementwise on arrays of gradient and hessian sums)."""
    denominator = h + l2
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, -learning_rate * g / denominator, 0.0)


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
        return np.array([float(newton_step(g, h, self.l2, self.learning_rate))])

    def node_stats(self, sums):
        """:meth:`node_value` and :meth:`impurity` of (S, C) sums at once (the same
        elementwise operations as one node at a time)."""
        g, h = self._grad_hess(sums)
        values = newton_step(g, h, self.l2, self.learning_rate)
        return values.reshape(-1, 1), np.full(len(values), np.inf)

    def category_keys(self, sums, parent):
        """``sum_gradient / (sum_hessian + eps)`` of each category (as LightGBM)."""
        g, h = self._grad_hess(sums)
        return g / (h + CATEGORY_EPS)

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

    def best_splits(self, hists, parents, min_samples_leaf, masks):
        """:meth:`best_split` of N nodes in one kernel call: hists (N, n_feat, n_bins, C),
        parents (N, C), masks (N, n_feat). Returns ``(gains, f, b, lefts)`` of shapes
        (N,), (N,), (N,), (N, C); a node with no valid split has gain -inf, f = b = 0
        and zero left sums."""
        gains, f, b, lefts = _node_outputs(hists.shape[0], self.n_channels)
        _best_splits(hists, parents, self.inv_grad_scale, self.inv_hess_scale, self.shift,
                     self.l2, MIN_HESSIAN, self.count_bits, self.count_mask,
                     int(min_samples_leaf), masks, gains, f, b, lefts)
        return gains, f, b, lefts


def _node_outputs(n, n_channels):
    return (np.empty(n), np.zeros(n, np.int64), np.zeros(n, np.int64),
            np.zeros((n, n_channels), np.int64))


@njit(nogil=True, cache=True, error_model="numpy")
def _best_splits(hists, parents, inv_grad_scale, inv_hess_scale, shift, l2, min_hessian,
                 count_bits, count_mask, min_samples_leaf, masks, gains, best_f, best_b, lefts):
    for i in range(hists.shape[0]):
        g, f, b = _best_split(hists[i], parents[i], inv_grad_scale, inv_hess_scale, shift, l2,
                              min_hessian, count_bits, count_mask, min_samples_leaf, masks[i],
                              lefts[i])
        if g == -np.inf:
            f, b = 0, 0
            lefts[i, :] = 0
        gains[i], best_f[i], best_b[i] = g, f, b


@njit(nogil=True, cache=True, error_model="numpy")
def _best_split(hist, parent, inv_grad_scale, inv_hess_scale, shift, l2, min_hessian,
                count_bits, count_mask, min_samples_leaf, feature_mask, out_left):
    """The gains of :func:`_split_gains` on running sums of ``hist``, arg-max kept. The
    running sums are scalars (channel 0 the gradient, 1 the hessian, and 2 the count
    where there are three): the same integers and floats as one array per side."""
    n_feat, n_bins, c = hist.shape
    three = c == 3
    p0, p1 = parent[0], parent[1]
    p2 = parent[2] if three else np.int64(0)
    gp = np.float64(p0) * inv_grad_scale
    hp = np.float64(p1 >> shift) * inv_hess_scale
    base = gp * gp / (hp + l2)
    best, best_f, best_b = -np.inf, 0, 0
    for f in range(n_feat):
        if not feature_mask[f]:
            continue
        l0 = np.int64(0)
        l1 = np.int64(0)
        l2_ = np.int64(0)
        for b in range(n_bins - 1):
            l0 += hist[f, b, 0]
            l1 += hist[f, b, 1]
            if three:
                l2_ += hist[f, b, 2]
            r1 = p1 - l1
            if count_bits < 0:
                nl, nr = l2_, p2 - l2_
            elif count_bits > 0:
                nl, nr = l1 & count_mask, r1 & count_mask
            else:
                nl, nr = l1, r1
            if nl < min_samples_leaf or nr < min_samples_leaf:
                continue
            hl = np.float64(l1 >> shift) * inv_hess_scale
            hr = np.float64(r1 >> shift) * inv_hess_scale
            if hl < min_hessian or hr < min_hessian:
                continue
            gl = np.float64(l0) * inv_grad_scale
            gr = np.float64(p0 - l0) * inv_grad_scale
            g = gl * gl / (hl + l2) + gr * gr / (hr + l2) - base
            if g > best:  # NaN never wins; ties keep the first (feature, bin)
                best, best_f, best_b = g, f, b
                out_left[0] = l0
                out_left[1] = l1
                if three:
                    out_left[2] = l2_
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


# -- quantized gradients in one packed channel ---------------------------------------------
#
# Histogram work grows with the channel count, so the split search runs on one int64
# channel per row, ``(G << (hess_bits + count_bits)) + (H << count_bits) + count``, where
# G and H are the gradient and hessian rounded stochastically to a few integer levels
# (as in LightGBM's quantized training). Field widths come from the global row count,
# so no sum of any set of rows carries from one field into the next, and the integer
# sums stay exact in any order. Once a tree's structure is chosen, its node values are
# computed again from exact fixed-point sums of the unrounded gradients and hessians
# (:func:`renew_node_values`).
#
# With more rows than one layout holds (about a million when the hessian is not the
# count), the fields are sized for ``PACKED_CHUNK_ROWS`` rows instead: each rank builds a
# node's packed histogram over at most that many of its rows at a time and unpacks it
# into the exact channels ``[G, H, count]`` (``[G, count]`` when the hessian is the
# count), which are summed over ranks and searched by :class:`GradientCriterion`
# (:func:`quantized_layout`, :func:`unpacked_criterion`).

#: fewest gradient levels (each side of zero) and hessian levels worth packing; with
#: fewer (more than about a million rows) the rows are packed in chunks
MIN_PACKED_LEVELS = 4, 2
#: rows of one packed chunk: the most for which the fields keep the levels above
PACKED_CHUNK_ROWS = 2 ** 20 - 1


class PackedLayout:
    """Bit fields of the packed channel (see :func:`packed_layout`): the sums of up to
    ``max_rows`` rows never carry from one field into the next (by default the most
    rows that every field holds at its extreme level)."""

    def __init__(self, count_bits, hess_bits, grad_levels, hess_levels, max_rows=None):
        self.count_bits = int(count_bits)
        self.hess_bits = int(hess_bits)        # 0: the hessian is the count
        self.grad_levels = int(grad_levels)
        self.hess_levels = int(hess_levels)
        self.max_rows = self._fitting_rows() if max_rows is None else int(max_rows)

    def _fitting_rows(self):
        grad_bits = 64 - self.count_bits - self.hess_bits   # one of them is the sign
        rows = min((1 << self.count_bits) - 1,
                   ((1 << (grad_bits - 1)) - 1) // max(self.grad_levels, 1))
        if self.hess_bits:
            rows = min(rows, ((1 << self.hess_bits) - 1) // max(self.hess_levels, 1))
        return rows

    def __repr__(self):
        return (f"PackedLayout(count_bits={self.count_bits}, hess_bits={self.hess_bits}, "
                f"grad_levels={self.grad_levels}, hess_levels={self.hess_levels}, "
                f"max_rows={self.max_rows})")

    @property
    def n_unpacked(self):
        """Exact channels of an unpacked sum: ``[G, H, count]``, or ``[G, count]``."""
        return 3 if self.hess_bits else 2


def packed_layout(n_total, count_is_hessian):
    """The :class:`PackedLayout` for ``n_total`` training rows, or None when a row's
    gradient would get fewer than :data:`MIN_PACKED_LEVELS` levels. Local; depends only
    on the global row count."""
    n_total = max(int(n_total), 1)
    count_bits = n_total.bit_length()           # a count sum is at most n_total
    free = 64 - count_bits
    hess_bits = 0 if count_is_hessian else (free - 1) // 2
    grad_bits = free - hess_bits                # two's complement: one bit is the sign
    grad_levels = ((1 << (grad_bits - 1)) - 1) // n_total
    hess_levels = ((1 << hess_bits) - 1) // n_total if hess_bits else 0
    min_grad, min_hess = MIN_PACKED_LEVELS
    if grad_levels < min_grad or (hess_bits and hess_levels < min_hess):
        return None
    return PackedLayout(count_bits, hess_bits, grad_levels, hess_levels, n_total)


def quantized_layout(n_total, count_is_hessian):
    """``(layout, chunked)`` of quantized gradients for ``n_total`` training rows: one
    packed channel summed as it is while :func:`packed_layout` holds them all, else the
    layout of :data:`PACKED_CHUNK_ROWS` rows, packed in chunks and unpacked before the
    sums over ranks (``chunked`` True). Local; depends only on the global row count."""
    whole = packed_layout(n_total, count_is_hessian)
    if whole is not None:
        return whole, False
    return packed_layout(PACKED_CHUNK_ROWS, count_is_hessian), True


def unpacked_criterion(grad_scale, hess_scale, l2_regularization, learning_rate, layout):
    """The :class:`GradientCriterion` of sums unpacked from ``layout``'s channel (scales
    from :func:`packed_scales`): the same floats for every split gain, so the same
    splits, as :class:`PackedGradientCriterion` on the packed sums."""
    return GradientCriterion(grad_scale, hess_scale, l2_regularization, learning_rate,
                             -1 if layout.hess_bits else 0)


def packed_scales(layout, grad_max, hess_max):
    """Quantization scales: ``|g| * grad_scale <= grad_levels`` for every row (and the
    same for the hessian), from the global maxima (the same on every rank)."""
    grad_scale = layout.grad_levels / grad_max if grad_max > 0 else 1.0
    hess_scale = (layout.hess_levels / hess_max if layout.hess_bits and hess_max > 0 else 1.0)
    return float(grad_scale), float(hess_scale)


def make_packed_channels(grad, hess, sampled, grad_scale, hess_scale, layout, seed, offset,
                         global_rows=None, out=None):
    """The (n, 1) int64 packed channel of one tree (in ``out`` if given). Local.

    Each value is rounded up or down at random, with the probability that makes the
    rounding unbiased; the random number of a row comes from ``(seed, global row
    index)`` alone, so the channel is the same for any rank count. Row ``i``'s global
    index is ``offset + i``, or ``global_rows[i]`` where the rows are not contiguous
    (a validation split took some out). Rows outside the sample get zeros.
    """
    n = len(grad)
    out = np.empty((n, 1), dtype=np.int64) if out is None else out
    _fill_packed(np.ascontiguousarray(grad, dtype=np.float64),
                 np.ascontiguousarray(hess, dtype=np.float64), _sample_mask(sampled),
                 float(grad_scale), float(hess_scale), layout.count_bits, layout.hess_bits,
                 np.uint64(int(seed) & (2 ** 64 - 1)), int(offset),
                 (np.empty(0, dtype=np.int64) if global_rows is None
                  else np.ascontiguousarray(global_rows, dtype=np.int64)), out)
    return out


def _sample_mask(sampled):
    """The round's sample for the kernels: a bool mask, or an empty one for every row."""
    return (np.empty(0, dtype=bool) if sampled is True
            else np.ascontiguousarray(sampled, dtype=bool))


@njit(nogil=True, cache=True)
def _mix(z):
    """splitmix64's finaliser: a well-spread 64-bit hash of ``z``."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(nogil=True, cache=True)
def _fill_packed(grad, hess, sampled, grad_scale, hess_scale, count_bits, hess_bits, seed,
                 offset, global_rows, out):
    grad_shift = np.int64(1) << np.int64(count_bits + hess_bits)
    hess_shift = np.int64(1) << np.int64(count_bits)
    unit = 1.0 / 4294967296.0
    every = sampled.shape[0] == 0
    contiguous = global_rows.shape[0] == 0
    for i in range(grad.shape[0]):
        if not every and not sampled[i]:
            out[i, 0] = 0
            continue
        row = offset + i if contiguous else global_rows[i]
        z = _mix(seed + np.uint64(row) * np.uint64(0x9E3779B97F4A7C15))
        u_grad = np.float64(z >> np.uint64(32)) * unit
        u_hess = np.float64(z & np.uint64(0xFFFFFFFF)) * unit
        word = np.int64(np.floor(grad[i] * grad_scale + u_grad)) * grad_shift + 1
        if hess_bits > 0:
            word += np.int64(np.floor(hess[i] * hess_scale + u_hess)) * hess_shift
        out[i, 0] = word


class PackedGradientCriterion(GradientCriterion):
    """:class:`GradientCriterion`'s gain and node values on the packed channel (its
    ``node_value`` and ``impurity`` read the sums through :meth:`_grad_hess`).

    Parameters
    ----------
    grad_scale, hess_scale : float
        Quantization scales from :func:`packed_scales`.
    l2_regularization, learning_rate : float
    layout : PackedLayout
    """

    n_outputs = 1
    count_channel = None
    n_channels = 1

    def __init__(self, grad_scale, hess_scale, l2_regularization, learning_rate, layout):
        self.inv_grad_scale = 1.0 / float(grad_scale)
        self.inv_hess_scale = 1.0 / float(hess_scale) if layout.hess_bits else 1.0
        self.count_bits = layout.count_bits
        self.hess_bits = layout.hess_bits
        self.l2 = float(l2_regularization)
        self.learning_rate = float(learning_rate)

    def n_samples(self, sums):
        return np.asarray(sums)[..., 0] & ((1 << self.count_bits) - 1)

    def _grad_hess(self, sums):
        s = np.asarray(sums)[..., 0]
        g = (s >> (self.count_bits + self.hess_bits)).astype(np.float64) * self.inv_grad_scale
        if self.hess_bits:
            h = ((s >> self.count_bits) & ((1 << self.hess_bits) - 1)).astype(np.float64)
            h *= self.inv_hess_scale
        else:
            h = (s & ((1 << self.count_bits) - 1)).astype(np.float64)
        return g, h

    def node_stats(self, sums):
        """:meth:`node_value` and :meth:`impurity` of (S, 1) sums at once, in one kernel
        (the operations of :meth:`_grad_hess` and :func:`newton_step`, in their order)."""
        words = np.ascontiguousarray(sums, dtype=np.int64).reshape(-1)
        values = np.empty((words.shape[0], 1))
        _packed_node_values(words, self.count_bits, self.hess_bits, self.inv_grad_scale,
                            self.inv_hess_scale, self.l2, self.learning_rate, values[:, 0])
        return values, np.full(words.shape[0], np.inf)

    def split_gain(self, left, right, parent):
        gl, hl = self._grad_hess(left)
        gr, hr = self._grad_hess(right)
        gp, hp = self._grad_hess(parent)
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = gl * gl / (hl + self.l2) + gr * gr / (hr + self.l2) - gp * gp / (hp + self.l2)
        return np.where((hl < MIN_HESSIAN) | (hr < MIN_HESSIAN), -np.inf, gain)

    def best_split(self, hist, parent, min_samples_leaf, feature_mask):
        """As :meth:`GradientCriterion.best_split`, on (n_feat, n_bins, 1) histograms."""
        left = np.zeros(1, dtype=np.int64)
        gain, f, b = _best_split_packed(hist, int(np.asarray(parent).reshape(-1)[0]),
                                        self.inv_grad_scale, self.inv_hess_scale,
                                        self.count_bits, self.hess_bits, self.l2, MIN_HESSIAN,
                                        int(min_samples_leaf), feature_mask, left)
        return None if gain == -np.inf else (gain, f, b, left)

    def best_splits(self, hists, parents, min_samples_leaf, masks):
        """As :meth:`GradientCriterion.best_splits`, on (N, n_feat, n_bins, 1) histograms."""
        gains, f, b, lefts = _node_outputs(hists.shape[0], 1)
        _best_splits_packed(hists, np.ascontiguousarray(parents[:, 0]), self.inv_grad_scale,
                            self.inv_hess_scale, self.count_bits, self.hess_bits, self.l2,
                            MIN_HESSIAN, int(min_samples_leaf), masks, gains, f, b, lefts)
        return gains, f, b, lefts


@njit(nogil=True, cache=True, error_model="numpy")
def _packed_node_values(words, count_bits, hess_bits, inv_grad_scale, inv_hess_scale, l2,
                        learning_rate, out):
    for i in range(words.shape[0]):
        g, h, _ = _unpack(words[i], count_bits, hess_bits, inv_grad_scale, inv_hess_scale)
        denominator = h + l2
        out[i] = -learning_rate * g / denominator if denominator > 0 else 0.0


@njit(nogil=True, cache=True, error_model="numpy")
def _best_splits_packed(hists, parents, inv_grad_scale, inv_hess_scale, count_bits, hess_bits,
                        l2, min_hessian, min_samples_leaf, masks, gains, best_f, best_b, lefts):
    for i in range(hists.shape[0]):
        g, f, b = _best_split_packed(hists[i], parents[i], inv_grad_scale, inv_hess_scale,
                                     count_bits, hess_bits, l2, min_hessian, min_samples_leaf,
                                     masks[i], lefts[i])
        if g == -np.inf:
            f, b = 0, 0
            lefts[i, :] = 0
        gains[i], best_f[i], best_b[i] = g, f, b


@njit(nogil=True, cache=True, inline="always")
def _unpack(word, count_bits, hess_bits, inv_grad_scale, inv_hess_scale):
    g, h, count = packed_word_fields(word, count_bits, hess_bits)
    if hess_bits > 0:
        return np.float64(g) * inv_grad_scale, np.float64(h) * inv_hess_scale, count
    return np.float64(g) * inv_grad_scale, np.float64(count), count


@njit(nogil=True, cache=True, error_model="numpy")
def _best_split_packed(hist, parent, inv_grad_scale, inv_hess_scale, count_bits, hess_bits, l2,
                       min_hessian, min_samples_leaf, feature_mask, out_left):
    n_feat, n_bins, _ = hist.shape
    gp, hp, _ = _unpack(parent, count_bits, hess_bits, inv_grad_scale, inv_hess_scale)
    base = gp * gp / (hp + l2)
    best, best_f, best_b = -np.inf, 0, 0
    for f in range(n_feat):
        if not feature_mask[f]:
            continue
        left = np.int64(0)
        for b in range(n_bins - 1):
            left += hist[f, b, 0]
            gl, hl, cl = _unpack(left, count_bits, hess_bits, inv_grad_scale, inv_hess_scale)
            gr, hr, cr = _unpack(parent - left, count_bits, hess_bits, inv_grad_scale,
                                 inv_hess_scale)
            if cl < min_samples_leaf or cr < min_samples_leaf:
                continue
            if hl < min_hessian or hr < min_hessian:
                continue
            g = gl * gl / (hl + l2) + gr * gr / (hr + l2) - base
            if g > best:  # NaN never wins; ties keep the first (feature, bin)
                best, best_f, best_b = g, f, b
                out_left[0] = left
    return best, best_f, best_b


def renew_node_values(comm, tree, segments, grad, hess, sampled, grad_scale, hess_scale, l2,
                      learning_rate, slots=None):
    """Set every node value of ``tree`` to the Newton step of its rows' exact
    (fixed-point) gradient and hessian sums, as :class:`GradientCriterion` would.

    ``segments``: the leaves' local rows, ``(rows, starts, stops, leaves)`` from
    ``grow_tree(..., return_segments=True)``; ``grad``, ``hess`` (n,): each row's
    gradient and hessian, summed as ``rint(g * grad_scale)`` and ``rint(h * hess_scale)``
    where the row is in the round's ``sampled`` mask (or ``True``: every row);
    ``slots``: :func:`~mpiml.models.tree.leaf_slots` of the segments, if already made.
    Collective: one allreduce of (n_nodes, 2) int64.
    """
    leaves = segments[3]
    if slots is None:
        slots = leaf_slots(segments, grad.shape[0])
    n_nodes = tree.n_nodes
    local = np.zeros((n_nodes, 2), dtype=np.int64)
    _leaf_sums(slots, leaves, np.ascontiguousarray(grad, dtype=np.float64),
               np.ascontiguousarray(hess, dtype=np.float64), _sample_mask(sampled),
               float(grad_scale), float(hess_scale), local)
    sums = np.empty_like(local)
    if comm is not None and comm.size > 1:
        with timed_collective(comm):
            comm.Allreduce(local, sums)
    else:
        sums[:] = local
    for node in range(n_nodes - 1, -1, -1):     # children have larger ids than parents
        if tree.left[node] >= 0:
            sums[node] = sums[tree.left[node]] + sums[tree.right[node]]
    tree.value[:, 0] = newton_step(sums[:, 0].astype(np.float64) / grad_scale,
                                   sums[:, 1].astype(np.float64) / hess_scale, l2, learning_rate)


@njit(nogil=True, cache=True)
def _leaf_sums(slots, leaves, grad, hess, sampled, grad_scale, hess_scale, out):
    """``out[leaves[s]] += (sum rint(g * grad_scale), sum rint(h * hess_scale))`` over the
    sampled rows (``sampled`` empty: every row) of each leaf slot ``s`` (``slots[r]``:
    row r's), in one pass over the rows in their order (the integer sums do not
    depend on it)."""
    every = sampled.shape[0] == 0
    acc = np.zeros((leaves.shape[0], 2), dtype=np.int64)
    for r in range(slots.shape[0]):
        if every or sampled[r]:
            s = slots[r]
            acc[s, 0] += np.int64(np.rint(grad[r] * grad_scale))
            acc[s, 1] += np.int64(np.rint(hess[r] * hess_scale))
    for s in range(leaves.shape[0]):
        out[leaves[s], 0] += acc[s, 0]
        out[leaves[s], 1] += acc[s, 1]


@njit(nogil=True, cache=True)
def add_leaf_values(slots, leaves, value, raw, column):
    """``raw[r, column] += value[leaves[slots[r]], 0]`` for every local row, in row order
    (:func:`~mpiml.models.tree.leaf_slots`: ``slots``)."""
    by_slot = np.empty(leaves.shape[0])
    for s in range(leaves.shape[0]):
        by_slot[s] = value[leaves[s], 0]
    for r in range(slots.shape[0]):
        raw[r, column] += by_slot[slots[r]]
