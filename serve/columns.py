"""Rows and tensors of named features as the columns that a model's schema reads.

A model with categorical features, or a request with missing values, is predicted from a
dict of 1-D columns keyed by feature name (``model.predict`` encodes it with the model's
``feature_schema_``, exactly as it encodes a pandas DataFrame of the same rows). Each
cell is checked against its feature's kind first, so that a bad one is a 400 naming its
row and feature:

* a numeric feature takes a number or ``null`` (missing);
* a categorical feature with text categories takes a string or ``null``; a string that
  is not one of its categories is an unknown category, read as missing;
* a categorical feature with numeric categories takes a number, a string spelling a
  number (JSON number syntax), or ``null``; any other string is an unknown category.

``null`` is refused where the model does not take missing values
(:attr:`serve.registry.ModelEntry.accepts_missing`).
"""

__all__ = ["NUMERIC", "TEXT", "CODED", "NUMBER_TEXT", "feature_kinds", "instances_to_columns",
           "v2_feature_columns", "model_input", "matrix_to_input"]

import json
import math
import re
import sys

import numpy as np

from .errors import ApiError
from .validation import (V2_DTYPES, _check_row_shape, _check_rows, _flat_values, _is_number,
                         _json_tensor_data, _shown, _tensor_header, binary_data_size,
                         instance_rows)

NUMERIC, TEXT, CODED = "numeric", "text", "coded"

#: A string that a feature with numeric categories reads as a number (JSON number syntax).
NUMBER_TEXT = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
_NUMBER_TEXT = re.compile(NUMBER_TEXT)

_NONE = type(None)
_NUMBER_TYPES = frozenset([int, float, _NONE])


def feature_kinds(schema):
    """NUMERIC, TEXT or CODED for each feature of ``schema`` (a :class:`mpiml.data.tables.Schema`)."""
    return [NUMERIC if not f.is_categorical else TEXT if f.text else CODED
            for f in schema.features]


def _wrong_kind(where, i, feature, kind, value):
    expected = {NUMERIC: "a number or null",
                TEXT: "a string (one of its categories) or null",
                CODED: "a number, a string spelling a number, or null"}[kind]
    what = "numeric" if kind == NUMERIC else "categorical"
    return ApiError(400, "INVALID_VALUE",
                    f"{where}row {i}, feature {feature!r} ({what}): expected {expected}, "
                    f"got {_shown(value)}")


def _column(values, feature, kind, where, missing_ok):
    """One feature's cells (a list of JSON values) as a 1-D column.

    Returns float64 (NaN missing) for NUMERIC and CODED features, an object array of
    str or None for TEXT ones. ``where`` prefixes error messages ("instances: ",
    "input 'color', ").
    """
    types = set(map(type, values))
    if not missing_ok and _NONE in types:
        i = values.index(None)
        raise ApiError(400, "INVALID_VALUE",
                       f"{where}row {i}, feature {feature!r}: this model does not take missing "
                       "values (null)")
    if kind == TEXT:
        if types <= {str, _NONE}:
            return np.array(values, dtype=object)
        i = next(i for i, v in enumerate(values) if not (v is None or type(v) is str))
        raise _wrong_kind(where, i, feature, kind, values[i])
    if types <= _NUMBER_TYPES:
        try:
            out = np.array(values, dtype=np.float64)   # None -> NaN
        except OverflowError:  # an integer beyond float64: the loop below names it
            out = None
        # the float64 limit is also where an integer beyond it lands: then check one by one
        if out is not None and not (np.abs(out) >= sys.float_info.max).any() and (
                np.isfinite(out).all() or all(v is None or _is_number(v) for v in values)):
            return out
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        if v is None:
            out[i] = np.nan
        elif _is_number(v):
            out[i] = v
        elif kind == CODED and type(v) is str:
            out[i] = _coded_text(v)
        else:
            raise _wrong_kind(where, i, feature, kind, v)
    return out


def _coded_text(text):
    """The number a string spells for a feature with numeric categories (NaN: unknown)."""
    if _NUMBER_TEXT.match(text) is None:
        return np.nan
    value = float(text)
    return value if np.isfinite(value) else np.nan


def _coded_strings(strings):
    """Strings (BYTES elements) of a feature with numeric categories as float64."""
    return np.array([_coded_text(s) for s in strings], dtype=np.float64)


def model_input(columns, schema):
    """What ``model.predict`` is given: the float64 matrix for an all-numeric model
    without missing values (the path of plain numeric rows), else the dict of columns."""
    if not schema.has_categorical:
        X = np.column_stack([columns[name] for name in schema.names])
        if not np.isnan(X).any():
            return X
    return columns


def matrix_to_input(X, schema):
    """A float64 matrix of an all-numeric model (NaN missing) as :func:`model_input` gives it."""
    if not np.isnan(X).any():
        return X
    return {name: X[:, j] for j, name in enumerate(schema.names)}


def instances_to_columns(instances, schema, feature_names, max_rows, missing_ok):
    """v1 ``instances`` (rows as lists in the model's feature order, or objects keyed by
    feature name) as a dict of columns keyed by the schema's feature names."""
    instances = instance_rows(instances, feature_names, max_rows)
    n = schema.n_features
    for i, row in enumerate(instances):
        _check_row_shape(row, i, n, "instances", "values")
    cells = [list(c) for c in zip(*instances)]
    return {feature: _column(values, feature, kind, "instances: ", missing_ok)
            for feature, kind, values in zip(schema.names, feature_kinds(schema), cells)}


def _feature_datatype_error(name, kind, datatype):
    if kind == NUMERIC:
        need = f"a numeric datatype ({', '.join(V2_DTYPES)}), not BYTES"
    else:
        need = "BYTES" + ("" if kind == TEXT else " or a numeric datatype")
    what = "numeric" if kind == NUMERIC else "categorical"
    return ApiError(400, "INVALID_DATATYPE",
                    f"input {name!r}: feature {name!r} is {what}; send {need}, got {datatype}")


