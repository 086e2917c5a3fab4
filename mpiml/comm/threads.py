"""Shared-memory backend: N threads in one process, one rank each.

Collectives meet at a rendezvous: every rank deposits its call and its buffers, waits
until all ranks of the communicator have arrived, checks that they called the same
collective, moves data by memory copy (never pickling arrays), and waits once more so
that no buffer is reused while another rank still reads it. Small buffers (up to
``_COPY_BYTES``) of ``Allgatherv``, ``Reduce_scatter`` and ``Allreduce`` are copied when
a rank arrives instead, and those collectives (and ``Barrier``) meet only once: the
deposits alternate between two slot sets, and a rank can come back to a set only after
every rank has met it at the next collective, that is, after every rank has finished
reading it.

All ranks of one ``run`` share a :class:`_Family`. When one rank fails, the family is
aborted: every rank blocked in a collective or a receive wakes up with
:class:`~mpiml.errors.RankAborted`, and ``run`` re-raises the original exception.

Each rank that blocks records the call it waits in, so that a run that outlives its
:func:`time_limit` is aborted with a :class:`~mpiml.errors.RankTimeout` naming every
rank's state.
"""

__all__ = ["ThreadCommunicator", "run_threads", "self_comm", "time_limit"]

import contextlib
import contextvars
import copy
import itertools
import os
import threading
import time

import numpy as np

from ..errors import CollectiveMismatchError, CommError, RankAborted, RankTimeout
from .base import Communicator, as_buffer, as_vector_spec, describe
from .ops import ANY_SOURCE, ANY_TAG, COMM_TYPE_SHARED, IN_PLACE, SUM, check_op, fold
from .partition import block_range
from .shared import SharedArray

_POLL_SECONDS = 0.5
# buffers up to this size are copied at arrival, so that their collective meets once
# (a meeting costs tens of microseconds; copying 256 KiB about as much)
_COPY_BYTES = 256 << 10
_SPIN_SECONDS = 50e-6
_SPIN_MAX_RANKS = os.cpu_count() or 1   # spinning only pays when every rank has a core
_DEADLINE = contextvars.ContextVar("mpiml_threads_deadline", default=None)


@contextlib.contextmanager
def time_limit(seconds):
    """Abort thread runs started in this block that are still running after ``seconds``.

    A run started by :func:`run_threads` (or ``mpiml.run(..., threads=N)``) inside the
    block is aborted once the block's deadline has passed: every rank blocked in a
    collective or a receive wakes up, and the run raises
    :class:`~mpiml.errors.RankTimeout`, whose message names each rank's state (the call
    it waits in, still computing, or returned). A rank busy outside a communication call
    is not interrupted; the run ends when it next communicates or returns.

    Parameters
    ----------
    seconds : float or None
        Time from entering the block; ``None`` removes any limit set further out.
    """
    deadline = None if seconds is None else (time.monotonic() + seconds, seconds)
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


class _Family:
    """State shared by every communicator created under one ``run_threads`` call."""

    def __init__(self, size):
        self.size = size
        self.cond = threading.Condition()
        self.error = None          # (world rank, exception) of the first failure
        self.finished = set()      # world ranks whose function has returned
        self.mailboxes = {}        # (group id, dest rank) -> list of (source, tag, payload)
        self.borrowed = {}         # id(payload) -> Event set once a Sendrecv's data is copied
        self.group_ids = itertools.count()
        self.waiting = [None] * size   # world rank -> (call, communicator size) while blocked

    def fail(self, world_rank, exc):
        with self.cond:
            if self.error is None:
                self.error = (world_rank, exc)
            self.cond.notify_all()

    def finish(self, world_rank):
        with self.cond:
            self.finished.add(world_rank)
            self.cond.notify_all()

    def raise_if_aborted(self):
        if self.error is not None:
            rank, exc = self.error
            if rank is None:
                raise RankAborted(f"{type(exc).__name__}: {exc}")
            raise RankAborted(f"rank {rank} failed: {type(exc).__name__}: {exc}")

    def expire(self, seconds):
        """Abort the run with a :class:`RankTimeout` naming what each rank is doing."""
        with self.cond:
            if self.error is not None or len(self.finished) == self.size:
                return
            states = []
            for rank in range(self.size):
                record = self.waiting[rank]
                if rank in self.finished:
                    states.append(f"rank {rank}: returned")
                elif record is None:
                    states.append(f"rank {rank}: running, not in a communication call")
                else:
                    states.append(f"rank {rank}: waiting in {record[0]} on a "
                                  f"{record[1]}-rank communicator")
            waiting = [r for r in range(self.size) if self.waiting[r] is not None
                       and r not in self.finished]
            exc = RankTimeout(f"timed out after {seconds:g} s; ranks still waiting: "
                              f"{waiting}\n  " + "\n  ".join(states))
            exc.waiting = waiting
            self.error = (None, exc)
            self.cond.notify_all()


