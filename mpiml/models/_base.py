"""Helpers shared by every mpiml estimator.

* parameter checks (:func:`check_int`, :func:`check_float`, :func:`check_choice`,
  :func:`check_bool`, :func:`check_int_tuple`) whose messages name the parameter and
  quote the value;
* collective data checks (:func:`validate_fit_data`, :func:`check_X`), class encoding
  with the classes collected from every rank (:func:`encode_classes`), the global row
  offset of this rank (:func:`global_offset`), a seed every rank agrees on
  (:func:`resolve_seed`), and :func:`resolve_comm` for ``comm=None``;
* :class:`BaseEstimator` (``get_params``/``set_params``/``repr``) and the
  :class:`ClassifierMixin` / :class:`RegressorMixin` collective ``score``;
* JSON helpers for the persistence contract (:func:`classes_to_json`,
  :func:`classes_from_json`);
* the progress-reporter interface (:class:`ProgressReporter`, :func:`as_progress`).

Progress reporting
------------------
An estimator whose ``fit`` accepts ``progress=None`` calls ``report = as_progress(progress)``
once and then ``report(iteration, loss)`` (plus optional keyword fields, e.g.
``trees=12``) after each iteration, epoch or tree, on every rank. The call is local
and cheap (no communication); :class:`ProgressReporter` prints on rank 0 at most once
per interval. ``apps/train.py`` passes a reporter to every ``fit`` that accepts one.
"""

__all__ = [
    "InvalidParameterError", "DataError",
    "check_int", "check_float", "check_choice", "check_bool", "check_int_tuple",
    "check_X", "validate_fit_data", "encode_classes", "global_classes", "global_offset",
    "resolve_comm", "resolve_seed", "check_is_fitted", "collective_error",
    "BaseEstimator", "ClassifierMixin", "RegressorMixin",
    "classes_to_json", "classes_from_json",
    "ProgressReporter", "as_progress",
]

import inspect
import numbers
import sys
import time

import numpy as np

from ..comm import agree
from ..errors import MpimlError


class InvalidParameterError(MpimlError, ValueError):
    """An estimator parameter has a bad value."""


class DataError(MpimlError, ValueError):
    """Training or prediction data cannot be used (shape, NaN/inf, labels)."""


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


# -- communicators, seeds, offsets ----------------------------------------------------------

def resolve_comm(comm):
    """``comm``, or a one-rank communicator when ``comm`` is None (one rank holds every row)."""
    if comm is not None:
        return comm
    from ..comm import self_comm
    return self_comm()


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


def checked_params(est, comm):
    """Collective: ``est._check_params()``, one decision over every rank (a bad parameter
    raises the same error on every rank, printed once by the apps)."""
    params, error = None, None
    try:
        params = est._check_params()
    except InvalidParameterError as exc:
        error = exc
    agree(comm, error)
    return params


def collective_error(exc):
    """Mark ``exc`` as raised identically on every rank (after a collective decision),
    so that launchers print it once instead of aborting the job. Returns ``exc``."""
    exc.collective = True
    return exc


def global_offset(n_local, comm):
    """Collective: ``(offset, n_total)`` of this rank's rows in the global data set.

    Rank r holds rows ``[offset, offset + n_local)``; offsets follow rank order.
    """
    counts = comm.allgather(int(n_local))
    return int(sum(counts[:comm.rank])), int(sum(counts))


# -- data checks ----------------------------------------------------------------------------

