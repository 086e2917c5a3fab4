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
from ..tree._criteria import fixed_point_scale


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


def exact_column_sums(comm, columns, n_total):
    """Column sums over every rank's rows, with the same bits for any rank count.

    Collective (two small allreduces). Each column is read in one pass for its largest
    magnitude and one for its fixed-point sum (:func:`max_abs`, :func:`fixed_sum`), with
    no temporary array.

    Parameters
    ----------
    comm : Communicator
    columns : ndarray of shape (n_local, n_columns), or sequence of ndarray of shape (n_local,)
        This rank's rows (``n_local`` may be 0); numeric or bool.
    n_total : int
        Rows over all ranks (bounds the number of terms, so no sum overflows).

    Returns
    -------
    ndarray of shape (n_columns,)
    """
    if isinstance(columns, np.ndarray) and columns.ndim == 2:
        columns = [columns[:, j] for j in range(columns.shape[1])]
    columns = [c.view(np.uint8) if c.dtype == np.bool_ else c for c in columns]
    local_max = np.array([max_abs(c) for c in columns], dtype=np.float64)
    global_max = np.empty_like(local_max)
    comm.Allreduce(local_max, global_max, op=MAX)
    scales = column_scales(global_max, n_total)
    local = np.array([[fixed_sum(c, s) for c, s in zip(columns, scales)]], dtype=np.int64)
    return integer_sums(comm, local) / scales


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
