"""Entry points for distributed matrix multiplication."""

__all__ = ["ALGORITHMS", "matmul", "multiply", "comm_model", "check_algo"]

import numpy as np

from .cannon import cannon, cannon_comm_model
from .grid import LinalgError, check_cannon_ranks, default_grid, grid_shape
from .matrix import DistributedMatrix, _as_matrix
from .summa import summa, summa_comm_model

ALGORITHMS = ("summa", "cannon")


def check_algo(algo, nranks):
    """Validate an algorithm name for ``nranks`` ranks and return its grid shape.

    Pure function (no communication), so every rank reaches the same verdict before
    any message is sent. Raises :class:`LinalgError` for an unknown name, or for
    Cannon on a rank count that is not a square.
    """
    if algo not in ALGORITHMS:
        raise LinalgError(f"algo must be one of {', '.join(ALGORITHMS)}, got {algo!r}")
    if algo == "cannon":
        q = check_cannon_ranks(nranks)
        return q, q
    return grid_shape(nranks)


def comm_model(algo, m, k, n, grid, itemsize):
    """Bytes the busiest rank receives, by the algorithm's model (pure function).

    Parameters
    ----------
    algo : {"summa", "cannon"}
    m, k, n : int
        ``C (m x n) = A (m x k) @ B (k x n)``.
    grid : tuple of int
        ``(pr, pc)``.
    itemsize : int
        Bytes per element.
    """
    if algo == "cannon":
        return cannon_comm_model(m, k, n, grid[0], itemsize)
    return summa_comm_model(m, k, n, grid, itemsize)


def multiply(a, b, algo="summa", out=None, panel=None, counter=None):
    """Distributed ``C = A @ B`` on distributed matrices (collective).

    Parameters
    ----------
    a : DistributedMatrix of shape (m, k)
    b : DistributedMatrix of shape (k, n)
    algo : {"summa", "cannon"}
        Cannon needs a square grid.
    out : DistributedMatrix of shape (m, n), optional
        Written in place.
    panel : int, optional
        SUMMA's panel width.
    counter : CommCounter, optional
        Counts the bytes this rank receives.

    Returns
    -------
    DistributedMatrix of shape (m, n)
    """
    if algo not in ALGORITHMS:
        raise LinalgError(f"algo must be one of {', '.join(ALGORITHMS)}, got {algo!r}")
    if algo == "cannon":
        if panel is not None:
            raise LinalgError("panel applies to algo 'summa' only")
        return cannon(a, b, out=out, counter=counter)
    return summa(a, b, out=out, panel=panel, counter=counter)


def matmul(a, b, comm, algo="summa", root=0, panel=None):
    """``A @ B`` for whole matrices held by ``root`` (collective).

    The matrices are scattered over the grid that ``algo`` needs (the most square
    one for SUMMA, ``q x q`` for Cannon), multiplied there, and the product is
    gathered to ``root``. On the threads backend nothing is scattered or gathered:
    every rank reads its blocks of A and B from root's arrays and writes its block
    of C straight into the one result array.

    Parameters
    ----------
    a : array_like of shape (m, k) on root; ``None`` elsewhere
    b : array_like of shape (k, n) on root; ``None`` elsewhere
    comm : Communicator
    algo : {"summa", "cannon"}
    root : int
    panel : int, optional
        SUMMA's panel width.

    Returns
    -------
    ndarray of shape (m, n) on root, ``None`` on the other ranks.
        dtype: the common dtype of A and B (integers become float64).
    """
    check_algo(algo, comm.size)
    if not isinstance(root, (int, np.integer)) or not 0 <= root < comm.size:
        raise LinalgError(f"root must be a rank in [0, {comm.size}), got {root!r}")
    error = None
    if comm.rank == root:
        try:
            a, b = _as_matrix(a, "A"), _as_matrix(b, "B")
            if a.shape[1] != b.shape[0]:
                raise LinalgError(f"inner dimensions differ: A is {a.shape[0]}x{a.shape[1]}, "
                                  f"B is {b.shape[0]}x{b.shape[1]}")
            dtype = np.result_type(a.dtype, b.dtype)
            a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
        except LinalgError as exc:
            error = str(exc)
    error = comm.bcast(error, root=root)
    if error is not None:
        raise LinalgError(error)
    grid = default_grid(comm)          # the grid ``algo`` needs: on q * q ranks it is q x q
    shared = comm.backend == "threads"
    a = DistributedMatrix.from_root(a, grid, root, shared=shared)
    b = DistributedMatrix.from_root(b, grid, root, shared=shared)
    c = DistributedMatrix.empty((a.shape[0], b.shape[1]), grid, a.dtype, shared=shared)
    multiply(a, b, algo, out=c, panel=panel)
    product = c.gather(root)
    grid.release_workspace()           # the grid outlives this call; its buffers need not
    return product
