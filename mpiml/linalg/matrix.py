"""Distributed dense matrices: a 2-D block layout over a process grid.

Rank ``(i, j)`` of a ``pr x pc`` grid holds the block of rows
``block_range(m, pr, i)`` and columns ``block_range(n, pc, j)`` of an ``m x n``
matrix. Blocks are uneven when the sizes do not divide, and empty when there are
more grid rows than matrix rows (or columns). Every rank computes every block's
position with :func:`mpiml.comm.partition.block_range`, without communication.
"""

__all__ = ["DistributedMatrix", "CommCounter", "add", "scale", "DTYPES"]

import numbers

import numpy as np

from ..comm.partition import block_counts, block_range
from .grid import LinalgError, ProcessGrid, default_grid

DTYPES = tuple(np.dtype(t) for t in (np.float32, np.float64, np.complex64, np.complex128))

#: Side of the tiles of the global index space that :meth:`DistributedMatrix.random`
#: draws from independent streams: the matrix does not depend on the grid.
RANDOM_TILE = 256


class CommCounter:
    """Counts the bytes this rank receives in an algorithm's exchanges.

    Attributes
    ----------
    received : int
        Bytes received so far by this rank.
    """

    def __init__(self):
        self.received = 0

    def add(self, nbytes):
        self.received += int(nbytes)


class _SharedArray:
    """A handle to one array that thread ranks share: ``bcast`` deep-copies
    objects on the threads backend, and this handle deep-copies to itself."""

    __slots__ = ("array",)

    def __init__(self, array):
        self.array = array

    def __deepcopy__(self, memo):
        return self


def _as_dtype(dtype):
    try:
        dtype = np.dtype(dtype)
    except TypeError as exc:
        raise LinalgError(f"dtype must be one of float32, float64, complex64, complex128, "
                          f"got {dtype!r}") from exc
    if dtype not in DTYPES:
        raise LinalgError(f"dtype must be one of float32, float64, complex64, complex128, "
                          f"got {str(dtype)!r}")
    return dtype


def _as_shape(shape):
    try:
        m, n = (int(s) for s in shape)
    except (TypeError, ValueError) as exc:
        raise LinalgError(f"shape must be a pair of sizes (m, n), got {shape!r}") from exc
    if m < 0 or n < 0:
        raise LinalgError(f"shape must not be negative, got {(m, n)}")
    return m, n


def _as_grid(grid):
    if isinstance(grid, ProcessGrid):
        return grid
    if hasattr(grid, "Split") and hasattr(grid, "rank"):
        return default_grid(grid)
    raise LinalgError(f"grid must be a ProcessGrid or a Communicator, got {type(grid).__name__}")


def _shares_memory(grid):
    """Thread ranks can share one array; MPI processes cannot."""
    return grid.backend == "threads"


