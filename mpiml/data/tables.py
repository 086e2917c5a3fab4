"""Tables of numeric and categorical features with missing values, and their schema.

A model sees every table as one float64 matrix: a numeric feature is its value, a
categorical feature is the index of its category in the feature's vocabulary, and a
missing cell (or a category the vocabulary does not hold) is NaN. :func:`fit_schema`
decides each feature's kind and vocabulary from every rank's rows (collective) and
encodes this rank's rows; :meth:`Schema.encode` encodes more rows the same way (local, at
prediction). The schema is saved in the model file.

Inputs understood by both:

* a pandas DataFrame: ``category``, ``object`` and string columns are categorical, the
  others numeric; NaN, None, ``pd.NA`` and ``NaT`` are missing; the column names are the
  feature names;
* a :class:`Table` (what the CSV and Parquet readers return) or a dict of 1-D columns by
  name: text columns (object or str dtype) are categorical, float columns numeric;
* a 2-D numeric array: NaN is missing; ``categorical_features`` (indices, names or a
  boolean mask, as in scikit-learn's HistGradientBoosting) marks integer-coded
  categorical columns.

Vocabularies are the sorted union of every rank's non-missing values, so the codes are the
same for any rank count. Text vocabularies sort as strings, numeric ones as numbers.
Missing-value tokens in text cells are :data:`NA_TOKENS`.
"""

__all__ = ["NA_TOKENS", "Table", "Feature", "Schema", "fit_schema", "is_missing", "summarize"]

import math
import numbers

import numpy as np
from scipy import sparse

from ..checks import check_X
from ..comm import agree
from ..errors import DataError, MpimlError

#: Text cells read as missing values (pandas' default ``na_values``), compared after
#: stripping surrounding white space.
NA_TOKENS = frozenset([
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
    "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
])

NUMERIC, CATEGORICAL = "numeric", "categorical"


