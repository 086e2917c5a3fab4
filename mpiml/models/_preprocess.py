"""The preprocessing stage of the linear models and MLPs: tables in, a float matrix out.

The models read a table as the matrix of :func:`mpiml.data.tables.fit_schema`
(categories as vocabulary indices, NaN missing). Before standardising it, this stage
expands it, as scikit-learn's
``ColumnTransformer([OneHotEncoder(handle_unknown="ignore"), SimpleImputer(add_indicator=True)])``
would:

* a categorical feature becomes one 0/1 column per category of its vocabulary; a missing
  cell or a category the vocabulary does not hold gives all zeros;
* a numeric feature keeps its column, with missing cells replaced by the feature's
  weighted mean over every rank's present values (0 where no rank has one);
* each numeric feature that had a missing value in training (on any rank) adds a 0/1
  missing-indicator column, after all the feature columns.

The column names are ``feature``, ``feature=category`` and ``feature_missing``
(``expanded_feature_names_`` of the models). The means are sums over fixed global row
blocks (:class:`~mpiml.comm.rowblocks.RowBlocks`), so they are the same bits for any rank
count. When no feature is categorical and no value was missing, the expanded matrix is
the input itself: the models are exactly what they are without this stage (a missing
value at prediction is still imputed by the mean).
"""

__all__ = ["Preprocessor", "TablePreprocessing", "fit_preprocessor"]

import numpy as np

from ..checks import validate_fit_data
from ..comm.rowblocks import RowBlocks
from ..data.tables import Feature, Schema
from ..errors import DataError


class Preprocessor:
    """The fitted stage: what it needs to expand rows, without the vocabularies.

    Parameters
    ----------
    n_categories : ndarray of shape (n_features,), int
        Categories of each categorical feature (its one-hot width); ignored for numeric.
    is_categorical : ndarray of shape (n_features,), bool
    impute : ndarray of shape (n_features,) or None
        Value for a missing numeric cell (0 for categorical features). None for a model
        of a file written before missing values were supported: a missing value is an
        error.
    indicators : ndarray of int
        The numeric features given a missing-indicator column, in order.
    names_out : list of str
        Names of the expanded columns.
    """

    def __init__(self, n_categories, is_categorical, impute, indicators, names_out):
        self.n_categories = np.asarray(n_categories, dtype=np.int64)
        self.is_categorical = np.asarray(is_categorical, dtype=bool)
        self.impute = None if impute is None else np.asarray(impute, dtype=np.float64)
        self.indicators = np.asarray(indicators, dtype=np.int64).reshape(-1)
        self.names_out = [str(n) for n in names_out]
        widths = np.where(self.is_categorical, self.n_categories, 1)
        self._starts = np.concatenate([[0], np.cumsum(widths)])

    @classmethod
    def numeric(cls, n_features, names=None):
        """The identity stage of a file of the first format (no imputation values)."""
        names = names if names is not None else [f"x{j}" for j in range(n_features)]
        return cls(np.zeros(n_features), np.zeros(n_features, bool), None, [], names)

    @property
    def value_columns(self):
        """Boolean mask of the output columns that hold a numeric feature's value (not a
        one-hot column, not a missing indicator)."""
        mask = np.zeros(self.n_features_out, dtype=bool)
        mask[self._starts[:-1][~self.is_categorical]] = True
        return mask

    @property
    def n_features_in(self):
        return self.is_categorical.size

    @property
    def n_features_out(self):
        return int(self._starts[-1]) + self.indicators.size

    @property
    def identity(self):
        """True when the expanded matrix is the input (all numeric, no indicator)."""
        return not self.is_categorical.any() and not self.indicators.size

    def transform(self, X):
        """Local: the expanded matrix of encoded rows.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features), float64
            Rows encoded by the model's schema (NaN missing).

        Returns
        -------
        ndarray of shape (n_samples, n_features_out)
        """
        missing = np.isnan(X)
        if self.impute is None and missing.any():
            row, col = np.argwhere(missing)[0]
            raise DataError(f"Input X contains NaN (row {row}, column {col}): this model "
                            f"was saved before mpiml imputed missing values; refit it")
        if self.identity:
            if not missing.any():
                return X
            return np.where(missing, self.impute, X)
        out = np.zeros((X.shape[0], self.n_features_out))
        for j in range(self.n_features_in):
            start = int(self._starts[j])
            if self.is_categorical[j]:
                rows = np.flatnonzero(~missing[:, j])
                out[rows, start + X[rows, j].astype(np.int64)] = 1.0
            else:
                out[:, start] = np.where(missing[:, j], self.impute[j], X[:, j])
        base = int(self._starts[-1])
        for i, j in enumerate(self.indicators.tolist()):
            out[:, base + i] = missing[:, j]
        return out

    # -- model file -----------------------------------------------------------------------

    def to_state(self):
        """(JSON meta, arrays) for the model file."""
        meta = {"n_categories": self.n_categories.tolist(),
                "is_categorical": self.is_categorical.tolist(),
                "indicators": self.indicators.tolist(), "names_out": self.names_out}
        return meta, {"impute_values_": self.impute}

    @classmethod
    def from_state(cls, meta, arrays):
        stage = cls(meta["n_categories"], meta["is_categorical"],
                    arrays["impute_values_"], meta["indicators"], meta["names_out"])
        d = stage.n_features_in
        if (stage.n_categories.shape != (d,) or stage.impute.shape != (d,)
                or len(stage.names_out) != stage.n_features_out
                or np.any((stage.indicators < 0) | (stage.indicators >= d))
                or np.any(stage.n_categories < 0)):
            raise ValueError("the arrays of the preprocessing state do not match its features")
        return stage


