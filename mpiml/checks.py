"""Parameter and data checks shared by the readers, the metrics and the estimators.

* parameter checks (:func:`check_int`, :func:`check_float`, :func:`check_choice`,
  :func:`check_bool`, :func:`check_int_tuple`, :func:`check_random_state`) whose
  messages name the parameter and quote the value; they raise
  :class:`~mpiml.errors.InvalidParameterError`;
* a seed every rank agrees on (:func:`resolve_seed`);
* local and collective data checks (:func:`check_X`, :func:`check_y`,
  :func:`validate_fit_data`) and class labels collected from every rank
  (:func:`global_classes`, :func:`encode_classes`); they raise
  :class:`~mpiml.errors.DataError`.

This module imports nothing above :mod:`mpiml.comm`.
"""

__all__ = [
    "check_int", "check_float", "check_choice", "check_bool", "check_int_tuple",
    "check_random_state", "resolve_seed",
    "check_X", "check_y", "validate_fit_data", "global_classes", "gather_labels",
    "encode_classes",
]

import numbers

import numpy as np
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, column_or_1d

from .comm.collective import agree, collective_error
from .errors import DataError, InvalidParameterError, MpimlError

# rows checked at a time for non-finite values (a mask of this many rows, not of all)
_CHECK_ROWS = 1 << 16

# -- parameter checks (raise InvalidParameterError naming the parameter) ------------------

def _interval(low, high, low_open, high_open):
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return "finite"


