"""Split criteria working on exact int64 channel sums, and fixed-point helpers.

A criterion turns the channel sums of a node (or of the left/right side of every
candidate threshold) into a node value, an impurity and a split gain. The grower
maximises the gain; it is computed elementwise from the exact integer sums, so every
rank count computes the very same float for the same candidate.

Interface (what :func:`grow_tree` calls)::

    n_outputs                                   width of a node value
    node_value(sums)   sums (C,) int64      ->  (n_outputs,) float64
    impurity(sums)     sums (C,) int64      ->  float (a node with impurity <= EPSILON is a leaf)
    n_samples(sums)    sums (..., C) int64  ->  (...) int64, the count min_samples_* test
    split_gain(left, right, parent)
                       left, right (..., C), parent (C,) int64 -> (...) float64
                       (-inf or NaN: not a valid split)
"""

__all__ = ["Criterion", "ClassificationCriterion", "RegressionCriterion", "EPSILON",
           "fixed_point_scale", "to_fixed", "classification_channels", "regression_channels"]

import math

import numpy as np

from ...comm.ops import MAX
from ._kernels import xlogx

EPSILON = float(np.finfo(np.float64).eps)
_FIXED_BITS = 62


def fixed_point_scale(max_abs, n_total, bits=_FIXED_BITS):
    """Power-of-two scale such that ``n_total`` values of magnitude ``<= max_abs`` scaled by it
    sum to less than ``2**bits`` (no int64 overflow). Returns a float."""
    if not max_abs > 0 or n_total <= 0:
        return 1.0
    exponent = bits - math.ceil(math.log2(max_abs * n_total + 1.0))
    return float(2.0 ** min(exponent, 1000))


def to_fixed(values, scale):
    """``rint(values * scale)`` as int64 (elementwise, hence the same on every rank)."""
    return np.rint(np.asarray(values, dtype=np.float64) * scale).astype(np.int64)


def _global_max(value, n, comm):
    if comm is None:
        return value, n
    return comm.allreduce(value, op=MAX), comm.allreduce(n)


class Criterion:
    """Base class; ``count_channel`` None means the sample count is the sum of all channels."""

    n_outputs = 1
    count_channel = None

    def n_samples(self, sums):
        if self.count_channel is None:
            total = sums[..., 0].copy()
            for c in range(1, sums.shape[-1]):
                total += sums[..., c]
            return total
        return sums[..., self.count_channel]

    def node_value(self, sums):  # pragma: no cover - interface
        raise NotImplementedError

    def impurity(self, sums):  # pragma: no cover - interface
        raise NotImplementedError

    def split_gain(self, left, right, parent):  # pragma: no cover - interface
        raise NotImplementedError


def _channel_sum(parts):
    """Sum of a list of equal-shape float arrays in list order (deterministic)."""
    total = parts[0].copy()
    for p in parts[1:]:
        total += p
    return total


class ClassificationCriterion(Criterion):
    """Gini or entropy on weighted class counts.

    Channels are ``[count, w * onehot_0, ..., w * onehot_{K-1}]`` when ``weighted`` (weights
    in fixed point with ``scale``), else the plain one-hot counts ``[onehot_0, ...]``.
    Gains are weighted impurity decreases ``N_t i(t) - N_L i(L) - N_R i(R)`` in weight units
    (entropy in bits), as scikit-learn's feature importances use.
    """

    def __init__(self, kind, n_classes, weighted=False, scale=1.0):
        self.kind = kind
        self.n_outputs = n_classes
        self.weighted = weighted
        self.scale = float(scale)
        self.count_channel = 0 if weighted else None
        self._classes = slice(1, 1 + n_classes) if weighted else slice(0, n_classes)

    def _class_sums(self, sums):
        return np.asarray(sums[..., self._classes], dtype=np.float64) / self.scale

    def node_value(self, sums):
        c = self._class_sums(sums)
        total = c.sum()
        return c / total if total > 0 else np.zeros_like(c)

    def impurity(self, sums):
        c = self._class_sums(sums)
        n = c.sum()
        if n <= 0:
            return 0.0
        p = c / n
        if self.kind == "gini":
            return float(1.0 - (p * p).sum())
        return float(-xlogx(p).sum() / math.log(2.0))

    def _weighted_impurity(self, counts):
        """``N * impurity`` for (..., K) class weights, summed over classes in order."""
        k = counts.shape[-1]
        parts = [counts[..., j] for j in range(k)]
        n = _channel_sum(parts)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.kind == "gini":
                return n - _channel_sum([p * p for p in parts]) / n
            return (xlogx(n) - _channel_sum([xlogx(p) for p in parts])) / math.log(2.0)

    def split_gain(self, left, right, parent):
        cl = self._class_sums(left)
        cr = self._class_sums(right)
        cp = self._class_sums(parent)
        with np.errstate(invalid="ignore"):
            return self._weighted_impurity(cp) - self._weighted_impurity(cl) - self._weighted_impurity(cr)