def is_missing(value):
    """True for None, NaN, ``pd.NA``/``NaT`` and the text tokens of :data:`NA_TOKENS`."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() in NA_TOKENS
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return math.isnan(value)
    name = type(value).__name__
    return name in ("NAType", "NaTType")


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class Table:
    """This rank's rows as named 1-D columns (what the CSV and Parquet readers return).

    Parameters
    ----------
    columns : dict of str -> array-like
        Float columns are numeric (NaN missing); object or str columns hold text (None or
        an NA token missing) and are categorical unless listed in ``numeric``.
    categorical : iterable of str
        Columns that are categorical whatever their dtype (numeric codes such as zip
        codes).
    """

    def __init__(self, columns, categorical=()):
        self.columns = {str(k): np.asarray(v) for k, v in columns.items()}
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) > 1:
            raise DataError(f"table columns have different lengths: {sorted(lengths)}")
        self.n_rows = lengths.pop() if lengths else 0
        self.categorical = frozenset(str(c) for c in categorical)

    @property
    def names(self):
        return list(self.columns)

    @property
    def shape(self):
        return (self.n_rows, len(self.columns))

    def __len__(self):
        return self.n_rows

    def __getitem__(self, name):
        return self.columns[name]

    def take(self, rows):
        """The rows ``rows`` (indices or a boolean mask) as a new table."""
        return Table({k: v[rows] for k, v in self.columns.items()}, self.categorical)

    def select(self, names):
        return Table({k: self.columns[k] for k in names},
                     self.categorical & set(names))

    def to_pandas(self):
        """A pandas DataFrame: categorical columns as ``category``, missing as NaN."""
        import pandas as pd
        data = {}
        for k, v in self.columns.items():
            if k in self.categorical or v.dtype.kind in "OUS":
                cells = [None if is_missing(x) else (x.strip() if isinstance(x, str) else x)
                         for x in v.tolist()]
                data[k] = pd.Series(cells, dtype="category")
            else:
                data[k] = v
        return pd.DataFrame(data)


class Feature:
    """One feature: its name, kind and (categorical) sorted vocabulary."""

    __slots__ = ("name", "kind", "categories")

    def __init__(self, name, kind=NUMERIC, categories=None):
        if kind not in (NUMERIC, CATEGORICAL):
            raise ValueError(f"unknown feature kind {kind!r}")
        self.name = str(name)
        self.kind = kind
        self.categories = None if kind == NUMERIC else np.asarray(
            categories if categories is not None else [],
            dtype=object if _text_vocab(categories) else np.float64)

    @property
    def is_categorical(self):
        return self.kind == CATEGORICAL

    @property
    def text(self):
        """True for a vocabulary of strings (else of numbers)."""
        return self.is_categorical and self.categories.dtype == object

    def to_json(self):
        out = {"name": self.name, "kind": self.kind}
        if self.is_categorical:
            out["categories"] = [str(c) if self.text else float(c)
                                 for c in self.categories.tolist()]
            out["categories_dtype"] = "str" if self.text else "float"
        return out

    @classmethod
    def from_json(cls, state):
        cats = state.get("categories")
        if state["kind"] == CATEGORICAL:
            if state.get("categories_dtype", "str") == "str":
                cats = np.asarray([str(c) for c in cats], dtype=object)
            else:
                cats = np.asarray(cats, dtype=np.float64)
        return cls(state["name"], state["kind"], cats)

    def __eq__(self, other):
        return (isinstance(other, Feature) and self.to_json() == other.to_json())

    def __repr__(self):
        extra = f", {len(self.categories)} categories" if self.is_categorical else ""
        return f"Feature({self.name!r}, {self.kind}{extra})"


def _text_vocab(categories):
    if categories is None:
        return False
    arr = np.asarray(categories, dtype=object)
    return any(isinstance(c, str) for c in arr.tolist())


class Schema:
    """The kinds and vocabularies of a model's features, in column order."""

    def __init__(self, features):
        self.features = tuple(features)
        self.names = [f.name for f in self.features]
        self.is_categorical = np.array([f.is_categorical for f in self.features], dtype=bool)
        self.n_categories = np.array([len(f.categories) if f.is_categorical else 0
                                      for f in self.features], dtype=np.int64)
        self._lookup = [None if not f.text else {c: i for i, c in enumerate(f.categories)}
                        for f in self.features]
        self.has_categorical = bool(self.is_categorical.any())

    @classmethod
    def numeric(cls, n_features, names=None):
        """A schema of ``n_features`` numeric features (``x0``, ``x1``, ... unnamed)."""
        names = names if names is not None else [f"x{j}" for j in range(n_features)]
        return cls(Feature(n, NUMERIC) for n in names)

    @property
    def n_features(self):
        return len(self.features)

    def to_json(self):
        return [f.to_json() for f in self.features]

    @classmethod
    def from_json(cls, state):
        return cls(Feature.from_json(s) for s in state)

    def __eq__(self, other):
        return isinstance(other, Schema) and self.to_json() == other.to_json()

    def __repr__(self):
        return f"Schema({list(self.features)!r})"

    def encode(self, X, name="X"):
        """Local: this rank's rows of ``X`` as the float64 matrix a model reads.

        Categorical cells become their category's index (NaN where missing or not in the
        vocabulary); numeric cells their value (NaN where missing). Columns are matched by
        name where ``X`` has names, else by position. Raises :class:`DataError` naming the
        row and feature of a cell of the wrong kind.
        """
        names, cols, _ = _columns(X, self.names, name)
        n = _n_rows(X, cols)
        if names is not None and list(names) != self.names:
            missing = [n for n in self.names if n not in names]
            extra = [n for n in names if n not in self.names]
            if missing or extra:
                parts = ([f"missing {missing}"] if missing else []) + (
                    [f"unexpected {extra}"] if extra else [])
                raise DataError(f"{name}: the feature names should match those that were "
                                f"passed during fit ({'; '.join(parts)})")
            cols = [cols[names.index(n)] for n in self.names]
        if len(cols) != self.n_features:
            raise DataError(f"{name} has {len(cols)} features, but the model is expecting "
                            f"{self.n_features} features as input")
        out = np.empty((n, self.n_features), dtype=np.float64)
        for j, (feature, col) in enumerate(zip(self.features, cols)):
            if feature.is_categorical:
                out[:, j] = self._codes(j, col, name)
            else:
                out[:, j] = _numeric(col, feature.name, name)
        return out

    def _codes(self, j, col, name):
        feature = self.features[j]
        if feature.text:
            lookup = self._lookup[j]
            return np.array([np.nan if is_missing(v) else lookup.get(_as_text(v), np.nan)
                             for v in _as_list(col)], dtype=np.float64)
        values = _numeric(col, feature.name, name)
        cats = feature.categories
        idx = np.searchsorted(cats, values)
        idx = np.minimum(idx, max(len(cats) - 1, 0))
        found = (len(cats) > 0) & (cats[idx] == values) if len(cats) else np.zeros(
            len(values), dtype=bool)
        return np.where(found, idx, np.nan)


