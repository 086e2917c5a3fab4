"""Split criteria working on exact int64 channel sums, and fixed-point helpers.

A criterion turns the channel sums of a node (or of the left/right side of every
candidate threshold) into a node value, an impurity and a split gain. The grower
maximises the gain; it is computed elementwise from the exact integer sums, so every
rank count computes the very same float for the same candidate.

Interface (what :func:`grow_tree` calls)::

    n_outputs                                   width of a node value
    node_value(sums)   sums (C,) int64      ->  (n_outputs,) float64
    impurity(sums)     sums (C,) int64      ->  float (a node with impurity <= EPSILON is a leaf)
    node_stats(sums)   sums (S, C) int64    ->  (values (S, n_outputs), impurities (S,))
    n_samples(sums)    sums (..., C) int64  ->  (...) int64, the count min_samples_* test
    split_gain(left, right, parent)
                       left, right (..., C), parent (C,) int64 -> (...) float64
                       (-inf or NaN: not a valid split)
"""

__all__ = ["Criterion", "ClassificationCriterion", "RegressionCriterion", "EPSILON",
           "category_keys", "CATEGORY_EPS",
           "fixed_point_scale", "to_fixed", "classification_channels", "regression_channels"]

import math

import numpy as np

from ...comm.ops import MAX
from ._split_kernels import ENTROPY, GINI, SQUARED_ERROR, gain_table, node_stats

EPSILON = float(np.finfo(np.float64).eps)
#: added to the hessian sum of the gradient statistic that orders categories
CATEGORY_EPS = 1e-9
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
    """Base class; ``count_channel`` None means the sample count is the sum of all channels.

    ``node_stats(sums (S, C)) -> (values (S, n_outputs), impurities (S,))`` has a default
    that loops over :meth:`node_value` and :meth:`impurity`. ``kernel`` is None for a
    criterion written in numpy; the built-in criteria set it to their numeric spec (see
    ``_split_kernels``), which lets the grower run the whole split search in numba when no
    communication is needed.
    """

    n_outputs = 1
    count_channel = None
    kernel = None

    def node_stats(self, sums):
        values = np.empty((sums.shape[0], self.n_outputs))
        impurity = np.empty(sums.shape[0])
        for i in range(sums.shape[0]):
            values[i] = self.node_value(sums[i])
            impurity[i] = self.impurity(sums[i])
        return values, impurity

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


class _KernelCriterion(Criterion):
    """A built-in criterion computed by the numba kernels of ``_split_kernels``."""

    def node_stats(self, sums):
        sums = np.ascontiguousarray(sums, dtype=np.int64).reshape(-1, sums.shape[-1])
        values = np.empty((sums.shape[0], self.n_outputs))
        impurity = np.empty(sums.shape[0])
        node_stats(*self.kernel[:4], sums, values, impurity)
        return values, impurity

    def node_value(self, sums):
        return self.node_stats(np.asarray(sums)[None])[0][0]

    def impurity(self, sums):
        return float(self.node_stats(np.asarray(sums)[None])[1][0])

    def split_gain(self, left, right, parent):
        shape = left.shape[:-1]
        c = left.shape[-1]
        gains = gain_table(*self.kernel[:4], np.ascontiguousarray(left).reshape(-1, c),
                           np.ascontiguousarray(right).reshape(-1, c),
                           np.ascontiguousarray(parent, dtype=np.int64))
        return gains.reshape(shape)


class ClassificationCriterion(_KernelCriterion):
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
        self.kernel = (GINI if kind == "gini" else ENTROPY, 1 if weighted else 0, n_classes,
                       np.array([self.scale, 1.0, 1.0]), 0 if weighted else -1)

    def class_weights(self, sums):
        """Real class weights of channel sums (..., C) -> (..., n_classes)."""
        return np.asarray(sums[..., self._classes], dtype=np.float64) / self.scale

    def category_keys(self, sums, parent):
        """The fraction of class 1 (two classes), else of the node's majority class (the
        first of the largest weight), in each category."""
        weights = self.class_weights(np.asarray(sums))
        k = 1 if self.n_outputs == 2 else int(np.argmax(self.class_weights(np.asarray(parent))))
        total = weights.sum(axis=1)
        return weights[:, k] / np.where(total > 0, total, 1.0)


class RegressionCriterion(_KernelCriterion):
    """Squared error on fixed-point channels ``[count, w, w*y, w*y^2]``.

    ``scales`` are the fixed-point scales of the last three channels. The gain is the
    weighted decrease of the sum of squared errors, ``S_L^2/W_L + S_R^2/W_R - S^2/W``.
    """

    count_channel = 0

    def __init__(self, scales):
        self.scales = tuple(float(s) for s in scales)
        self.kernel = (SQUARED_ERROR, 0, 1, np.array(self.scales), 0)

    def category_keys(self, sums, parent):
        """The mean target of each category."""
        sums = np.asarray(sums)
        w = sums[:, 1] / self.scales[0]
        return (sums[:, 2] / self.scales[1]) / np.where(w > 0, w, 1.0)


def category_keys(criterion, sums, parent):
    """Sort keys of a node's categories from their channel sums (n, C): a categorical split
    sends a prefix of the categories in this order left. A criterion gives its own with a
    ``category_keys(sums, parent)`` method; without one, categories keep their code order.
    Elementwise on exact sums, so the same on every rank."""
    if hasattr(criterion, "category_keys"):
        return np.nan_to_num(np.asarray(criterion.category_keys(sums, parent), dtype=np.float64))
    return np.zeros(len(sums))


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