class RegressionCriterion(Criterion):
    """Squared error on fixed-point channels ``[count, w, w*y, w*y^2]``.

    ``scales`` are the fixed-point scales of the last three channels. The gain is the
    weighted decrease of the sum of squared errors, ``S_L^2/W_L + S_R^2/W_R - S^2/W``.
    """

    count_channel = 0

    def __init__(self, scales):
        self.scales = tuple(float(s) for s in scales)

    def _real(self, sums):
        s = np.asarray(sums, dtype=np.float64)
        return (s[..., 1] / self.scales[0], s[..., 2] / self.scales[1], s[..., 3] / self.scales[2])

    def node_value(self, sums):
        w, sy, _ = self._real(sums)
        return np.array([sy / w if w > 0 else 0.0])

    def impurity(self, sums):
        w, sy, syy = self._real(sums)
        if w <= 0:
            return 0.0
        mean = sy / w
        return float(max(syy / w - mean * mean, 0.0))

    def split_gain(self, left, right, parent):
        wl, sl, _ = self._real(left)
        wr, sr, _ = self._real(right)
        wp, sp, _ = self._real(parent)
        with np.errstate(divide="ignore", invalid="ignore"):
            return sl * sl / wl + sr * sr / wr - sp * sp / wp


def classification_channels(y_codes, n_classes, weights=None, *, comm=None):
    """Channels and criterion arguments for classification.

    Parameters
    ----------
    y_codes : ndarray of shape (n_local,), int
        Class index of each row.
    n_classes : int
    weights : ndarray of shape (n_local,) or None
        Non-negative row weights (sample_weight x class_weight x bootstrap counts).
    comm : Communicator or None
        Collective when given (the fixed-point scale comes from the global max weight).

    Returns
    -------
    channels : ndarray of shape (n_local, C), int64
    weighted : bool
    scale : float
    """
    n = y_codes.shape[0]
    if weights is None:
        channels = np.zeros((n, n_classes), dtype=np.int64)
        channels[np.arange(n), y_codes] = 1
        return channels, False, 1.0
    weights = np.asarray(weights, dtype=np.float64)
    local_max = float(weights.max(initial=0.0))
    max_w, n_total = _global_max(local_max, n, comm)
    scale = fixed_point_scale(max_w, n_total)
    channels = np.zeros((n, n_classes + 1), dtype=np.int64)
    channels[:, 0] = weights > 0
    channels[np.arange(n), 1 + y_codes] = to_fixed(weights, scale)
    return channels, True, scale


def regression_channels(y, weights=None, *, comm=None):
    """Channels ``[count, w, w*y, w*y^2]`` (fixed point) and their scales.

    Collective when ``comm`` is given (scales from global maxima).

    Returns
    -------
    channels : ndarray of shape (n_local, 4), int64
    scales : tuple of 3 floats
    """
    y = np.asarray(y, dtype=np.float64)
    n = y.shape[0]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    wy = w * y
    wyy = wy * y
    maxima = np.array([np.abs(a).max(initial=0.0) for a in (w, wy, wyy)])
    if comm is not None:
        maxima = comm.allreduce(maxima, op=MAX)
        n_total = comm.allreduce(n)
    else:
        n_total = n
    scales = tuple(fixed_point_scale(m, n_total) for m in maxima)
    channels = np.empty((n, 4), dtype=np.int64)
    channels[:, 0] = w > 0
    channels[:, 1] = to_fixed(w, scales[0])
    channels[:, 2] = to_fixed(wy, scales[1])
    channels[:, 3] = to_fixed(wyy, scales[2])
    return channels, scales
