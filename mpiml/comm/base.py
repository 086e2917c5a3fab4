"""The Communicator interface shared by the MPI and threads backends.

Names and signatures follow mpi4py: lowercase methods move small Python objects,
uppercase methods move numpy buffers. Vector collectives take their counts and
displacements in elements, as a ``[array, counts]`` or ``[array, counts, displs]``
list, exactly like mpi4py's buffer specifications.

Every method is collective over the communicator unless its docstring says
point-to-point. Algorithms receive a ``Communicator`` and never learn which
backend they run on.
"""

__all__ = ["Communicator", "as_buffer", "as_vector_spec"]

import numpy as np

from ..errors import CommError
from .ops import ANY_SOURCE, ANY_TAG, COMM_TYPE_SHARED, MAX, SUM
from .shared import check_shared_args

_KINDS = "biufc"  # bool, signed, unsigned, float, complex


def as_buffer(buf, call, writable=False):
    """Check that ``buf`` is a contiguous numpy array of a plain numeric dtype."""
    if type(buf) is np.ndarray:  # the common case, checked with as few lookups as possible
        flags = buf.flags
        if flags.c_contiguous and (flags.writeable or not writable) and buf.dtype.kind in _KINDS:
            return buf
    if not isinstance(buf, np.ndarray):
        raise CommError(f"{call}: buffer must be a numpy array, got {type(buf).__name__}")
    if buf.dtype.kind not in _KINDS or buf.dtype.hasobject:
        raise CommError(f"{call}: unsupported buffer dtype {buf.dtype}; "
                        f"use a numeric dtype (bool, int, uint, float, complex)")
    if not buf.flags.c_contiguous:
        raise CommError(f"{call}: buffer must be C-contiguous (use numpy.ascontiguousarray)")
    if writable and not buf.flags.writeable:
        raise CommError(f"{call}: receive buffer is read-only")
    return buf


