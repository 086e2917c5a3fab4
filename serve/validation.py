"""Turn request JSON into feature matrices, with errors that name row and column.

The fast path converts a whole batch with one ``numpy.array`` call; only when that
fails, or when a value might be a JSON boolean, is the batch walked element by
element to find and name the first bad value.
"""

__all__ = ["parse_json_body", "read_json_bytes", "parse_json_bytes", "instances_to_matrix",
           "v2_inputs_to_matrix", "V2_DTYPES"]

import json
import math

import numpy as np
from flask import request

from . import jsonio
from .errors import ApiError

# Open Inference Protocol v2 tensor datatypes -> numpy dtypes (BYTES is not numeric).
V2_DTYPES = {
    "BOOL": np.bool_,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}


def _is_json_content_type(mimetype):
    return mimetype == "application/json" or (mimetype.startswith("application/")
                                             and mimetype.endswith("+json"))


def read_json_bytes():
    """The raw body of a JSON request, or ApiError (413/415/400)."""
    if not _is_json_content_type(request.mimetype):
        got = request.mimetype or "none"
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE",
                       f"Content-Type must be application/json, got {got!r}")
    raw = request.get_data(cache=False)  # raises 413 over MAX_CONTENT_LENGTH
    if not raw:
        raise ApiError(400, "MALFORMED_JSON", "request body is empty; expected a JSON object")
    return raw


def parse_json_bytes(raw):
    """The JSON object in ``raw``, or ApiError (400)."""
    try:
        obj = jsonio.loads(raw)  # NaN/Infinity parse; the validators name their row and column
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "MALFORMED_JSON", f"request body is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ApiError(400, "MALFORMED_JSON",
                       f"request body must be a JSON object, got {type(obj).__name__}")
    return obj


def parse_json_body():
    """Return ``(obj, raw_bytes)`` for a JSON request body or raise ApiError (413/415/400)."""
    raw = read_json_bytes()
    return parse_json_bytes(raw), raw


def _check_rows(n_rows, max_rows):
    if n_rows > max_rows:
        raise ApiError(413, "TOO_MANY_ROWS",
                       f"{n_rows} rows exceed the limit of {max_rows} rows per request (MPIML_MAX_ROWS)")


def _bad_value(where, value):
    shown = json.dumps(value) if not isinstance(value, float) else repr(value)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    if isinstance(value, float) and not math.isfinite(value):
        return ApiError(400, "INVALID_VALUE", f"{where}: value {shown} is not finite (NaN and inf are refused)")
    return ApiError(400, "INVALID_VALUE", f"{where}: value {shown} is not a number")


def _is_number(v):
    return (type(v) is int or type(v) is float) and not (type(v) is float and not math.isfinite(v))


def _column_label(j, feature_names):
    if feature_names is not None and j < len(feature_names):
        return f"column {j} ({feature_names[j]!r})"
    return f"column {j}"


def _scan_rows(rows, n_features, feature_names, field):
    """Slow path: find and name the first malformed row or value."""
    for i, row in enumerate(rows):
        if not isinstance(row, list):
            raise ApiError(400, "INVALID_SHAPE",
                           f"{field}[{i}] must be a list of {n_features} numbers, got {type(row).__name__}")
        if len(row) != n_features:
            raise ApiError(400, "WRONG_FEATURE_COUNT",
                           f"{field}[{i}] has {len(row)} values; the model expects {n_features} features")
        for j, v in enumerate(row):
            if not _is_number(v):
                raise _bad_value(f"row {i}, {_column_label(j, feature_names)}", v)


def _finite_or_raise(X, feature_names):
    finite = np.isfinite(X)
    if not finite.all():
        i, j = map(int, np.argwhere(~finite)[0])
        raise _bad_value(f"row {i}, {_column_label(j, feature_names)}", float(X[i, j]))


