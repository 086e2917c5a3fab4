"""The binary tensor data extension of the Open Inference Protocol v2.

A request may carry its tensors as raw bytes after the JSON header: the header's length
is the ``Inference-Header-Content-Length`` HTTP header, and each binary input names its
byte count in ``parameters.binary_data_size``, in the order of the inputs. Numbers are
little-endian, row-major; BOOL is one byte (0 or 1) per element; BYTES elements are a
4-byte little-endian length followed by that many bytes. Outputs come back the same
way when the request asks for them (``binary_data: true`` on an output, or
``binary_data_output: true`` in the request's parameters).
"""

__all__ = ["HEADER", "BinarySection", "binary_datatype_dtype", "encode_tensor"]

import json

import numpy as np

from .errors import ApiError

HEADER = "Inference-Header-Content-Length"

_LITTLE_ENDIAN = {
    "BOOL": "u1", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}


def binary_datatype_dtype(datatype):
    """The little-endian numpy dtype of a numeric v2 datatype."""
    return np.dtype(_LITTLE_ENDIAN[datatype])


def header_length(value, body_length):
    """The JSON header's length from the ``Inference-Header-Content-Length`` value."""
    text = value.strip()
    if not text.isdigit():
        raise ApiError(400, "INVALID_HEADER",
                       f"{HEADER} must be a non-negative integer, got {value[:40]!r}")
    length = int(text)
    if length > body_length:
        raise ApiError(400, "INVALID_HEADER",
                       f"{HEADER} is {length}, but the body has only {body_length} bytes")
    if length == 0:
        raise ApiError(400, "INVALID_HEADER", f"{HEADER} is 0: the JSON header is missing")
    return length


class BinarySection:
    """The bytes after the JSON header, handed out to the binary inputs in order."""

    def __init__(self, raw, start):
        self.raw = raw
        self.offset = start

    @property
    def remaining(self):
        return len(self.raw) - self.offset

    def take(self, size, name):
        """The offset of the next ``size`` bytes, which belong to input ``name``."""
        if self.remaining < size:
            raise ApiError(400, "INVALID_BINARY_DATA",
                           f"input {name!r}: binary_data_size is {size} bytes, but only "
                           f"{self.remaining} bytes of binary data are left in the body")
        start = self.offset
        self.offset += size
        return start

    def finish(self):
        """Every byte of the binary section must belong to an input."""
        if self.remaining:
            raise ApiError(400, "INVALID_BINARY_DATA",
                           f"the body has {self.remaining} bytes of binary data that no input's "
                           "binary_data_size accounts for")

    def read_numbers(self, name, datatype, count, size):
        """A read-only flat array of ``count`` elements of ``datatype`` (no copy)."""
        dtype = binary_datatype_dtype(datatype)
        if size != count * dtype.itemsize:
            raise ApiError(400, "INVALID_BINARY_DATA",
                           f"input {name!r}: binary_data_size is {size} bytes; {count} {datatype} "
                           f"elements take {count * dtype.itemsize}")
        start = self.take(size, name)
        arr = np.frombuffer(self.raw, dtype=dtype, count=count, offset=start)
        if datatype == "BOOL":
            if count and arr.max() > 1:
                bad = int(np.argmax(arr > 1))
                raise ApiError(400, "INVALID_VALUE",
                               f"input {name!r}, element {bad}: byte {int(arr[bad])} is not a "
                               "BOOL (0 or 1)")
            return arr.view(np.bool_)
        return arr

    def read_bytes(self, name, count, size):
        """The ``count`` length-prefixed elements of a BYTES tensor, as str."""
        start = self.take(size, name)
        end = start + size
        raw = self.raw
        out, i = [], start
        for k in range(count):
            if end - i < 4:
                raise ApiError(400, "INVALID_BINARY_DATA",
                               f"input {name!r}: element {k} of {count} has no 4-byte length "
                               f"within binary_data_size {size}")
            n = int.from_bytes(raw[i:i + 4], "little")
            i += 4
            if end - i < n:
                raise ApiError(400, "INVALID_BINARY_DATA",
                               f"input {name!r}: element {k} is {n} bytes long, past the end of "
                               f"its binary_data_size {size}")
            try:
                out.append(raw[i:i + n].decode("utf-8"))
            except UnicodeDecodeError:
                raise ApiError(400, "INVALID_VALUE",
                               f"input {name!r}, element {k}: BYTES element is not UTF-8") from None
            i += n
        if i != end:
            raise ApiError(400, "INVALID_BINARY_DATA",
                           f"input {name!r}: {count} BYTES elements take {i - start} bytes, "
                           f"binary_data_size is {size}")
        return out


def encode_tensor(arr, datatype):
    """The raw bytes of an output tensor in the extension's layout."""
    if datatype == "BYTES":
        parts = []
        encoded = {}
        for value in arr.ravel().tolist():
            chunk = encoded.get(value)
            if chunk is None:
                data = (value if isinstance(value, str) else json.dumps(value)).encode("utf-8")
                chunk = encoded[value] = len(data).to_bytes(4, "little") + data
            parts.append(chunk)
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=binary_datatype_dtype(datatype)).tobytes()