class DistributedMatrix:
    """An ``m x n`` matrix split in blocks over a :class:`ProcessGrid`.

    Build one with a constructor (all collective): :meth:`from_root` (scatter from
    one rank), :meth:`random` and :meth:`fromfunction` (created in place: no rank
    ever holds the whole matrix), :meth:`zeros` / :meth:`empty`. Bring it back with
    :meth:`gather`.

    Attributes
    ----------
    grid : ProcessGrid
    shape : tuple of int
        Global shape ``(m, n)``.
    local : ndarray of shape (row_stop - row_start, col_stop - col_start)
        This rank's block. May be a view of a shared array (see ``shared``).
    row_range, col_range : tuple of int
        Global ``(start, stop)`` of this rank's rows and columns.
    shared : bool
        True when the blocks of all ranks are views of one array in this process
        (threads backend only). Then :meth:`gather` needs no copy, and operations
        with ``out=`` such a matrix write the single shared result in place.
    """

    def __init__(self, grid, shape, local, storage=None):
        self.grid = grid
        self.shape = shape
        self.local = local
        self._storage = storage
        self.row_range = block_range(shape[0], grid.shape[0], grid.row)
        self.col_range = block_range(shape[1], grid.shape[1], grid.col)

    # -- metadata ------------------------------------------------------------------------

    @property
    def dtype(self):
        return self.local.dtype

    @property
    def ndim(self):
        return 2

    @property
    def shared(self):
        return self._storage is not None

    def block_shape(self, row=None, col=None):
        """Shape of the block at grid position ``(row, col)`` (default: this rank's)."""
        row = self.grid.row if row is None else row
        col = self.grid.col if col is None else col
        return _block_shape(self.shape, self.grid.shape, row, col)

    def __repr__(self):
        pr, pc = self.grid.shape
        return (f"<DistributedMatrix {self.shape[0]}x{self.shape[1]} {self.dtype} on a "
                f"{pr}x{pc} grid, local block {self.local.shape}>")

    # -- constructors (collective) -------------------------------------------------------

    @classmethod
    def empty(cls, shape, grid, dtype=np.float64, shared=False):
        """Uninitialised matrix (collective).

        Parameters
        ----------
        shape : tuple of int
            Global shape ``(m, n)``.
        grid : ProcessGrid or Communicator
            A communicator gets its most square grid (:func:`default_grid`).
        dtype : dtype
            float32, float64, complex64 or complex128.
        shared : bool
            On the threads backend, allocate one ``m x n`` array and give every rank a
            view of its block (no copy at :meth:`gather`). Ignored on MPI, where
            every process holds only its block.
        """
        grid, shape, dtype = _as_grid(grid), _as_shape(shape), _as_dtype(dtype)
        if shared and _shares_memory(grid):
            handle = _SharedArray(np.empty(shape, dtype) if grid.rank == 0 else None)
            storage = grid.comm.bcast(handle, root=0).array
            (r0, r1), (c0, c1) = (block_range(shape[0], grid.shape[0], grid.row),
                                  block_range(shape[1], grid.shape[1], grid.col))
            return cls(grid, shape, storage[r0:r1, c0:c1], storage)
        return cls(grid, shape, np.empty(_block_shape(shape, grid.shape, grid.row, grid.col),
                                         dtype))

    @classmethod
    def zeros(cls, shape, grid, dtype=np.float64, shared=False):
        """Matrix of zeros (collective); parameters as :meth:`empty`."""
        out = cls.empty(shape, grid, dtype, shared)
        out.local[...] = 0
        return out

    @classmethod
    def fromfunction(cls, function, shape, grid, dtype=np.float64):
        """Matrix with entry ``(i, j)`` equal to ``function(i, j)`` (collective).

        Each rank evaluates ``function`` on its own block only, with ``i`` an integer
        array of shape ``(rows, 1)`` and ``j`` one of shape ``(1, cols)`` holding
        global indices (as :func:`numpy.fromfunction`, but vectorised over blocks).
        No rank holds the whole matrix.
        """
        grid, shape, dtype = _as_grid(grid), _as_shape(shape), _as_dtype(dtype)
        out = cls.empty(shape, grid, dtype)
        (r0, r1), (c0, c1) = out.row_range, out.col_range
        rows = np.arange(r0, r1, dtype=np.int64)[:, None]
        cols = np.arange(c0, c1, dtype=np.int64)[None, :]
        out.local[...] = np.broadcast_to(np.asarray(function(rows, cols)), out.local.shape)
        return out

    @classmethod
    def random(cls, shape, grid, seed=0, dtype=np.float64):
        """Matrix of standard normal entries, created in place (collective).

        The global index space is cut into ``RANDOM_TILE x RANDOM_TILE`` tiles; tile
        ``(ti, tj)`` is drawn from its own stream seeded with ``(seed, ti, tj)``. So
        the matrix depends on ``seed`` and ``shape`` only, not on the grid or the
        rank count, and no rank holds the whole matrix. Complex dtypes draw the real
        and imaginary parts from the same stream.
        """
        grid, shape, dtype = _as_grid(grid), _as_shape(shape), _as_dtype(dtype)
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise LinalgError(f"seed must be an integer >= 0, got {seed!r}")
        out = cls.empty(shape, grid, dtype)
        if out.local.size == 0:
            return out
        (r0, r1), (c0, c1) = out.row_range, out.col_range
        m, n = shape
        t = RANDOM_TILE
        for ti in range(r0 // t, -(-r1 // t)):
            tr0, tr1 = ti * t, min(ti * t + t, m)
            for tj in range(c0 // t, -(-c1 // t)):
                tc0, tc1 = tj * t, min(tj * t + t, n)
                tile = _random_tile(seed, ti, tj, (tr1 - tr0, tc1 - tc0), dtype)
                lo_r, hi_r = max(r0, tr0), min(r1, tr1)
                lo_c, hi_c = max(c0, tc0), min(c1, tc1)
                out.local[lo_r - r0:hi_r - r0, lo_c - c0:hi_c - c0] = \
                    tile[lo_r - tr0:hi_r - tr0, lo_c - tc0:hi_c - tc0]
        return out

    @classmethod
    def from_root(cls, array, grid, root=0, shared=False):
        """Scatter a whole matrix held by ``root`` into blocks (collective).

        Parameters
        ----------
        array : array_like of shape (m, n) on root; ignored elsewhere (pass ``None``)
        grid : ProcessGrid or Communicator
        root : int
            Rank (in ``grid.comm``) that holds ``array``.
        shared : bool
            On the threads backend, do not copy: every rank's block is a view of
            root's array (so writes to the blocks change that array). Ignored on MPI.

        Returns
        -------
        DistributedMatrix
            Same dtype as ``array`` (integers and bools become float64).
        """
        grid = _as_grid(grid)
        comm = grid.comm
        meta = None
        if comm.rank == root:
            try:
                array = _as_matrix(array, "array")
                meta = (array.shape, array.dtype.str, None)
            except LinalgError as exc:
                meta = (None, None, str(exc))
        shape, dtype, error = comm.bcast(meta, root=root)
        if error is not None:
            raise LinalgError(error)
        dtype = np.dtype(dtype)
        if shared and _shares_memory(grid):
            storage = comm.bcast(_SharedArray(array if comm.rank == root else None),
                                 root=root).array
            (r0, r1), (c0, c1) = (block_range(shape[0], grid.shape[0], grid.row),
                                  block_range(shape[1], grid.shape[1], grid.col))
            return cls(grid, shape, storage[r0:r1, c0:c1], storage)
        out = cls.empty(shape, grid, dtype)
        counts, displs = _block_counts(shape, grid.shape)
        if comm.rank == root:
            packed = _pack(array, grid.shape)
            comm.Scatterv([packed, counts, displs], out.local, root=root)
        else:
            comm.Scatterv(None, out.local, root=root)
        return out

    # -- out -------------------------------------------------------------------------------

    def gather(self, root=0):
        """The whole matrix on ``root`` (collective).

        Returns
        -------
        ndarray of shape (m, n) on root, ``None`` on the other ranks.
            For a ``shared`` matrix this is the shared array itself (no copy), after
            a barrier that waits for every rank's writes.
        """
        comm = self.grid.comm
        if self._storage is not None:
            comm.Barrier()
            return self._storage if comm.rank == root else None
        local = np.ascontiguousarray(self.local)
        counts, displs = _block_counts(self.shape, self.grid.shape)
        if comm.rank != root:
            comm.Gatherv(local, None, root=root)
            return None
        out = np.empty(self.shape, self.dtype)
        if self.grid.shape[1] == 1:   # row blocks: rank order is row-major order
            comm.Gatherv(local, [out.reshape(-1), counts, displs], root=root)
            return out
        packed = np.empty(self.shape[0] * self.shape[1], self.dtype)
        comm.Gatherv(local, [packed, counts, displs], root=root)
        _unpack(packed, out, self.grid.shape)
        return out

    def copy(self, shared=False):
        """A copy with the same layout (collective if ``shared``)."""
        out = DistributedMatrix.empty(self.shape, self.grid, self.dtype, shared)
        out.local[...] = self.local
        return out

    def astype(self, dtype):
        """A copy converted to ``dtype`` (not collective)."""
        dtype = _as_dtype(dtype)
        return DistributedMatrix(self.grid, self.shape, self.local.astype(dtype))

    def norm(self):
        """Frobenius norm of the whole matrix, the same on every rank (collective)."""
        local = float(np.vdot(self.local, self.local).real) if self.local.size else 0.0
        return float(np.sqrt(self.grid.comm.allreduce(local)))

    # -- arithmetic --------------------------------------------------------------------------

    def __add__(self, other):
        return add(self, other)

    def __sub__(self, other):
        return add(self, other, beta=-1)

    def __iadd__(self, other):
        return add(self, other, out=self)

    def __isub__(self, other):
        return add(self, other, beta=-1, out=self)

    def __mul__(self, alpha):
        if isinstance(alpha, DistributedMatrix):
            return NotImplemented
        return scale(self, alpha)

    __rmul__ = __mul__

    def __imul__(self, alpha):
        return scale(self, alpha, out=self)

    def __neg__(self):
        return scale(self, -1)

    def __matmul__(self, other):
        from .matmul import multiply
        return multiply(self, other)


def _random_tile(seed, ti, tj, shape, dtype):
    rng = np.random.default_rng([seed, ti, tj])
    if dtype.kind == "c":
        parts = rng.standard_normal((2,) + shape)
        return (parts[0] + 1j * parts[1]).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def _as_matrix(array, name):
    if array is None:
        raise LinalgError(f"{name} must be a 2-D array on the root rank, got None")
    array = np.asarray(array)
    if array.ndim != 2:
        raise LinalgError(f"{name} must be 2-D, got shape {array.shape}")
    if array.dtype.kind in "biu":
        array = array.astype(np.float64)
    if array.dtype not in DTYPES:
        raise LinalgError(f"{name} has dtype {str(array.dtype)!r}; use float32, float64, "
                          f"complex64 or complex128")
    return array


def _block_shape(shape, grid_shape, row, col):
    r0, r1 = block_range(shape[0], grid_shape[0], row)
    c0, c1 = block_range(shape[1], grid_shape[1], col)
    return r1 - r0, c1 - c0


def _block_counts(shape, grid_shape):
    """Element counts and displacements of every rank's block, packed in rank order."""
    rows, _ = block_counts(shape[0], grid_shape[0])
    cols, _ = block_counts(shape[1], grid_shape[1])
    counts = np.outer(rows, cols).reshape(-1)
    displs = np.zeros_like(counts)
    np.cumsum(counts[:-1], out=displs[1:])
    return counts, displs


def _blocks(shape, grid_shape):
    """``(rank, row slice, col slice)`` of every block, in rank order."""
    pr, pc = grid_shape
    for rank in range(pr * pc):
        i, j = divmod(rank, pc)
        r0, r1 = block_range(shape[0], pr, i)
        c0, c1 = block_range(shape[1], pc, j)
        yield rank, slice(r0, r1), slice(c0, c1)


def _pack(array, grid_shape):
    """Blocks of ``array`` one after the other in rank order (flat, contiguous)."""
    if grid_shape[1] == 1:
        return np.ascontiguousarray(array).reshape(-1)
    packed = np.empty(array.size, array.dtype)
    pos = 0
    for _, rows, cols in _blocks(array.shape, grid_shape):
        block = array[rows, cols]
        packed[pos:pos + block.size].reshape(block.shape)[...] = block
        pos += block.size
    return packed


def _unpack(packed, out, grid_shape):
    pos = 0
    for _, rows, cols in _blocks(out.shape, grid_shape):
        target = out[rows, cols]
        target[...] = packed[pos:pos + target.size].reshape(target.shape)
        pos += target.size


def _check_same_layout(a, b, call):
    if not isinstance(a, DistributedMatrix) or not isinstance(b, DistributedMatrix):
        raise LinalgError(f"{call}: operands must be DistributedMatrix objects, got "
                          f"{type(a).__name__} and {type(b).__name__}")
    if a.shape != b.shape:
        raise LinalgError(f"{call}: shapes {a.shape} and {b.shape} differ")
    if a.grid.shape != b.grid.shape or a.grid.size != b.grid.size:
        raise LinalgError(f"{call}: matrices live on different grids "
                          f"({a.grid.shape} and {b.grid.shape})")


def _check_product(a, b, out, call):
    """Validate ``a @ b`` (pure metadata: every rank reaches the same verdict) and
    return ``(m, k, n, dtype, out)``, allocating ``out`` if needed."""
    for name, x in (("A", a), ("B", b)):
        if not isinstance(x, DistributedMatrix):
            raise LinalgError(f"{call}: {name} must be a DistributedMatrix, got {type(x).__name__}")
    (m, k), (k2, n) = a.shape, b.shape
    if k != k2:
        raise LinalgError(f"{call}: inner dimensions differ: A is {m}x{k}, B is {k2}x{n}")
    if a.grid.shape != b.grid.shape or a.grid.size != b.grid.size:
        raise LinalgError(f"{call}: A and B live on different grids "
                          f"({a.grid.shape} and {b.grid.shape})")
    dtype = np.result_type(a.dtype, b.dtype)
    if out is None:
        out = DistributedMatrix.empty((m, n), a.grid, dtype)
    elif not isinstance(out, DistributedMatrix) or out.shape != (m, n) \
            or out.grid.shape != a.grid.shape or out.dtype != dtype:
        raise LinalgError(f"{call}: out must be a {m}x{n} {dtype} DistributedMatrix on the "
                          f"grid of A, got {out!r}")
    return m, k, n, dtype, out


def _check_scalar(alpha, call):
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Number):
        raise LinalgError(f"{call}: the scale factor must be a number, got {alpha!r}")


def _output(like, dtype, out, shared, call):
    if out is None:
        shared = _shares_memory(like.grid) if shared is None else shared
        return DistributedMatrix.empty(like.shape, like.grid, dtype, shared)
    _check_same_layout(like, out, call)
    if not np.can_cast(dtype, out.dtype, casting="same_kind"):
        raise LinalgError(f"{call}: cannot write a {dtype} result into a {out.dtype} matrix")
    return out


def add(a, b, alpha=1, beta=1, out=None, shared=None):
    """Parallel ``alpha * a + beta * b`` of two distributed matrices (collective).

    Each rank combines its own blocks: no data moves. The result is written in
    place into ``out`` when given (which may be ``a`` or ``b``). On the threads
    backend the result is one shared array (unless ``shared=False``, or an ``out``
    that is not shared is given): every rank writes its part of it directly, and
    ``out.gather()`` returns it without a copy.

    Parameters
    ----------
    a, b : DistributedMatrix
        Same shape, on grids of the same shape.
    alpha, beta : number
    out : DistributedMatrix, optional
        Same shape and grid as ``a``.
    shared : bool, optional
        When ``out`` is not given: allocate a shared result. Default: on the threads
        backend (where ranks share memory); ignored on MPI.

    Returns
    -------
    DistributedMatrix
    """
    _check_same_layout(a, b, "add")
    _check_scalar(alpha, "add")
    _check_scalar(beta, "add")
    dtype = np.result_type(a.dtype, b.dtype)
    out = _output(a, dtype, out, shared, "add")
    if alpha == 1 and beta == 1:
        np.add(a.local, b.local, out=out.local)
    elif alpha == 1 and beta == -1:
        np.subtract(a.local, b.local, out=out.local)
    elif out is b:                      # write b's own blocks last
        np.multiply(b.local, beta, out=out.local)
        out.local += alpha * a.local
    else:
        np.multiply(a.local, alpha, out=out.local)
        out.local += beta * b.local
    return out


def scale(a, alpha, out=None, shared=None):
    """Parallel ``alpha * a`` (collective; no data moves); ``out`` and ``shared`` as :func:`add`."""
    if not isinstance(a, DistributedMatrix):
        raise LinalgError(f"scale: operand must be a DistributedMatrix, got {type(a).__name__}")
    _check_scalar(alpha, "scale")
    dtype = a.dtype
    if np.iscomplexobj(alpha) and dtype.kind != "c":
        dtype = np.result_type(dtype, np.complex64)
    out = _output(a, dtype, out, shared, "scale")
    np.multiply(a.local, alpha, out=out.local)
    return out
