"""Turn request JSON into feature matrices, with errors that name row and column.

The fast path converts a whole batch with one ``numpy.array`` call; only when that
fails, or when a value might be a JSON boolean, is the batch walked element by
element to find and name the first bad value.
"""

__all__ = ["read_json_bytes", "parse_json_bytes", "read_v2_body",
           "instances_to_matrix", "v2_inputs_to_matrix", "V2_DTYPES"]

import json
import math
import sys
import zlib
from decimal import Decimal

import numpy as np
from flask import current_app, request

from . import jsonio
from .binary import HEADER, BinarySection, header_length
from .errors import ApiError



def _decimal_int(limit):
    """``limit`` as the integer its shortest decimal spelling names: the bound that a JSON
    Schema validator applies to JSON integers."""
    return int(Decimal(repr(float(limit))))


# JSON integers beyond the largest float64 (as a schema's "maximum" spells it) are refused
_MAX_FLOAT_INT = _decimal_int(sys.float_info.max)

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


def _check_rows(n_rows, max_rows):
    if n_rows > max_rows:
        raise ApiError(413, "TOO_MANY_ROWS",
                       f"{n_rows} rows exceed the limit of {max_rows} rows per request (MPIML_MAX_ROWS)")


def _shown(value):
    """A JSON value as an error message quotes it: at most 40 characters."""
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _bad_value(where, value):
    shown = _shown(value)
    if type(value) is int:
        return ApiError(400, "INVALID_VALUE", f"{where}: value {shown} is beyond the float64 range")
    if isinstance(value, float) and not math.isfinite(value):
        return ApiError(400, "INVALID_VALUE",
                        f"{where}: value {shown} is not finite (NaN and inf are refused)")
    return ApiError(400, "INVALID_VALUE", f"{where}: value {shown} is not a number")


def _is_number(v):
    if type(v) is float:
        return math.isfinite(v)
    return type(v) is int and -_MAX_FLOAT_INT <= v <= _MAX_FLOAT_INT


def _column_label(j, feature_names):
    if feature_names is not None and j < len(feature_names):
        return f"column {j} ({feature_names[j]!r})"
    return f"column {j}"


def _check_row_shape(row, i, n_features, field, what):
    """Row ``i`` of ``field`` must be a list of ``n_features`` values (``what`` names them)."""
    if not isinstance(row, list):
        raise ApiError(400, "INVALID_SHAPE",
                       f"{field}[{i}] must be a list of {n_features} {what}, got {type(row).__name__}")
    if len(row) != n_features:
        raise ApiError(400, "WRONG_FEATURE_COUNT",
                       f"{field}[{i}] has {len(row)} values; the model expects {n_features} features")


def _scan_rows(rows, n_features, feature_names, field, missing_ok=False):
    """Slow path: find and name the first malformed row or value (``null`` is a missing
    value where ``missing_ok``)."""
    for i, row in enumerate(rows):
        _check_row_shape(row, i, n_features, field, "numbers")
        for j, v in enumerate(row):
            if not _is_number(v) and not (missing_ok and v is None):
                raise _bad_value(f"row {i}, {_column_label(j, feature_names)}", v)


def _finite_or_raise(X, feature_names):
    finite = np.isfinite(X)
    if not finite.all():
        i, j = map(int, np.argwhere(~finite)[0])
        raise _bad_value(f"row {i}, {_column_label(j, feature_names)}", float(X[i, j]))


def instance_rows(instances, feature_names, max_rows):
    """v1 ``instances`` as a non-empty list of at most ``max_rows`` rows, objects keyed by
    feature name turned into lists in the model's order (the values still unchecked)."""
    if not isinstance(instances, list):
        raise ApiError(400, "INVALID_SHAPE",
                       f"'instances' must be a list of rows, got {type(instances).__name__}")
    if not instances:
        raise ApiError(400, "INVALID_SHAPE", "'instances' is empty; send at least one row")
    _check_rows(len(instances), max_rows)
    if isinstance(instances[0], dict):
        return _objects_to_rows(instances, feature_names)
    return instances


