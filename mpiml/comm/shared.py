"""Node-shared arrays: one buffer per node that every rank of that node reads and writes.

``comm.shared_array(shape, dtype, root=0)`` (collective) returns a :class:`SharedArray`
whose ``array`` is the same memory on every rank of a node: an MPI-3 shared-memory
window over the node's ranks on the MPI backend (``MPI.Win.Allocate_shared``: the
node's ``root`` allocates the bytes, the others map them), one numpy array on the
threads backend (all thread ranks are one node). Ranks on different nodes hold
different arrays.

Synchronisation
---------------
Loads and stores go straight to the memory; nothing orders them between ranks. A rank
that reads what another rank of its node wrote must first pass a synchronisation that
both take part in, after the write: :meth:`SharedArray.fence` (collective over the node:
``MPI_Win_fence``, a barrier on threads). A ``Barrier`` of any communicator that holds
both ranks also works in practice (MPICH and Open MPI barriers are memory barriers), but
``fence`` is what the MPI standard promises. Ranks that only touch their own part need
no synchronisation.

Lifetime
--------
The memory lives while the handle or any numpy view of ``array`` lives on some rank.
:meth:`SharedArray.free` (collective) releases it at once and refuses while views remain.
Without it, on MPI, a window whose handle and views are gone on every rank of the node
is freed at the next ``shared_array`` call on the same communicator (freeing a window is
collective, so it cannot happen whenever a rank's garbage collector decides); every window
left is freed when the interpreter exits, before ``MPI_Finalize`` (which fails on a
network device that still holds a window's memory). MPICH removes a window's file from ``/dev/shm`` as soon as
every rank has mapped it: a job that fails leaves none behind.
"""

__all__ = ["SharedArray", "process_memory", "node_memory"]

import math
import os
import sys
import weakref

import numpy as np

from ..errors import CommError
from .ops import MIN

_KINDS = "biufc"


def check_shared_args(shape, dtype, root):
    """``(shape tuple, numpy dtype, root)`` checked on this rank (no communication)."""
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    try:
        shape = tuple(int(s) for s in shape)
    except (TypeError, ValueError) as exc:
        raise CommError(f"shared_array: shape must be a tuple of sizes, got {shape!r}") from exc
    if any(s < 0 for s in shape):
        raise CommError(f"shared_array: shape must not be negative, got {shape}")
    try:
        dtype = np.dtype(dtype)
    except TypeError as exc:
        raise CommError(f"shared_array: unsupported dtype {dtype!r}") from exc
    if dtype.kind not in _KINDS or dtype.hasobject:
        raise CommError(f"shared_array: unsupported dtype {dtype}; use a numeric dtype "
                        f"(bool, int, uint, float, complex)")
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)) or root < 0:
        raise CommError(f"shared_array: root must be a rank of the node (>= 0), got {root!r}")
    return shape, dtype, int(root)


class WindowRegistry:
    """The MPI windows one communicator made and has not freed yet, and which of them
    this rank no longer uses (its handle and every view are gone)."""

    def __init__(self):
        self.live = {}           # key -> window, in allocation order
        self.released = set()    # keys whose memory this rank no longer references
        self._next = 0

    def add(self, window):
        key = self._next
        self._next += 1
        self.live[key] = window
        return key

    def release(self, key):
        """Called by a finalizer, at any point of the program: only marks the key."""
        self.released.add(key)

    def forget(self, key):
        self.released.discard(key)
        return self.live.pop(key)

    def free_all(self):
        """Collective over each window's node: free every window left (at the end)."""
        for key in list(self.live):
            self.forget(key).Free()

    def collect(self, node):
        """Collective over ``node``: free the windows that no rank of it uses any more.

        Every rank holds the same live windows (allocations and frees are collective),
        so every rank frees the same ones, in the same order.
        """
        if not self.live:
            return
        released = set(self.released)
        keys = list(self.live)
        unused = np.array([key in released for key in keys], dtype=np.int8)
        everywhere = np.empty_like(unused)
        node.Allreduce(unused, everywhere, op=MIN)
        for key, free in zip(keys, everywhere):
            if free:
                self.forget(key).Free()


