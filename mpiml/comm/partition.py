"""Block partitions that every rank computes the same way, without communication."""

__all__ = ["block_range", "block_counts"]

import numpy as np


def block_range(n, size, rank):
    """Half-open range ``(start, stop)`` of the items of ``rank`` when ``n`` items are
    split into ``size`` contiguous blocks; the first ``n % size`` blocks get one more."""
    base, extra = divmod(int(n), int(size))
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def block_counts(n, size, unit=1):
    """Counts and displacements (int64 arrays of length ``size``) of a block split of
    ``n`` items, each item being ``unit`` elements (e.g. a row of ``unit`` columns)."""
    base, extra = divmod(int(n), int(size))
    counts = np.full(size, base, dtype=np.int64)
    counts[:extra] += 1
    counts *= unit
    displs = np.zeros(size, dtype=np.int64)
    np.cumsum(counts[:-1], out=displs[1:])
    return counts, displs