def _as_list(col):
    if hasattr(col, "tolist"):
        return col.tolist()
    return list(col)


def _as_text(value):
    """The vocabulary text of one non-missing cell: strings stripped, whole numbers
    without a decimal point."""
    if isinstance(value, str):
        return value.strip()
    if _is_number(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _numeric(col, feature, name):
    """A numeric column as float64 (NaN missing); DataError naming row and feature."""
    arr = np.asarray(col)
    if arr.dtype.kind in "biuf":
        out = arr.astype(np.float64)
    else:
        values = _as_list(col)
        out = np.empty(len(values), dtype=np.float64)
        for i, v in enumerate(values):
            if is_missing(v):
                out[i] = np.nan
            elif _is_number(v):
                out[i] = float(v)
            else:
                try:
                    out[i] = float(v.strip()) if isinstance(v, str) else _bad(v)
                except (TypeError, ValueError):
                    raise DataError(f"{name}: row {i}, feature {feature!r}: expected a "
                                    f"number or a missing value, got {v!r}") from None
    if np.isinf(out).any():
        i = int(np.argmax(np.isinf(out)))
        raise DataError(f"{name}: row {i}, feature {feature!r}: infinity is not a value")
    return out


def _bad(value):
    raise TypeError(type(value).__name__)


def _pandas_kind(series):
    """'categorical', 'numeric' for a pandas column by its dtype."""
    dtype = series.dtype
    if (getattr(dtype, "name", "") == "category"
            or getattr(dtype, "kind", "") in "OUS" or "string" in str(dtype)):
        return CATEGORICAL
    return NUMERIC


def _pandas_column(series, kind):
    if kind == NUMERIC:
        try:
            return series.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            return series.to_numpy(dtype=object)
    return series.astype(object).to_numpy(dtype=object)


def _n_rows(X, cols):
    """The number of rows of ``X`` (also where it has no columns)."""
    if cols:
        return len(cols[0])
    shape = getattr(X, "shape", None)
    return int(shape[0]) if shape is not None and len(shape) else 0


def _columns(X, names_hint=None, name="X"):
    """(names or None, list of 1-D columns, list of kinds by dtype or None).

    A sparse matrix or array is refused first (scikit-learn's message): a DOK array is a
    dict and would otherwise read as a dict of columns.
    """
    if sparse.issparse(X):
        check_X(X, name=name)
    if hasattr(X, "iloc") and hasattr(X, "columns"):  # pandas DataFrame
        names = [str(c) for c in X.columns]
        kinds = [_pandas_kind(X.iloc[:, j]) for j in range(X.shape[1])]
        cols = [_pandas_column(X.iloc[:, j], k) for j, k in enumerate(kinds)]
        return names, cols, kinds
    if isinstance(X, Table):
        names = X.names
        kinds = [CATEGORICAL if (n in X.categorical or X[n].dtype.kind in "OUS") else NUMERIC
                 for n in names]
        return names, [X[n] for n in names], kinds
    if isinstance(X, dict):
        names = [str(k) for k in X]
        cols = [np.asarray(v, dtype=object) if not isinstance(v, np.ndarray) else v
                for v in X.values()]
        kinds = [CATEGORICAL if c.dtype.kind in "OUS" else NUMERIC for c in cols]
        return names, cols, kinds
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise DataError(f"Expected a 2-D array for {name}, got {arr.ndim}-D; reshape it")
    return None, [arr[:, j] for j in range(arr.shape[1])], None


def _categorical_mask(spec, names, n_features, name):
    """``categorical_features`` as a boolean mask (None / "from_dtype": None)."""
    if spec is None or (isinstance(spec, str) and spec == "from_dtype"):
        return None
    arr = np.asarray(spec)
    if arr.dtype == bool:
        if arr.shape != (n_features,):
            raise DataError(f"categorical_features is a mask of {arr.shape[0]} values but "
                            f"{name} has {n_features} features")
        return arr
    mask = np.zeros(n_features, dtype=bool)
    for item in arr.reshape(-1).tolist():
        if isinstance(item, str):
            if names is None or item not in names:
                raise DataError(f"categorical_features names {item!r}, which is not a "
                                f"feature of {name}")
            mask[names.index(item)] = True
        elif isinstance(item, numbers.Integral) and -n_features <= item < n_features:
            mask[item] = True
        else:
            raise DataError(f"categorical_features holds {item!r}, not a feature index "
                            f"below {n_features} or a feature name")
    return mask


def fit_schema(X, comm, categorical_features="from_dtype", *, name="X"):
    """Collective: the schema of every rank's ``X`` and this rank's rows encoded by it.

    A feature is categorical where ``categorical_features`` marks it or, for a
    DataFrame, :class:`Table` or dict, where its dtype is text or ``category`` on any
    rank (a rank whose column is all missing counts for neither kind). Its vocabulary
    is the sorted union of every rank's values.

    Returns
    -------
    X : ndarray of shape (n_local, n_features), float64 (NaN missing)
    schema : Schema
    feature_names : list of str or None
        The names the data carried (None for an array).
    """
    error, local = None, None
    try:
        if not (isinstance(X, (Table, dict)) or hasattr(X, "iloc")):
            X = check_X(X, name=name, allow_nan=True)  # scikit-learn's conversions
        names, cols, kinds = _columns(X, name=name)
        forced = _categorical_mask(categorical_features, names, len(cols), name)
        local = []
        for j, col in enumerate(cols):
            by_dtype = kinds[j] if kinds is not None else NUMERIC
            values = _as_list(col) if by_dtype == CATEGORICAL else None
            present = (any(not is_missing(v) for v in values) if values is not None
                       else bool(np.size(col)))
            local.append((by_dtype if present else None, bool(forced is not None
                                                              and forced[j])))
        local = (names, len(cols), local)
    except MpimlError as exc:
        error = exc
    agree(comm, error)
    everyone = comm.allgather(local)
    widths = {w for _, w, _ in everyone}
    all_names = {tuple(n) if n is not None else None for n, _, _ in everyone}
    problem = None
    if len(widths) > 1:
        problem = DataError(f"ranks hold {name} with different numbers of features: "
                            f"{[w for _, w, _ in everyone]}")
    elif len(all_names) > 1:
        problem = DataError(f"ranks hold {name} with different feature names")
    agree(comm, problem)
    width = widths.pop()
    kinds_final = []
    for j in range(width):
        seen = {entry[2][j][0] for entry in everyone}
        force = any(entry[2][j][1] for entry in everyone)
        kinds_final.append(CATEGORICAL if force or CATEGORICAL in seen else NUMERIC)
    # vocabularies: the union of every rank's non-missing values per categorical feature
    error, vocab = None, {}
    try:
        for j in np.flatnonzero(np.array(kinds_final) == CATEGORICAL):
            vocab[int(j)] = _local_vocab(cols[j], names[j] if names else f"x{j}", name)
    except MpimlError as exc:
        error = exc
    agree(comm, error)
    gathered = comm.allgather(vocab)
    features = []
    for j in range(width):
        fname = names[j] if names is not None else f"x{j}"
        if kinds_final[j] == NUMERIC:
            features.append(Feature(fname, NUMERIC))
            continue
        text, cats = _union_vocab([g[j] for g in gathered])
        features.append(Feature(fname, CATEGORICAL,
                                np.asarray(cats, dtype=object if text else np.float64)))
    schema = Schema(features)
    error, out = None, None
    try:
        # a plain numeric matrix is read as it is: no copy of the caller's data
        out = X if _plain_numeric(X, schema) else schema.encode(X, name=name)
    except MpimlError as exc:
        error = exc
    agree(comm, error)
    return out, schema, names


def _plain_numeric(X, schema):
    """Whether ``X`` is already the matrix that ``schema.encode`` would make: a 2-D float64
    array (``check_X`` has refused infinities) of the schema's width, every feature
    numeric."""
    return (type(X) is np.ndarray and X.dtype == np.float64 and X.ndim == 2
            and X.shape[1] == schema.n_features and not schema.has_categorical)


def _union_vocab(parts):
    """(is text, sorted union) of every rank's :func:`_local_vocab` of one feature."""
    text = any(t for t, _ in parts)
    values = set()
    for _, vals in parts:
        values.update(_as_text(v) for v in vals) if text else values.update(vals)
    return text, (sorted(values) if text else sorted(float(v) for v in values))


def summarize(X, comm, feature_names=None):
    """Collective: the categorical features of every rank's ``X`` with their number of
    categories, and the missing cells per feature.

    ``X`` is a :class:`Table` or a 2-D float array (NaN missing). A Table's text
    columns (and those in its ``categorical`` set) are the categorical ones; their
    counts are those of the vocabularies :func:`fit_schema` finds.

    Returns
    -------
    dict
        ``{"rows": int, "features": int, "categorical": {name: n_categories},
        "missing": {name: n_missing}}`` (only features with missing cells), the same on
        every rank.
    """
    names, cols, kinds = _columns(X)
    names = names or list(feature_names or [f"x{j}" for j in range(len(cols))])
    kinds = kinds or [NUMERIC] * len(cols)
    missing = np.zeros(len(cols), dtype=np.int64)
    vocab = {}
    for j, (col, kind) in enumerate(zip(cols, kinds)):
        if kind == CATEGORICAL:
            missing[j] = sum(is_missing(v) for v in _as_list(col))
            vocab[j] = _local_vocab(col, names[j], "X")
        else:
            missing[j] = np.count_nonzero(np.isnan(np.asarray(col, dtype=np.float64)))
    total = np.zeros_like(missing)
    comm.Allreduce(missing, total)
    gathered = comm.allgather(vocab)
    rows = sum(comm.allgather(len(cols[0]) if cols else 0))
    return {"rows": int(rows), "features": len(cols),
            "categorical": {names[j]: len(_union_vocab([g[j] for g in gathered])[1])
                            for j in sorted(vocab)},
            "missing": {names[j]: int(total[j]) for j in range(len(cols)) if total[j]}}


def _local_vocab(col, feature, name):
    """(is text, sorted unique non-missing values) of one local column."""
    arr = np.asarray(col)
    if arr.dtype.kind in "biuf":
        values = arr.astype(np.float64)
        values = values[~np.isnan(values)]
        if np.isinf(values).any():
            raise DataError(f"{name}: feature {feature!r}: infinity is not a category")
        return False, np.unique(values).tolist()
    cells = [v for v in _as_list(col) if not is_missing(v)]
    if all(_is_number(v) for v in cells):
        return False, sorted({float(v) for v in cells})
    return True, sorted({_as_text(v) for v in cells})