def instances_to_matrix(instances, n_features, feature_names, max_rows, raw=b"", missing_ok=False):
    """Convert v1 ``instances`` of an all-numeric model to a float64 matrix of shape
    (n_rows, n_features); ``null`` is NaN (a missing value) where ``missing_ok``.

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
    instances = instance_rows(instances, feature_names, max_rows)
    try:
        X = np.array(instances)
    except (ValueError, OverflowError):  # ragged nesting, integers beyond float64
        X = None
    if (X is None or X.dtype.kind not in "iuf" or X.ndim != 2 or X.shape[1] != n_features
            or b"true" in raw or b"false" in raw or _may_hold_huge_integers(X)):
        _scan_rows(instances, n_features, feature_names, "instances", missing_ok)
        return np.array(instances, dtype=np.float64)   # finite numbers, None -> NaN
    X = np.asarray(X, dtype=np.float64)
    _finite_or_raise(X, feature_names)
    return X


def _may_hold_huge_integers(X):
    """Whether ``X`` reaches the float64 limit, which an integer beyond it also becomes:
    then the values are checked one by one."""
    return X.dtype.kind == "f" and X.size and float(np.abs(X).max()) >= sys.float_info.max


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


def read_v2_body():
    """``(obj, json_bytes, binary)`` of a v2 infer request, or ApiError (400/413/415).

    The JSON may come with no Content-Type, a JSON one, or ``application/octet-stream``;
    with an ``Inference-Header-Content-Length`` header the JSON is that many leading
    bytes and ``binary`` (a :class:`~serve.binary.BinarySection`) holds the rest,
    otherwise ``binary`` is None.
    """
    mimetype = request.mimetype
    header = request.headers.get(HEADER)
    if mimetype and not _is_json_content_type(mimetype) and mimetype != "application/octet-stream":
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE",
                       "Content-Type must be application/json, none, or application/octet-stream "
                       f"with {HEADER}; got {mimetype!r}")
    if mimetype == "application/octet-stream" and header is None:
        raise ApiError(400, "INVALID_HEADER",
                       f"an application/octet-stream body needs the {HEADER} header "
                       "(the length of its JSON header)")
    raw = _decoded_body(request.get_data(cache=False))   # raises 413 over MAX_CONTENT_LENGTH
    if not raw:
        raise ApiError(400, "MALFORMED_JSON", "request body is empty; expected a JSON object")
    if header is None:
        return parse_json_bytes(raw), raw, None
    length = header_length(header, len(raw))
    head = raw[:length]
    return parse_json_bytes(head), head, BinarySection(raw, length)


def _decoded_body(raw):
    """The body after its Content-Encoding (gzip or deflate, as tritonclient sends them)."""
    encoding = (request.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding == "identity":
        return raw
    if encoding not in ("gzip", "deflate"):
        raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE",
                       f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none")
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error as exc:
        raise ApiError(400, "MALFORMED_BODY", f"request body is not valid {encoding}: {exc}") from None
    if len(out) > limit:
        raise ApiError(413, "PAYLOAD_TOO_LARGE",
                       f"decompressed request body larger than the limit of {limit} bytes "
                       "(MPIML_MAX_BODY_BYTES)")
    return out


def _shape_of(shape, name):
    """[rows] or [rows, columns] of positive integers (integral JSON numbers count)."""
    dims = None
    if isinstance(shape, list) and 1 <= len(shape) <= 2:
        dims = [int(d) if type(d) is float and d.is_integer() and d >= 1 else d for d in shape]
        if not all(type(d) is int and d >= 1 for d in dims):
            dims = None
    if dims is None:
        raise ApiError(400, "INVALID_SHAPE",
                       f"input {name!r}: shape must be [rows] or [rows, features] of positive "
                       f"integers, got {json.dumps(shape)[:60]}")
    return dims


def _refuse_bytes(name):
    raise ApiError(400, "INVALID_DATATYPE",
                   f"input {name!r}: datatype BYTES is for categorical features, and this model "
                   f"has none; use one of {', '.join(V2_DTYPES)}")


def _tensor_header(tensor, k):
    """The checked ``(name, shape, datatype, parameters)`` of input ``k``."""
    if not isinstance(tensor, dict):
        raise ApiError(400, "INVALID_TENSOR", f"inputs[{k}] must be an object")
    for field in ("name", "shape", "datatype"):
        if field not in tensor:
            raise ApiError(400, "MISSING_FIELD", f"inputs[{k}] has no {field!r} field")
    name, datatype = tensor["name"], tensor["datatype"]
    if not isinstance(name, str):
        raise ApiError(400, "INVALID_TENSOR", f"inputs[{k}].name must be a string")
    params = tensor.get("parameters", {})
    if not isinstance(params, dict):
        raise ApiError(400, "INVALID_TENSOR", f"input {name!r}: parameters must be an object")
    shape = _shape_of(tensor["shape"], name)
    if not isinstance(datatype, str) or (datatype not in V2_DTYPES and datatype != "BYTES"):
        raise ApiError(400, "INVALID_DATATYPE",
                       f"input {name!r}: datatype {json.dumps(datatype)[:40]} is not one of "
                       f"{', '.join(V2_DTYPES)}")
    return name, shape, datatype, params


def binary_data_size(tensor, k, name, params, binary):
    """The checked ``parameters.binary_data_size`` of input ``k``, or None for an input
    with JSON ``data`` (then present)."""
    if "binary_data_size" not in params:
        if "data" not in tensor:
            raise ApiError(400, "MISSING_FIELD",
                           f"inputs[{k}] has no 'data' field (nor parameters.binary_data_size)")
        return None
    size = params["binary_data_size"]
    if type(size) is not int or size < 0:
        raise ApiError(400, "INVALID_BINARY_DATA",
                       f"input {name!r}: parameters.binary_data_size must be a non-negative "
                       f"integer, got {json.dumps(size)[:40]}")
    if binary is None:
        raise ApiError(400, "INVALID_BINARY_DATA",
                       f"input {name!r} has parameters.binary_data_size, but the request has no "
                       f"binary data: send the JSON header's length in {HEADER}")
    if "data" in tensor:
        raise ApiError(400, "INVALID_TENSOR",
                       f"input {name!r} has both 'data' and parameters.binary_data_size")
    return size


def _tensor_to_array(tensor, k, max_rows, maybe_bool, binary):
    """Validate one v2 input tensor and return (name, ndarray of shape (rows, cols))."""
    name, shape, datatype, params = _tensor_header(tensor, k)
    n_rows = shape[0]
    n_cols = shape[1] if len(shape) == 2 else 1
    size = binary_data_size(tensor, k, name, params, binary)
    if size is None:
        if datatype == "BYTES":
            _refuse_bytes(name)
        arr = _json_tensor_data(tensor["data"], name, shape, datatype, maybe_bool)
        _check_rows(n_rows, max_rows)
        return name, arr
    if datatype == "BYTES":
        binary.read_bytes(name, n_rows * n_cols, size)
        _refuse_bytes(name)
    arr = binary.read_numbers(name, datatype, n_rows * n_cols, size)
    _check_rows(n_rows, max_rows)
    return name, _as_float64(arr, name, n_cols, datatype).reshape(n_rows, n_cols)


def _as_float64(arr, name, n_cols, datatype):
    """``arr`` as float64 with at most one copy: none for aligned FP64 data."""
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            i, j = divmod(int(np.argmin(finite)), n_cols)
            raise ApiError(400, "INVALID_VALUE",
                           f"input {name!r}, row {i}, column {j}: value is not finite in "
                           f"{datatype} (NaN and inf are refused)")
    if arr.dtype == np.float64 and arr.flags.aligned:
        return arr
    return arr.astype(np.float64)


def _json_tensor_data(data, name, shape, datatype, maybe_bool):
    """The (rows, cols) array of ``datatype`` from JSON ``data``: flat row-major, or nested
    exactly as ``shape``."""
    if not isinstance(data, list):
        raise ApiError(400, "INVALID_TENSOR", f"input {name!r}: data must be a list")
    n_rows = shape[0]
    n_cols = shape[1] if len(shape) == 2 else 1
    dtype = np.dtype(V2_DTYPES[datatype])
    if len(data) in (n_rows * n_cols, n_rows):
        try:
            arr = np.array(data)
        except (ValueError, OverflowError):  # ragged nesting, integers beyond float64
            arr = None
        if arr is not None and (arr.shape == (n_rows * n_cols,)
                                or (len(shape) == 2 and arr.shape == (n_rows, n_cols))):
            if _fits_fast(arr, dtype, maybe_bool):
                return arr.astype(dtype, copy=False).reshape(n_rows, n_cols)
    flat = _flat_values(data, name, shape)
    values = [_tensor_value(v, idx, name, shape, datatype, dtype) for idx, v in enumerate(flat)]
    return np.array(values, dtype=dtype).reshape(n_rows, n_cols)


def _fits_fast(arr, dtype, maybe_bool):
    """Whether a numpy-converted ``data`` is valid as it is; else the slow path names the error."""
    if dtype.kind == "b":
        return arr.dtype.kind == "b"
    if maybe_bool or arr.dtype.kind not in ("iu" if dtype.kind in "iu" else "iuf"):
        return False
    if not arr.size:
        return True
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return info.min <= arr.min() and arr.max() <= info.max
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        return False
    return float(np.abs(arr).max()) < float(np.finfo(dtype).max)   # the limit itself: slow path


def _flat_values(data, name, shape):
    n_rows = shape[0]
    n_cols = shape[1] if len(shape) == 2 else 1
    if len(shape) == 2 and data and all(isinstance(row, list) for row in data):
        if len(data) != n_rows or any(len(row) != n_cols for row in data):
            raise ApiError(400, "INVALID_SHAPE",
                           f"input {name!r}: nested data must be {n_rows} rows of {n_cols} values "
                           f"(shape {json.dumps(shape)})")
        return [v for row in data for v in row]
    if len(data) != n_rows * n_cols:
        raise ApiError(400, "INVALID_SHAPE",
                       f"input {name!r}: shape {json.dumps(shape)} needs {n_rows * n_cols} "
                       f"values, data has {len(data)}")
    return data


def _tensor_value(v, idx, name, shape, datatype, dtype):
    """One JSON element checked against ``datatype`` (integral numbers count as integers)."""
    i, j = divmod(idx, shape[1] if len(shape) == 2 else 1)
    where = f"input {name!r}, row {i}" + (f", column {j}" if len(shape) == 2 else "")
    if dtype.kind == "b":
        if type(v) is not bool:
            raise ApiError(400, "INVALID_VALUE", f"{where}: value {json.dumps(v)[:40]} is not a boolean")
        return v
    if not _is_number(v):
        raise _bad_value(where, v)
    if dtype.kind in "iu":
        if type(v) is float and not v.is_integer():
            raise ApiError(400, "INVALID_VALUE", f"{where}: value {v!r} is not an integer ({datatype})")
        info = np.iinfo(dtype)
        if not info.min <= v <= info.max:
            raise ApiError(400, "INVALID_VALUE", f"{where}: value {v!r} does not fit {datatype}")
        return int(v)
    limit = float(np.finfo(dtype).max)
    if abs(v) > (_decimal_int(limit) if type(v) is int else limit):
        raise ApiError(400, "INVALID_VALUE",
                       f"{where}: value {v!r} does not fit {datatype} (it would not be finite)")
    return v


def v2_inputs_to_matrix(inputs, n_features, max_rows, raw=b"", binary=None):
    """Convert the one v2 input tensor of shape [rows, n_features] (all features, in the
    model's order) to a matrix: in JSON ``data`` it keeps its dtype, binary data
    becomes float64. (One tensor per feature: :func:`serve.columns.v2_feature_columns`.)
    """
    maybe_bool = b"true" in raw or b"false" in raw
    name, X = _tensor_to_array(inputs[0], 0, max_rows, maybe_bool, binary)
    if binary is not None:
        binary.finish()
    if X.shape[1] != n_features:
        raise ApiError(400, "WRONG_FEATURE_COUNT",
                       f"input {name!r} has {X.shape[1]} columns; the model expects {n_features} features")
    return X