def _spin(family, done):
    """Yield for a few tens of microseconds, until ``done()``, before a blocking wait.

    Waking a sleeping thread costs tens of microseconds (more on virtual machines),
    while the awaited rank often arrives sooner. ``os.sched_yield`` releases the GIL,
    so the ranks being waited for can run. Only when every rank has a core of its own.
    """
    if family.size <= _SPIN_MAX_RANKS:
        deadline = time.perf_counter() + _SPIN_SECONDS
        while not done() and time.perf_counter() < deadline:
            os.sched_yield()


class _Group:
    """The ranks of one communicator: rendezvous slots and a reusable barrier."""

    def __init__(self, family, world_ranks):
        self.family = family
        self.world_ranks = list(world_ranks)
        self.size = len(world_ranks)
        self.id = next(family.group_ids)
        self.slots = ([None] * self.size, [None] * self.size)   # by collective parity
        self.arrived = 0
        self.generation = 0
        self.pending = {}          # Split: (sequence, color) -> [group, members left to pick it up]

    def wait(self, rank, what):
        """Barrier over the group; wakes with an error if a rank fails or has returned."""
        fam = self.family
        with fam.cond:
            fam.raise_if_aborted()
            gen = self.generation
            self.arrived += 1
            if self.arrived == self.size:
                self.arrived = 0
                self.generation += 1
                fam.cond.notify_all()
                return
        me = self.world_ranks[rank]
        fam.waiting[me] = (what, self.size)
        try:
            _spin(fam, lambda: self.generation != gen)
            with fam.cond:
                while self.generation == gen:
                    fam.raise_if_aborted()
                    gone = [r for r, w in enumerate(self.world_ranks) if w in fam.finished]
                    if gone:
                        raise CollectiveMismatchError(
                            f"rank {rank} waits in {what} but rank(s) {gone} of this "
                            f"{self.size}-rank communicator already returned from the SPMD "
                            f"function")
                    fam.cond.wait(_POLL_SECONDS)
        finally:
            fam.waiting[me] = None


