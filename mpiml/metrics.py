"""Collective metrics, exact over every rank's rows (never an average of per-rank scores).

Every function takes this rank's ``y_true`` and predictions and an optional
Communicator; all ranks of ``comm`` must call it (a rank may hold 0 rows). With
``comm=None`` the arrays are the whole data set. Every rank returns the same float, and
the same bits for any rank count: sums run over fixed global blocks of rows.
"""

__all__ = ["accuracy", "mean_squared_error", "r2", "log_loss", "roc_auc"]

import numpy as np

from .checks import global_classes
from .comm import collective_error, resolve_comm
from .comm.rowblocks import RowBlocks
from .errors import DataError, MpimlError


def _row_blocks(columns, comm):
    """Collective: :class:`~mpiml.comm.rowblocks.RowBlocks` over the per-row ``columns``
    (arrays of shape (n_local,)) stacked side by side."""
    values = np.column_stack([np.asarray(c, dtype=np.float64).reshape(-1) for c in columns])
    return RowBlocks(resolve_comm(comm), (values,), values.shape[1])


def _sums(columns, comm):
    """Collective: the sums of per-row values over every rank's rows.

    ``columns`` are arrays of shape (n_local,). The rows are summed in fixed global
    blocks, so the result is the same bits for any rank count, and for ``comm=None``
    (one rank holding every row).
    """
    return _row_blocks(columns, comm).sums(lambda v: v.sum(axis=0), len(columns))


def _weights(sample_weight, n):
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
    if w.shape[0] != n:
        raise DataError(f"sample_weight has {w.shape[0]} values for {n} rows")
    return w


def _pair(y_true, y_pred):
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape[0] != y_pred.shape[0]:
        raise DataError(f"y_true has {y_true.shape[0]} rows but y_pred has {y_pred.shape[0]}")
    return y_true, y_pred


def _empty_total(total, name):
    if total <= 0:
        raise collective_error(DataError(f"{name}: no rows (or zero total weight) on any rank"))


def accuracy(y_true, y_pred, comm=None, *, sample_weight=None):
    """Collective: fraction of rows where ``y_pred == y_true`` over all ranks.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_local,)
    comm : Communicator, optional
    sample_weight : array-like of shape (n_local,), optional

    Returns
    -------
    float
    """
    y_true, y_pred = _pair(y_true, y_pred)
    w = _weights(sample_weight, y_true.shape[0])
    hit = (y_true == y_pred).astype(np.float64)
    w = np.ones_like(hit) if w is None else w
    correct, total = _sums([hit * w, w], comm)
    _empty_total(total, "accuracy")
    return float(correct / total)


def mean_squared_error(y_true, y_pred, comm=None, *, sample_weight=None):
    """Collective: mean of ``(y_true - y_pred)**2`` over all ranks' rows.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_local,)
    comm : Communicator, optional
    sample_weight : array-like of shape (n_local,), optional
    """
    y_true, y_pred = _pair(y_true, y_pred)
    w = _weights(sample_weight, y_true.shape[0])
    err = (np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64)) ** 2
    w = np.ones_like(err) if w is None else w
    sq, total = _sums([err * w, w], comm)
    _empty_total(total, "mean_squared_error")
    return float(sq / total)


def r2(y_true, y_pred, comm=None, *, sample_weight=None):
    """Collective: coefficient of determination ``1 - SS_res / SS_tot`` over all rows.

    Two allreduces (the global mean first, then centred sums). A constant ``y_true``
    gives 1.0 for a perfect prediction and 0.0 otherwise (scikit-learn's convention).
    """
    y_true, y_pred = _pair(y_true, y_pred)
    yt = np.asarray(y_true, np.float64)
    yp = np.asarray(y_pred, np.float64)
    w = _weights(sample_weight, yt.shape[0])
    if w is None:
        w = np.ones_like(yt)
    blocks = _row_blocks([yt, yp, w], comm)  # both passes over the same blocks
    s, total = blocks.sums(lambda v: np.column_stack([v[:, 2] * v[:, 0], v[:, 2]]).sum(axis=0),
                           2)
    _empty_total(total, "r2")
    mean = s / total
    ss_res, ss_tot = blocks.sums(
        lambda v: np.column_stack([v[:, 2] * (v[:, 0] - v[:, 1]) ** 2,
                                   v[:, 2] * (v[:, 0] - mean) ** 2]).sum(axis=0), 2)
    if ss_tot == 0:
        return 1.0 if ss_res == 0 else 0.0
    return float(1.0 - ss_res / ss_tot)


