"""Folds and splits by global row index, for scikit-learn's own searches over sharded rows.

Every rank passes its own rows (rank r holds the global rows after those of ranks
0..r-1). The splitters choose rows by their global index, exactly as scikit-learn's
splitter of the same name would on the whole data set, and return the local indices of
this rank's rows in each part. So a fold holds the same rows for any rank count, and
inside ``with mpiml.default_comm(comm):`` scikit-learn's ``GridSearchCV``,
``RandomizedSearchCV``, ``cross_val_score`` and ``cross_validate`` give the same results
on every rank and for any rank count::

    with mpiml.default_comm(comm):
        search = GridSearchCV(LogisticRegression(), {"C": [0.1, 1, 10]},
                              cv=KFold(3, shuffle=True, random_state=0))
        search.fit(X_local, y_local)          # every candidate fit and score is collective

``split`` and :func:`train_test_split` are collective over ``comm`` (default: the
:func:`mpiml.default_comm` of the caller, else one rank holding every row). With
``shuffle=True`` and ``random_state=None`` rank 0 draws the seed for every rank.
"""

__all__ = ["KFold", "StratifiedKFold", "train_test_split"]

import numpy as np
from sklearn import model_selection as _sk
from sklearn.utils import _safe_indexing, indexable

from .checks import gather_labels, resolve_seed
from .comm import collective_error, global_offset, resolve_comm
from .errors import DataError


def _n_rows(X):
    return X.shape[0] if hasattr(X, "shape") else len(X)


class _GlobalSplitter(_sk.BaseCrossValidator):
    """A scikit-learn splitter run on the global row indices; yields this rank's part."""

    def __init__(self, n_splits=5, *, shuffle=False, random_state=None, comm=None):
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state
        self.comm = comm

    def _sklearn(self, comm):
        """scikit-learn's splitter of the same name, with the seed every rank shares."""
        seed = resolve_seed(self.random_state, comm) if self.shuffle else None
        return self._splitter(self.n_splits, shuffle=self.shuffle, random_state=seed)

    def split(self, X, y=None, groups=None):
        """Collective: yield ``(train, test)``, local indices of this rank's rows.

        Parameters
        ----------
        X : array-like of shape (n_local, n_features)
        y : array-like of shape (n_local,), optional
            Needed by :class:`StratifiedKFold`.
        groups : ignored
        """
        comm = resolve_comm(self.comm)
        n_local = _n_rows(X)
        offset, n_total = global_offset(n_local, comm)
        labels = None if y is None or not self._needs_y else gather_labels(y, comm)
        splitter = self._sklearn(comm)
        try:
            folds = list(splitter.split(np.zeros((n_total, 1)), labels))
        except ValueError as exc:  # every rank sees the same global data: no vote needed
            raise collective_error(DataError(f"{exc}")) from None
        end = offset + n_local
        for train, test in folds:
            yield (_local(train, offset, end), _local(test, offset, end))

    def get_n_splits(self, X=None, y=None, groups=None):
        """The number of folds (no communication)."""
        return self.n_splits


def _local(indices, offset, end):
    """The global ``indices`` that fall in ``[offset, end)``, made local, in their order."""
    mine = indices[(indices >= offset) & (indices < end)]
    return (mine - offset).astype(np.intp)


class KFold(_GlobalSplitter):
    """scikit-learn's ``KFold`` over the global row index (collective ``split``).

    Parameters
    ----------
    n_splits : int, default 5
    shuffle : bool, default False
    random_state : int or None
        With ``shuffle=True``: the permutation of the global rows.
    comm : Communicator or None
        Default: the :func:`mpiml.default_comm` at the time of ``split``.
    """

    _needs_y = False
    _splitter = _sk.KFold


class StratifiedKFold(_GlobalSplitter):
    """scikit-learn's ``StratifiedKFold`` over the global row index (collective ``split``).

    The labels of every rank are gathered (one allgather of ``y``) so that each fold
    keeps the class proportions of the whole data set.

    Parameters
    ----------
    n_splits : int, default 5
    shuffle : bool, default False
    random_state : int or None
    comm : Communicator or None
    """

    _needs_y = True
    _splitter = _sk.StratifiedKFold

    def split(self, X, y, groups=None):
        if y is None:
            raise DataError("StratifiedKFold.split needs y, the class labels")
        return super().split(X, y, groups)


def train_test_split(*arrays, test_size=None, train_size=None, random_state=None,
                     shuffle=True, stratify=None, comm=None):
    """Collective: scikit-learn's ``train_test_split`` over the global row index.

    Each array holds this rank's rows; the result is ``[train_0, test_0, train_1,
    test_1, ...]`` of this rank's rows, chosen as scikit-learn would choose them from
    the whole data set (the same rows for any rank count).

    Parameters
    ----------
    *arrays : array-likes of the same local length
    test_size, train_size : float, int or None
        As in scikit-learn (a fraction or a number of global rows).
    random_state : int or None
        None: rank 0 draws the seed for every rank.
    shuffle : bool, default True
    stratify : array-like of shape (n_local,), optional
        This rank's class labels.
    comm : Communicator or None
    """
    if not arrays:
        raise DataError("train_test_split needs at least one array")
    arrays = indexable(*arrays)
    comm = resolve_comm(comm)
    n_local = _n_rows(arrays[0])
    offset, n_total = global_offset(n_local, comm)
    labels = None if stratify is None else gather_labels(stratify, comm)
    seed = resolve_seed(random_state, comm) if shuffle else None
    try:
        parts = _sk.train_test_split(np.arange(n_total), test_size=test_size,
                                     train_size=train_size, random_state=seed,
                                     shuffle=shuffle, stratify=labels)
    except ValueError as exc:  # every rank sees the same global data: no vote needed
        raise collective_error(DataError(f"{exc}")) from None
    train, test = (_local(p, offset, offset + n_local) for p in parts)
    out = []
    for a in arrays:
        out.extend([_safe_indexing(a, train), _safe_indexing(a, test)])
    return out

