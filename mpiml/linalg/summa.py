"""SUMMA: the Scalable Universal Matrix Multiplication Algorithm (van de Geijn and
Watts, 1997) on any ``pr x pc`` grid.

``C = A @ B`` with A, B and C in the same 2-D block layout. The inner dimension is
cut into panels; for each panel the grid column that owns those columns of A
broadcasts them along its grid row, the grid row that owns those rows of B
broadcasts them along its grid column, and every rank adds the panel product to
its block of C. Panels never straddle an owner boundary, so any ``m, k, n`` works
on any grid, with uneven or empty blocks.
"""

__all__ = ["summa", "summa_panels", "summa_comm_model"]

import numpy as np

from ..comm.partition import block_counts, block_range
from .blas import blas_available, gemm
from .grid import LinalgError
from .matrix import _check_product

def summa_panels(k, grid_shape, panel=None):
    """The panels of the inner dimension, the same on every rank (pure function).

    Parameters
    ----------
    k : int
        Inner dimension.
    grid_shape : tuple of int
        ``(pr, pc)``.
    panel : int, optional
        Largest panel width; an owner's range wider than that is cut into equal parts.
        Default: no limit (one panel per owner range).

    Returns
    -------
    list of tuple
        ``(k0, k1, owner_col, owner_row)``: global columns ``[k0, k1)`` of A belong to
        grid column ``owner_col`` and those rows of B to grid row ``owner_row``.
    """
    pr, pc = grid_shape
    _, a_starts = block_counts(k, pc)
    _, b_starts = block_counts(k, pr)
    cuts = sorted(set(a_starts.tolist()) | set(b_starts.tolist()) | {k})
    panels = []
    for start, stop in zip(cuts[:-1], cuts[1:]):
        pieces = 1 if panel is None else -(-(stop - start) // panel)
        for p in range(pieces):
            lo, hi = block_range(stop - start, pieces, p)
            k0, k1 = start + lo, start + hi
            owner_col = int(np.searchsorted(a_starts, k0, side="right")) - 1
            owner_row = int(np.searchsorted(b_starts, k0, side="right")) - 1
            panels.append((k0, k1, owner_col, owner_row))
    return panels


def summa_comm_model(m, k, n, grid_shape, itemsize):
    """Bytes the busiest rank receives in :func:`summa` (pure function).

    Rank ``(i, j)`` receives the A panels it does not own, ``mb_i * (k - ka_j)``
    elements, and the B panels it does not own, ``nb_j * (k - kb_i)`` elements,
    whatever the panel width: about ``m*k/pr + k*n/pc`` elements per rank.
    """
    pr, pc = grid_shape
    mb, _ = block_counts(m, pr)
    nb, _ = block_counts(n, pc)
    ka, _ = block_counts(k, pc)
    kb, _ = block_counts(k, pr)
    per_rank = mb[:, None] * (k - ka[None, :]) + nb[None, :] * (k - kb[:, None])
    return int(per_rank.max()) * int(itemsize)


def summa(a, b, out=None, panel=None, counter=None):
    """Distributed ``C = A @ B`` with SUMMA (collective over the grid).

    Parameters
    ----------
    a : DistributedMatrix of shape (m, k)
    b : DistributedMatrix of shape (k, n)
        On a grid of the same shape as ``a``.
    out : DistributedMatrix of shape (m, n), optional
        Written in place (e.g. a ``shared`` matrix in thread mode); same dtype as the
        product.
    panel : int, optional
        Largest panel width. Default: no limit: a panel is the whole range of the
        inner dimension that one grid column of A and one grid row of B own, so the
        root broadcasts straight from its block (no packing) and the receive buffers
        take about as much memory as the local blocks of A and B. A width ``w`` caps
        the buffers at ``(mb + nb) * w`` elements, at the cost of more, smaller
        broadcasts and of packing A's panels on the root.
    counter : CommCounter, optional
        Receives the number of bytes this rank receives.

    Returns
    -------
    DistributedMatrix of shape (m, n)
    """
    if panel is not None and (isinstance(panel, bool) or not isinstance(panel, (int, np.integer))
                              or panel < 1):
        raise LinalgError(f"summa: panel must be an integer >= 1, got {panel!r}")
    m, k, n, dtype, out = _check_product(a, b, out, "summa")
    grid = a.grid
    pr, pc = grid.shape
    a_local = a.local.astype(dtype, copy=False)
    b_local = b.local.astype(dtype, copy=False)
    c_local = out.local
    mb, nb = c_local.shape
    a_first = block_range(k, pc, grid.col)[0]
    b_first = block_range(k, pr, grid.row)[0]
    panels = summa_panels(k, grid.shape, None if panel is None else int(panel))
    widest = max((k1 - k0 for k0, k1, _, _ in panels), default=0)
    a_buf = grid.workspace("summa A", mb * widest, dtype) if pc > 1 else None
    b_buf = grid.workspace("summa B", widest * nb, dtype) if pr > 1 else None
    scratch = None if blas_available(dtype) else grid.workspace("scratch", mb * nb, dtype)
    received = 0
    if not panels:
        c_local[...] = 0
    for step, (k0, k1, owner_col, owner_row) in enumerate(panels):
        width = k1 - k0
        a_panel = a_local[:, k0 - a_first:k1 - a_first] if grid.col == owner_col else None
        b_panel = b_local[k0 - b_first:k1 - b_first] if grid.row == owner_row else None
        if pc > 1:
            a_panel = _bcast_panel(grid.row_comm, a_panel, owner_col, a_buf, (mb, width))
            received += 0 if grid.col == owner_col else a_panel.nbytes
        if pr > 1:
            b_panel = _bcast_panel(grid.col_comm, b_panel, owner_row, b_buf, (width, nb))
            received += 0 if grid.row == owner_row else b_panel.nbytes
        gemm(a_panel, b_panel, c_local, accumulate=step > 0, scratch=scratch)
    if counter is not None:
        counter.add(received)
    return out


def _bcast_panel(comm, panel, root, buf, shape):
    """Broadcast ``panel`` from ``root``; the others receive into ``buf``. The root
    sends straight from its block when the panel is contiguous there."""
    if comm.rank == root:
        if not panel.flags.c_contiguous:
            packed = buf[:panel.size].reshape(panel.shape)
            packed[...] = panel
            panel = packed
        comm.Bcast(panel, root=root)
        return panel
    recv = buf[:shape[0] * shape[1]].reshape(shape)
    comm.Bcast(recv, root=root)
    return recv
