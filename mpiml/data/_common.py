"""What the readers share: the Dataset record and collective error decisions."""

__all__ = ["Dataset", "DataError", "raise_first", "open_checked", "forced_kinds",
           "finish_target", "describe"]

from dataclasses import dataclass, field

import numpy as np

from ..comm import collective_error
from ..errors import DataError


@dataclass
class Dataset:
    """This rank's rows of a data set.

    Attributes
    ----------
    X : ndarray of shape (n_local, n_features), float64, or Table
        A :class:`~mpiml.data.tables.Table` where the source has categorical columns or
        missing cells (CSV, Parquet), else a float64 array.
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
    summary : dict or None
        What :func:`mpiml.data.tables.summarize` says of every rank's X (the same on
        every rank): categorical features with their number of categories, missing
        cells per feature.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list
    target: str
    n_rows: int
    offset: int
    source: str = ""
    info: dict = field(default_factory=dict)
    summary: dict = None

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


def forced_kinds(categorical, numeric, names, target):
    """``--categorical`` and ``--numeric`` (comma-separated strings or lists of names) as
    two lists of names, and an error message (an unknown column, the target, a column
    named in both) or None."""
    forced, message = [], None
    for option, spec in (("--categorical", categorical), ("--numeric", numeric)):
        items = spec.split(",") if isinstance(spec, str) else list(spec or [])
        items = [str(c).strip() for c in items if str(c).strip()]
        forced.append(items)
        for item in items:
            if message is None and item not in names:
                message = (f"{option} names column {item!r}, which is not in the data; "
                           f"columns: {', '.join(names)}")
            elif message is None and item == target:
                message = f"{option} names the target column {target!r}"
    both = sorted(set(forced[0]) & set(forced[1]))
    if message is None and both:
        message = f"column {both[0]!r} is forced both categorical and numeric"
    return forced[0], forced[1], message


def finish_target(comm, y, y_text, bad_target, task, target):
    """Collective: the target shard from its numeric reading ``y`` (None where some cell
    is not a number) and its text ``y_text``; ``bad_target`` is this rank's first
    non-numeric ``(where, cell)`` or None.

    A regression target must be numeric everywhere; text on any rank makes every rank's
    labels text; whole-number classification labels become int64.
    """
    bad_targets = [b for b in comm.allgather(bad_target) if b is not None]
    if bad_targets and task == "regression":
        where, cell = bad_targets[0]
        raise_first(comm, f"the regression target {target!r} is not numeric "
                          f"({where}: {cell!r})")
    if bad_targets:
        return y_text() if callable(y_text) else y_text
    if task == "classification":
        whole = bool(np.all(y == np.round(y))) if y.size else True
        if all(comm.allgather(whole)):
            return y.astype(np.int64)
    return y


def describe(summary):
    """One line about a :attr:`Dataset.summary`: its categorical features and their
    number of categories, and the missing cells per feature."""
    cats = summary.get("categorical") or {}
    missing = summary.get("missing") or {}
    text = f"{summary['rows']} rows x {summary['features']} features"
    text += "; categorical: " + (", ".join(f"{k} ({n} categories)" for k, n in cats.items())
                                 if cats else "none")
    text += "; missing cells: " + (", ".join(f"{k} {n}" for k, n in missing.items())
                                   if missing else "none")
    return text
