"""Sharded data: every rank reads only its own rows.

Sources understood by :func:`load_data` (and by ``apps/train.py --data``):

* ``path.csv`` (any name that is not ``.npz``/``.npy``/``.parquet``): a CSV file with a
  header line, split into byte ranges at line boundaries; the target column by name
  (default last);
* ``path.parquet``, or a directory of ``*.parquet`` part files (Spark's layout), split by
  row group; the target column by name (default last);
* ``path.npz`` with arrays ``X`` (2-D) and ``y`` (1-D), memory-mapped;
* ``path.npy``, a 2-D numeric array, memory-mapped; the target is a column index
  (default the last column);
* ``synthetic:classification?n_samples=1000&n_features=20&n_classes=2&n_informative=20&class_sep=1&seed=0``
* ``synthetic:regression?n_samples=1000&n_features=20&n_informative=20&noise=0.1&seed=0``
  (every query parameter is optional).

CSV and Parquet columns are numeric or categorical (text), decided over every rank's
rows (``categorical=``/``numeric=`` force a kind); empty cells, nulls and
:data:`~mpiml.data.tables.NA_TOKENS` are missing. Their ``X`` is a
:class:`~mpiml.data.tables.Table` when some column is categorical or some cell missing.

Rank r holds the contiguous global rows ``[offset, offset + n_local)`` of a block
partition (:func:`mpiml.comm.partition.block_range` over rows, or over bytes for CSV);
a rank may hold none.
"""

__all__ = ["Dataset", "Table", "load_data", "read_csv", "read_parquet", "read_npz", "read_npy",
           "make_classification", "make_regression", "train_test_split", "holdout_mask",
           "take_rows", "parse_synthetic", "describe"]

import os

from urllib.parse import parse_qsl, urlsplit

from ..comm import collective_error, resolve_comm
from ..errors import InvalidParameterError
from ._common import Dataset, describe
from .arrays import read_npy, read_npz
from .csv import read_csv
from .parquet import read_parquet
from .split import holdout_mask, take_rows, train_test_split
from .tables import Table, summarize
from .synthetic import make_classification, make_regression

_GENERATORS = {"classification": make_classification, "regression": make_regression}
_INT_PARAMS = {"n_samples", "n_features", "n_classes", "n_informative", "seed"}
_FLOAT_PARAMS = {"noise", "class_sep"}


def parse_synthetic(source):
    """``"synthetic:KIND?key=value&..."`` -> ``(KIND, {key: value})`` with typed values."""
    parts = urlsplit(source)
    kind = parts.path
    if kind not in _GENERATORS:
        raise InvalidParameterError(f"unknown synthetic data set {kind!r} in {source!r}; use "
                                    f"synthetic:classification or synthetic:regression")
    allowed = _INT_PARAMS | _FLOAT_PARAMS
    if kind == "regression":
        allowed -= {"n_classes", "class_sep"}
    else:
        allowed -= {"noise"}
    params = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if key not in allowed:
            raise InvalidParameterError(f"unknown parameter {key!r} in {source!r}; "
                                        f"allowed: {', '.join(sorted(allowed))}")
        try:
            params[key] = int(value) if key in _INT_PARAMS else float(value)
        except ValueError:
            raise InvalidParameterError(f"{key} must be a number in {source!r}, got "
                                        f"{value!r}") from None
    return kind, params


def load_data(source, comm, target=None, task=None, categorical=None, numeric=None):
    """Collective: this rank's rows of ``source`` (see the module docstring).

    Parameters
    ----------
    source : str
        A file path or a ``synthetic:`` specification.
    comm : Communicator or None
        None: the communicator of :func:`mpiml.default_comm`, else one rank that reads
        every row.
    target : str, optional
        Target column name (CSV) or index (``.npy``).
    task : {"classification", "regression"}, optional
        Checks that a regression target is numeric; a synthetic source's kind must agree.
    categorical, numeric : str or list of str, optional
        CSV and Parquet columns forced categorical or numeric (comma-separated names).

    Returns
    -------
    Dataset
        With its ``summary`` (categorical features, their number of categories, missing
        cells per feature), the same on every rank.

    Raises
    ------
    mpiml.MpimlError
        On every rank, with a message naming the problem (line and column for CSV).
    """
    comm = resolve_comm(comm)
    source = str(source)
    tabular = {"categorical": categorical, "numeric": numeric}
    lower = source.lower()
    if lower.endswith(".parquet") or os.path.isdir(source):
        return read_parquet(source, comm, target, task, **tabular)
    if not (lower.endswith((".npz", ".npy")) or source.startswith("synthetic:")):
        return read_csv(source, comm, target, task, **tabular)
    if categorical is not None or numeric is not None:
        raise collective_error(InvalidParameterError(
            f"categorical and numeric columns can be forced for CSV and Parquet sources, "
            f"not for {source!r}"))
    if source.startswith("synthetic:"):
        try:  # the same source on every rank: every rank raises the same error
            kind, params = parse_synthetic(source[len("synthetic:"):])
            if task is not None and task != kind:
                raise InvalidParameterError(f"--task {task} does not match the synthetic "
                                            f"{kind} data set {source!r}")
            dataset = _GENERATORS[kind](comm, **params)
        except InvalidParameterError as exc:
            raise collective_error(exc) from None
        dataset.source = source
    elif lower.endswith(".npz"):
        dataset = read_npz(source, comm, target, task)
    else:
        dataset = read_npy(source, comm, target, task)
    dataset.summary = summarize(dataset.X, comm, dataset.feature_names)
    return dataset