class ThreadCommunicator(Communicator):
    """A Communicator whose ranks are threads of one process. Created by ``mpiml.run``."""

    backend = "threads"

    def __init__(self, group, rank):
        self._group = group
        self._family = group.family
        self.rank = rank
        self.size = group.size
        self._sequence = 0

    # -- rendezvous --------------------------------------------------------------------

    def _meet(self, call, payload=None):
        """Deposit ``(call, payload)``, wait for every rank, check that all called the
        same collective, and return every rank's payload (in rank order)."""
        g = self._group
        slots = g.slots[self._sequence & 1]
        slots[self.rank] = (call, payload)
        g.wait(self.rank, call)
        calls = [slot[0] for slot in slots]
        if any(c != calls[0] for c in calls):
            detail = "; ".join(f"rank {r}: {c}" for r, c in enumerate(calls))
            raise CollectiveMismatchError(
                f"mismatched collective calls on a {self.size}-rank communicator: {detail}")
        self._sequence += 1
        return [slot[1] for slot in slots]

    def _leave(self, call):
        """Second barrier: nobody returns (and reuses its buffers) before all are done."""
        self._group.wait(self.rank, call)

    def _collective(self, call, payload, work, leave=True):
        """Meet, run ``work`` on every rank's payload, and (``leave``) meet again before
        returning. ``leave=False`` only where the payloads are the ranks' own copies (see
        the module docstring) and every rank decides the same way."""
        payloads = self._meet(call, payload)
        if not leave:
            return work(payloads)
        try:
            return work(payloads)
        finally:
            self._leave(call)

    # -- synchronisation -----------------------------------------------------------------

    def Barrier(self):
        """Collective: wait until every rank has called it."""
        self._meet("Barrier()")

    # -- objects -----------------------------------------------------------------------

    def bcast(self, obj, root=0):
        """Collective: ``obj`` from root, returned on every rank (a copy on non-roots)."""
        root = self._check_root(root, "bcast")

        def work(p):
            return p[root] if self.rank == root else copy.deepcopy(p[root])
        return self._collective(f"bcast(root={root})", obj, work)

    def scatter(self, sendobj, root=0):
        """Collective: item ``r`` of root's sequence to rank ``r``."""
        root = self._check_root(root, "scatter")
        if self.rank == root and (sendobj is None or len(sendobj) != self.size):
            raise CommError(f"scatter: root needs a sequence of {self.size} items, "
                            f"got {None if sendobj is None else len(sendobj)}")

        def work(p):
            item = p[root][self.rank]
            return item if self.rank == root else copy.deepcopy(item)
        return self._collective(f"scatter(root={root})", sendobj, work)

    def gather(self, sendobj, root=0):
        """Collective: list of every rank's object on root, ``None`` elsewhere."""
        root = self._check_root(root, "gather")

        def work(p):
            if self.rank != root:
                return None
            return [o if r == root else copy.deepcopy(o) for r, o in enumerate(p)]
        return self._collective(f"gather(root={root})", sendobj, work)

    def allgather(self, sendobj):
        """Collective: list of every rank's object on every rank."""
        def work(p):
            return [o if r == self.rank else copy.deepcopy(o) for r, o in enumerate(p)]
        return self._collective("allgather()", sendobj, work)

    def reduce(self, sendobj, op=SUM, root=0):
        """Collective: ``op`` folded over every rank's object in rank order, on root."""
        op = check_op(op)
        root = self._check_root(root, "reduce")

        def work(p):
            return copy.deepcopy(fold(op, p)) if self.rank == root else None
        return self._collective(f"reduce({op.name}, root={root})", sendobj, work)

    def allreduce(self, sendobj, op=SUM):
        """Collective: ``op`` folded over every rank's object in rank order, on every rank."""
        op = check_op(op)
        return self._collective(f"allreduce({op.name})", sendobj, lambda p: copy.deepcopy(fold(op, p)))

    # -- buffers -------------------------------------------------------------------------

    def Bcast(self, buf, root=0):
        """Collective: root's ``buf`` copied into ``buf`` on every rank."""
        root = self._check_root(root, "Bcast")
        as_buffer(buf, "Bcast", writable=self.rank != root)

        def work(p):
            if self.rank != root:
                np.copyto(buf, p[root], casting="no")
        return self._collective(f"Bcast(root={root}, {describe(buf)})", buf, work)

    def Scatterv(self, sendbuf, recvbuf, root=0):
        """Collective: segment ``r`` of root's ``[sendarray, counts(, displs)]`` into
        ``recvbuf`` of rank ``r``."""
        root = self._check_root(root, "Scatterv")
        as_buffer(recvbuf, "Scatterv", writable=True)
        spec = as_vector_spec(sendbuf, self.size, "Scatterv") if self.rank == root else None
        if spec is not None:
            _check_count("Scatterv", spec[1][root], recvbuf, spec[0].dtype, root)

        def work(p):
            arr, counts, displs = p[root]
            _check_count("Scatterv", counts[self.rank], recvbuf, arr.dtype, self.rank)
            lo = displs[self.rank]
            recvbuf.reshape(-1)[...] = arr.reshape(-1)[lo:lo + counts[self.rank]]
        return self._collective(f"Scatterv(root={root})", spec, work)

    def Gatherv(self, sendbuf, recvbuf, root=0):
        """Collective: every rank's ``sendbuf`` into root's ``[recvarray, counts(, displs)]``.
        Each rank copies its own segment, so the copies run in parallel."""
        root = self._check_root(root, "Gatherv")
        as_buffer(sendbuf, "Gatherv")
        spec = as_vector_spec(recvbuf, self.size, "Gatherv", writable=True) \
            if self.rank == root else None

        def work(p):
            arr, counts, displs = p[root][1]
            _check_count("Gatherv", counts[self.rank], sendbuf, arr.dtype, self.rank)
            lo = displs[self.rank]
            arr.reshape(-1)[lo:lo + counts[self.rank]] = sendbuf.reshape(-1)
        return self._collective(f"Gatherv(root={root})", (sendbuf, spec), work)

    def Allgatherv(self, sendbuf, recvbuf):
        """Collective: every rank's ``sendbuf`` into ``[recvarray, counts(, displs)]`` on
        every rank."""
        as_buffer(sendbuf, "Allgatherv")
        arr, counts, displs = as_vector_spec(recvbuf, self.size, "Allgatherv", writable=True)
        _check_count("Allgatherv", counts[self.rank], sendbuf, arr.dtype, self.rank)

        def work(p):
            flat = arr.reshape(-1)
            for r, src in enumerate(p):
                if src.size != counts[r] or src.dtype != arr.dtype:
                    raise CommError(f"Allgatherv: rank {r} sent {describe(src)}, rank "
                                    f"{self.rank} expects {counts[r]} {arr.dtype}")
                flat[displs[r]:displs[r] + counts[r]] = src.reshape(-1)
        # the same decision on every rank: the counts are the same everywhere
        once = int(counts.sum()) * arr.itemsize <= _COPY_BYTES
        payload = sendbuf.copy() if once else sendbuf
        return self._collective(f"Allgatherv({'once' if once else 'twice'})", payload, work,
                                leave=not once)

    def Reduce(self, sendbuf, recvbuf, op=SUM, root=0):
        """Collective: elementwise ``op`` over every rank's ``sendbuf`` (in rank order) into
        root's ``recvbuf``. ``sendbuf`` may be ``IN_PLACE`` on root."""
        op = check_op(op, buffer=True)
        root = self._check_root(root, "Reduce")
        src, dst = self._reduction_buffers("Reduce", sendbuf, recvbuf, self.rank == root)
        call = f"Reduce({op.name}, root={root}, {describe(src)})"

        def work(p):
            out = p[root][1]
            lo, hi = block_range(src.size, self.size, self.rank)
            _reduce_range(op, [s for s, _ in p], lo, hi, [out])
        return self._collective(call, (src, dst), work)

    def Allreduce(self, sendbuf, recvbuf, op=SUM):
        """Collective: elementwise ``op`` over every rank's ``sendbuf`` into every rank's
        ``recvbuf``; ``sendbuf`` may be ``IN_PLACE``. Each rank reduces one slice, in rank
        order, and writes it to every rank: all ranks get the same bits."""
        op = check_op(op, buffer=True)
        src, dst = self._reduction_buffers("Allreduce", sendbuf, recvbuf, True)
        call = f"Allreduce({op.name}, {describe(src)})"

        if src.nbytes <= _COPY_BYTES:
            # every rank reduces the whole array from the others' copies, in rank order
            # (the same bits everywhere), and writes only its own result
            def whole(p):
                _reduce_range(op, p, 0, src.size, None, out=dst.reshape(-1))
            return self._collective(call + " once", src.copy(), whole, leave=False)

        def work(p):
            lo, hi = block_range(src.size, self.size, self.rank)
            # reduce straight into this rank's result unless that would overwrite a
            # source still to be read (an in-place buffer of rank >= 2)
            direct = dst is not src or self.rank <= 1
            out = dst.reshape(-1)[lo:hi] if direct else None
            _reduce_range(op, [s for s, _ in p], lo, hi,
                          [d for r, (_, d) in enumerate(p) if r != self.rank or not direct],
                          out=out)
        return self._collective(call, (src, dst), work)

    def Reduce_scatter(self, sendbuf, recvbuf, recvcounts=None, op=SUM):
        """Collective: elementwise ``op`` over every rank's ``sendbuf``; rank ``r`` receives
        the ``recvcounts[r]`` elements of block ``r`` (equal blocks if not given)."""
        op = check_op(op, buffer=True)
        as_buffer(sendbuf, "Reduce_scatter")
        as_buffer(recvbuf, "Reduce_scatter", writable=True)
        _, counts, displs = as_vector_spec([sendbuf, recvcounts], self.size, "Reduce_scatter")
        _check_count("Reduce_scatter", counts[self.rank], recvbuf, sendbuf.dtype, self.rank)
        call = f"Reduce_scatter({op.name}, {describe(sendbuf)})"

        def work(p):
            lo = displs[self.rank]
            _reduce_range(op, p, lo, lo + counts[self.rank], None, out=recvbuf.reshape(-1))
        if sendbuf.nbytes <= _COPY_BYTES:   # the same size on every rank (in ``call``)
            return self._collective(call + " once", sendbuf.copy(), work, leave=False)
        return self._collective(call, sendbuf, work)

    def _reduction_buffers(self, call, sendbuf, recvbuf, receives):
        if sendbuf is IN_PLACE:
            if not receives:
                raise CommError(f"{call}: IN_PLACE is only valid where the result is received")
            as_buffer(recvbuf, call, writable=True)
            return recvbuf, recvbuf
        as_buffer(sendbuf, call)
        if receives:
            as_buffer(recvbuf, call, writable=True)
            self._check_same(sendbuf, recvbuf, call)
            return sendbuf, recvbuf
        return sendbuf, None

    # -- point to point -------------------------------------------------------------------

    def send(self, obj, dest, tag=0):
        """Point-to-point: send a copy of ``obj`` to ``dest`` (returns at once)."""
        self._post(self._check_peer(dest, "send"), self._check_tag(tag, "send"),
                   copy.deepcopy(obj))

    def recv(self, source=ANY_SOURCE, tag=ANY_TAG):
        """Point-to-point: the next object from ``source`` with ``tag``."""
        return self._take(self._check_peer(source, "recv", "source", any_ok=True),
                          self._check_tag(tag, "recv", any_ok=True), "recv")[2]

    def Send(self, buf, dest, tag=0):
        """Point-to-point: send a copy of ``buf`` to ``dest`` (returns at once)."""
        as_buffer(buf, "Send")
        self._post(self._check_peer(dest, "Send"), self._check_tag(tag, "Send"), buf.copy())

    def Recv(self, buf, source=ANY_SOURCE, tag=ANY_TAG):
        """Point-to-point: receive a message from ``source`` into ``buf`` (same size/dtype)."""
        as_buffer(buf, "Recv", writable=True)
        src, _, data = self._take(self._check_peer(source, "Recv", "source", any_ok=True),
                                  self._check_tag(tag, "Recv", any_ok=True), "Recv")
        try:
            _check_message("Recv", data, buf, src)
            buf.reshape(-1)[...] = data.reshape(-1)
        finally:
            self._release(data)

    def Sendrecv(self, sendbuf, dest, sendtag=0, recvbuf=None, source=ANY_SOURCE,
                 recvtag=ANY_TAG):
        """Point-to-point: send ``sendbuf`` to ``dest`` and receive into ``recvbuf`` from
        ``source``. Sends never block, so ring exchanges cannot deadlock."""
        if recvbuf is None:
            raise CommError("Sendrecv: recvbuf is required")
        as_buffer(sendbuf, "Sendrecv")
        as_buffer(recvbuf, "Sendrecv", writable=True)
        if np.may_share_memory(sendbuf, recvbuf):
            raise CommError("Sendrecv: send and receive buffers overlap; use Sendrecv_replace")
        dest = self._check_peer(dest, "Sendrecv")
        # the receiver copies straight from sendbuf, which stays untouched until taken
        taken = threading.Event()
        self._post(dest, self._check_tag(sendtag, "Sendrecv"), sendbuf, taken)
        src, _, data = self._take(self._check_peer(source, "Sendrecv", "source", any_ok=True),
                                  self._check_tag(recvtag, "Sendrecv", any_ok=True), "Sendrecv")
        try:
            _check_message("Sendrecv", data, recvbuf, src)
            recvbuf.reshape(-1)[...] = data.reshape(-1)
        finally:
            self._release(data)
        self._await_taken(taken, dest)

    def Sendrecv_replace(self, buf, dest, sendtag=0, source=ANY_SOURCE, recvtag=ANY_TAG):
        """Point-to-point: send ``buf`` to ``dest`` and replace it with a message from
        ``source`` (one copy through a temporary buffer)."""
        as_buffer(buf, "Sendrecv_replace", writable=True)
        incoming = np.empty_like(buf)
        self.Sendrecv(buf, dest, sendtag, incoming, source, recvtag)
        np.copyto(buf, incoming)

    def _post(self, dest, tag, payload, taken=None):
        fam = self._family
        with fam.cond:
            fam.raise_if_aborted()
            fam.mailboxes.setdefault((self._group.id, dest), []).append((self.rank, tag, payload))
            if taken is not None:
                fam.borrowed[id(payload)] = taken
            fam.cond.notify_all()

    def _release(self, payload):
        """Tell the sender of a borrowed buffer that its data has been copied."""
        fam = self._family
        with fam.cond:
            taken = fam.borrowed.pop(id(payload), None)
            if taken is not None:
                taken.set()
                fam.cond.notify_all()

    def _await_taken(self, taken, dest):
        fam = self._family
        me = self._group.world_ranks[self.rank]
        fam.waiting[me] = (f"Sendrecv(dest={dest}), for the receiver to copy", self.size)
        try:
            _spin(fam, taken.is_set)
            with fam.cond:
                while not taken.is_set():
                    fam.raise_if_aborted()
                    if self._group.world_ranks[dest] in fam.finished:
                        raise CollectiveMismatchError(
                            f"rank {self.rank} waits in Sendrecv for rank {dest} to receive, "
                            f"but rank {dest} already returned")
                    fam.cond.wait(_POLL_SECONDS)
        finally:
            fam.waiting[me] = None

    def _take(self, source, tag, call):
        fam, g = self._family, self._group
        me = g.world_ranks[self.rank]
        fam.waiting[me] = (f"{call}(source={source}, tag={tag})", self.size)
        try:
            _spin(fam, lambda: bool(fam.mailboxes.get((g.id, self.rank))))
            with fam.cond:
                box = fam.mailboxes.setdefault((g.id, self.rank), [])
                while True:
                    fam.raise_if_aborted()
                    for i, (src, t, _payload) in enumerate(box):
                        if (source == ANY_SOURCE or src == source) and (tag == ANY_TAG
                                                                        or t == tag):
                            return box.pop(i)
                    peers = range(g.size) if source == ANY_SOURCE else [source]
                    if all(g.world_ranks[r] in fam.finished for r in peers if r != self.rank):
                        raise CollectiveMismatchError(
                            f"rank {self.rank} waits in {call}(source={source}, tag={tag}) "
                            f"but no sender is left: the rank(s) it waits for already returned")
                    fam.cond.wait(_POLL_SECONDS)
        finally:
            fam.waiting[me] = None

    # -- communicators -------------------------------------------------------------------

    def Split(self, color=0, key=0):
        """Collective: ranks with the same ``color`` form a new communicator, ordered by
        ``(key, rank)``. ``color=None`` takes no part and gets ``None``."""
        if color is not None and not isinstance(color, (int, np.integer)):
            raise CommError(f"Split: color must be an int or None, got {color!r}")
        sequence = self._sequence
        g = self._group

        def work(p):
            if color is None:
                return None
            members = sorted((k, r) for r, (c, k) in enumerate(p) if c == color)
            new_rank = [r for _, r in members].index(self.rank)
            with self._family.cond:
                slot = g.pending.get((sequence, color))
                if slot is None:
                    world = [g.world_ranks[r] for _, r in members]
                    slot = g.pending[(sequence, color)] = [_Group(self._family, world), len(members)]
                slot[1] -= 1
                if slot[1] == 0:
                    del g.pending[(sequence, color)]
            return ThreadCommunicator(slot[0], new_rank)
        return self._collective("Split()", (color, key), work)

    def Split_type(self, split_type=COMM_TYPE_SHARED, key=0):
        """Collective: the ranks that share this rank's node, ordered by ``(key, rank)``.
        Thread ranks all share one process, so that is every rank of this communicator."""
        if split_type is not COMM_TYPE_SHARED:
            raise CommError(f"Split_type: only COMM_TYPE_SHARED is supported, got {split_type!r}")
        return self.Split(0, key)

    def _allocate_shared(self, node, shape, dtype, root):
        """One numpy array, handed by ``root`` to every rank of ``node`` (no copy)."""
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        raw = np.empty(nbytes, np.uint8) if node.rank == root else None
        raw = node._collective(f"shared_array(root={root}, {nbytes} bytes)", raw,
                               lambda p: p[root])
        return SharedArray(raw, shape, dtype, self, node, root)

    def Abort(self, errorcode=1):
        """End every rank of this run: they wake up with an error and ``run`` raises."""
        exc = SystemExit(errorcode)
        self._family.fail(self._group.world_ranks[self.rank], exc)
        raise exc


