"""MPI backend: a thin wrapper over mpi4py on a duplicate of the world communicator.

This is the only module of mpiml that imports mpi4py. Importing it initialises MPI.
"""

__all__ = ["MPICommunicator", "world", "library_version", "blocked_in"]

import atexit
import os
import time

import numpy as np


def _yield_when_oversubscribed():
    """Let idle MPICH ranks sleep in the progress loop when ranks outnumber cores.

    Hydra tells each process how many ranks share its node before MPI starts; the
    setting only applies when the user has not chosen one.
    """
    local = os.environ.get("MPI_LOCALNRANKS")
    try:
        oversubscribed = local is not None and int(local) > (os.cpu_count() or 1)
    except ValueError:
        oversubscribed = False
    if oversubscribed:
        os.environ.setdefault("MPIR_CVAR_CH4_PROGRESS_THROTTLE", "1")


_yield_when_oversubscribed()

from mpi4py import MPI  # noqa: E402
from mpi4py.util.dtlib import from_numpy_dtype  # noqa: E402

from ..errors import CommError  # noqa: E402
from .base import Communicator, as_buffer, as_vector_spec, describe  # noqa: E402
from .ops import (ANY_SOURCE, ANY_TAG, COMM_TYPE_SHARED, IN_PLACE, MAX, MIN, PROD,  # noqa: E402
                  SUM, check_op, fold)
from .shared import SharedArray, WindowRegistry  # noqa: E402

_ABORT_GRACE_SECONDS = 0.3
# the windows of every communicator that made one, in that order (the same on every
# rank); kept after the communicator is gone: its windows are freed before MPI_Finalize
_REGISTRIES = []
_MPI_OPS = {SUM.name: MPI.SUM, PROD.name: MPI.PROD, MIN.name: MPI.MIN, MAX.name: MPI.MAX}
# (call, communicator size) while this process is inside a blocking MPI call, else None;
# one store before and one after each call, read by watchdogs (see blocked_in)
_BLOCKED = [None]


def blocked_in():
    """The communication call this process is blocked in, or ``None``.

    Returns
    -------
    tuple of (str, int) or None
        The call's name and the size of its communicator, while an MPI Communicator
        method of this process runs; ``None`` between calls. Read by
        :mod:`mpiml.testing` to report where a rank waits when a test times out.
    """
    return _BLOCKED[0]


def _source(source):
    return MPI.ANY_SOURCE if source == ANY_SOURCE else source


def _tag(tag):
    return MPI.ANY_TAG if tag == ANY_TAG else tag


def _vector(spec):
    arr, counts, displs = spec
    return [arr, (counts, displs), from_numpy_dtype(arr.dtype)]


