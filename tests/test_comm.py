"""The Communicator contract, each body run on thread ranks 1-5 and under mpiexec."""

import re

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import mpiml
from mpiml.comm import block_counts, block_range

DTYPES = [np.float64, np.float32, np.int64, np.int32, np.uint8, np.complex128, np.bool_]


def _rows(rank, n, cols=3, dtype=np.float64):
    """Deterministic test data for one rank: n rows of `cols` columns."""
    base = np.arange(n * cols, dtype=np.float64).reshape(n, cols) + 1000 * rank
    return base.astype(dtype)


def test_rank_and_size(spmd):
    results = spmd(lambda comm: (comm.rank, comm.size, comm.backend))
    assert [r[0] for r in results] == list(range(spmd.size))
    assert {r[1] for r in results} == {spmd.size}
    assert {r[2] for r in results} == ({"mpi"} if spmd.backend == "mpi" else {"threads"})


def test_partition_is_pure_and_covers_everything():
    for n in (0, 1, 5, 7, 100):
        for size in (1, 2, 3, 4, 7):
            ranges = [block_range(n, size, r) for r in range(size)]
            counts, displs = block_counts(n, size)
            assert ranges[0][0] == 0 and ranges[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
            assert_array_equal(counts, [b - a for a, b in ranges])
            assert_array_equal(displs, [a for a, _ in ranges])
            assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("root_pick", ["first", "last"])
def test_bcast_objects_and_buffers(spmd, root_pick):
    def body(comm):
        root = 0 if root_pick == "first" else comm.size - 1
        obj = comm.bcast({"rank": comm.rank, "data": [1, 2]} if comm.rank == root else None, root)
        out = []
        for dtype in DTYPES:
            buf = (np.arange(7) * 3).astype(dtype) if comm.rank == root else np.zeros(7, dtype)
            comm.Bcast(buf, root)
            out.append(buf)
        empty = np.zeros(0)
        comm.Bcast(empty, root)
        return root, obj, out

    for root, obj, bufs in spmd(body):
        assert obj == {"rank": root, "data": [1, 2]}
        for dtype, buf in zip(DTYPES, bufs):
            assert_array_equal(buf, (np.arange(7) * 3).astype(dtype))


def test_scatter_gather_allgather_objects(spmd):
    def body(comm):
        items = [f"item{r}" for r in range(comm.size)] if comm.rank == 0 else None
        mine = comm.scatter(items, 0)
        gathered = comm.gather((comm.rank, mine), 0)
        every = comm.allgather(comm.rank * 10)
        return mine, gathered, every

    results = spmd(body)
    for rank, (mine, gathered, every) in enumerate(results):
        assert mine == f"item{rank}"
        assert every == [r * 10 for r in range(spmd.size)]
        assert gathered == ([(r, f"item{r}") for r in range(spmd.size)] if rank == 0 else None)


@pytest.mark.parametrize("n_rows", [0, 1, 2, 7, 23])
def test_scatterv_gatherv_allgatherv_uneven_rows(spmd, n_rows):
    """Ranks get 0, 1 or many rows; counts come from the block partition."""
    cols = 3
    full = np.arange(n_rows * cols, dtype=np.float64).reshape(n_rows, cols)

    def body(comm):
        counts, displs = block_counts(n_rows, comm.size, unit=cols)
        lo, hi = block_range(n_rows, comm.size, comm.rank)
        mine = np.empty((hi - lo, cols))
        comm.Scatterv([full, counts, displs] if comm.rank == 0 else None, mine, root=0)
        back = np.empty_like(full) if comm.rank == 0 else None
        comm.Gatherv(mine * 2, [back, counts, displs] if comm.rank == 0 else None, root=0)
        every = np.empty_like(full)
        comm.Allgatherv(mine + 1, [every, counts])
        return mine, back, every

    results = spmd(body)
    for rank, (mine, back, every) in enumerate(results):
        lo, hi = block_range(n_rows, spmd.size, rank)
        assert_array_equal(mine, full[lo:hi])
        assert_array_equal(every, full + 1)
        if rank == 0:
            assert_array_equal(back, full * 2)
        else:
            assert back is None


def test_equal_block_scatter_gather_allgather(spmd):
    def body(comm):
        p = comm.size
        send = np.arange(4 * p, dtype=np.int64) if comm.rank == p - 1 else None
        mine = np.empty(4, dtype=np.int64)
        comm.Scatter(send, mine, root=p - 1)
        every = np.empty(4 * p, dtype=np.int64)
        comm.Allgather(mine * 10, every)
        at_root = np.empty(4 * p, dtype=np.int64) if comm.rank == 0 else None
        comm.Gather(mine, at_root, root=0)
        return mine, every, at_root

    for rank, (mine, every, at_root) in enumerate(spmd(body)):
        assert_array_equal(mine, np.arange(4 * rank, 4 * rank + 4))
        assert_array_equal(every, np.arange(4 * spmd.size) * 10)
        if rank == 0:
            assert_array_equal(at_root, np.arange(4 * spmd.size))


OPS = {"SUM": (mpiml.SUM, np.sum), "PROD": (mpiml.PROD, np.prod),
       "MIN": (mpiml.MIN, np.min), "MAX": (mpiml.MAX, np.max)}


@pytest.mark.parametrize("op_name", sorted(OPS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.int32])
def test_reduce_allreduce_every_op(spmd, op_name, dtype):
    op, reference = OPS[op_name]

    def local(rank):
        return (np.arange(11) % 5 + rank + 1).astype(dtype)

    def body(comm):
        mine = local(comm.rank)
        everywhere = np.empty_like(mine)
        comm.Allreduce(mine, everywhere, op=op)
        in_place = mine.copy()
        comm.Allreduce(mpiml.IN_PLACE, in_place, op=op)
        at_root = np.empty_like(mine) if comm.rank == 0 else None
        comm.Reduce(mine, at_root, op=op, root=0)
        return everywhere, in_place, at_root, comm.allreduce(comm.rank + 1, op=op)

    expected = reference(np.stack([local(r) for r in range(spmd.size)]), axis=0).astype(dtype)
    scalars = [r + 1 for r in range(spmd.size)]
    for rank, (everywhere, in_place, at_root, scalar) in enumerate(spmd(body)):
        assert_array_equal(everywhere, expected)
        assert_array_equal(in_place, expected)
        assert scalar == reference(scalars)
        if rank == 0:
            assert_array_equal(at_root, expected)


def test_allreduce_is_bit_identical_on_every_rank(spmd):
    """Random floats whose sum depends on the order: every rank must see the same bits."""
    def body(comm):
        rng = np.random.default_rng(comm.rank)
        x = rng.standard_normal(100_003) * 10.0 ** rng.integers(-8, 8, 100_003)
        y = np.empty_like(x)
        comm.Allreduce(x, y)
        return y.tobytes(), comm.allreduce(float(x[0]))

    results = spmd(body)
    assert len({r[0] for r in results}) == 1
    assert len({r[1] for r in results}) == 1


def test_reduce_scatter_by_blocks(spmd):
    def body(comm):
        n = 10
        counts, _ = block_counts(n, comm.size)
        send = np.arange(n, dtype=np.int64) * (comm.rank + 1)
        recv = np.empty(counts[comm.rank], dtype=np.int64)
        comm.Reduce_scatter(send, recv, counts)
        return recv

    total = sum(range(1, spmd.size + 1))
    for rank, recv in enumerate(spmd(body)):
        lo, hi = block_range(10, spmd.size, rank)
        assert_array_equal(recv, np.arange(lo, hi) * total)


@pytest.mark.parametrize("n", [5, 40_000, 200_003])    # small and large (copied or not)
def test_send_buffers_are_free_once_a_collective_returns(spmd, n):
    """Each rank scribbles over its send buffers as soon as a collective returns, at its
    own pace (uneven delays), through many rounds of several collectives: the results
    must never see the scribbles."""
    import time

    def body(comm):
        rng = np.random.default_rng(comm.rank)
        counts, _ = block_counts(n, comm.size)
        size = comm.size
        total = size * (size + 1) // 2
        bad = []
        for step in range(30):
            value = step + 1
            send = np.full(n, value * (comm.rank + 1), dtype=np.int64)
            got = np.empty(counts[comm.rank], dtype=np.int64)
            comm.Reduce_scatter(send, got, counts)
            send[:] = -1
            bad.append(not (got == value * total).all())
            summed = np.empty(n, dtype=np.int64)
            comm.Allreduce(send + (value + 2) * (comm.rank + 1), summed)
            bad.append(not (summed == (value + 2) * total - size).all())
            mine = np.full(3, comm.rank * 100 + step, dtype=np.int64)
            every = np.empty(3 * size, dtype=np.int64)
            comm.Allgather(mine, every)
            mine[:] = -7
            bad.append(not (every == np.repeat(np.arange(size) * 100 + step, 3)).all())
            if rng.random() < 0.3:
                time.sleep(rng.random() * 2e-3)
            comm.Barrier()
        return bad

    for bad in spmd(body):
        assert not any(bad)


def test_maxloc_ties_go_to_the_lowest_index(spmd):
    def body(comm):
        gain = 5.0 if comm.rank % 2 else 3.0
        best = comm.argmax(gain, (comm.rank, 0))
        worst = comm.allreduce((gain, comm.rank), op=mpiml.MINLOC)
        everyone_ties = comm.argmax(1.0, comm.size - comm.rank)
        return best, worst, everyone_ties

    for best, worst, ties in spmd(body):
        if spmd.size == 1:
            assert best == (3.0, (0, 0))
        else:
            assert best == (5.0, (1, 0))
        assert worst == (3.0, 0)
        assert ties == (1.0, 1)


def test_point_to_point_with_tags(spmd):
    def body(comm):
        right, left = (comm.rank + 1) % comm.size, (comm.rank - 1) % comm.size
        comm.send({"from": comm.rank, "tag": 7}, right, tag=7)
        comm.send({"from": comm.rank, "tag": 3}, right, tag=3)
        # receive out of order by tag
        first = comm.recv(left, tag=3)
        second = comm.recv(mpiml.ANY_SOURCE, tag=7)
        buf = np.full(5, comm.rank, dtype=np.int32)
        comm.Send(buf, right, tag=1)
        got = np.empty(5, dtype=np.int32)
        comm.Recv(got, left, tag=1)
        ring = np.empty(4)
        comm.Sendrecv(np.full(4, float(comm.rank)), right, 2, ring, left, 2)
        replaced = np.full(3, float(comm.rank))
        comm.Sendrecv_replace(replaced, right, 4, left, 4)
        obj = comm.sendrecv(comm.rank * 100, right, 5, left, 5)
        return first, second, got, ring, replaced, obj

    for rank, (first, second, got, ring, replaced, obj) in enumerate(spmd(body)):
        left = (rank - 1) % spmd.size
        assert first == {"from": left, "tag": 3}
        assert second == {"from": left, "tag": 7}
        assert_array_equal(got, np.full(5, left))
        assert_array_equal(ring, np.full(4, float(left)))
        assert_array_equal(replaced, np.full(3, float(left)))
        assert obj == left * 100


@pytest.mark.threads(1, 2, 3, 4, 6)
def test_split_into_grid_rows_and_columns(spmd):
    def body(comm):
        p = comm.size
        pc = next(c for c in range(int(p ** 0.5), 0, -1) if p % c == 0)
        pr = p // pc
        row, col = comm.rank // pc, comm.rank % pc
        row_comm = comm.Split(row, col)
        col_comm = comm.Split(col, row)
        row_sum = row_comm.allreduce(comm.rank)
        col_members = col_comm.allgather(comm.rank)
        none = comm.Split(None if comm.rank == 0 else 1, 0)
        dup = comm.Dup()
        return (pr, pc, row_comm.size, row_comm.rank, col_comm.size, col_comm.rank,
                row_sum, col_members, none is None, dup.allreduce(1))

    for rank, r in enumerate(spmd(body)):
        pr, pc, rsize, rrank, csize, crank, row_sum, col_members, none, dup_sum = r
        row, col = rank // pc, rank % pc
        assert (rsize, rrank, csize, crank) == (pc, col, pr, row)
        assert row_sum == sum(range(row * pc, row * pc + pc))
        assert col_members == [col + i * pc for i in range(pr)]
        assert none == (rank == 0)
        assert dup_sum == spmd.size


def test_bad_buffers_are_clear_errors(spmd):
    """Checked locally before any communication, so every rank raises the same error."""
    def body(comm):
        errors = []
        for call in (lambda: comm.Bcast([1, 2, 3]),
                     lambda: comm.Allreduce(np.zeros(3), np.zeros(4)),
                     lambda: comm.Allreduce(np.zeros(3), np.zeros(3, np.float32)),
                     lambda: comm.Bcast(np.zeros((4, 4))[:, 0]),
                     lambda: comm.Bcast(np.array(["a"], dtype=object)),
                     lambda: comm.Allreduce(np.zeros(2), np.zeros(2), op="sum"),
                     lambda: comm.Send(np.zeros(2), comm.size),
                     lambda: comm.bcast(1, root=-1),
                     lambda: comm.Allgather(np.zeros(3), np.zeros(3 * comm.size + 2)),
                     lambda: comm.Allgather(np.zeros(3), np.zeros(3 * comm.size, np.float32))):
            try:
                call()
            except (mpiml.CommError, TypeError) as exc:
                errors.append(str(exc))
        return errors

    for errors in spmd(body):
        assert len(errors) == 10
        assert "numpy array" in errors[0]
        assert "same size and dtype" in errors[1] and "same size and dtype" in errors[2]
        assert "C-contiguous" in errors[3]
        assert "dtype" in errors[4]
        assert "mpiml.SUM" in errors[5]
        assert "dest must be a rank" in errors[6]
        assert "root must be a rank" in errors[7]
        assert all("Allgather" in e for e in errors[8:])


def test_vector_specs_are_checked_with_clear_errors():
    """``[array, counts(, displs)]`` specifications: the defaults, and every bad one."""
    from mpiml.comm.base import as_vector_spec
    buf = np.zeros(6)
    _, counts, displs = as_vector_spec(buf, 3, "X")
    assert_array_equal(counts, [2, 2, 2])
    assert_array_equal(displs, [0, 2, 4])
    _, counts, displs = as_vector_spec([buf, np.array([1, 0, 5])], 3, "X")
    assert_array_equal(counts, [1, 0, 5])
    assert_array_equal(displs, [0, 1, 1])
    _, counts, displs = as_vector_spec([buf, [1, 2, 3], [5, 3, 0]], 3, "X")
    assert counts.dtype == displs.dtype == np.int64
    assert_array_equal(displs, [5, 3, 0])
    for spec, size, message in [
            (buf, 4, "X: 6 elements cannot be split evenly over 4 ranks"),
            ([buf, [3, 3]], 3, "X: 2 counts given for 3 ranks"),
            ([buf, [4, -1, 3]], 3, "X: counts must be >= 0, got [4, -1, 3]"),
            ([buf, [1, 1, 1], [0, 1]], 3, "X: 2 displacements given for 3 ranks"),
            ([buf, [1, 1, 1], [0, -1, 2]], 3, "do not fit a buffer of 6 elements"),
            ([buf, [4, 1, 2]], 3, "X: counts [4, 1, 2] at displacements [0, 4, 5] do not fit"),
            ([buf, [1], [0], [0]], 1, "must be [array, counts(, displs)]")]:
        with pytest.raises(mpiml.CommError, match=re.escape(message)):
            as_vector_spec(spec, size, "X")
