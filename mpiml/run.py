"""Launch an SPMD function on thread ranks, on the MPI world, or on one rank."""

__all__ = ["run", "under_mpiexec"]

import os
import sys
import traceback
from contextlib import nullcontext

from .errors import MpimlError

_LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE")


def under_mpiexec():
    """True when this process was started by an MPI launcher (mpiexec, mpirun, srun)."""
    if os.environ.get("MPIML_BACKEND") == "threads":
        return False
    if os.environ.get("MPIML_BACKEND") == "mpi":
        return True
    return any(v in os.environ for v in _LAUNCHER_VARIABLES)


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MpimlError(f"{name} must be a positive integer, got {value!r}")
    return value


def _blas_limit(ranks_sharing_node, blas_threads):
    """Context that limits BLAS threads: one per rank when ranks share a node."""
    if blas_threads is None and os.environ.get("MPIML_BLAS_THREADS"):
        blas_threads = int(os.environ["MPIML_BLAS_THREADS"])
    if blas_threads is None:
        blas_threads = 1 if ranks_sharing_node > 1 else None
    if blas_threads is None:
        return nullcontext()
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=_positive_int(blas_threads, "blas_threads"), user_api="blas")


def _report(rank, size, exc):
    """Print a failing rank's error once, every line tagged with the rank."""
    tag = f"[rank {rank}]"
    if isinstance(exc, MpimlError):
        text = f"mpiml: error on rank {rank} of {size}: {exc}\n"
    else:
        lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
        text = f"mpiml: rank {rank} of {size} failed; ending the job\n" + "".join(
            f"{tag} {line}\n" for chunk in lines for line in chunk.rstrip("\n").split("\n"))
    sys.stdout.flush()
    sys.stderr.write(text)
    sys.stderr.flush()


def run(fn, *args, threads=None, blas_threads=None, **kwargs):
    """Run ``fn(comm, *args, **kwargs)`` on every rank (collective launch).

    Parameters
    ----------
    fn : callable
        The SPMD function; its first argument is the Communicator.
    threads : int, optional
        Run on this many thread ranks in this process and return the list of the
        per-rank results. When omitted: under an MPI launcher, run on the MPI world and
        return this rank's result; otherwise run on one rank and return its result.
    blas_threads : int, optional
        BLAS threads per rank. Default: 1 when several ranks share the node
        (environment variable ``MPIML_BLAS_THREADS`` overrides), else unchanged.

    Returns
    -------
    list or object
        Per-rank results (thread mode) or this rank's result.

    Notes
    -----
    An uncaught error on any rank ends the whole job. In thread mode the other ranks
    are woken up and the original exception is raised here. Under MPI the failing
    rank prints its error once (tagged with its rank) and aborts every process, so no
    rank is left waiting in a collective. An error raised identically on every rank
    after a collective decision (``collective = True``, see :func:`mpiml.comm.agree`)
    is raised on every rank instead.
    """
    if threads is not None:
        _positive_int(threads, "threads")
        from .comm.threads import run_threads
        with _blas_limit(threads, blas_threads):
            return run_threads(fn, threads, args, kwargs)
    if not under_mpiexec():
        from .comm.threads import run_threads
        with _blas_limit(1, blas_threads):
            return run_threads(fn, 1, args, kwargs)[0]

    from .comm.mpi import ranks_on_this_node, world, world_abort
    comm = world()
    with _blas_limit(ranks_on_this_node(), blas_threads):
        try:
            return fn(comm, *args, **kwargs)
        except SystemExit as exc:
            if exc.code in (None, 0):
                raise
            if isinstance(exc.code, str):
                _report(comm.rank, comm.size, MpimlError(exc.code))
            world_abort(exc.code if isinstance(exc.code, int) else 1)
        except BaseException as exc:  # noqa: BLE001 - any failure must end every rank
            if getattr(exc, "collective", False):
                raise
            _report(comm.rank, comm.size, exc)
            world_abort(1)
