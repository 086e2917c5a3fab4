"""Collective helpers every layer above the communicator shares.

* :func:`agree` turns a check that may fail on some ranks into one decision;
* :func:`collective_error` marks an exception that every rank raises alike;
* :func:`global_offset` gives this rank's place in the global row order.
"""

__all__ = ["agree", "collective_error", "global_offset"]

from ..errors import MpimlError


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


def collective_error(exc):
    """Mark ``exc`` as raised identically on every rank (after a collective decision),
    so that launchers print it once instead of aborting the job. Returns ``exc``."""
    exc.collective = True
    return exc


def global_offset(n_local, comm):
    """Collective: ``(offset, n_total)`` of this rank's rows in the global data set.

    Rank r holds rows ``[offset, offset + n_local)``; offsets follow rank order.
    """
    counts = comm.allgather(int(n_local))
    return int(sum(counts[:comm.rank])), int(sum(counts))
