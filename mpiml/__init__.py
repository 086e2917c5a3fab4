"""mpiml: train and serve machine-learning models with message passing.

The same SPMD program runs under ``mpiexec`` (one process per rank, mpi4py) or as
threads in one process (``mpiml.run(fn, threads=N)`` or ``--threads N``).
Importing mpiml never imports mpi4py; only the MPI backend does.
"""

__version__ = "0.1.0"

from .comm import (ANY_SOURCE, ANY_TAG, IN_PLACE, MAX, MAXLOC, MIN, MINLOC, PROD, SUM, Communicator,
                   default_comm)
from .errors import (CollectiveMismatchError, CommError, DataError, InvalidParameterError,
                     ModelFileError, MpimlError, RankAborted, RankTimeout)
from .run import run

__all__ = [
    "run", "default_comm", "Communicator", "SUM", "PROD", "MIN", "MAX", "MAXLOC", "MINLOC",
    "IN_PLACE", "ANY_SOURCE", "ANY_TAG", "MpimlError", "CommError", "CollectiveMismatchError",
    "RankAborted", "RankTimeout", "ModelFileError", "InvalidParameterError", "DataError",
    "save", "load",
]


def __getattr__(name):
    # the model-file functions load lazily: serving and plain scripts stay light
    if name in ("save", "load"):
        from . import io
        return getattr(io, name)
    raise AttributeError(f"module 'mpiml' has no attribute {name!r}")