def _expanded_names(schema, indicators):
    names = []
    for f in schema.features:
        if f.is_categorical:
            names.extend(f"{f.name}={c if f.text else _number_text(c)}"
                         for c in f.categories.tolist())
        else:
            names.append(f.name)
    return names + [f"{schema.names[j]}_missing" for j in indicators]


def _number_text(value):
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def fit_preprocessor(X, w, schema, comm):
    """Collective: the stage fitted on every rank's rows, and this rank's rows expanded.

    Parameters
    ----------
    X : ndarray of shape (n_local, n_features), float64
        This rank's rows encoded by ``schema`` (NaN missing).
    w : ndarray of shape (n_local,) or None
        Sample weights (None: unit weights).
    schema : Schema
    comm : Communicator

    Returns
    -------
    stage : Preprocessor
    X : ndarray of shape (n_local, n_features_out)
    """
    d = X.shape[1]
    blocks = RowBlocks(comm, (X, w), 3 * d)

    def sums(Xb, wb):
        present = ~np.isnan(Xb)
        values = np.where(present, Xb, 0.0)
        if wb is None:
            weight, total = present.sum(axis=0).astype(np.float64), values.sum(axis=0)
        else:
            weight, total = wb @ present, wb @ values
        return np.concatenate([weight, total, (~present).sum(axis=0)])
    buf = blocks.sums(sums, 3 * d)
    weight, total, n_missing = buf[:d], buf[d:2 * d], buf[2 * d:]
    categorical = schema.is_categorical
    impute = np.zeros(d)
    seen = (weight > 0) & ~categorical
    impute[seen] = total[seen] / weight[seen]
    indicators = np.flatnonzero((n_missing > 0) & ~categorical)
    stage = Preprocessor(schema.n_categories, categorical, impute, indicators,
                         _expanded_names(schema, indicators))
    return stage, stage.transform(X)


class TablePreprocessing:
    """What the linear models and MLPs share to read tables: the fit phases before
    standardisation, the expansion at prediction, the stage in the model file and the
    scikit-learn tag ``allow_nan``. Mixed in before :class:`~mpiml.models._base.BaseEstimator`.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def _fit_table(self, X, y, sample_weight, comm, feature_names=None):
        """Collective: schema, checks and the fitted stage; returns the expanded
        ``(X, y, w, n_total)``. Sets ``n_features_in_``, ``feature_schema_``,
        ``preprocessor_`` and ``expanded_feature_names_``."""
        encoded = self._fit_X(X, comm)
        X, y, w, n_total = validate_fit_data(encoded, y, comm, sample_weight,
                                             numeric_y=self._task == "regression",
                                             estimator=self, allow_nan=True)
        self.n_features_in_ = X.shape[1]
        self._record_fit(comm, feature_names)
        if feature_names is not None:  # names given beside an array: the schema's names
            self.feature_schema_ = Schema(
                Feature(n, f.kind, f.categories)
                for n, f in zip(self.feature_names_in_, self.feature_schema_.features))
        self.preprocessor_, X = fit_preprocessor(X, w, self.feature_schema_, comm)
        self.expanded_feature_names_ = np.asarray(self.preprocessor_.names_out, dtype=object)
        return X, y, w, n_total

    def _expand_X(self, X):
        """Local: ``X`` checked, encoded by the schema and expanded by the stage."""
        return self.preprocessor_.transform(self._check_predict_X(X, allow_nan=True))

    def _stage_state(self, meta, arrays):
        """Add the stage to a model file's ``(meta, arrays)``."""
        stage_meta, stage_arrays = self.preprocessor_.to_state()
        meta["preprocess"] = stage_meta
        arrays.update(stage_arrays)

    def _stage_from_state(self, meta, arrays):
        """Set the stage from a model file (files of the first format: numeric identity)."""
        if "preprocess" in meta:
            self.preprocessor_ = Preprocessor.from_state(meta["preprocess"], arrays)
            if self.preprocessor_.n_features_in != self.n_features_in_:
                raise ValueError("the preprocessing state and n_features_in_ do not match")
        else:
            names = getattr(self, "feature_names_in_", None)
            self.preprocessor_ = Preprocessor.numeric(
                self.n_features_in_, None if names is None else list(names))
        self.expanded_feature_names_ = np.asarray(self.preprocessor_.names_out, dtype=object)
