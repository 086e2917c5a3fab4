"""One Communicator interface, two backends: ``mpi`` (mpi4py) and ``threads``.

Algorithms receive a :class:`Communicator` and use nothing else to talk to other
ranks. Importing this package does not import mpi4py; :func:`world` does.
"""

__all__ = ["Communicator", "world", "self_comm", "agree", "collective_error", "global_offset",
           "default_comm", "resolve_comm", "current_comm", "block_range", "block_counts",
           "SUM", "PROD", "MIN", "MAX", "MAXLOC", "MINLOC", "IN_PLACE", "ANY_SOURCE", "ANY_TAG",
           "COMM_TYPE_SHARED", "SharedArray", "node_memory", "process_memory"]

from .base import Communicator
from .collective import agree, collective_error, global_offset
from .context import current_comm, default_comm, resolve_comm
from .ops import (ANY_SOURCE, ANY_TAG, COMM_TYPE_SHARED, IN_PLACE, MAX, MAXLOC, MIN, MINLOC,
                  PROD, SUM)
from .partition import block_counts, block_range
from .shared import SharedArray, node_memory, process_memory


def world():
    """The MPI world as an mpiml Communicator (initialises MPI on first use)."""
    from .mpi import world as _world
    return _world()


def self_comm():
    """A Communicator of one rank (this thread alone), for data held by one process."""
    from .threads import self_comm as _self_comm
    return _self_comm()
