"""Reduction operations, independent of any MPI library.

The same constants are accepted by both backends: the MPI backend maps them to
``mpi4py`` operations, the threads backend applies the numpy ufunc directly.
Python-object reductions (lowercase ``reduce``/``allreduce``) fold the values
in rank order, so every rank and both backends obtain the same bits.
"""

__all__ = ["Op", "fold", "SUM", "PROD", "MIN", "MAX", "MAXLOC", "MINLOC", "IN_PLACE", "ANY_SOURCE", "ANY_TAG",
           "COMM_TYPE_SHARED"]

import numpy as np


class Op:
    """A reduction operation.

    Parameters
    ----------
    name : str
        Name shown in error messages ("SUM").
    ufunc : numpy.ufunc or None
        Elementwise function for buffer reductions; ``None`` for object-only ops.
    fold : callable
        ``fold(a, b)`` combining two Python values (``a`` from the lower rank).
    """

    __slots__ = ("name", "ufunc", "fold")

    def __init__(self, name, ufunc, fold):
        self.name = name
        self.ufunc = ufunc
        self.fold = fold

    def __repr__(self):
        return f"mpiml.{self.name}"

    def __reduce__(self):  # ops travel between MPI ranks by name, as module constants
        return self.name


def _maxloc(a, b):
    """(value, index) pairs: larger value wins, ties go to the lower index."""
    if b[0] > a[0] or (b[0] == a[0] and b[1] < a[1]):
        return b
    return a


def _minloc(a, b):
    """(value, index) pairs: smaller value wins, ties go to the lower index."""
    if b[0] < a[0] or (b[0] == a[0] and b[1] < a[1]):
        return b
    return a


def _fold_with(ufunc, pyfunc):
    def fold(a, b):
        if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
            return ufunc(a, b)
        return pyfunc(a, b)
    return fold


SUM = Op("SUM", np.add, _fold_with(np.add, lambda a, b: a + b))
PROD = Op("PROD", np.multiply, _fold_with(np.multiply, lambda a, b: a * b))
MIN = Op("MIN", np.minimum, _fold_with(np.minimum, min))
MAX = Op("MAX", np.maximum, _fold_with(np.maximum, max))
MAXLOC = Op("MAXLOC", None, _maxloc)
MINLOC = Op("MINLOC", None, _minloc)

_BY_NAME = {op.name: op for op in (SUM, PROD, MIN, MAX, MAXLOC, MINLOC)}


def check_op(op, buffer=False):
    """Return ``op`` if it is an mpiml operation usable here, else raise ``TypeError``."""
    if not isinstance(op, Op):
        raise TypeError(f"op must be one of mpiml.SUM, PROD, MIN, MAX, MAXLOC, MINLOC, got {op!r}")
    if buffer and op.ufunc is None:
        raise TypeError(f"{op!r} works on (value, index) objects; use the lowercase method "
                        f"(allreduce/reduce) or mpiml.comm.argmax for arrays")
    return op


class _Sentinel:
    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"mpiml.{self.name}"


IN_PLACE = _Sentinel("IN_PLACE")
ANY_SOURCE = -1
ANY_TAG = -1
#: ``Split_type``: the ranks that share a node's memory (``MPI.COMM_TYPE_SHARED``).
COMM_TYPE_SHARED = _Sentinel("COMM_TYPE_SHARED")


def fold(op, values):
    """Combine a list of per-rank values with ``op`` in rank order."""
    result = values[0]
    for v in values[1:]:
        result = op.fold(result, v)
    return result