def log_loss(y_true, y_prob, comm=None, *, labels=None, sample_weight=None, eps=None):
    """Collective: mean negative log-likelihood (cross-entropy) over all ranks' rows.

    Parameters
    ----------
    y_true : array-like of shape (n_local,)
        Labels.
    y_prob : array-like of shape (n_local, n_classes) or (n_local,)
        Class probabilities in the order of ``labels``; a 1-D array is the probability
        of the second (positive) class of a binary problem.
    comm : Communicator, optional
    labels : array-like, optional
        The classes in column order. Default: the sorted labels found on all ranks.
    sample_weight : array-like of shape (n_local,), optional
    eps : float, optional
        Probabilities are clipped to ``[eps, 1 - eps]``; default the float64 epsilon.
    """
    y_true, y_prob = _pair(y_true, y_prob)
    classes = global_classes(y_true, resolve_comm(comm)) if labels is None else np.asarray(labels)
    prob = np.asarray(y_prob, np.float64)
    if prob.ndim == 1:
        prob = np.column_stack([1.0 - prob, prob])
    if prob.shape[1] != classes.size:
        raise DataError(f"log_loss: y_prob has {prob.shape[1]} columns for "
                        f"{classes.size} classes {classes.tolist()}")
    eps = np.finfo(np.float64).eps if eps is None else eps
    idx = np.searchsorted(classes, y_true)
    idx = np.clip(idx, 0, classes.size - 1)
    if y_true.size and (classes[idx] != y_true).any():
        raise DataError("log_loss: y_true has labels not in labels")
    p = np.clip(prob[np.arange(prob.shape[0]), idx], eps, 1 - eps)
    nll = -np.log(p)
    w = _weights(sample_weight, y_true.shape[0])
    w = np.ones_like(nll) if w is None else w
    loss, total = _sums([nll * w, w], comm)
    _empty_total(total, "log_loss")
    return float(loss / total)


def roc_auc(y_true, y_score, comm=None, *, pos_label=None):
    """Collective: area under the ROC curve of a binary problem, exact over all rows.

    Ties in ``y_score`` count one half (the Mann-Whitney statistic), as in
    scikit-learn's ``roc_auc_score``. Every rank compresses its rows to (distinct
    score, positives, negatives); these are gathered on every rank and merged, so
    memory grows with the number of distinct scores, not with the number of ranks.

    Parameters
    ----------
    y_true : array-like of shape (n_local,)
        Two classes over all ranks.
    y_score : array-like of shape (n_local,) or (n_local, 2)
        Score of the positive class (for a 2-column array, column 1).
    comm : Communicator, optional
    pos_label : optional
        The positive class; default the larger of the two labels.
    """
    y_true, y_score = _pair(y_true, y_score)
    score = np.asarray(y_score, np.float64)
    if score.ndim == 2:
        if score.shape[1] != 2:
            raise DataError(f"roc_auc is defined for binary problems; y_score has "
                            f"{score.shape[1]} columns")
        score = score[:, 1]
    c = resolve_comm(comm)
    if pos_label is None:
        classes = global_classes(y_true, c)
        if classes.size != 2:
            raise collective_error(DataError(
                f"roc_auc needs exactly two classes in y_true, found {classes.size}"))
        pos_label = classes[1]
    positive = (y_true == pos_label)
    values, inverse = np.unique(score, return_inverse=True)
    pos = np.bincount(inverse.reshape(-1), weights=positive, minlength=values.size)
    neg = np.bincount(inverse.reshape(-1), weights=~positive, minlength=values.size)
    local = np.ascontiguousarray(np.column_stack([values, pos, neg]).reshape(-1))
    counts = np.asarray(c.allgather(local.size), dtype=np.int64)
    merged = np.empty(int(counts.sum()), dtype=np.float64)
    c.Allgatherv(local, [merged, counts])
    merged = merged.reshape(-1, 3)
    values, inverse = np.unique(merged[:, 0], return_inverse=True)
    pos = np.bincount(inverse.reshape(-1), weights=merged[:, 1], minlength=values.size)
    neg = np.bincount(inverse.reshape(-1), weights=merged[:, 2], minlength=values.size)
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        raise collective_error(MpimlError("roc_auc is undefined when y_true has only one class"))
    neg_below = np.cumsum(neg) - neg
    return float((pos @ neg_below + 0.5 * (pos @ neg)) / (n_pos * n_neg))
