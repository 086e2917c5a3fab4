"""What the mpiml estimators share.

* :class:`BaseEstimator`: scikit-learn's estimator base (parameters, ``clone``, tags,
  repr) and the record of where a model was trained;
* :class:`ClassifierMixin` / :class:`RegressorMixin`: scikit-learn's mixins with a
  collective ``score``;
* :func:`checked_params` (one collective decision on the parameters),
  :func:`check_is_fitted` and :class:`EpochStopper`;
* JSON helpers for the persistence contract (:func:`classes_to_json`,
  :func:`classes_from_json`).

The checks that readers and metrics share with the estimators live in
:mod:`mpiml.checks`; the collective helpers in :mod:`mpiml.comm`.
"""

__all__ = [
    "BaseEstimator", "ClassifierMixin", "RegressorMixin", "NotFittedError", "collective",
    "checked_params", "check_is_fitted", "EpochStopper",
    "classes_to_json", "classes_from_json",
]

import functools

import numpy as np
from sklearn import base as _sk
from sklearn.exceptions import NotFittedError as _SkNotFittedError
from sklearn.utils.validation import _check_feature_names

from ..checks import check_X
from ..comm import agree, resolve_comm
from ..data.tables import Table, fit_schema
from ..errors import InvalidParameterError, MpimlError, RankFailure


class NotFittedError(MpimlError, _SkNotFittedError):
    """``predict`` (or another method that needs a model) was called before ``fit``."""


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


def collective(method):
    """Decorate a collective method (``fit``, ``score``) that takes ``comm=`` by keyword.

    An error that every rank raised alike (a checked parameter or data set, marked
    ``collective``) passes as it is: scikit-learn's searches may record it and go on,
    the same on every rank. Any other error on a communicator of several ranks leaves
    the other ranks waiting, so it becomes :class:`~mpiml.errors.RankFailure`, which
    those tools do not catch: the SPMD program ends, with the original error as cause.
    """
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:
            if getattr(exc, "collective", False) or resolve_comm(kwargs.get("comm")).size == 1:
                raise
            raise RankFailure(f"{type(self).__name__}.{method.__name__} failed on this rank: "
                              f"{type(exc).__name__}: {exc}") from exc
    return wrapper


def check_is_fitted(estimator, attribute):
    """Raise :class:`NotFittedError` unless ``estimator`` has ``attribute`` (set by fit)."""
    if not hasattr(estimator, attribute):
        raise NotFittedError(f"this {type(estimator).__name__} is not fitted yet; call fit "
                             f"first")


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




# -- estimator base classes ---------------------------------------------------------------

class BaseEstimator(_sk.BaseEstimator):
    """scikit-learn's ``BaseEstimator`` (``get_params``, ``set_params``, ``clone``, tags,
    repr from the ``__init__`` signature) and the record of where a model was trained."""

    def _record_fit(self, comm, feature_names=None):
        """Remember where the model was trained (shown in the model file)."""
        self.n_ranks_ = comm.size
        if feature_names is not None:
            self.feature_names_in_ = np.asarray(list(feature_names), dtype=object)

    def _fit_X(self, X, comm):
        """Collective: ``X`` (array, DataFrame or :class:`~mpiml.data.Table`) as the float64
        matrix the model learns from (categories as vocabulary indices, NaN missing).

        Sets ``feature_schema_`` (kinds and vocabularies), ``is_categorical_`` and, where
        the data names its columns, ``feature_names_in_``.
        """
        spec = getattr(self, "categorical_features", "from_dtype")
        X_enc, schema, names = fit_schema(X, comm, spec)
        if hasattr(X, "iloc"):
            _check_feature_names(self, X, reset=True)
        elif names is not None:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.feature_schema_ = schema
        self.is_categorical_ = schema.is_categorical.copy()
        return X_enc

    def _check_predict_X(self, X, allow_nan=False):
        """Local: ``X`` checked against the fitted model and encoded by its schema (raises
        :class:`NotFittedError` before ``fit``, :class:`~mpiml.errors.DataError` on bad
        data)."""
        check_is_fitted(self, "n_features_in_")
        schema = getattr(self, "feature_schema_", None)
        if hasattr(X, "iloc"):
            _check_feature_names(self, X, reset=False)
        if schema is not None and (schema.has_categorical or isinstance(X, (Table, dict))
                                   or hasattr(X, "iloc")):
            if not isinstance(X, (Table, dict)) and not hasattr(X, "iloc"):
                X = check_X(X, self.n_features_in_, estimator=self, allow_nan=True)
            return schema.encode(X)
        return check_X(X, self.n_features_in_, estimator=self, allow_nan=allow_nan)


class ClassifierMixin(_sk.ClassifierMixin):
    """scikit-learn's classifier mixin; ``score`` is the accuracy over every rank's rows."""

    _task = "classification"

    def predict_with_proba(self, X):
        """Local: ``(predict(X), predict_proba(X))`` from one evaluation of the model.

        The labels are the classes of the largest probabilities, which is ``predict`` of
        the tree models; a classifier whose ``predict`` reads its decision values instead
        overrides this."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)], proba

    @collective
    def score(self, X, y, sample_weight=None, *, comm=None):
        """Collective: accuracy of ``predict(X)`` against ``y`` over all ranks' rows."""
        from ..metrics import accuracy
        return accuracy(y, self.predict(X), comm, sample_weight=sample_weight)


class RegressorMixin(_sk.RegressorMixin):
    """scikit-learn's regressor mixin; ``score`` is R^2 over every rank's rows."""

    _task = "regression"

    @collective
    def score(self, X, y, sample_weight=None, *, comm=None):
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
