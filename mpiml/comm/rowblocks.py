"""Sums over the rows of every rank that are the same, bit for bit, for any rank count.

An allreduce of per-rank sums rounds differently for every way the rows are split over
ranks. A solver that stops when the loss decrease falls to a few ulps can then take a
different number of steps on P ranks than on one. :class:`RowBlocks` removes that:

- the global rows are cut into fixed blocks of ``block_rows`` rows (the last one may be
  shorter), whatever the rank count;
- each block is summed by one rank, the one holding its first row, with the same numpy
  calls on arrays of the same shape (the results do not depend on where the block sits
  in memory);
- the rows of a block that a rank boundary cuts are sent once, at construction, to the
  block's rank (fewer than one block's rows per boundary);
- the block sums meet in one ``Allreduce`` of a buffer with one slot per block, where
  every other rank adds exact zeros, and every rank adds the block sums in block order.
"""

__all__ = ["RowBlocks"]

import numpy as np

BLOCK_ROWS = 8192
MAX_SLOTS = 1 << 21  # numbers in the Allreduce buffer: block size grows to stay below it


def _ceil_div(a, b):
    return -(-a // b)


class RowBlocks:
    """Row arrays of every rank, grouped into fixed global blocks.

    Collective constructor.

    Parameters
    ----------
    comm : Communicator
    arrays : sequence of ndarray or None
        This rank's rows of each array (axis 0, the same length; None stays None), in
        global row order: rank r holds the rows after those of ranks 0..r-1.
    width : int
        The length of the widest sum that :meth:`sums` will be asked for. Blocks are
        made larger when ``n_blocks * width`` would pass ``MAX_SLOTS``.
    block_rows : int, default 8192
    """

    def __init__(self, comm, arrays, width, block_rows=BLOCK_ROWS):
        n_local = int(arrays[0].shape[0])
        counts = np.array(comm.allgather(n_local), dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)])
        n = int(starts[-1])
        grow = max(1, _ceil_div(_ceil_div(n, block_rows) * int(width), MAX_SLOTS))
        size = block_rows * grow
        self.comm = comm
        self.block_rows = size
        self.n_blocks = _ceil_div(n, size)
        rank = comm.rank
        lo, hi = int(starts[rank]), int(starts[rank + 1])
        # The head rows of a rank that belong to a block begun on an earlier rank go to
        # that block's rank: the one holding the block's first row. Sends only go to
        # lower ranks, so the blocking exchange cannot deadlock.
        heads = np.minimum(_ceil_div(starts[:-1], size) * size - starts[:-1], counts)
        owners = np.searchsorted(starts[1:], (starts[:-1] // size) * size, side="right")
        if heads[rank]:
            for tag, a in enumerate(arrays):
                if a is not None:
                    comm.Send(np.ascontiguousarray(a[:heads[rank]]), int(owners[rank]), tag)
        senders = [r for r in range(rank + 1, comm.size) if heads[r] and owners[r] == rank]
        # Blocks beginning on this rank: whole blocks are views; a block cut by the end
        # of this rank's rows is completed with the head rows of the ranks after it.
        self._blocks = []
        for j in range(_ceil_div(lo, size), _ceil_div(hi, size)):
            begin, end = j * size, min(n, (j + 1) * size)
            if end <= hi:
                parts = [None if a is None else a[begin - lo:end - lo] for a in arrays]
            else:
                parts = [None if a is None else self._complete(comm, a[begin - lo:], senders,
                                                               heads, tag)
                         for tag, a in enumerate(arrays)]
            self._blocks.append((j, parts))

    @staticmethod
    def _complete(comm, mine, senders, heads, tag):
        block = np.empty((mine.shape[0] + int(heads[senders].sum()),) + mine.shape[1:],
                         dtype=mine.dtype)
        block[:mine.shape[0]] = mine
        pos = mine.shape[0]
        for r in senders:
            comm.Recv(block[pos:pos + heads[r]], r, tag)
            pos += int(heads[r])
        return block

    def sums(self, fn, width):
        """Collective: ``sum over blocks of fn(*block_arrays)``, the same on every rank.

        Parameters
        ----------
        fn : callable
            ``fn(*arrays)`` on the rows of one block (None stays None), returning an
            ndarray of shape (width,).
        width : int

        Returns
        -------
        ndarray of shape (width,)
            Identical, bit for bit, for any rank count and backend.
        """
        slots = np.zeros((self.n_blocks, width))
        for j, parts in self._blocks:
            slots[j] = fn(*parts)
        total = np.empty_like(slots)
        self.comm.Allreduce(slots, total)
        return total.sum(axis=0)
