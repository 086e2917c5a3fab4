"""Testing SPMD code: collective assertions, and a pytest plugin (:mod:`mpiml.testing.plugin`).

Installing mpiml registers the plugin with pytest (the ``pytest11`` entry point). A test
that takes the ``spmd`` fixture runs one body on thread ranks in-process, and on the MPI
world under ``mpiexec -n P python -m pytest --with-mpi``; see :mod:`mpiml.testing.plugin`.

The helpers here are collective: every rank of ``comm`` must call them. They turn a
failure on some ranks into one failure on every rank, which names the failing ranks,
so that no rank is left waiting for the others in its next collective.
"""

__all__ = ["SPMDAssertionError", "assert_all_ranks", "rank_failures"]

import contextlib


class SPMDAssertionError(AssertionError):
    """A check failed on some ranks; raised on every rank.

    Attributes
    ----------
    ranks : list of int
        The ranks on which the check failed.
    """

    collective = True   # raised alike on every rank: launchers report it once

    def __init__(self, message, ranks):
        super().__init__(message)
        self.ranks = list(ranks)


def _decide(comm, failure, cause=None):
    """Collective: raise :class:`SPMDAssertionError` on every rank if any rank failed."""
    __tracebackhide__ = True   # pytest shows the caller's frame, not this one
    reports = comm.allgather(failure)
    failing = [rank for rank, text in enumerate(reports) if text is not None]
    if not failing:
        return
    lines = "\n".join(f"  rank {rank}: " + reports[rank].replace("\n", "\n    ")
                      for rank in failing)
    exc = SPMDAssertionError(f"failed on rank(s) {failing} of {comm.size}:\n{lines}", failing)
    raise exc from cause


def _describe(exc):
    text = str(exc)
    if isinstance(exc, AssertionError):
        return text or "assertion failed"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def assert_all_ranks(comm, condition, msg=None):
    """Collective: check ``condition`` on every rank; fail on every rank if it fails on any.

    Parameters
    ----------
    comm : Communicator
    condition : bool or callable
        This rank's check: a truth value, or a function of no arguments that returns one
        or raises (an ``assert`` inside it fails the check with its own message).
    msg : str, optional
        Text reported for a false ``condition``.

    Raises
    ------
    SPMDAssertionError
        On every rank, when the check failed on at least one; its message names each
        failing rank with its reason, and its ``ranks`` attribute lists them.

    Examples
    --------
    >>> def body(comm):
    ...     part = comm.rank + 1
    ...     assert_all_ranks(comm, part > 0, f"rank {comm.rank} holds {part}")
    """
    __tracebackhide__ = True
    failure, cause = None, None
    try:
        ok = condition() if callable(condition) else condition
        if not ok:
            failure = msg or "condition is false"
    except Exception as exc:  # noqa: BLE001 - any failed check is reported collectively
        failure, cause = _describe(exc), exc
    _decide(comm, failure, cause)


@contextlib.contextmanager
def rank_failures(comm):
    """Collective context: an exception in the block on some ranks fails every rank.

    Every rank runs the block, then the ranks agree: if the block raised an
    :class:`Exception` (an ``assert`` included) on any rank, every rank raises
    :class:`SPMDAssertionError` naming the failing ranks and their errors (on a failing
    rank its own exception is the cause). The block must not leave a collective
    unfinished on some ranks: put only checks and local work in it, or collectives
    that every rank reaches.

    Parameters
    ----------
    comm : Communicator

    Examples
    --------
    >>> def body(comm):
    ...     with rank_failures(comm):
    ...         assert comm.size >= 1
    """
    failure, cause = None, None
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - any failure is reported collectively
        failure, cause = _describe(exc), exc
    _decide(comm, failure, cause)