def check_X(X, n_features=None, name="X", dtype=np.float64):
    """Local check of a feature matrix: 2-D, numeric, finite, ``n_features`` columns.

    Returns a C-contiguous array of ``dtype``. Raises :class:`DataError`. Not collective;
    use it in ``predict``. In ``fit`` use :func:`validate_fit_data`.
    """
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise DataError(f"{name} cannot be converted to a numeric array: {exc}") from None
    if arr.ndim == 1 and n_features is not None and arr.size == 0:
        arr = arr.reshape(0, n_features)
    if arr.ndim != 2:
        raise DataError(f"{name} must be a 2-D array of shape (n_samples, n_features), "
                        f"got shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(dtype)
        except (TypeError, ValueError):
            raise DataError(f"{name} must be numeric, got dtype {arr.dtype}") from None
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if n_features is not None and arr.shape[1] != n_features:
        raise DataError(f"{name} has {arr.shape[1]} features, but the model was fitted with "
                        f"{n_features}")
    if arr.size and not np.isfinite(arr).all():
        row, col = np.argwhere(~np.isfinite(arr))[0]
        raise DataError(f"{name} contains NaN or infinity (row {row}, column {col})")
    return arr


def _check_y(y, n_rows, numeric, name="y"):
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise DataError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if arr.shape[0] != n_rows:
        raise DataError(f"X has {n_rows} rows but {name} has {arr.shape[0]}")
    if numeric:
        if arr.dtype.kind not in "biuf":
            try:
                arr = arr.astype(np.float64)
            except (TypeError, ValueError):
                raise DataError(f"{name} must be numeric for regression, got dtype "
                                f"{arr.dtype}") from None
        arr = np.ascontiguousarray(arr, dtype=np.float64)
    if arr.dtype.kind in "fc" and arr.size and not np.isfinite(arr).all():
        raise DataError(f"{name} contains NaN or infinity (row {int(np.argmin(np.isfinite(arr)))})")
    return arr


def validate_fit_data(X, y, comm, sample_weight=None, numeric_y=False):
    """Collective: check this rank's ``X``, ``y`` and ``sample_weight`` and agree.

    Every rank checks its rows (2-D numeric finite X, 1-D y of the same length, finite
    non-negative weights); the number of features must be the same on every rank and
    the data set must have at least one row. If any rank finds a problem every rank
    raises (via :func:`mpiml.comm.agree`), so no rank is left in a collective.

    Parameters
    ----------
    X : array-like of shape (n_local, n_features)
    y : array-like of shape (n_local,)
    comm : Communicator
    sample_weight : array-like of shape (n_local,), optional
    numeric_y : bool
        Convert y to float64 (regression targets).

    Returns
    -------
    X : ndarray of shape (n_local, n_features), float64
    y : ndarray of shape (n_local,)
    sample_weight : ndarray of shape (n_local,) float64 or None
    n_total : int
        Rows on all ranks.
    """
    error, n_features = None, -1
    try:
        X = check_X(X)
        n_features = X.shape[1]
        y = _check_y(y, X.shape[0], numeric_y)
        if sample_weight is not None:
            sample_weight = _check_y(sample_weight, X.shape[0], True, "sample_weight")
            if (sample_weight < 0).any():
                raise DataError("sample_weight must be >= 0")
    except MpimlError as exc:
        error = exc
    agree(comm, error)
    shapes = comm.allgather((int(X.shape[0]), int(n_features),
                             sample_weight is not None))
    widths = {w for n, w, _ in shapes if n > 0} or {w for _, w, _ in shapes}
    error = None
    if len(widths) > 1:
        error = DataError(f"ranks hold X with different numbers of features: "
                          f"{[w for _, w, _ in shapes]}")
    elif sum(n for n, _, _ in shapes) == 0:
        error = DataError("cannot fit a model on 0 rows")
    elif widths == {0}:
        error = DataError("cannot fit a model on 0 features: X has shape "
                          f"({sum(n for n, _, _ in shapes)}, 0)")
    elif len({has for _, _, has in shapes}) > 1:
        error = DataError("sample_weight was given on some ranks only")
    elif X.shape[0] == 0 and X.shape[1] != next(iter(widths)):
        X = np.zeros((0, next(iter(widths))))
    agree(comm, error)
    return X, y, sample_weight, sum(n for n, _, _ in shapes)


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
    parts = comm.allgather(local)
    non_empty = [p for p in parts if p.size]
    if not non_empty:
        return local
    kinds = {p.dtype.kind for p in non_empty}
    if len(kinds) > 1 and not kinds <= set("biuf"):
        non_empty = [p.astype(str) for p in non_empty]
    return np.unique(np.concatenate(non_empty))


def encode_classes(y, comm, min_classes=2):
    """Collective: ``(classes, codes)``; ``codes[i]`` is the index of ``y[i]`` in ``classes``.

    Raises :class:`DataError` on every rank if fewer than ``min_classes`` classes
    exist over all ranks.
    """
    classes = global_classes(y, comm)
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


class EpochStopper:
    """Ends epoch training on a loss that is not finite, or after ``patience`` epochs in a
    row whose loss is not below the best so far minus ``tol``. Local and deterministic."""

    def __init__(self, tol, patience):
        self.tol, self.patience = tol, patience
        self.best, self.stall = np.inf, 0

    def done(self, loss):
        """Record one epoch's loss; True when training should end."""
        if not np.isfinite(loss):
            return True
        if loss > self.best - self.tol:
            self.stall += 1
            if self.stall >= self.patience:
                return True
        else:
            self.stall = 0
        self.best = min(self.best, loss)
        return False


def check_is_fitted(estimator, attribute):
    if not hasattr(estimator, attribute):
        raise MpimlError(f"this {type(estimator).__name__} is not fitted yet; call fit first")


# -- estimator base classes ---------------------------------------------------------------

class BaseEstimator:
    """``get_params``/``set_params``/``repr`` from the ``__init__`` signature (scikit-learn style)."""

    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values()
                if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]

    def get_params(self, deep=True):
        """The constructor parameters as a dict."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        names = self._param_names()
        for key, value in params.items():
            if key not in names:
                raise InvalidParameterError(f"{type(self).__name__} has no parameter {key!r}")
            setattr(self, key, value)
        return self

    def __repr__(self):
        sig = inspect.signature(type(self).__init__)
        changed = [f"{k}={v!r}" for k, v in self.get_params().items()
                   if sig.parameters[k].default is not v and sig.parameters[k].default != v]
        return f"{type(self).__name__}({', '.join(changed)})"

    def _record_fit(self, comm, feature_names=None):
        """Remember where the model was trained (shown in the model file)."""
        self.n_ranks_ = comm.size
        if feature_names is not None:
            self.feature_names_in_ = np.asarray(list(feature_names), dtype=object)


class ClassifierMixin:
    """Collective ``score``: accuracy over every rank's rows."""

    _task = "classification"

    def score(self, X, y, comm=None, sample_weight=None):
        """Collective: accuracy of ``predict(X)`` against ``y`` over all ranks' rows."""
        from ..metrics import accuracy
        return accuracy(y, self.predict(X), comm, sample_weight=sample_weight)