def _reduce_range(op, sources, lo, hi, targets, out=None):
    """Reduce elements [lo, hi) of every source in rank order; write to each target."""
    if hi <= lo:
        return
    flat = [s.reshape(-1) for s in sources]
    if out is None:
        out = np.empty(hi - lo, dtype=flat[0].dtype)
    acc = out
    if len(flat) == 1:
        np.copyto(acc, flat[0][lo:hi])
    else:
        op.ufunc(flat[0][lo:hi], flat[1][lo:hi], out=acc)
    for s in flat[2:]:
        op.ufunc(acc, s[lo:hi], out=acc)
    for t in targets or ():
        if t is not None:
            t.reshape(-1)[lo:hi] = acc


def _check_count(call, count, buf, dtype, rank):
    if buf.size != count or buf.dtype != dtype:
        raise CommError(f"{call}: rank {rank} has a buffer of {describe(buf)} but the "
                        f"message is {int(count)} {dtype}")


def _check_message(call, data, buf, source):
    if data.size != buf.size or data.dtype != buf.dtype:
        raise CommError(f"{call}: message of {describe(data)} from rank {source} does not "
                        f"match the receive buffer of {describe(buf)}")


def self_comm():
    """A one-rank communicator for code that holds every row itself (no other rank)."""
    return ThreadCommunicator(_Group(_Family(1), [0]), 0)


