"""What every entry script in apps/ shares: ``--threads N`` and a clean launch."""

__all__ = ["add_launch_arguments", "launch", "positive_int", "non_negative_int", "positive_float",
           "fraction"]

import argparse
import sys

from ..errors import MpimlError
from ..run import run, under_mpiexec


def _number(cast, accept, requirement):
    """An argparse type: ``cast(text)`` that must satisfy ``accept``."""
    def convert(text):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or value != value or not accept(value):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {text!r}")
        return value
    convert.__name__ = requirement
    return convert


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: 0 < v < float("inf"), "a positive number")
fraction = _number(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")


def add_launch_arguments(parser):
    """Add ``--threads N`` (run N thread ranks in this process) and ``--blas-threads``."""
    group = parser.add_argument_group("launch")
    group.add_argument("--threads", type=positive_int, metavar="N",
                       help="run N ranks as threads in this process (instead of mpiexec)")
    group.add_argument("--blas-threads", type=positive_int, metavar="N",
                       help="BLAS threads per rank (default: 1 when ranks share a node)")
    return parser


def launch(fn, args, *fn_args, **fn_kwargs):
    """Run ``fn(comm, *fn_args, **fn_kwargs)`` as the parsed ``args`` ask.

    Returns rank 0's result in thread mode, this rank's result under MPI. A user error
    (:class:`~mpiml.errors.MpimlError`) is printed once as one line and the process
    exits with status 1; under MPI an error on one rank ends every rank.
    """
    if args.threads is not None and under_mpiexec():
        from ..comm import world
        comm = world()
        if comm.size > 1:  # every rank sees the same flags: rank 0 says it once
            if comm.rank == 0:
                print("error: use either mpiexec -n P or --threads N, not both",
                      file=sys.stderr, flush=True)
            comm.Barrier()
            sys.exit(2)
    try:
        result = run(fn, *fn_args, threads=args.threads, blas_threads=args.blas_threads,
                     **fn_kwargs)
    except MpimlError as exc:
        if not under_mpiexec() or _rank_zero():
            _fail(str(exc), 1)
        sys.exit(1)
    return result[0] if args.threads is not None else result


def _rank_zero():
    from ..comm import world
    return world().rank == 0


def _fail(message, status):
    sys.stdout.flush()
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)
