"""One Communicator interface, two backends: ``mpi`` (mpi4py) and ``threads``.

Algorithms receive a :class:`Communicator` and use nothing else to talk to other
ranks. Importing this package does not import mpi4py; :func:`world` does.
"""

__all__ = ["Communicator", "world", "self_comm", "agree", "block_range", "block_counts",
           "SUM", "PROD", "MIN", "MAX", "MAXLOC", "MINLOC", "IN_PLACE", "ANY_SOURCE", "ANY_TAG"]

from ..errors import MpimlError
from .base import Communicator
from .ops import ANY_SOURCE, ANY_TAG, IN_PLACE, MAX, MAXLOC, MIN, MINLOC, PROD, SUM
from .partition import block_counts, block_range


def world():
    """The MPI world as an mpiml Communicator (initialises MPI on first use)."""
    from .mpi import world as _world
    return _world()


def self_comm():
    """A Communicator of one rank (this thread alone), for data held by one process."""
    from .threads import self_comm as _self_comm
    return _self_comm()


def agree(comm, error=None):
    """Collective: turn a check that may fail on some ranks into one decision.

    Every rank passes the exception it caught (or ``None``). If any rank passed one,
    every rank raises: the rank that failed first (lowest rank) re-raises its own
    exception, the others raise :class:`~mpiml.errors.MpimlError` with the same
    message. The raised exception has ``collective = True``: every rank raised it,
    so entry scripts print it once (on rank 0) and exit without aborting MPI.

    Parameters
    ----------
    comm : Communicator
    error : BaseException or None
        This rank's failure, if any.
    """
    reports = comm.allgather(None if error is None else f"{error}")
    for rank, message in enumerate(reports):
        if message is None:
            continue
        exc = error if rank == comm.rank else MpimlError(f"rank {rank}: {message}")
        exc.collective = True
        raise exc