def _check_feature_names(headers, feature_names):
    names = [h[0] for h in headers]
    unknown = sorted(set(names) - set(feature_names))
    missing = [f for f in feature_names if f not in names]
    if unknown or missing or len(set(names)) != len(names):
        parts = []
        if unknown:
            parts.append(f"unknown feature names {unknown}")
        if missing:
            parts.append(f"missing features {missing}")
        if len(set(names)) != len(names):
            parts.append("duplicate input names")
        raise ApiError(400, "UNKNOWN_FEATURE", "inputs: " + "; ".join(parts))


def v2_feature_columns(inputs, schema, feature_names, max_rows, missing_ok, raw=b"", binary=None):
    """v2 ``inputs`` with one tensor per feature (named after it, shape [rows] or
    [rows, 1]) as a dict of columns keyed by the schema's feature names.

    BYTES tensors hold strings (JSON ``null`` is missing; in binary data the text NA
    tokens, e.g. ``""`` and ``"None"``, are, as for the library); numeric tensors hold
    numbers (``null`` and NaN are missing).
    """
    if feature_names is None:
        raise ApiError(400, "UNKNOWN_FEATURE",
                       "one tensor per feature needs feature names, and this model has none; "
                       f"send one input of shape [rows, {schema.n_features}]")
    headers = [_tensor_header(t, k) for k, t in enumerate(inputs)]
    for name, shape, _, _ in headers:
        if len(shape) == 2 and shape[1] != 1:
            raise ApiError(400, "INVALID_SHAPE",
                           f"input {name!r}: with one tensor per feature each must be [rows] or "
                           f"[rows, 1], got {json.dumps(shape)}")
    _check_feature_names(headers, feature_names)
    kinds = dict(zip(feature_names, feature_kinds(schema)))
    maybe_bool = b"true" in raw or b"false" in raw
    by_name = {}
    for k, (tensor, (name, shape, datatype, params)) in enumerate(zip(inputs, headers)):
        kind = kinds[name]
        if not (kind == CODED or (datatype == "BYTES") == (kind == TEXT)):
            raise _feature_datatype_error(name, kind, datatype)
        by_name[name] = _feature_tensor(tensor, k, name, shape, datatype, params, kind,
                                        missing_ok, maybe_bool, binary)
        _check_rows(shape[0], max_rows)
    if binary is not None:
        binary.finish()
    if len({len(c) for c in by_name.values()}) != 1:
        raise ApiError(400, "INVALID_SHAPE",
                       "inputs: every feature tensor must have the same number of rows")
    return {feature: by_name[name] for feature, name in zip(schema.names, feature_names)}


def _feature_tensor(tensor, k, name, shape, datatype, params, kind, missing_ok, maybe_bool, binary):
    where = f"input {name!r}, "
    count = shape[0]
    size = binary_data_size(tensor, k, name, params, binary)
    if size is None:
        if not isinstance(tensor["data"], list):
            raise ApiError(400, "INVALID_TENSOR", f"input {name!r}: data must be a list")
        values = _flat_values(tensor["data"], name, shape)
        if datatype == "BYTES":
            return _json_strings(values, name, kind, where, missing_ok)
        return _json_numbers(values, name, shape, datatype, where, missing_ok, maybe_bool)
    if datatype == "BYTES":
        strings = binary.read_bytes(name, count, size)
        return np.array(strings, dtype=object) if kind == TEXT else _coded_strings(strings)
    arr = np.asarray(binary.read_numbers(name, datatype, count, size), dtype=np.float64)
    _missing_or_infinite(arr, name, where, missing_ok, datatype)
    return arr


def _json_strings(values, name, kind, where, missing_ok):
    """A BYTES JSON tensor of one categorical feature: strings, ``null`` missing."""
    if not set(map(type, values)) <= {str, _NONE}:
        i = next(i for i, v in enumerate(values) if not (v is None or type(v) is str))
        raise ApiError(400, "INVALID_VALUE",
                       f"{where}row {i}: value {_shown(values[i])} is not a string or null (BYTES)")
    if kind == TEXT:
        return _column(values, name, TEXT, where, missing_ok)
    _column([None if v is None else 0 for v in values], name, CODED, where, missing_ok)
    return np.array([np.nan if v is None else _coded_text(v) for v in values], dtype=np.float64)


def _json_numbers(values, name, shape, datatype, where, missing_ok, maybe_bool):
    """A numeric JSON tensor of one feature: ``null`` and NaN are missing."""
    missing = np.fromiter((v is None or (type(v) is float and math.isnan(v)) for v in values),
                          dtype=bool, count=len(values))
    if missing.any():
        if not missing_ok:
            i = int(np.argmax(missing))
            raise ApiError(400, "INVALID_VALUE",
                           f"{where}row {i}: this model does not take missing values (null, NaN)")
        fill = False if datatype == "BOOL" else 0
        values = [fill if m else v for v, m in zip(values, missing.tolist())]
    arr = _json_tensor_data(values, name, shape, datatype, maybe_bool).reshape(-1).astype(np.float64)
    arr[missing] = np.nan
    return arr


def _missing_or_infinite(arr, name, where, missing_ok, datatype):
    """Binary numbers of one feature: NaN is missing (where the model takes it), inf refused."""
    bad = np.isinf(arr) if missing_ok else ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        why = ("this model does not take missing values (NaN)" if np.isnan(arr[i])
               else f"value {arr[i]!r} is not finite in {datatype} (NaN is a missing value)")
        raise ApiError(400, "INVALID_VALUE", f"{where}row {i}: {why}")