def check_int(name, value, low=None, high=None, allow_none=False):
    """Return ``value`` as an int if it is an integer in ``[low, high]``, else raise."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or (
            low is not None and value < low) or (high is not None and value > high):
        raise InvalidParameterError(
            f"{name} must be an integer {_interval(low, high, False, False)}"
            f"{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def check_float(name, value, low=None, high=None, low_open=False, high_open=False,
                allow_none=False):
    """Return ``value`` as a float if it is a finite real in the interval, else raise."""
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise InvalidParameterError(
            f"{name} must be a number {_interval(low, high, low_open, high_open)}"
            f"{' or None' if allow_none else ''}, got {value!r}")
    return float(value)


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices``, else raise."""
    if not isinstance(value, str) or value not in choices:
        raise InvalidParameterError(
            f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def check_bool(name, value):
    """Return ``value`` if it is a bool, else raise."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidParameterError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_int_tuple(name, value, low=1):
    """A non-empty tuple of integers >= ``low`` (an int alone is a 1-tuple)."""
    items = (value,) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value
    try:
        items = tuple(items)
    except TypeError:
        items = ()
    if not items or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                            and v >= low for v in items):
        raise InvalidParameterError(
            f"{name} must be a non-empty sequence of integers >= {low}, got {value!r}")
    return tuple(int(v) for v in items)


def check_random_state(random_state):
    """Raise unless ``random_state`` is None, an int >= 0, or a numpy ``Generator`` /
    ``RandomState``; returns it (an int as int). Needs no communication."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state >= 0:
            return int(random_state)
    elif random_state is None or hasattr(random_state, "integers") or \
            hasattr(random_state, "randint"):
        return random_state
    raise InvalidParameterError(f"random_state must be None or an integer >= 0, "
                                f"got {random_state!r}")


def resolve_seed(random_state, comm):
    """Collective: an integer seed that every rank shares.

    ``random_state`` may be None (rank 0 draws a fresh seed and broadcasts it), an
    int >= 0, or a ``numpy.random.Generator`` / ``RandomState`` (rank 0 draws from it).
    """
    random_state = check_random_state(random_state)
    if isinstance(random_state, int):
        return random_state
    seed = None
    if comm.rank == 0:
        if random_state is None:
            seed = int(np.random.SeedSequence().entropy % (2 ** 63))
        elif hasattr(random_state, "integers"):
            seed = int(random_state.integers(0, 2 ** 63))
        else:
            seed = int(random_state.randint(0, 2 ** 31 - 1))
    return comm.bcast(seed, root=0)


# -- data checks ----------------------------------------------------------------------------

class _DataTypeError(DataError, TypeError):
    """Data of a type that cannot be numbers (a dict in a cell, a sparse matrix)."""


def _name_of(estimator):
    if estimator is None:
        return "the model"
    return estimator if isinstance(estimator, str) else type(estimator).__name__


def check_X(X, n_features=None, name="X", dtype=np.float64, estimator=None, allow_nan=False):
    """Local check of a feature matrix: 2-D, numeric, finite, ``n_features`` columns.

    Conversion and shape checks are scikit-learn's ``check_array`` (its messages, so that
    scikit-learn's tools recognise them); a non-finite value is reported with its row and
    column. Returns a C-contiguous array of ``dtype``. Raises :class:`DataError`. Not
    collective; use it in ``predict``. In ``fit`` use :func:`validate_fit_data`.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_features : int, optional
        The number of features the model was fitted with.
    name : str
        The argument's name in messages.
    dtype : numpy dtype
    estimator : estimator or str, optional
        Named in messages.
    allow_nan : bool
        Let NaN through (models that treat it as a missing value); infinity is refused.
    """
    if n_features is not None and getattr(X, "ndim", None) == 1 and len(X) == 0:
        X = np.reshape(X, (0, n_features))
    if (type(X) is np.ndarray and X.ndim == 2 and X.dtype == dtype
            and X.flags.c_contiguous):
        arr = X  # what check_array would return, without its cost (a served row)
    else:
        try:
            arr = check_array(X, dtype=dtype, order="C", ensure_all_finite=False,
                              ensure_min_samples=0, ensure_min_features=0, input_name=name)
        except TypeError as exc:
            raise _DataTypeError(f"{name}: {exc}") from None
        except ValueError as exc:
            raise DataError(f"{exc}") from None
    if n_features is not None and arr.shape[1] != n_features:
        raise DataError(f"{name} has {arr.shape[1]} features, but {_name_of(estimator)} is "
                        f"expecting {n_features} features as input")
    for lo in range(0, arr.shape[0] if arr.size else 0, _CHECK_ROWS):
        # in blocks of rows: no mask as large as the data
        part = arr[lo:lo + _CHECK_ROWS]
        bad = np.isinf(part) if allow_nan else ~np.isfinite(part)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            what = "infinity" if allow_nan else "NaN or infinity"
            raise DataError(f"Input {name} contains {what} (row {lo + row}, column {col})")
    return arr


def check_y(y, n_rows, numeric, name="y", estimator=None):
    """Local check of a target (or weight) vector of ``n_rows`` values.

    A column vector of shape ``(n_rows, 1)`` is flattened with scikit-learn's
    ``DataConversionWarning``. ``numeric`` converts to float64. Raises :class:`DataError`.
    """
    if y is None:
        raise DataError(f"{_name_of(estimator)} requires y to be passed, but the target y "
                        f"is None")
    try:
        arr = column_or_1d(y, warn=name == "y")
    except ValueError as exc:
        raise DataError(f"{name}: {exc}") from None
    if arr.shape[0] != n_rows:
        raise DataError(f"X has {n_rows} rows but {name} has {arr.shape[0]}")
    if numeric:
        if arr.dtype.kind not in "biuf":
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                raise DataError(f"{name} must be numeric, got dtype {arr.dtype}") from None
        arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.dtype.kind in "fc" and arr.size and not np.isfinite(arr).all():
        raise DataError(f"Input {name} contains NaN or infinity "
                        f"(row {int(np.argmin(np.isfinite(arr)))})")
    return arr


def _fit_data_problem(shapes):
    """The error (or None) for the ``(rows, features, has_weights, weight_sum)`` of every
    rank, the same on every rank."""
    n_total = sum(n for n, _, _, _ in shapes)
    widths = {w for n, w, _, _ in shapes if n > 0} or {w for _, w, _, _ in shapes}
    if len(widths) > 1:
        return DataError(f"ranks hold X with different numbers of features: "
                         f"{[w for _, w, _, _ in shapes]}")
    width = next(iter(widths))
    if n_total == 0:
        return DataError(f"Found array with 0 sample(s) (shape=(0, {max(width, 0)})) while a "
                         f"minimum of 1 is required: cannot fit a model on 0 rows")
    if width == 0:
        return DataError(f"Found array with 0 feature(s) (shape=({n_total}, 0)) while a "
                         f"minimum of 1 is required: cannot fit a model on 0 features")
    if len({has for _, _, has, _ in shapes}) > 1:
        return DataError("sample_weight was given on some ranks only")
    if shapes[0][2] and sum(w for _, _, _, w in shapes) <= 0:
        return DataError("sample_weight contains only zeros: at least one weight must be "
                         "non-zero")
    return None


def validate_fit_data(X, y, comm, sample_weight=None, numeric_y=False, estimator=None,
                      allow_nan=False):
    """Collective: check this rank's ``X``, ``y`` and ``sample_weight`` and agree.

    Every rank checks its rows (2-D numeric finite X, 1-D y of the same length, finite
    non-negative weights); the number of features must be the same on every rank, the
    data set must have at least one row and the weights a positive sum. If any rank
    finds a problem every rank raises (via :func:`mpiml.comm.agree`), so no rank is left
    in a collective.

    Parameters
    ----------
    X : array-like of shape (n_local, n_features)
    y : array-like of shape (n_local,)
    comm : Communicator
    sample_weight : array-like of shape (n_local,), optional
    numeric_y : bool
        Convert y to float64 (regression targets).
    estimator : estimator or str, optional
        Named in messages.
    allow_nan : bool
        Let NaN through in X (models that treat it as a missing value).

    Returns
    -------
    X : ndarray of shape (n_local, n_features), float64
    y : ndarray of shape (n_local,)
    sample_weight : ndarray of shape (n_local,) float64 or None
    n_total : int
        Rows on all ranks.
    """
    error, n_rows, n_features, weight_sum = None, 0, -1, 0.0
    try:
        X = check_X(X, estimator=estimator, allow_nan=allow_nan)
        n_rows, n_features = X.shape
        y = check_y(y, n_rows, numeric_y, estimator=estimator)
        if sample_weight is not None:
            sample_weight = check_y(sample_weight, n_rows, True, "sample_weight")
            if (sample_weight < 0).any():
                raise DataError("sample_weight must be >= 0")
            weight_sum = float(sample_weight.sum())
    except MpimlError as exc:
        error = exc
    agree(comm, error)
    shapes = comm.allgather((int(n_rows), int(n_features), sample_weight is not None,
                             weight_sum))
    error = _fit_data_problem(shapes)
    agree(comm, error)
    width = ({w for n, w, _, _ in shapes if n > 0} or {n_features}).pop()
    if n_rows == 0 and n_features != width:
        X = np.zeros((0, width))
    return X, y, sample_weight, sum(n for n, _, _, _ in shapes)


def global_classes(y, comm):
    """Collective: the sorted unique labels over every rank's ``y``."""
    local, error = None, None
    try:
        local = np.unique(np.asarray(y))
    except TypeError:  # an object array of labels that do not compare, e.g. 1 and "a"
        kinds = sorted({type(v).__name__ for v in np.asarray(y, dtype=object).reshape(-1)})
        error = DataError(f"the target mixes labels of types {', '.join(kinds)}; use one "
                          f"type (all strings or all numbers)")
    agree(comm, error)
    return np.unique(gather_labels(local, comm))


def gather_labels(y, comm):
    """Collective: every rank's labels ``y`` in rank order, as one array.

    Labels of ranks that hold numbers and ranks that hold text are compared as text.
    """
    parts = comm.allgather(np.asarray(y))
    non_empty = [p for p in parts if p.size] or parts[:1]
    kinds = {p.dtype.kind for p in non_empty}
    if len(kinds) > 1 and not kinds <= set("biuf"):
        non_empty = [p.astype(str) for p in non_empty]
    return np.concatenate(non_empty)


def encode_classes(y, comm, min_classes=2):
    """Collective: ``(classes, codes)``; ``codes[i]`` is the index of ``y[i]`` in ``classes``.

    Raises :class:`DataError` on every rank if fewer than ``min_classes`` classes
    exist over all ranks.
    """
    classes = global_classes(y, comm)  # first: it names labels of mixed types
    error = None
    try:
        check_classification_targets(np.asarray(y))
    except ValueError as exc:
        error = DataError(f"{exc}")
    agree(comm, error)
    if classes.size < min_classes:
        raise collective_error(DataError(f"the classification target has {classes.size} class"
                        f"{'' if classes.size == 1 else 'es'} "
                        f"({', '.join(repr(c) for c in classes.tolist())}); "
                        f"at least {min_classes} are needed"))
    y = np.asarray(y)
    if y.dtype.kind != classes.dtype.kind and classes.dtype.kind == "U":
        y = y.astype(str)
    codes = np.searchsorted(classes, y).astype(np.int64)
    return classes, codes
