"""Process grids: ``pr x pc`` ranks in row-major order, with row and column communicators."""

__all__ = ["LinalgError", "ProcessGrid", "grid_shape", "check_cannon_ranks", "default_grid"]

import math
import threading
import weakref

import numpy as np

from ..errors import MpimlError


class LinalgError(MpimlError, ValueError):
    """Bad input to a distributed linear-algebra routine (shapes, dtypes, grids)."""


def grid_shape(nranks):
    """The most square grid ``(pr, pc)`` with ``pr * pc == nranks`` and ``pr <= pc``.

    A prime rank count gives ``(1, nranks)``. Pure function: no communication.

    Parameters
    ----------
    nranks : int
        Number of ranks, >= 1.

    Returns
    -------
    tuple of int
        ``(pr, pc)``.
    """
    nranks = int(nranks)
    if nranks < 1:
        raise LinalgError(f"the number of ranks must be >= 1, got {nranks}")
    pr = math.isqrt(nranks)
    while nranks % pr:
        pr -= 1
    return pr, nranks // pr


def check_cannon_ranks(nranks):
    """Side of the square grid for Cannon's algorithm on ``nranks`` ranks.

    Raises
    ------
    LinalgError
        If ``nranks`` is not a perfect square; the message suggests SUMMA.
    """
    q = math.isqrt(int(nranks))
    if q * q != nranks:
        lower, upper = q * q, (q + 1) ** 2
        raise LinalgError(
            f"algo 'cannon' needs a square number of ranks (1, 4, 9, 16, ...), got "
            f"{nranks}; run on {lower} or {upper} ranks, or use --algo summa, which "
            f"takes any rank count")
    return q


class ProcessGrid:
    """A ``pr x pc`` grid over the ranks of a communicator (collective to create).

    Rank ``r`` sits at row ``r // pc`` and column ``r % pc``. The grid keeps its own
    duplicate of ``comm`` (its messages never mix with the caller's) and two
    sub-communicators made with ``Split``: ``row_comm`` joins the ranks of one grid
    row (its rank is the grid column) and ``col_comm`` joins the ranks of one grid
    column (its rank is the grid row).

    Parameters
    ----------
    comm : Communicator
    shape : tuple of int, optional
        ``(pr, pc)`` with ``pr * pc == comm.size``; default :func:`grid_shape`.

    Attributes
    ----------
    comm, row_comm, col_comm : Communicator
    shape : tuple of int
        ``(pr, pc)``.
    row, col : int
        This rank's grid coordinates.

    Notes
    -----
    The grid also keeps this rank's workspace: the receive buffers of the last
    multiplication, reused by the next one of the same size or smaller (so repeated
    products neither allocate nor touch fresh pages). :meth:`release_workspace`
    frees them.
    """

    def __init__(self, comm, shape=None):
        if shape is None:
            shape = grid_shape(comm.size)
        pr, pc = (int(s) for s in shape)
        if pr < 1 or pc < 1 or pr * pc != comm.size:
            raise LinalgError(f"grid shape {tuple(shape)} does not match {comm.size} ranks")
        self.shape = (pr, pc)
        self.comm = comm.Dup()
        self.row, self.col = divmod(self.comm.rank, pc)
        self.row_comm = self.comm.Split(self.row, self.col)
        self.col_comm = self.comm.Split(self.col, self.row)
        self._workspace = {}
        self._node_ranks = None

    @classmethod
    def square(cls, comm):
        """The ``q x q`` grid that Cannon's algorithm needs (collective).

        Raises :class:`LinalgError` on every rank if ``comm.size`` is not a square.
        """
        q = check_cannon_ranks(comm.size)
        return cls(comm, (q, q))

    @property
    def size(self):
        return self.comm.size

    @property
    def rank(self):
        return self.comm.rank

    @property
    def backend(self):
        return self.comm.backend

    def node_ranks(self):
        """The grid ranks on this rank's node (sharing its memory), in increasing order.

        Collective the first time (every rank learns its node's members), then kept.
        On the threads backend every rank is on one node.
        """
        if self._node_ranks is None:
            self._node_ranks = tuple(self.comm.node_comm().allgather(self.rank))
        return self._node_ranks

    def workspace(self, name, size, dtype):
        """Flat buffer of ``size`` elements of ``dtype``, kept between calls under ``name``
        (not collective; contents undefined)."""
        dtype = np.dtype(dtype)
        buf = self._workspace.get(name)
        if buf is None or buf.dtype != dtype or buf.size < size:
            self._workspace[name] = None          # free the old one first
            buf = self._workspace[name] = np.empty(size, dtype)
        return buf[:size]

    def release_workspace(self):
        """Free the buffers kept by :meth:`workspace` (not collective)."""
        self._workspace.clear()

    def rank_of(self, row, col):
        """Rank (in :attr:`comm`) of the grid position ``(row, col)``."""
        return row * self.shape[1] + col

    def __repr__(self):
        pr, pc = self.shape
        return (f"<ProcessGrid {pr}x{pc} {self.backend} rank {self.rank} "
                f"at ({self.row}, {self.col})>")


_DEFAULT_GRIDS = weakref.WeakKeyDictionary()
_DEFAULT_GRIDS_LOCK = threading.Lock()   # thread ranks share this module


def default_grid(comm):
    """The most square :class:`ProcessGrid` over ``comm``, made once per communicator.

    Collective the first time it is called on ``comm`` (every rank makes its grid),
    then a lookup. Everything that takes a communicator where a grid is expected
    uses it, so repeated calls neither make new communicators (an MPI library has a
    few thousand at most) nor put matrices made from one communicator on different
    grids. The grid lives as long as ``comm``.
    """
    with _DEFAULT_GRIDS_LOCK:
        grid = _DEFAULT_GRIDS.get(comm)
    if grid is None:
        grid = ProcessGrid(comm)       # outside the lock: collective
        with _DEFAULT_GRIDS_LOCK:
            _DEFAULT_GRIDS[comm] = grid
    return grid