class RegressorMixin:
    """Collective ``score``: R^2 over every rank's rows."""

    _task = "regression"

    def score(self, X, y, comm=None, sample_weight=None):
        """Collective: coefficient of determination of ``predict(X)`` over all ranks' rows."""
        from ..metrics import r2
        return r2(y, self.predict(X), comm, sample_weight=sample_weight)


# -- JSON state helpers --------------------------------------------------------------------

def classes_to_json(classes):
    """``classes_`` as ``{"dtype": str, "values": list}`` for a model file manifest."""
    classes = np.asarray(classes)
    kind = "str" if classes.dtype.kind in "USO" else classes.dtype.str
    values = [str(c) for c in classes.tolist()] if kind == "str" else classes.tolist()
    return {"dtype": kind, "values": values}


def classes_from_json(state):
    """Inverse of :func:`classes_to_json`."""
    if state["dtype"] == "str":
        return np.asarray(state["values"], dtype=str)
    dtype = np.dtype(state["dtype"])
    if dtype.kind not in "biuf":
        raise ValueError(f"unsupported classes dtype {state['dtype']!r}")
    return np.asarray(state["values"], dtype=dtype)


# -- progress -------------------------------------------------------------------------------

class ProgressReporter:
    """Prints ``iteration, loss, elapsed`` on rank 0 at most once per ``interval`` seconds.

    Call it on every rank after each iteration: ``report(iteration, loss, **fields)``.
    It never communicates. ``report.done()`` prints the last line if it was skipped.

    Parameters
    ----------
    comm : Communicator or None
        Only rank 0 prints.
    interval : float
        Minimum seconds between two lines.
    stream : file, default sys.stderr
    label : str
        Prefix of each line (e.g. the model name).
    """

    def __init__(self, comm=None, interval=1.0, stream=None, label="fit"):
        self.enabled = comm is None or comm.rank == 0
        self.interval = interval
        self.stream = stream
        self.label = label
        self.start = time.perf_counter()
        self._last = None
        self._pending = None

    def __call__(self, iteration, loss=None, **fields):
        if not self.enabled:
            return
        now = time.perf_counter()
        self._pending = (iteration, loss, fields, now)
        if self._last is None or now - self._last >= self.interval:
            self._emit()

    def _emit(self):
        iteration, loss, fields, now = self._pending
        parts = [f"{self.label}: iter {iteration}"]
        if loss is not None:
            parts.append(f"loss {loss:.6g}")
        parts.extend(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in fields.items())
        parts.append(f"elapsed {now - self.start:.1f}s")
        print("  ".join(parts), file=self.stream or sys.stderr, flush=True)
        self._last = now
        self._pending = None

    def done(self):
        if self.enabled and self._pending is not None:
            self._emit()


def _no_progress(iteration, loss=None, **fields):
    return None


def as_progress(progress):
    """A callable ``report(iteration, loss=None, **fields)``: ``progress`` or a no-op."""
    return _no_progress if progress is None else progress
