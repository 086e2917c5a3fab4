"""Losses of gradient boosting: gradients, hessians, per-row loss, baseline, link.

Every function here is local and row-wise (a row's numbers depend on that row
alone), so they are the same for any rank count; the one reduction, the baseline,
goes through exact fixed-point sums.

Raw scores have shape (n_samples, n_trees_per_round): one column for regression and
binary classification, one per class for multiclass (softmax).
"""

__all__ = ["HalfSquaredError", "AbsoluteError", "BinaryLogLoss", "MultinomialLogLoss"]

import numpy as np
from numba import njit

from ...comm.ops import MAX
from ..tree import fixed_point_scale, to_fixed
from ._fixed_point import exact_column_sums
from ._median import group_medians

_EPS = 1e-15


@njit(nogil=True, cache=True)
def _binary_pass(raw, y, weight, weighted, grad, hess, loss):
    """Binary log loss of every row: gradient ``p - y``, hessian ``p (1 - p)`` and loss
    ``-log(max(p, 1 - p)) + max(raw, 0) - y raw`` with ``p = 1 / (1 + exp(-raw))`` (each
    times the row's weight when ``weighted``); returns the largest magnitude of each.

    The loops over the rows go one per stage (``exp``, the arithmetic, ``log``, the loss):
    the calls of ``exp`` and ``log`` do not vectorize, and with them out of its way the
    arithmetic does: 500,000 rows take 8.0 ms instead of 11.8 ms in one loop, with the
    same operations, so the same bits."""
    n = raw.shape[0]
    for i in range(n):
        grad[i] = np.exp(-raw[i])         # exp(-r) = inf: p = 0, as it should
    g_max, h_max = 0.0, 0.0
    for i in range(n):
        p = 1.0 / (grad[i] + 1.0)
        q = 1.0 - p
        g = p - y[i]
        h = q * p
        if weighted:
            g *= weight[i]
            h *= weight[i]
        grad[i], hess[i], loss[i] = g, h, max(p, q)
        g_max, h_max = max(g_max, abs(g)), max(h_max, abs(h))
    for i in range(n):
        loss[i] = np.log(loss[i])
    v_max = 0.0
    for i in range(n):
        r = raw[i]
        v = -loss[i] + max(r, 0.0) - y[i] * r
        if weighted:
            v *= weight[i]
        loss[i] = v
        v_max = max(v_max, abs(v))
    return g_max, h_max, v_max


def _weighted_sums(comm, columns, weight, n_total):
    """Exact sums over all rows of ``weight * column`` for each column, then of ``weight``
    (``weight`` None: the columns themselves, then ``n_total``, which is what the exact
    sum of unit weights gives). Collective."""
    if weight is None:
        return np.append(exact_column_sums(comm, columns, n_total), float(n_total))
    return exact_column_sums(comm, [weight * c for c in columns] + [weight], n_total)


def _row_max(a):
    return np.max(a, axis=1) if len(a) else np.zeros(0)


def _row_sum(a):
    """Row sums added column by column, left to right: the same bits for a row
    whatever the number of rows (numpy may sum pairwise or not depending on shape)."""
    total = a[:, 0].copy()
    for k in range(1, a.shape[1]):
        total += a[:, k]
    return total


def _expit(x):
    out = np.empty_like(x)
    np.negative(x, out=out)
    np.exp(out, out=out)
    out += 1.0
    np.reciprocal(out, out=out)
    return out


def _with_unit_hessian(grad, weight):
    """``(weight * grad, weight)`` as columns of shape (n, 1): the gradient and hessian of
    a loss whose unweighted hessian is 1. ``grad`` is scaled in place."""
    if weight is not None:
        grad *= weight
        hess = weight.copy()
    else:
        hess = np.ones_like(grad)
    return grad[:, None], hess[:, None]


class HalfSquaredError:
    """``0.5 * (raw - y)**2``; gradient ``raw - y``, hessian 1."""

    name = "squared_error"
    constant_hessian = True

    def __init__(self, n_classes=None):
        self.n_trees_per_round = 1

    def baseline(self, comm, y, weight, n_total):
        """Weighted mean of ``y`` over all rows (``weight`` None: unit weights).
        Collective. Returns shape (1,)."""
        sums = _weighted_sums(comm, [y], weight, n_total)
        return np.array([sums[0] / sums[1] if sums[1] > 0 else 0.0])

    def gradients(self, y, raw, weight):
        """Gradient and hessian, each of shape (n, 1)."""
        return _with_unit_hessian(raw[:, 0] - y, weight)

    def pointwise(self, y, raw, weight):
        """Loss of each row (weighted), shape (n,)."""
        d = raw[:, 0] - y
        loss = 0.5 * d * d
        return loss * weight if weight is not None else loss

    def raw_to_output(self, raw):
        return raw[:, 0]


