"""Sums over all ranks' rows that do not depend on how the rows are spread.

A floating-point sum depends on the order of its terms, so a sum over rows split
over P ranks changes in its last bits with P. Integers add exactly in any order:
each column is turned into int64 fixed point with the tree core's power-of-two scale
(:func:`mpiml.models.tree.fixed_point_scale`, from the column's largest magnitude over
all ranks), summed exactly, and turned back into a float.
"""

__all__ = ["column_scales", "exact_column_sums", "integer_sums", "max_abs", "fixed_sum"]

import numpy as np
from numba import njit

from ...comm.ops import MAX, SUM
from ..tree._criteria import fixed_point_scale, to_fixed


def column_scales(global_max, n_total):
    """Fixed-point scale of each column: ``global_max`` (n_columns,) -> (n_columns,)."""
    return np.array([fixed_point_scale(float(m), int(n_total)) for m in global_max])


def integer_sums(comm, quantised):
    """Column sums of an int64 array (n_local, n_columns) over all ranks, exact. Collective."""
    local = np.zeros(quantised.shape[1], dtype=np.int64)
    if len(quantised):
        np.sum(quantised, axis=0, out=local)
    total = np.empty_like(local)
    comm.Allreduce(local, total, op=SUM)
    return total


def exact_column_sums(comm, values, n_total):
    """Column sums over every rank's rows, with the same bits for any rank count.

    Collective (two small allreduces).

    Parameters
    ----------
    comm : Communicator
    values : ndarray of shape (n_local, n_columns)
        This rank's rows (``n_local`` may be 0).
    n_total : int
        Rows over all ranks (bounds the number of terms, so no sum overflows).

    Returns
    -------
    ndarray of shape (n_columns,)
    """
    values = np.asarray(values, dtype=np.float64)
    local_max = np.zeros(values.shape[1])
    if len(values):
        np.max(np.abs(values), axis=0, out=local_max)
    global_max = np.empty_like(local_max)
    comm.Allreduce(local_max, global_max, op=MAX)
    scales = column_scales(global_max, n_total)
    return integer_sums(comm, to_fixed(values, scales)) / scales


@njit(nogil=True, cache=True)
def max_abs(values):
    """Largest magnitude of a 1-D array (0 when empty): one pass, no temporary. Local."""
    best = 0.0
    for i in range(values.shape[0]):
        v = abs(values[i])
        if v > best:
            best = v
    return best


@njit(nogil=True, cache=True)
def fixed_sum(values, scale):
    """``to_fixed(values, scale).sum()`` in one pass (int64, exact). Local."""
    total = 0
    for i in range(values.shape[0]):
        total += np.int64(np.rint(values[i] * scale))
    return total
