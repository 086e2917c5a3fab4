"""``.npz`` (arrays ``X`` and ``y``) and ``.npy`` files, memory-mapped; each rank copies
only its own rows (the block partition). Pickled (object) arrays are refused."""

__all__ = ["read_npz", "read_npy"]

import struct
import zipfile

import numpy as np

from ..comm.partition import block_range
from ._common import Dataset, open_checked, raise_first

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")


def _npy_header(f):
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    return shape, fortran, dtype, f.tell()


def _member_map(path, zf, name):
    """A read-only memory map of the stored (uncompressed) member ``name``, or None."""
    info = zf.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
        f.seek(info.header_offset + _LOCAL_HEADER.size + fields[-2] + fields[-1])
        shape, fortran, dtype, offset = _npy_header(f)
    if dtype.hasobject:
        raise ValueError(f"array {name!r} holds Python objects (pickle); refused")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C")


def _load_member(path, zf, name):
    try:
        arr = _member_map(path, zf, name)
    except (ValueError, struct.error):
        arr = None
    if arr is None:  # compressed member: read it whole (cannot be mapped)
        with zf.open(name) as member:
            arr = np.lib.format.read_array(member, allow_pickle=False)
    return arr


def _rows(arr, comm):
    start, stop = block_range(arr.shape[0], comm.size, comm.rank)
    return start, stop


def _numeric(arr, what, path):
    if arr.dtype.kind not in "biuf":
        return f"{what} in {str(path)!r} must be numeric, got dtype {arr.dtype}"
    return None


def _finite_message(X, y, start, path):
    if X.size and not np.isfinite(X).all():
        r, c = np.argwhere(~np.isfinite(X))[0]
        return f"{str(path)!r}: X has NaN or infinity at row {start + r}, column {c}"
    if y.dtype.kind == "f" and y.size and not np.isfinite(y).all():
        r = int(np.argmin(np.isfinite(y)))
        return f"{str(path)!r}: y has NaN or infinity at row {start + r}"
    return None


def read_npz(path, comm, target=None, task=None):
    """Collective: this rank's rows of the arrays ``X`` (2-D) and ``y`` (1-D) of an ``.npz``.

    Stored (``numpy.savez``) members are memory-mapped; compressed ones
    (``savez_compressed``) are decompressed whole on each rank. The target is ``y``:
    ``target`` must be None or ``"y"``. Returns a :class:`~mpiml.data.Dataset`.
    """
    f = open_checked(path, comm)
    f.close()
    X = y = None
    message = None
    if target not in (None, "y"):
        raise_first(comm, f"{str(path)!r} holds its target in the array 'y'; "
                          f"target {target!r} is not understood")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "X.npy" not in names or "y.npy" not in names:
                message = (f"{str(path)!r} must hold arrays 'X' and 'y'; it holds "
                           f"{sorted(n[:-4] for n in names if n.endswith('.npy'))}")
            else:
                X = _load_member(path, zf, "X.npy")
                y = _load_member(path, zf, "y.npy")
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        message = f"cannot read {str(path)!r} as an .npz file: {exc}"
    if message is None:
        if X.ndim != 2:
            message = f"X in {str(path)!r} must be 2-D, got shape {X.shape}"
        elif y.ndim != 1 or y.shape[0] != X.shape[0]:
            message = f"y in {str(path)!r} must be 1-D with {X.shape[0]} rows, got shape {y.shape}"
        else:
            message = _numeric(X, "X", path)
            if message is None and task == "regression":
                message = _numeric(y, "the regression target y", path)
    raise_first(comm, message)
    start, stop = _rows(X, comm)
    X_local = np.array(X[start:stop], dtype=np.float64, order="C")
    y_local = np.array(y[start:stop])
    raise_first(comm, _finite_message(X_local, y_local, start, path))
    return Dataset(X=X_local, y=y_local, feature_names=[f"x{j}" for j in range(X.shape[1])],
                   target="y", n_rows=X.shape[0], offset=start, source=str(path))


def read_npy(path, comm, target=None, task=None):
    """Collective: this rank's rows of a 2-D numeric ``.npy``; the target is a column.

    ``target`` is the column index (an int or a string of digits, negative allowed);
    default the last column. Returns a :class:`~mpiml.data.Dataset`.
    """
    f = open_checked(path, comm)
    f.close()
    arr, message = None, None
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        message = f"cannot read {str(path)!r} as an .npy file: {exc}"
    if message is None:
        if arr.ndim != 2 or arr.shape[1] < 2:
            message = (f"{str(path)!r} must hold a 2-D array with features and a target "
                       f"column, got shape {arr.shape}")
        else:
            message = _numeric(arr, "the array", path)
    col = -1
    if message is None and target is not None:
        try:
            col = int(target)
            if not -arr.shape[1] <= col < arr.shape[1]:
                raise ValueError
        except ValueError:
            message = (f"target {target!r} must be a column index of {str(path)!r} "
                       f"(it has {arr.shape[1]} columns)")
    raise_first(comm, message)
    col %= arr.shape[1]
    start, stop = _rows(arr, comm)
    block = np.asarray(arr[start:stop], dtype=np.float64)
    X_local = np.ascontiguousarray(np.delete(block, col, axis=1))
    y_local = block[:, col].copy()
    raise_first(comm, _finite_message(X_local, y_local, start, path))
    names = [f"x{j}" for j in range(arr.shape[1]) if j != col]
    return Dataset(X=X_local, y=y_local, feature_names=names, target=f"x{col}",
                   n_rows=arr.shape[0], offset=start, source=str(path))