def as_vector_spec(spec, size, call, writable=False):
    """Normalise ``array`` or ``[array, counts(, displs)]`` to ``(array, counts, displs)``.

    With a bare array the elements are split evenly over the ``size`` ranks (which
    must then divide its size). Counts and displacements are int64 arrays in elements.
    """
    if isinstance(spec, (list, tuple)):
        if not 1 <= len(spec) <= 3:
            raise CommError(f"{call}: buffer specification must be [array, counts(, displs)]")
        arr = as_buffer(spec[0], call, writable)
        counts = spec[1] if len(spec) > 1 else None
        displs = spec[2] if len(spec) > 2 else None
    else:
        arr, counts, displs = as_buffer(spec, call, writable), None, None
    # checked on Python ints: a few microseconds less per vector collective than on arrays
    if counts is None:
        if arr.size % size:
            raise CommError(f"{call}: {arr.size} elements cannot be split evenly over "
                            f"{size} ranks; pass [array, counts]")
        counts = [arr.size // size] * size
    else:
        counts = np.asarray(counts, dtype=np.int64).reshape(-1).tolist()
    if len(counts) != size:
        raise CommError(f"{call}: {len(counts)} counts given for {size} ranks")
    if min(counts, default=0) < 0:
        raise CommError(f"{call}: counts must be >= 0, got {counts}")
    if displs is None:
        displs = [0] * size
        for r in range(1, size):
            displs[r] = displs[r - 1] + counts[r - 1]
    else:
        displs = np.asarray(displs, dtype=np.int64).reshape(-1).tolist()
    if len(displs) != size:
        raise CommError(f"{call}: {len(displs)} displacements given for {size} ranks")
    if size and (min(displs) < 0 or max(d + c for d, c in zip(displs, counts)) > arr.size):
        raise CommError(f"{call}: counts {counts} at displacements {displs} "
                        f"do not fit a buffer of {arr.size} elements")
    return arr, np.array(counts, dtype=np.int64), np.array(displs, dtype=np.int64)


def describe(buf):
    """Short text for error messages: '10 float64'."""
    return f"{buf.size} {buf.dtype}"


class Communicator:
    """A group of ranks that run the same program (SPMD) and talk to each other.

    Attributes
    ----------
    rank : int
        This rank's number, ``0 <= rank < size``.
    size : int
        Number of ranks in the communicator.
    backend : str
        ``"mpi"`` or ``"threads"``.
    """

    backend = "abstract"
    rank: int
    size: int

    def __repr__(self):
        return f"<mpiml {self.backend} Communicator rank {self.rank} of {self.size}>"

    # -- argument checks shared by the backends ---------------------------------------

    def _check_root(self, root, call):
        if type(root) is int and 0 <= root < self.size:
            return root
        if not isinstance(root, (int, np.integer)) or not 0 <= root < self.size:
            raise CommError(f"{call}: root must be a rank in [0, {self.size}), got {root!r}")
        return int(root)

    def _check_peer(self, peer, call, what="dest", any_ok=False):
        if type(peer) is int and 0 <= peer < self.size:
            return peer
        if any_ok and peer == ANY_SOURCE:
            return ANY_SOURCE
        if not isinstance(peer, (int, np.integer)) or not 0 <= peer < self.size:
            raise CommError(f"{call}: {what} must be a rank in [0, {self.size}), got {peer!r}")
        return int(peer)

    @staticmethod
    def _check_tag(tag, call, any_ok=False):
        if type(tag) is int and tag >= 0:
            return tag
        if any_ok and tag == ANY_TAG:
            return ANY_TAG
        if not isinstance(tag, (int, np.integer)) or tag < 0:
            raise CommError(f"{call}: tag must be an integer >= 0, got {tag!r}")
        return int(tag)

    @staticmethod
    def _check_same(a, b, call):
        if a.dtype != b.dtype or a.size != b.size:
            raise CommError(f"{call}: send buffer ({describe(a)}) and receive buffer "
                            f"({describe(b)}) must have the same size and dtype")

    # -- conveniences built on the primitives (same on both backends) -----------------

    def Scatter(self, sendbuf, recvbuf, root=0):
        """Equal blocks of ``sendbuf`` (on root) into ``recvbuf`` on every rank."""
        self.Scatterv(sendbuf, recvbuf, root)

    def Gather(self, sendbuf, recvbuf, root=0):
        """Equal blocks from every rank into ``recvbuf`` on root."""
        self.Gatherv(sendbuf, recvbuf, root)

    def Allgather(self, sendbuf, recvbuf):
        """Equal blocks from every rank into ``recvbuf`` on every rank."""
        self.Allgatherv(sendbuf, recvbuf)

    def Dup(self):
        """A new communicator over the same ranks whose messages never mix with this one's."""
        return self.Split(0, self.rank)

    def sendrecv(self, sendobj, dest, sendtag=0, source=ANY_SOURCE, recvtag=ANY_TAG):
        """Point-to-point: send ``sendobj`` to ``dest`` and return an object from ``source``."""
        self.send(sendobj, dest, sendtag)
        return self.recv(source, recvtag)

    def Sendrecv_replace(self, buf, dest, sendtag=0, source=ANY_SOURCE, recvtag=ANY_TAG):
        """Point-to-point: send ``buf`` to ``dest`` and replace it with a message from ``source``."""
        as_buffer(buf, "Sendrecv_replace", writable=True)
        incoming = np.empty_like(buf)
        self.Sendrecv(buf, dest, sendtag, incoming, source, recvtag)
        buf[...] = incoming

    # -- node-shared memory (same on both backends; the allocation is the backend's) ------

    def node_comm(self):
        """The ranks of this communicator that share this rank's node (its memory).

        Collective the first time it is called on a communicator (a ``Split_type`` with
        :data:`COMM_TYPE_SHARED`, ordered by rank), then kept: the same object on every
        later call. Its ``rank`` is this rank's place on the node. On the threads
        backend every rank is on one node.
        """
        node = getattr(self, "_node", None)
        if node is None:
            node = self._node = self.Split_type(COMM_TYPE_SHARED, self.rank)
        return node

    def shared_array(self, shape, dtype=np.float64, root=0):
        """Collective: one array per node, shared by the ranks of this communicator there.

        Every rank of a node gets a view of the same buffer, allocated by the rank
        ``root`` of :meth:`node_comm` (an MPI-3 shared window on MPI, one numpy array
        on threads); each node has its own. Contents are undefined at first. Read what
        another rank wrote only after a :meth:`SharedArray.fence` (see
        :mod:`mpiml.comm.shared` for synchronisation and lifetime).

        Parameters
        ----------
        shape : int or tuple of int
            The same on every rank of a node (each node may ask for its own).
        dtype : dtype
            A numeric dtype, the same on every rank of a node.
        root : int
            The node rank that holds the memory; must exist on every node.

        Returns
        -------
        SharedArray
            Its ``array`` attribute is the ndarray of shape ``shape``.
        """
        error = None
        try:
            shape, dtype, root = check_shared_args(shape, dtype, root)
        except CommError as exc:
            error = exc
        node = self.node_comm()
        mine = np.zeros(8, dtype=np.int64)
        if error is None:
            nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            mine[:7] = [nbytes, -nbytes, root, -root, dtype.itemsize, -dtype.itemsize,
                        root >= node.size]
        else:
            mine[7] = 1
        on_node = np.empty_like(mine)
        node.Allreduce(mine, on_node, op=MAX)
        verdict = np.array([3 if on_node[7] else 2 if (on_node[0] != -on_node[1]
                                                       or on_node[2] != -on_node[3]
                                                       or on_node[4] != -on_node[5])
                            else 1 if on_node[6] else 0], dtype=np.int64)
        anywhere = np.empty_like(verdict)
        self.Allreduce(verdict, anywhere, op=MAX)    # every rank of every node decides alike
        if error is not None:
            raise error
        if anywhere[0]:
            raise CommError({
                3: "shared_array: another rank passed a bad shape, dtype or root",
                2: "shared_array: every rank of a node must pass the same shape, dtype and root",
                1: f"shared_array: root {root} is not a rank of every node (the smallest "
                   f"node has fewer ranks)"}[int(anywhere[0])])
        return self._allocate_shared(node, shape, dtype, root)

    def argmax(self, value, index):
        """Collective arg-max of ``(value, index)`` pairs: the largest value wins and ties go
        to the lowest index (any comparable: an int or a tuple). Same answer on every rank."""
        from .ops import MAXLOC
        return self.allreduce((value, index), op=MAXLOC)

    # -- the interface each backend implements ----------------------------------------

    def Barrier(self):  # pragma: no cover - interface
        raise NotImplementedError

    def bcast(self, obj, root=0):  # pragma: no cover - interface
        raise NotImplementedError

    def Bcast(self, buf, root=0):  # pragma: no cover - interface
        raise NotImplementedError

    def scatter(self, sendobj, root=0):  # pragma: no cover - interface
        raise NotImplementedError

    def Scatterv(self, sendbuf, recvbuf, root=0):  # pragma: no cover - interface
        raise NotImplementedError

    def gather(self, sendobj, root=0):  # pragma: no cover - interface
        raise NotImplementedError

    def Gatherv(self, sendbuf, recvbuf, root=0):  # pragma: no cover - interface
        raise NotImplementedError

    def allgather(self, sendobj):  # pragma: no cover - interface
        raise NotImplementedError

    def Allgatherv(self, sendbuf, recvbuf):  # pragma: no cover - interface
        raise NotImplementedError

    def reduce(self, sendobj, op=SUM, root=0):  # pragma: no cover - interface
        raise NotImplementedError

    def Reduce(self, sendbuf, recvbuf, op=SUM, root=0):  # pragma: no cover - interface
        raise NotImplementedError

    def allreduce(self, sendobj, op=SUM):  # pragma: no cover - interface
        raise NotImplementedError

    def Allreduce(self, sendbuf, recvbuf, op=SUM):  # pragma: no cover - interface
        raise NotImplementedError

    def Reduce_scatter(self, sendbuf, recvbuf, recvcounts=None, op=SUM):  # pragma: no cover
        raise NotImplementedError

    def send(self, obj, dest, tag=0):  # pragma: no cover - interface
        raise NotImplementedError

    def recv(self, source=ANY_SOURCE, tag=ANY_TAG):  # pragma: no cover - interface
        raise NotImplementedError

    def Send(self, buf, dest, tag=0):  # pragma: no cover - interface
        raise NotImplementedError

    def Recv(self, buf, source=ANY_SOURCE, tag=ANY_TAG):  # pragma: no cover - interface
        raise NotImplementedError

    def Sendrecv(self, sendbuf, dest, sendtag=0, recvbuf=None, source=ANY_SOURCE,
                 recvtag=ANY_TAG):  # pragma: no cover - interface
        raise NotImplementedError

    def Split(self, color=0, key=0):  # pragma: no cover - interface
        raise NotImplementedError

    def Split_type(self, split_type=COMM_TYPE_SHARED, key=0):  # pragma: no cover - interface
        raise NotImplementedError

    def _allocate_shared(self, node, shape, dtype, root):  # pragma: no cover - interface
        raise NotImplementedError

    def Abort(self, errorcode=1):  # pragma: no cover - interface
        raise NotImplementedError