def run_threads(fn, size, args=(), kwargs=None):
    """Run ``fn(comm, *args, **kwargs)`` on ``size`` thread ranks; return the results.

    Rank 0 runs in the calling thread. If any rank raises, every other rank is woken
    up and the original exception is raised here, with a note naming the rank. Inside
    a :func:`time_limit` block the run is aborted at the block's deadline.
    """
    kwargs = kwargs or {}
    family = _Family(size)
    world = _Group(family, range(size))
    results = [None] * size
    deadline = _DEADLINE.get()
    watchdog = None
    if deadline is not None:
        at, seconds = deadline
        watchdog = threading.Timer(max(at - time.monotonic(), 0.0), family.expire, (seconds,))
        watchdog.daemon = True
        watchdog.start()

    def body(rank):
        comm = ThreadCommunicator(world, rank)
        try:
            results[rank] = fn(comm, *args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - every failure ends the run
            family.fail(rank, exc)
        else:
            family.finish(rank)

    threads = [threading.Thread(target=body, args=(r,), name=f"mpiml-rank-{r}", daemon=True)
               for r in range(1, size)]
    for t in threads:
        t.start()
    try:
        body(0)
        for t in threads:
            while t.is_alive():
                t.join(_POLL_SECONDS)
    except BaseException as exc:  # KeyboardInterrupt while joining: stop every rank
        family.fail(0, exc)
        for t in threads:
            t.join(5)
        raise
    finally:
        if watchdog is not None:
            watchdog.cancel()
    if family.error is not None:
        rank, exc = family.error
        if hasattr(exc, "add_note") and size > 1 and rank is not None:
            exc.add_note(f"(raised on thread rank {rank} of {size})")
        raise exc
    return results