def instances_to_matrix(instances, n_features, feature_names, max_rows, raw=b""):
    """Convert v1 ``instances`` to a float64 matrix of shape (n_rows, n_features).

    Parameters
    ----------
    instances : list
        Rows as lists of numbers, or objects keyed by feature name.
    n_features : int
    feature_names : list of str or None
    max_rows : int
    raw : bytes
        The request body, used to decide cheaply whether booleans may be present.

    Returns
    -------
    X : ndarray of shape (n_rows, n_features), float64
    """
    if not isinstance(instances, list):
        raise ApiError(400, "INVALID_SHAPE",
                       f"'instances' must be a list of rows, got {type(instances).__name__}")
    if not instances:
        raise ApiError(400, "INVALID_SHAPE", "'instances' is empty; send at least one row")
    _check_rows(len(instances), max_rows)
    if isinstance(instances[0], dict):
        instances = _objects_to_rows(instances, feature_names)
    try:
        X = np.array(instances)
    except ValueError:  # ragged nesting
        X = None
    if (X is None or X.dtype.kind not in "iuf" or X.ndim != 2 or X.shape[1] != n_features
            or b"true" in raw or b"false" in raw):
        _scan_rows(instances, n_features, feature_names, "instances")
        X = np.array(instances, dtype=np.float64)
    X = np.asarray(X, dtype=np.float64)
    _finite_or_raise(X, feature_names)
    return X


def _objects_to_rows(objects, feature_names):
    if feature_names is None:
        raise ApiError(400, "UNKNOWN_FEATURE",
                       "this model was trained without feature names; send rows as lists of numbers")
    known = set(feature_names)
    rows = []
    for i, obj in enumerate(objects):
        if not isinstance(obj, dict):
            raise ApiError(400, "INVALID_SHAPE",
                           f"instances[{i}] must be an object like instances[0], got {type(obj).__name__}")
        if len(obj) != len(feature_names) or not known.issuperset(obj):
            unknown = sorted(set(obj) - known)
            missing = [f for f in feature_names if f not in obj]
            parts = []
            if unknown:
                parts.append(f"unknown feature names {unknown}")
            if missing:
                parts.append(f"missing features {missing}")
            raise ApiError(400, "UNKNOWN_FEATURE", f"instances[{i}]: " + "; ".join(parts))
        rows.append([obj[name] for name in feature_names])
    return rows


def _tensor_to_array(tensor, k, max_rows, maybe_bool):
    """Validate one v2 input tensor and return (name, ndarray of shape (rows, cols))."""
    if not isinstance(tensor, dict):
        raise ApiError(400, "INVALID_TENSOR", f"inputs[{k}] must be an object")
    for field in ("name", "shape", "datatype", "data"):
        if field not in tensor:
            raise ApiError(400, "MISSING_FIELD", f"inputs[{k}] has no {field!r} field")
    name, shape, datatype, data = tensor["name"], tensor["shape"], tensor["datatype"], tensor["data"]
    if not isinstance(name, str):
        raise ApiError(400, "INVALID_TENSOR", f"inputs[{k}].name must be a string")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 2
            or not all(type(d) is int and d >= 0 for d in shape)):
        raise ApiError(400, "INVALID_SHAPE",
                       f"input {name!r}: shape must be [rows] or [rows, features] of non-negative "
                       f"integers, got {json.dumps(shape)}")
    if datatype not in V2_DTYPES:
        raise ApiError(400, "INVALID_DATATYPE",
                       f"input {name!r}: datatype {json.dumps(datatype)} is not numeric; "
                       f"use one of {', '.join(V2_DTYPES)}")
    _check_rows(shape[0], max_rows)
    if not isinstance(data, list):
        raise ApiError(400, "INVALID_TENSOR", f"input {name!r}: data must be a list")
    n_rows = shape[0]
    n_cols = shape[1] if len(shape) == 2 else 1
    dtype = np.dtype(V2_DTYPES[datatype])
    want = "b" if dtype.kind == "b" else ("iu" if dtype.kind in "iu" else "iuf")
    try:
        arr = np.array(data)
    except ValueError:  # ragged nesting
        arr = None
    fast = (arr is not None and arr.dtype.kind in want and arr.size == n_rows * n_cols
            and (dtype.kind == "b" or not maybe_bool))
    if not fast:
        flat = data
        if data and isinstance(data[0], list):  # nested, row-major
            flat = [v for row in data for v in (row if isinstance(row, list) else [row])]
        if len(flat) != n_rows * n_cols:
            raise ApiError(400, "INVALID_SHAPE",
                           f"input {name!r}: shape {json.dumps(shape)} needs {n_rows * n_cols} "
                           f"values, data has {len(flat)}")
        for idx, v in enumerate(flat):
            i, j = divmod(idx, n_cols)
            where = f"input {name!r}, row {i}" + (f", column {j}" if len(shape) == 2 else "")
            if dtype.kind == "b":
                if type(v) is not bool:
                    raise ApiError(400, "INVALID_VALUE", f"{where}: value {json.dumps(v)} is not a boolean")
            elif not _is_number(v):
                raise _bad_value(where, v)
            elif dtype.kind in "iu" and type(v) is float:
                raise ApiError(400, "INVALID_VALUE", f"{where}: value {v!r} is not an integer ({datatype})")
        arr = np.array(flat)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if arr.dtype.kind not in "iu" or (arr.size and (arr.min() < info.min or arr.max() > info.max)):
            raise ApiError(400, "INVALID_VALUE", f"input {name!r}: a value does not fit {datatype}")
    with np.errstate(over="ignore"):
        arr = arr.astype(dtype).reshape(n_rows, n_cols)
    if dtype.kind == "f" and not np.isfinite(arr).all():
        i, j = map(int, np.argwhere(~np.isfinite(arr))[0])
        raise ApiError(400, "INVALID_VALUE",
                       f"input {name!r}, row {i}, column {j}: value is not finite in {datatype} "
                       "(NaN, inf and out-of-range values are refused)")
    return name, arr


