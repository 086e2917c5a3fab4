"""What the readers share: the Dataset record and collective error decisions."""

__all__ = ["Dataset", "DataError", "raise_first", "open_checked"]

from dataclasses import dataclass, field

import numpy as np

from ..comm import collective_error
from ..errors import DataError


@dataclass
class Dataset:
    """This rank's rows of a data set.

    Attributes
    ----------
    X : ndarray of shape (n_local, n_features), float64
    y : ndarray of shape (n_local,)
        float64 (numeric target), int64 (synthetic classes) or str labels.
    feature_names : list of str
    target : str
        Name of the target column.
    n_rows : int
        Rows on all ranks.
    offset : int
        Global index of this rank's first row (rows are contiguous, in rank order).
    source : str
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list
    target: str
    n_rows: int
    offset: int
    source: str = ""
    info: dict = field(default_factory=dict)

    @property
    def n_features(self):
        return self.X.shape[1]


def raise_first(comm, message):
    """Collective: if any rank has an error ``message``, every rank raises the one of the
    lowest such rank as a :class:`DataError` (marked collective)."""
    messages = comm.allgather(message)
    for m in messages:
        if m is not None:
            raise collective_error(DataError(m))


def open_checked(path, comm):
    """Collective: open ``path`` for binary reading on every rank, or raise everywhere."""
    handle, message = None, None
    try:
        handle = open(path, "rb")
    except OSError as exc:
        message = f"cannot read data file {str(path)!r}: {exc.strerror or exc}"
    try:
        raise_first(comm, message)
    except DataError:
        if handle is not None:
            handle.close()
        raise
    return handle