class AbsoluteError:
    """``|raw - y|``; gradient ``sign(raw - y)``, hessian 1. After each tree, every leaf's
    value becomes ``learning_rate`` times the weighted median of its rows' residuals
    (as scikit-learn's ``HistGradientBoostingRegressor(loss="absolute_error")``)."""

    name = "absolute_error"
    constant_hessian = True

    def __init__(self, n_classes=None):
        self.n_trees_per_round = 1

    @staticmethod
    def exact_weights(comm, weight, n, n_total):
        """Row weights as int64 whose total over all ranks is below 2**52. Collective."""
        if weight is None:
            return np.ones(n, dtype=np.int64)
        top = comm.allreduce(float(weight.max(initial=0.0)), op=MAX)
        return to_fixed(weight, fixed_point_scale(top, n_total, bits=52))

    def baseline(self, comm, y, weight, n_total):
        """Weighted median of ``y`` over all rows. Collective. Shape (1,)."""
        w = self.exact_weights(comm, weight, len(y), n_total)
        return group_medians(comm, y, np.zeros(len(y), dtype=np.int64), 1, w)

    def gradients(self, y, raw, weight):
        return _with_unit_hessian(np.sign(raw[:, 0] - y), weight)

    def pointwise(self, y, raw, weight):
        loss = np.abs(raw[:, 0] - y)
        return loss * weight if weight is not None else loss

    def refit_leaves(self, comm, tree, leaf, y, raw, weights, learning_rate):
        """Set the leaf values of ``tree`` to ``learning_rate`` x the weighted median of
        the residuals ``y - raw`` of each leaf's rows (``weights``: exact int64, 0 for rows
        outside the round's sample). Collective."""
        medians = group_medians(comm, y - raw, leaf, tree.n_nodes, weights)
        leaves = np.flatnonzero(tree.left < 0)
        tree.value[leaves, 0] = learning_rate * medians[leaves]

    def raw_to_output(self, raw):
        return raw[:, 0]


class BinaryLogLoss:
    """Binary cross-entropy on the logit: ``log(1 + exp(raw)) - y * raw``."""

    name = "log_loss"
    constant_hessian = False

    def __init__(self, n_classes=2):
        self.n_trees_per_round = 1

    def baseline(self, comm, y, weight, n_total):
        """Logit of the weighted share of positives (``weight`` None: unit weights).
        Collective. Shape (1,)."""
        sums = _weighted_sums(comm, [y], weight, n_total)
        p = sums[0] / sums[1] if sums[1] > 0 else 0.5
        p = min(max(p, _EPS), 1.0 - _EPS)
        return np.array([np.log(p / (1.0 - p))])

    def gradients(self, y, raw, weight):
        p = _expit(np.ascontiguousarray(raw[:, 0]))
        grad = p - y
        hess = p * (1.0 - p)
        if weight is not None:
            grad *= weight
            hess *= weight
        return grad[:, None], hess[:, None]

    def gradients_and_pointwise(self, y, raw, weight, out=None):
        """:meth:`gradients` and :meth:`pointwise` in one pass over the rows, with the
        largest magnitude of each: ``(grad, hess, loss, (grad_max, hess_max, loss_max))``.

        One numba kernel that holds no GIL (thread ranks compute theirs at the same
        time); the loss is ``-log(max(p, 1 - p)) + max(raw, 0) - y raw``, the same
        function as :meth:`pointwise` (to a few units in the last place). ``out``:
        arrays ``(grad (n, 1), hess (n, 1), loss (n,))`` to write into (a fit's rounds
        reuse theirs).
        """
        n = raw.shape[0]
        grad, hess, loss = out if out is not None else (np.empty((n, 1)), np.empty((n, 1)),
                                                        np.empty(n))
        weighted = weight is not None
        maxima = _binary_pass(np.ascontiguousarray(raw[:, 0]), np.ascontiguousarray(y),
                              np.ascontiguousarray(weight, dtype=np.float64) if weighted
                              else np.empty(0), weighted, grad[:, 0], hess[:, 0], loss)
        return grad, hess, loss, maxima

    def pointwise(self, y, raw, weight):
        r = np.ascontiguousarray(raw[:, 0])
        loss = np.log1p(np.exp(-np.abs(r)))  # log(1 + exp(r)) - max(r, 0)
        loss += np.maximum(r, 0.0)
        loss -= y * r
        return loss * weight if weight is not None else loss

    def probabilities(self, raw):
        """Class probabilities, shape (n, 2)."""
        p = _expit(raw[:, 0])
        return np.column_stack([1.0 - p, p])


class MultinomialLogLoss:
    """Softmax cross-entropy, one raw score (and one tree per round) per class."""

    name = "log_loss"
    constant_hessian = False

    def __init__(self, n_classes):
        self.n_trees_per_round = int(n_classes)

    def baseline(self, comm, y, weight, n_total):
        """Log of each class's weighted share (``weight`` None: unit weights). Collective.
        Shape (n_classes,)."""
        k = self.n_trees_per_round
        sums = _weighted_sums(comm, [y == c for c in range(k)], weight, n_total)
        total = sums[-1] if sums[-1] > 0 else 1.0
        p = np.clip(sums[:-1] / total, _EPS, 1.0)
        return np.log(p)

    @staticmethod
    def _softmax(raw):
        z = raw - _row_max(raw)[:, None]
        np.exp(z, out=z)
        z /= _row_sum(z)[:, None]
        return z

    def gradients(self, y, raw, weight):
        p = self._softmax(raw)
        hess = p * (1.0 - p)
        grad = p
        grad[np.arange(len(y)), y.astype(np.intp)] -= 1.0
        if weight is not None:
            grad *= weight[:, None]
            hess *= weight[:, None]
        return grad, hess

    def pointwise(self, y, raw, weight):
        top = _row_max(raw)
        lse = top + np.log(_row_sum(np.exp(raw - top[:, None])))
        loss = lse - raw[np.arange(len(y)), y.astype(np.intp)]
        return loss * weight if weight is not None else loss

    def probabilities(self, raw):
        return self._softmax(raw.copy())