class MPICommunicator(Communicator):
    """A Communicator over an ``mpi4py.MPI.Comm`` (which it owns and may free)."""

    backend = "mpi"

    def __init__(self, comm):
        self._comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self._self_sends = []   # (request, buffer) of messages a rank sent to itself
        self._windows = WindowRegistry()   # shared windows made by shared_array

    @property
    def mpi_comm(self):
        """The underlying mpi4py communicator, for interoperating with other MPI code."""
        return self._comm

    # -- synchronisation and objects -----------------------------------------------------

    def Barrier(self):
        _BLOCKED[0] = ("Barrier", self.size)
        try:
            self._comm.Barrier()
        finally:
            _BLOCKED[0] = None

    def bcast(self, obj, root=0):
        _BLOCKED[0] = ("bcast", self.size)
        try:
            return self._comm.bcast(obj, self._check_root(root, "bcast"))
        finally:
            _BLOCKED[0] = None

    def scatter(self, sendobj, root=0):
        _BLOCKED[0] = ("scatter", self.size)
        try:
            return self._comm.scatter(sendobj, self._check_root(root, "scatter"))
        finally:
            _BLOCKED[0] = None

    def gather(self, sendobj, root=0):
        _BLOCKED[0] = ("gather", self.size)
        try:
            return self._comm.gather(sendobj, self._check_root(root, "gather"))
        finally:
            _BLOCKED[0] = None

    def allgather(self, sendobj):
        _BLOCKED[0] = ("allgather", self.size)
        try:
            return self._comm.allgather(sendobj)
        finally:
            _BLOCKED[0] = None

    def reduce(self, sendobj, op=SUM, root=0):
        # folded in rank order on root: the same bits as the threads backend
        op = check_op(op)
        _BLOCKED[0] = ("reduce", self.size)
        try:
            values = self._comm.gather(sendobj, self._check_root(root, "reduce"))
        finally:
            _BLOCKED[0] = None
        return None if values is None else fold(op, values)

    def allreduce(self, sendobj, op=SUM):
        # folded in rank order on every rank: every rank gets the same bits
        op = check_op(op)
        _BLOCKED[0] = ("allreduce", self.size)
        try:
            return fold(op, self._comm.allgather(sendobj))
        finally:
            _BLOCKED[0] = None

    # -- buffers -----------------------------------------------------------------------

    def Bcast(self, buf, root=0):
        root = self._check_root(root, "Bcast")
        _BLOCKED[0] = ("Bcast", self.size)
        try:
            self._comm.Bcast(as_buffer(buf, "Bcast", writable=self.rank != root), root)
        finally:
            _BLOCKED[0] = None

    def Scatterv(self, sendbuf, recvbuf, root=0):
        root = self._check_root(root, "Scatterv")
        send = _vector(as_vector_spec(sendbuf, self.size, "Scatterv")) \
            if self.rank == root else None
        _BLOCKED[0] = ("Scatterv", self.size)
        try:
            self._comm.Scatterv(send, as_buffer(recvbuf, "Scatterv", writable=True), root)
        finally:
            _BLOCKED[0] = None

    def Gatherv(self, sendbuf, recvbuf, root=0):
        root = self._check_root(root, "Gatherv")
        recv = _vector(as_vector_spec(recvbuf, self.size, "Gatherv", writable=True)) \
            if self.rank == root else None
        _BLOCKED[0] = ("Gatherv", self.size)
        try:
            self._comm.Gatherv(as_buffer(sendbuf, "Gatherv"), recv, root)
        finally:
            _BLOCKED[0] = None

    def Allgather(self, sendbuf, recvbuf):
        """Equal blocks from every rank into ``recvbuf`` on every rank: ``MPI_Allgather``
        itself (no counts and displacements to make and check, as ``Allgatherv`` has)."""
        send = as_buffer(sendbuf, "Allgather")
        recv = as_buffer(recvbuf, "Allgather", writable=True)
        if recv.size != send.size * self.size or recv.dtype != send.dtype:
            raise CommError(f"Allgather: rank {self.rank} sends {describe(send)}, so its "
                            f"receive buffer must hold {send.size * self.size} {send.dtype}, "
                            f"not {describe(recv)}")
        _BLOCKED[0] = ("Allgather", self.size)
        try:
            self._comm.Allgather(send, recv)
        finally:
            _BLOCKED[0] = None

    def Allgatherv(self, sendbuf, recvbuf):
        recv = _vector(as_vector_spec(recvbuf, self.size, "Allgatherv", writable=True))
        _BLOCKED[0] = ("Allgatherv", self.size)
        try:
            self._comm.Allgatherv(as_buffer(sendbuf, "Allgatherv"), recv)
        finally:
            _BLOCKED[0] = None

    def Reduce(self, sendbuf, recvbuf, op=SUM, root=0):
        op = check_op(op, buffer=True)
        root = self._check_root(root, "Reduce")
        send, recv = self._reduction_buffers("Reduce", sendbuf, recvbuf, self.rank == root)
        _BLOCKED[0] = ("Reduce", self.size)
        try:
            self._comm.Reduce(send, recv, _MPI_OPS[op.name], root)
        finally:
            _BLOCKED[0] = None

    def Allreduce(self, sendbuf, recvbuf, op=SUM):
        op = check_op(op, buffer=True)
        send, recv = self._reduction_buffers("Allreduce", sendbuf, recvbuf, True)
        _BLOCKED[0] = ("Allreduce", self.size)
        try:
            self._comm.Allreduce(send, recv, _MPI_OPS[op.name])
        finally:
            _BLOCKED[0] = None

    def Reduce_scatter(self, sendbuf, recvbuf, recvcounts=None, op=SUM):
        op = check_op(op, buffer=True)
        as_buffer(sendbuf, "Reduce_scatter")
        as_buffer(recvbuf, "Reduce_scatter", writable=True)
        _, counts, _ = as_vector_spec([sendbuf, recvcounts], self.size, "Reduce_scatter")
        if counts[self.rank] != recvbuf.size:
            raise CommError(f"Reduce_scatter: rank {self.rank} receives {counts[self.rank]} "
                            f"elements but its buffer holds {recvbuf.size}")
        _BLOCKED[0] = ("Reduce_scatter", self.size)
        try:
            self._comm.Reduce_scatter(sendbuf, recvbuf, counts, _MPI_OPS[op.name])
        finally:
            _BLOCKED[0] = None

    def _reduction_buffers(self, call, sendbuf, recvbuf, receives):
        if sendbuf is IN_PLACE:
            if not receives:
                    raise CommError(f"{call}: IN_PLACE is only valid where the result is received")
            return MPI.IN_PLACE, as_buffer(recvbuf, call, writable=True)
        as_buffer(sendbuf, call)
        if not receives:
            return sendbuf, None
        as_buffer(recvbuf, call, writable=True)
        self._check_same(sendbuf, recvbuf, call)
        return sendbuf, recvbuf

    # -- point to point ----------------------------------------------------------------

    def _keep(self, request, data):
        # MPICH may block a standard send to oneself until it is received: such sends
        # are posted without waiting and kept alive here until they complete
        self._self_sends = [(r, d) for r, d in self._self_sends if not r.Test()]
        self._self_sends.append((request, data))

    def send(self, obj, dest, tag=0):
        dest, tag = self._check_peer(dest, "send"), self._check_tag(tag, "send")
        if dest == self.rank:
            self._keep(self._comm.isend(obj, dest, tag), None)
        else:
            _BLOCKED[0] = ("send", self.size)
            try:
                self._comm.send(obj, dest, tag)
            finally:
                _BLOCKED[0] = None

    def recv(self, source=ANY_SOURCE, tag=ANY_TAG):
        source = self._check_peer(source, "recv", "source", any_ok=True)
        _BLOCKED[0] = ("recv", self.size)
        try:
            return self._comm.recv(None, _source(source), _tag(self._check_tag(tag, "recv", True)))
        finally:
            _BLOCKED[0] = None

    def Send(self, buf, dest, tag=0):
        dest, tag = self._check_peer(dest, "Send"), self._check_tag(tag, "Send")
        as_buffer(buf, "Send")
        if dest == self.rank:
            data = buf.copy()
            self._keep(self._comm.Isend(data, dest, tag), data)
        else:
            _BLOCKED[0] = ("Send", self.size)
            try:
                self._comm.Send(buf, dest, tag)
            finally:
                _BLOCKED[0] = None

    def Recv(self, buf, source=ANY_SOURCE, tag=ANY_TAG):
        source = self._check_peer(source, "Recv", "source", any_ok=True)
        _BLOCKED[0] = ("Recv", self.size)
        try:
            self._comm.Recv(as_buffer(buf, "Recv", writable=True), _source(source),
                            _tag(self._check_tag(tag, "Recv", True)))
        finally:
            _BLOCKED[0] = None

    def Sendrecv(self, sendbuf, dest, sendtag=0, recvbuf=None, source=ANY_SOURCE,
                 recvtag=ANY_TAG):
        if recvbuf is None:
            raise CommError("Sendrecv: recvbuf is required")
        source = self._check_peer(source, "Sendrecv", "source", any_ok=True)
        _BLOCKED[0] = ("Sendrecv", self.size)
        try:
            self._comm.Sendrecv(as_buffer(sendbuf, "Sendrecv"), self._check_peer(dest, "Sendrecv"),
                                self._check_tag(sendtag, "Sendrecv"),
                                as_buffer(recvbuf, "Sendrecv", writable=True), _source(source),
                                _tag(self._check_tag(recvtag, "Sendrecv", True)))
        finally:
            _BLOCKED[0] = None

    def Sendrecv_replace(self, buf, dest, sendtag=0, source=ANY_SOURCE, recvtag=ANY_TAG):
        source = self._check_peer(source, "Sendrecv_replace", "source", any_ok=True)
        _BLOCKED[0] = ("Sendrecv_replace", self.size)
        try:
            self._comm.Sendrecv_replace(as_buffer(buf, "Sendrecv_replace", writable=True),
                                        self._check_peer(dest, "Sendrecv_replace"),
                                        self._check_tag(sendtag, "Sendrecv_replace"),
                                        _source(source),
                                        _tag(self._check_tag(recvtag, "Sendrecv_replace", True)))
        finally:
            _BLOCKED[0] = None

    # -- communicators -----------------------------------------------------------------

    def Split(self, color=0, key=0):
        _BLOCKED[0] = ("Split", self.size)
        try:
            new = self._comm.Split(MPI.UNDEFINED if color is None else int(color), int(key))
        finally:
            _BLOCKED[0] = None
        return None if new == MPI.COMM_NULL else MPICommunicator(new)

    def Dup(self):
        _BLOCKED[0] = ("Dup", self.size)
        try:
            return MPICommunicator(self._comm.Dup())
        finally:
            _BLOCKED[0] = None

    def Split_type(self, split_type=COMM_TYPE_SHARED, key=0):
        """Collective: the ranks that share this rank's node (``MPI.COMM_TYPE_SHARED``)."""
        if split_type is not COMM_TYPE_SHARED:
            raise CommError(f"Split_type: only COMM_TYPE_SHARED is supported, got {split_type!r}")
        _BLOCKED[0] = ("Split_type", self.size)
        try:
            return MPICommunicator(self._comm.Split_type(MPI.COMM_TYPE_SHARED, int(key)))
        finally:
            _BLOCKED[0] = None


    def _allocate_shared(self, node, shape, dtype, root):
        """An MPI-3 shared window over ``node``: ``root`` allocates every byte, the other
        ranks allocate none and map root's segment (``Shared_query``)."""
        if not self._windows.live and self._windows not in _REGISTRIES:
            _REGISTRIES.append(self._windows)
        self._windows.collect(node)    # windows no rank of the node uses any more
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes == 0:
            return SharedArray(b"", shape, dtype, self, node, root)
        window = MPI.Win.Allocate_shared(nbytes if node.rank == root else 0, dtype.itemsize,
                                         comm=node.mpi_comm)
        memory, _ = window.Shared_query(root)
        return SharedArray(memory, shape, dtype, self, node, root, window, self._windows)

    def Free(self):
        """Release the underlying MPI communicator (collective)."""
        self._comm.Free()

    def Abort(self, errorcode=1):
        self._comm.Abort(int(errorcode))