class SharedArray:
    """An array in memory that every rank of one node shares (see the module notes).

    Made by :meth:`Communicator.shared_array` (collective), never directly.

    Attributes
    ----------
    array : ndarray of shape ``shape``
        The node's buffer, C-contiguous. The same memory on every rank of a node;
        ranks on other nodes hold their own node's array. ``None`` once freed.
    node_comm : Communicator
        The ranks that share it (those of the parent communicator on this node).
    root : int
        The rank of ``node_comm`` whose memory holds the buffer.
    """

    def __init__(self, raw, shape, dtype, comm, node_comm, root, window=None, registry=None):
        self.node_comm = node_comm
        self.root = root
        self._shape, self._dtype = shape, dtype
        self._comm = comm
        self._window = window
        self._registry = registry
        self._key = None if window is None else registry.add(window)
        # a memoryview in between: numpy then stops at ``owner`` when it collapses the
        # base chain of a view, so every view of ``array`` has ``owner`` as its base
        owner = (np.frombuffer(memoryview(raw), np.uint8) if math.prod(shape)
                 else np.empty(0, np.uint8))
        self._owner = owner
        self.array = owner.view(dtype).reshape(shape)
        self._finalizer = None
        if window is not None:
            self._finalizer = weakref.finalize(owner, registry.release, self._key)

    @property
    def freed(self):
        return self._owner is None

    @property
    def is_root(self):
        """True on the rank whose memory holds the buffer."""
        return self.node_comm.rank == self.root

    def fence(self):
        """Collective over :attr:`node_comm`: every rank's earlier writes to the array are
        visible to every rank of the node after it (``MPI_Win_fence``; a barrier on threads)."""
        if self._window is not None:
            self._window.Fence()
        else:
            self.node_comm.Barrier()

    def free(self):
        """Release the memory now (collective over the communicator that made it).

        Raises
        ------
        CommError
            On every rank, if any rank still holds a view of :attr:`array` (other than
            this handle's): delete those first. Nothing is freed then.
        """
        if self._owner is None:
            return
        self.array = None
        # the only references left should be this handle's and getrefcount's own
        busy = sys.getrefcount(self._owner) > 2
        holders = self._comm.allgather(busy)
        if any(holders):
            self.array = self._owner.view(self._dtype).reshape(self._shape)
            ranks = [r for r, held in enumerate(holders) if held]
            raise CommError(f"SharedArray.free: rank(s) {ranks} still hold views of the "
                            f"shared array; delete them before free()")
        if self._finalizer is not None:
            self._finalizer.detach()
        self._owner = None
        if self._window is not None:
            self._registry.forget(self._key).Free()
            self._window = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.free()

    def __repr__(self):
        state = "freed" if self.freed else f"{self.array.shape} {self.array.dtype}"
        return (f"<SharedArray {state}, node rank {self.node_comm.rank} of "
                f"{self.node_comm.size}, root {self.root}>")


def process_memory():
    """``(rss, pss)`` of this process in bytes (Linux ``/proc``; ``(0, 0)`` elsewhere).

    PSS (proportional set size) counts each page a process shares with ``k`` others
    as ``1/k`` of a page, so the PSS of the processes of a node add up to the memory
    they use together, shared memory counted once.
    """
    rss = pss = 0
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
        with open("/proc/self/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, pss


def node_memory(comm):
    """Collective: every rank's resident memory and each node's total.

    Returns
    -------
    dict
        ``rss_bytes``, ``pss_bytes``: lists with one entry per rank of ``comm``;
        ``nodes``: the ranks of each node (lists); ``node_rss_bytes``,
        ``node_pss_bytes``: per node, the sum over its processes (thread ranks of one
        process count once). PSS sums to the node's real use; RSS counts shared pages
        once per process that maps them.
    """
    node = comm.node_comm()
    leader = node.allreduce(comm.rank, op=MIN)
    rss, pss = process_memory()
    rows = comm.allgather((leader, os.getpid(), rss, pss))
    nodes, totals = {}, {}
    for rank, (lead, pid, r, p) in enumerate(rows):
        nodes.setdefault(lead, []).append(rank)
        totals.setdefault(lead, {})[pid] = (r, p)
    order = sorted(nodes)
    return {"rss_bytes": [row[2] for row in rows], "pss_bytes": [row[3] for row in rows],
            "nodes": [nodes[lead] for lead in order],
            "node_rss_bytes": [sum(r for r, _ in totals[lead].values()) for lead in order],
            "node_pss_bytes": [sum(p for _, p in totals[lead].values()) for lead in order]}