def v2_inputs_to_matrix(inputs, n_features, feature_names, max_rows, raw=b""):
    """Convert v2 ``inputs`` to one matrix of shape (n_rows, n_features).

    Either one tensor of shape [rows, n_features], or one tensor per feature
    (named after the model's feature names) of shape [rows] or [rows, 1].
    The matrix keeps the tensors' dtype when they all share one.
    """
    if not isinstance(inputs, list) or not inputs:
        raise ApiError(400, "MISSING_FIELD", "'inputs' must be a non-empty list of tensors")
    maybe_bool = b"true" in raw or b"false" in raw
    arrays = [_tensor_to_array(t, k, max_rows, maybe_bool) for k, t in enumerate(inputs)]
    if len(arrays) == 1 and (arrays[0][1].shape[1] != 1 or n_features == 1):
        name, X = arrays[0]
        if X.shape[1] != n_features:
            raise ApiError(400, "WRONG_FEATURE_COUNT",
                           f"input {name!r} has {X.shape[1]} columns; the model expects {n_features} features")
        return X
    if feature_names is None:
        raise ApiError(400, "UNKNOWN_FEATURE",
                       "one tensor per feature needs feature names, and this model has none; "
                       f"send one input of shape [rows, {n_features}]")
    by_name = {}
    for name, arr in arrays:
        if arr.shape[1] != 1:
            raise ApiError(400, "INVALID_SHAPE",
                           f"input {name!r}: with one tensor per feature each must be [rows] or [rows, 1]")
        by_name[name] = arr[:, 0]
    unknown = sorted(set(by_name) - set(feature_names))
    missing = [f for f in feature_names if f not in by_name]
    if unknown or missing or len(by_name) != len(arrays):
        parts = []
        if unknown:
            parts.append(f"unknown feature names {unknown}")
        if missing:
            parts.append(f"missing features {missing}")
        if len(by_name) != len(arrays):
            parts.append("duplicate input names")
        raise ApiError(400, "UNKNOWN_FEATURE", "inputs: " + "; ".join(parts))
    rows = {len(v) for v in by_name.values()}
    if len(rows) != 1:
        raise ApiError(400, "INVALID_SHAPE", "inputs: every feature tensor must have the same number of rows")
    return np.column_stack([by_name[f] for f in feature_names])
