"""Cannon's algorithm (1969) on a square ``q x q`` grid.

After an initial skew (row ``i`` of A moves ``i`` places left, column ``j`` of B
moves ``j`` places up), rank ``(i, j)`` holds ``A[i, l]`` and ``B[l, j]`` with
``l = (i + j) mod q``. Each of the ``q`` steps multiplies the pair it holds into
its block of C, then passes its A block one place left and its B block one place
up. The inner dimension is cut with the same partition for the columns of A and
the rows of B, so the blocks always line up, whatever ``m, k, n`` (uneven and
empty blocks included). Exchanges are ``Sendrecv`` into a second preallocated
buffer, swapped after each step (what ``Sendrecv_replace`` does, without a
temporary per step).
"""

__all__ = ["cannon", "cannon_comm_model"]

import numpy as np

from ..comm.partition import block_counts
from .blas import blas_available, gemm
from .grid import LinalgError
from .matrix import _check_product

_TAG_A, _TAG_B = 11, 12


def cannon_comm_model(m, k, n, q, itemsize):
    """Bytes the busiest rank receives in :func:`cannon` on a ``q x q`` grid (pure).

    Rank ``(i, j)`` receives every A block of its grid row but the first one it
    multiplies, ``l = (i + j) mod q`` (and that one too when the skew moves it,
    ``i > 0``), likewise for B down its grid column: about ``m*k/q + k*n/q``
    elements per rank.
    """
    mb, _ = block_counts(m, q)
    nb, _ = block_counts(n, q)
    kb, _ = block_counts(k, q)
    most = 0
    for i in range(q):
        for j in range(q):
            first = int(kb[(i + j) % q])
            a_elems = int(mb[i]) * (k - first + (first if i > 0 else 0))
            b_elems = int(nb[j]) * (k - first + (first if j > 0 else 0))
            most = max(most, a_elems + b_elems)
    return most * int(itemsize)


def cannon(a, b, out=None, counter=None):
    """Distributed ``C = A @ B`` with Cannon's algorithm (collective over the grid).

    Parameters
    ----------
    a : DistributedMatrix of shape (m, k)
    b : DistributedMatrix of shape (k, n)
        Both on the same square ``q x q`` grid (:meth:`ProcessGrid.square`).
    out : DistributedMatrix of shape (m, n), optional
        Written in place; same dtype as the product.
    counter : CommCounter, optional
        Receives the number of bytes this rank receives.

    Returns
    -------
    DistributedMatrix of shape (m, n)

    Raises
    ------
    LinalgError
        If the grid is not square (on every rank: the check needs no communication).
    """
    pr, pc = a.grid.shape
    if pr != pc:
        raise LinalgError(f"cannon: needs a square q x q grid, got {pr}x{pc}; "
                          f"use summa, which takes any grid")
    m, k, n, dtype, out = _check_product(a, b, out, "cannon")
    grid, q = a.grid, pr
    i, j = grid.row, grid.col
    c_local = out.local
    mb, nb = c_local.shape
    scratch = None if blas_available(dtype) else grid.workspace("scratch", mb * nb, dtype)
    a_cur = np.ascontiguousarray(a.local, dtype=dtype)
    b_cur = np.ascontiguousarray(b.local, dtype=dtype)
    if q == 1:
        gemm(a_cur, b_cur, c_local, scratch=scratch)
        return out
    kb, _ = block_counts(k, q)
    widest = int(kb.max())
    a_bufs = [grid.workspace(f"cannon A{i}", mb * widest, dtype) for i in range(2)]
    b_bufs = [grid.workspace(f"cannon B{i}", widest * nb, dtype) for i in range(2)]
    row_comm, col_comm = grid.row_comm, grid.col_comm
    received = 0
    held = (i + j) % q
    # initial skew: straight to the destination, one exchange each
    if i > 0:
        a_cur = _exchange(row_comm, a_cur, (j - i) % q, held, a_bufs[0], (mb, kb[held]), _TAG_A)
        received += a_cur.nbytes
    if j > 0:
        b_cur = _exchange(col_comm, b_cur, (i - j) % q, held, b_bufs[0], (kb[held], nb), _TAG_B)
        received += b_cur.nbytes
    spare = 1
    for step in range(q):
        gemm(a_cur, b_cur, c_local, accumulate=step > 0, scratch=scratch)
        if step == q - 1:
            break
        held = (held + 1) % q
        a_cur = _exchange(row_comm, a_cur, (j - 1) % q, (j + 1) % q, a_bufs[spare],
                          (mb, kb[held]), _TAG_A)
        b_cur = _exchange(col_comm, b_cur, (i - 1) % q, (i + 1) % q, b_bufs[spare],
                          (kb[held], nb), _TAG_B)
        received += a_cur.nbytes + b_cur.nbytes
        spare = 1 - spare
    if counter is not None:
        counter.add(received)
    return out


def _exchange(comm, send, dest, source, buf, shape, tag):
    """Send ``send`` to ``dest``; return the block from ``source``, received into ``buf``."""
    recv = buf[:int(shape[0]) * int(shape[1])].reshape(int(shape[0]), int(shape[1]))
    comm.Sendrecv(send, dest, tag, recv, source, tag)
    return recv
