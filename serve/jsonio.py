"""JSON in and out of the server, with orjson when it is installed.

orjson parses a 10,000-row batch about twice and writes its answer about twenty
times as fast as the standard library. Both give the same numbers: each float is
written as its shortest round-trip representation and parsed correctly rounded.
Where orjson refuses what the standard library reads (``NaN``, ``Infinity``), and
where a body holds a run of 19 or more digits (orjson turns integers beyond 64 bits into
floats, rounding them), the standard library reads it, so that the validators see the
exact values and can name the row and column of a bad one.
"""

__all__ = ["loads", "dumps", "as_json_array"]

import json
import re

import numpy as np

try:
    import orjson
except ImportError:  # pragma: no cover - the standard library suffices
    orjson = None


_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def loads(raw):
    """Parse ``raw`` (bytes); raises ValueError (or RecursionError) when it is not JSON."""
    if orjson is not None and _LONG_DIGITS.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(raw)


def as_json_array(arr):
    """A value that :func:`dumps` writes as the (nested) list of ``arr``'s elements.

    Floats are widened to float64 first, so that each printed number, read back as
    float64, is exactly the element.
    """
    arr = np.asarray(arr)
    if orjson is not None and arr.dtype.kind in "biuf":
        if arr.dtype.kind == "f" and arr.dtype != np.float64:
            arr = arr.astype(np.float64)
        return np.ascontiguousarray(arr)
    if arr.dtype.kind == "f" and arr.dtype != np.float64:
        arr = arr.astype(np.float64)
    return arr.tolist()


def dumps(obj):
    """Serialise ``obj`` (plain JSON values and :func:`as_json_array` results) to bytes."""
    if orjson is not None:
        try:
            return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError:
            pass  # e.g. a non-finite float, which the standard library writes as NaN
    return json.dumps(obj, separators=(",", ":"), default=_to_list).encode()


def _to_list(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