@atexit.register
def _free_windows_at_exit():
    """Free every shared window still allocated, before mpi4py's ``MPI_Finalize``.

    Every rank that exits normally holds the same windows (allocations and frees are
    collective) in communicators made in the same order, so the collective frees match.
    Python's exit handlers run before the one that finalizes MPI.
    """
    for registry in _REGISTRIES:
        registry.free_all()


_WORLD = None


def world():
    """The mpiml Communicator over every MPI process (a duplicate of ``COMM_WORLD``)."""
    global _WORLD
    if _WORLD is None:
        _WORLD = MPICommunicator(MPI.COMM_WORLD.Dup())
        _unlink_node_segment_names()
    return _WORLD


def _unlink_node_segment_names(maps="/proc/self/maps"):
    """Remove the ``/dev/shm`` names of the segments MPICH made for its ranks on this node.

    MPICH keeps the name of its intra-node segment (``/dev/shm/mpich_shm_*``) until
    ``MPI_Finalize``, so a job that aborts leaves the file behind, one per node and
    failed run. Every rank of the world has mapped it once the ``Dup`` above has
    completed (it is collective), and MPICH never opens it again: the name can go now,
    as the POSIX idiom for shared memory has it; the memory lives until the last rank
    unmaps it. Each rank removes what it maps; the others find it gone.
    """
    try:
        with open(maps) as table:
            lines = table.readlines()
    except OSError:             # not Linux: nothing to do
        return
    for line in lines:
        fields = line.split()
        if len(fields) == 6 and fields[5].startswith("/dev/shm/mpich_shm_"):
            try:
                os.unlink(fields[5])
            except OSError:
                pass


def world_abort(errorcode=1):
    """Abort every process of the job (used by the launcher on an uncaught error).

    The error text was just written to stderr; the launcher forwards it through a pipe
    and stops reading that pipe once it handles the abort, so give it a moment first.
    """
    time.sleep(_ABORT_GRACE_SECONDS)
    MPI.COMM_WORLD.Abort(int(errorcode))


def library_version():
    """The MPI library's version string (first line)."""
    return MPI.Get_library_version().strip().splitlines()[0]


def ranks_on_this_node():
    """How many ranks of the world share this process's node."""
    node = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return node.Get_size()
    finally:
        node.Free()

