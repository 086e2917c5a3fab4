"""Node-shared arrays and shared DistributedMatrix blocks, on thread ranks and under mpiexec.

Each body runs on thread ranks and under ``mpiexec -n P python -m pytest --with-mpi -m mpi``
(every rank of one node). The failure cases start their own ``mpiexec`` and check that
no segment stays in ``/dev/shm``.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import mpiml
from mpiml.linalg import DistributedMatrix, ProcessGrid, add, cannon, scale, summa
from util import MPIEXEC, ROOT, mpi_env

THREADS = pytest.mark.threads(1, 2, 3, 4)
SHAPES = [(1, 1, 1), (7, 11, 13), (2, 3, 2), (1, 9, 4), (12, 1, 10), (0, 4, 3), (3, 0, 4),
          (30, 8, 3)]


# -- the Communicator's shared arrays ------------------------------------------------------


@THREADS
@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.complex128, np.bool_])
def test_every_rank_of_a_node_sees_one_buffer(spmd, dtype):
    def body(comm):
        shm = comm.shared_array((5, 7), dtype)
        node = shm.node_comm
        flat = shm.array.reshape(-1)
        flat[node.rank::node.size] = node.rank + 1     # each rank writes its own slice
        shm.fence()
        seen = shm.array.copy()
        shm.fence()                                    # nobody writes before all have read
        if node.rank == node.size - 1:
            shm.array[...] = 0
        shm.fence()
        zeroed = not shm.array.any()
        return seen, zeroed, node.size, node.rank, shm.array.shape, shm.array.flags.c_contiguous

    results = spmd(body)
    size = results[0][2]
    want = (np.arange(35) % size + 1).astype(dtype).reshape(5, 7)
    for seen, zeroed, node_size, _node_rank, shape, contiguous in results:
        assert_array_equal(seen, want)
        assert zeroed and shape == (5, 7) and contiguous and node_size == size
    assert sorted(r[3] for r in results) == list(range(size))


@THREADS
def test_node_comm_is_made_once_and_other_roots_work(spmd):
    def body(comm):
        node = comm.node_comm()
        again = comm.node_comm() is node
        root = node.size - 1
        shm = comm.shared_array(4, np.float64, root=root)
        if shm.is_root:
            shm.array[:] = [1, 2, 3, 4]
        shm.fence()
        empty = comm.shared_array((0, 3), np.float32)
        return again, shm.array.tolist(), empty.array.shape, shm.root == root

    for again, values, empty_shape, root_ok in spmd(body):
        assert again and values == [1, 2, 3, 4] and empty_shape == (0, 3) and root_ok


def test_bad_arguments_fail_on_every_rank(spmd):
    def body(comm):
        errors = []
        for args in [((3, -1), np.float64, 0), ((3,), object, 0), ((3,), np.float64, 10 ** 6),
                     ((3 + comm.rank,), np.float64, 0)]:
            try:
                comm.shared_array(*args)
            except mpiml.CommError as exc:
                errors.append(str(exc))
        return errors

    for errors in spmd(body):
        messages = "\n".join(errors)
        assert "negative" in messages and "dtype" in messages and "root" in messages
        if spmd.size > 1:
            assert len(errors) == 4 and "same shape" in errors[3]


@THREADS
def test_free_refuses_while_views_live_and_then_releases(spmd):
    def body(comm):
        shm = comm.shared_array((3, 3), np.float64)
        view = shm.array[1:]
        try:
            shm.free()
            refused = None
        except mpiml.CommError as exc:
            refused = str(exc)
        usable = shm.array is not None and not shm.freed
        del view
        shm.free()
        with comm.shared_array(8) as other:
            other.array[:] = 1
        return refused, usable, shm.freed, shm.array is None, other.freed

    for refused, usable, freed, gone, other_freed in spmd(body):
        assert "still hold views" in refused and usable
        assert freed and gone and other_freed


def test_released_windows_are_freed_at_the_next_allocation(spmd):
    def body(comm):
        for _ in range(5):
            shm = comm.shared_array(1000, np.int64)
            shm.array[:] = comm.rank
            del shm
        registry = getattr(comm, "_windows", None)
        return None if registry is None else len(registry.live)

    live = spmd(body)
    if spmd.backend == "mpi":
        assert all(n <= 1 for n in live)    # the last one: nothing has asked since


def test_node_memory_reports_every_rank_and_the_node(spmd):
    def body(comm):
        from mpiml.comm import node_memory
        return node_memory(comm)

    report = spmd(body)[0]
    assert len(report["rss_bytes"]) == len(report["pss_bytes"]) == spmd.size
    assert sorted(r for node in report["nodes"] for r in node) == list(range(spmd.size))
    if sys.platform.startswith("linux"):
        assert min(report["pss_bytes"]) > 0 and report["node_pss_bytes"][0] > 0


# -- shared DistributedMatrix ------------------------------------------------------------------


def _matrices(comm, shape, shared, square=False):
    m, k, n = shape
    grid = ProcessGrid.square(comm) if square else ProcessGrid(comm)
    a = DistributedMatrix.random((m, k), grid, seed=1, shared=shared)
    b = DistributedMatrix.random((k, n), grid, seed=2, shared=shared)
    a2 = DistributedMatrix.fromfunction(lambda i, j: i - 2.0 * j, (m, k), grid, shared=shared)
    return grid, a, b, a2


@THREADS
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_shared_results_equal_private_ones_and_numpy(spmd, shape):
    def body(comm):
        out = {}
        for shared in (False, True):
            grid, a, b, a2 = _matrices(comm, shape, shared)
            c = DistributedMatrix.zeros((shape[0], shape[2]), grid, shared=shared)
            summa(a, b, out=c, panel=3)
            total = add(a, a2, alpha=2, beta=-1)
            doubled = scale(a, 0.5)
            a += a2
            out[shared] = {"a2": a2.gather(), "b": b.gather(), "c": c.gather(),
                           "add": total.gather(), "scale": doubled.gather(),
                           "iadd": a.gather(),
                           "flags": [x.shared for x in (a, b, c, total, doubled)]}
            if shared:
                full = out[shared]["c"]
                out["no_copy"] = comm.rank != 0 or full is c.storage
        return out

    r = spmd(body)[0]
    private, shared = r[False], r[True]
    assert all(shared["flags"]) and r["no_copy"]
    if spmd.backend == "mpi":
        assert not any(private["flags"])
    for key in ("a2", "b", "c", "add", "scale", "iadd"):
        assert_array_equal(shared[key], private[key], err_msg=key)
    a = shared["iadd"] - shared["a2"]
    assert_allclose(shared["c"], a @ shared["b"], rtol=1e-12, atol=1e-12)
    assert_allclose(shared["add"], 2 * a - shared["a2"])
    assert_allclose(shared["scale"], 0.5 * a)


@pytest.mark.threads(1, 4)
@pytest.mark.parametrize("shape", [(7, 11, 13), (1, 2, 1), (0, 3, 2), (5, 5, 5)])
def test_cannon_writes_a_shared_result_in_place(spmd, shape):
    if round(spmd.size ** 0.5) ** 2 != spmd.size:
        pytest.skip("cannon needs a square rank count")

    def body(comm):
        grid, a, b, _ = _matrices(comm, shape, True, square=True)
        c = DistributedMatrix.empty((shape[0], shape[2]), grid, shared=True)
        before = c.storage
        cannon(a, b, out=c)
        default = cannon(a, b)                 # shared operands: a shared product
        return a.gather(), b.gather(), c.gather(), c.storage is before, default.shared

    a, b, c, same_storage, default_shared = spmd(body)[0]
    assert same_storage and default_shared
    assert_allclose(c, a @ b, rtol=1e-12, atol=1e-12)


@THREADS
@pytest.mark.parametrize("shape", [(7, 5), (1, 1), (0, 4), (9, 2)])
def test_from_root_into_shared_blocks(spmd, shape):
    full = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) if all(shape) else \
        np.zeros(shape)

    def body(comm):
        root = comm.size - 1
        a = DistributedMatrix.from_root(full if comm.rank == root else None, comm, root=root,
                                        shared=True)
        (r0, r1), (c0, c1) = a.row_range, a.col_range
        return a.gather(), np.array_equal(a.local, full[r0:r1, c0:c1]), a.shared

    results = spmd(body)
    assert_array_equal(results[0][0], full)
    assert all(ok and shared for _, ok, shared in results)


def test_free_of_a_shared_matrix(spmd):
    def body(comm):
        a = DistributedMatrix.zeros((6, 4), comm, shared=True)
        full = a.gather()                  # rank 0 holds the storage itself
        try:
            a.free()
            refused = False
        except mpiml.CommError:
            refused = True
        intact = a.local is not None and a.local.shape == a.block_shape()
        del full
        a.free()
        return refused, intact, a.local is None

    for refused, intact, freed in spmd(body):
        assert refused and intact and freed


# -- failures and /dev/shm, MPI in subprocesses ------------------------------------------------


def _segments():
    try:
        return set(os.listdir("/dev/shm"))
    except OSError:
        return set()


def _record_segments_code(directory):
    """Code for a job: ``record_segments(rank)`` saves the /dev/shm paths this rank maps."""
    return textwrap.dedent(f"""
        def record_segments(rank):
            import json
            names = set()
            for line in open("/proc/self/maps"):
                fields = line.split()
                if len(fields) >= 6 and fields[5].startswith("/dev/shm/"):
                    names.add(fields[5])
            with open({str(directory)!r} + f"/segments-{{rank}}.json", "w") as out:
                json.dump(sorted(names), out)
    """)


def _run_job(tmp_path, code, ranks, timeout=60):
    script = tmp_path / "job.py"
    script.write_text(_record_segments_code(tmp_path) + textwrap.dedent(code))
    before = _segments()
    start = time.monotonic()
    proc = subprocess.run([MPIEXEC, "-n", str(ranks), sys.executable, str(script)],
                          capture_output=True, text=True, timeout=timeout, env=mpi_env(),
                          cwd=ROOT)
    return proc, time.monotonic() - start, before


def _assert_no_segment_left(tmp_path, ranks, before):
    """No segment that a rank of the job mapped is left in /dev/shm."""
    mapped = set()
    for rank in range(ranks):
        mapped.update(json.loads((tmp_path / f"segments-{rank}.json").read_text()))
    assert any("mpich" in p for p in mapped) or ranks == 1, mapped
    left = [p for p in mapped if os.path.exists(p)]
    assert not left, f"segments left in /dev/shm: {left}"
    # other jobs on this machine may come and go; ours are those our ranks mapped
    assert not {name for name in _segments() - before if f"/dev/shm/{name}" in mapped}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ranks", [1, 2, 4])
def test_mpi_normal_run_leaves_no_segment(tmp_path, ranks):
    if sys.platform != "linux":
        pytest.skip("/dev/shm and /proc/self/maps are Linux's")
    proc, _, before = _run_job(tmp_path, """
        import numpy as np, mpiml
        from mpiml.linalg import DistributedMatrix, add
        def body(comm):
            a = DistributedMatrix.random((50, 31), comm, seed=1, shared=True)
            b = DistributedMatrix.random((50, 31), comm, seed=2, shared=True)
            c = add(a, b)
            full, full_a, full_b = c.gather(), a.gather(), b.gather()
            record_segments(comm.rank)
            if comm.rank == 0:
                assert np.array_equal(full, full_a + full_b)
        mpiml.run(body)
    """, ranks)
    assert proc.returncode == 0, proc.stderr
    _assert_no_segment_left(tmp_path, ranks, before)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("ranks", [2, 4])
def test_mpi_rank_failing_while_others_wait_on_the_window_ends_the_job(tmp_path, ranks):
    if sys.platform != "linux":
        pytest.skip("/dev/shm and /proc/self/maps are Linux's")
    proc, seconds, before = _run_job(tmp_path, """
        import time, numpy as np, mpiml
        def body(comm):
            shm = comm.shared_array((1000, 100), np.float64)
            shm.array[comm.rank] = comm.rank
            record_segments(comm.rank)
            comm.Barrier()
            if comm.rank == 1:
                time.sleep(0.5)
                raise ZeroDivisionError("rank one failed before the fence")
            shm.fence()                       # the others wait here for rank 1
        mpiml.run(body)
    """, ranks)
    assert proc.returncode != 0
    assert seconds < 30
    assert proc.stderr.count("ZeroDivisionError: rank one failed before the fence") == 1
    _assert_no_segment_left(tmp_path, ranks, before)
