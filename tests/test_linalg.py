"""Distributed dense linear algebra against numpy: grids, layouts, add, SUMMA, Cannon.

Every body runs on thread ranks (1, 2, 3, 4 and the grids 2x3 and 3x3) and under
mpiexec; rank 0's gathered result is compared with numpy outside the body.
"""

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

import mpiml
from mpiml.linalg import (CommCounter, DistributedMatrix, LinalgError, ProcessGrid, add,
                          cannon, cannon_comm_model, check_cannon_ranks, gemm, grid_shape,
                          matmul, scale, summa, summa_comm_model, summa_panels)
from mpiml.linalg import blas as gemm_module

THREADS = pytest.mark.threads(1, 2, 3, 4, 6, 9)
SHAPES = [(1, 1, 1), (7, 11, 13), (101, 37, 59), (2, 3, 2), (1, 9, 4), (12, 1, 10),
          (30, 8, 3), (0, 4, 3), (3, 0, 4)]
DTYPES = [np.float64, np.float32]


def _inputs(m, k, n, dtype, seed=0):
    rng = np.random.default_rng([seed, m, k, n])
    return (rng.standard_normal((m, k)).astype(dtype),
            rng.standard_normal((k, n)).astype(dtype))


def _assert_product(c, a, b):
    """Compare with numpy in float64, with a tolerance that grows with k."""
    ref = a.astype(np.float64) @ b.astype(np.float64)
    tol = 10 * max(a.shape[1], 1) * np.finfo(c.dtype).eps
    assert c.shape == ref.shape and c.dtype == np.result_type(a, b)
    assert_allclose(c, ref, rtol=tol, atol=tol * max(1.0, np.abs(ref).max(initial=0)))


def _is_square(p):
    return math.isqrt(p) ** 2 == p


# -- pure functions ------------------------------------------------------------------------


def test_grid_shape_is_most_square():
    assert [grid_shape(p) for p in (1, 2, 3, 4, 6, 7, 8, 9, 12, 16)] == [
        (1, 1), (1, 2), (1, 3), (2, 2), (2, 3), (1, 7), (2, 4), (3, 3), (3, 4), (4, 4)]
    assert check_cannon_ranks(9) == 3
    for p in (2, 3, 6, 8):
        with pytest.raises(LinalgError, match="square.*summa"):
            check_cannon_ranks(p)


@pytest.mark.parametrize("k", [0, 1, 5, 64, 1000])
@pytest.mark.parametrize("grid", [(1, 1), (1, 3), (2, 3), (3, 3), (4, 1)])
@pytest.mark.parametrize("panel", [1, 7, 512, None])
def test_summa_panels_tile_k_within_owners(k, grid, panel):
    panels = summa_panels(k, grid, panel)
    assert [p[0] for p in panels[1:]] == [p[1] for p in panels[:-1]]
    assert (panels[0][0], panels[-1][1]) == (0, k) if panels else k == 0
    for k0, k1, owner_col, owner_row in panels:
        assert 0 < k1 - k0 <= (panel or k)
        a0, a1 = mpiml.comm.block_range(k, grid[1], owner_col)
        b0, b1 = mpiml.comm.block_range(k, grid[0], owner_row)
        assert a0 <= k0 and k1 <= a1 and b0 <= k0 and k1 <= b1


def test_comm_models_on_known_cases():
    # 1x2 grid, square n: each rank receives the other half of its A rows, no B
    assert summa_comm_model(4, 4, 4, (1, 2), 8) == 4 * 2 * 8
    assert summa_comm_model(5, 7, 3, (1, 1), 8) == 0
    assert cannon_comm_model(5, 7, 3, 1, 8) == 0
    # 2x2, n = 4: (2 rows x 4 k) of A and (4 k x 2 cols) of B, all received on (1, 1)
    assert cannon_comm_model(4, 4, 4, 2, 8) == (2 * 4 + 4 * 2) * 8


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
@pytest.mark.parametrize("use_blas", [True, False])
def test_gemm_layouts_and_accumulate(dtype, use_blas, monkeypatch):
    if not use_blas:
        monkeypatch.setattr(gemm_module, "_KERNELS", {})
    rng = np.random.default_rng(3)

    def make(rows, cols, layout):
        x = rng.standard_normal((rows, 2 * cols)) + (1j if np.dtype(dtype).kind == "c" else 0)
        x = x.astype(dtype)
        return {"C": np.ascontiguousarray(x[:, :cols]), "F": np.asfortranarray(x[:, :cols]),
                "strided": x[:, ::2]}[layout]

    for m, k, n in [(1, 1, 1), (5, 1, 4), (3, 4, 1), (7, 11, 13), (0, 3, 2), (3, 0, 2)]:
        for la in ("C", "F", "strided"):
            for lb in ("C", "F", "strided"):
                a, b = make(m, k, la), make(k, n, lb)
                for accumulate in (False, True):
                    big = np.ones((m + 2, n + 3), dtype)
                    want = big.copy()
                    want[1:m + 1, 2:n + 2] = (1 if accumulate else 0) + a @ b
                    gemm(a, b, big[1:m + 1, 2:n + 2], accumulate=accumulate,
                         scratch=np.empty(m * n, dtype))
                    assert_allclose(big, want, rtol=1e-4, atol=1e-4)


# -- layout, constructors, gather -----------------------------------------------------------


@THREADS
@pytest.mark.parametrize("shape", [(1, 1), (37, 23), (2, 5), (0, 3), (300, 260)])
def test_random_and_fromfunction_do_not_depend_on_the_grid(spmd, shape):
    def body(comm):
        grid = ProcessGrid(comm)
        a = DistributedMatrix.random(shape, grid, seed=5, dtype=np.float32)
        f = DistributedMatrix.fromfunction(lambda i, j: 1000.0 * i + j, shape, grid)
        return a.gather(), f.gather(), a.local.shape, a.row_range, a.col_range

    results = spmd(body)
    ref = mpiml.run(lambda comm: DistributedMatrix.random(shape, comm, seed=5,
                                                          dtype=np.float32).gather(), threads=1)
    assert_array_equal(results[0][0], ref[0])
    assert_array_equal(results[0][1], np.fromfunction(lambda i, j: 1000.0 * i + j, shape))
    assert sum(r[2][0] * r[2][1] for r in results) == shape[0] * shape[1]
    assert all(r[0] is None for r in results[1:])


@THREADS
@pytest.mark.parametrize("grid_kind", ["square", "column", "row"])
def test_scatter_gather_roundtrip(spmd, grid_kind):
    full = np.arange(7 * 5, dtype=np.float64).reshape(7, 5)

    def body(comm):
        shape = {"square": None, "column": (comm.size, 1), "row": (1, comm.size)}[grid_kind]
        grid = ProcessGrid(comm, shape)
        a = DistributedMatrix.from_root(full if comm.rank == 0 else None, grid)
        (r0, r1), (c0, c1) = a.row_range, a.col_range
        return a.gather(), np.array_equal(a.local, full[r0:r1, c0:c1])

    results = spmd(body)
    assert_array_equal(results[0][0], full)
    assert all(ok for _, ok in results)


def test_from_root_rejects_bad_input_on_every_rank(spmd):
    def body(comm):
        try:
            DistributedMatrix.from_root(np.zeros((2, 2, 2)) if comm.rank == 0 else None, comm)
        except LinalgError as exc:
            return str(exc)

    messages = spmd(body)
    assert all("2-D" in m for m in messages)


# -- addition and scaling ---------------------------------------------------------------------


@THREADS
@pytest.mark.parametrize("shape", [(1, 1), (7, 11), (3, 2)])
def test_add_and_scale(spmd, shape):
    def body(comm):
        grid = ProcessGrid(comm)
        a = DistributedMatrix.random(shape, grid, seed=1)
        b = DistributedMatrix.random(shape, grid, seed=2)
        total = add(a, b, shared=True)
        out = {"a": a.gather(), "b": b.gather(), "sum": total.gather(), "diff": (a - b).gather(),
               "combo": add(a, b, alpha=2, beta=-3).gather(), "scaled": (0.5 * a).gather(),
               "neg": (-a).gather(), "complex": scale(a, 1j).gather()}
        c = a.copy()
        c += b
        c *= 3
        add(a, c, alpha=1, beta=2, out=c)     # out aliases an operand
        out["inplace"] = c.gather()
        out["shared_no_copy"] = total.shared and (comm.rank != 0 or np.shares_memory(
            total.local, out["sum"]))
        default, doubled = a + b, 2 * a          # shared by default on the threads backend
        gathered = default.gather()
        out["default_shared"] = default.shared and doubled.shared and (
            comm.rank != 0 or np.shares_memory(default.local, gathered))
        out["not_shared"] = add(a, b, shared=False).shared or scale(a, 2, shared=False).shared
        return out

    results = spmd(body)
    r = results[0]
    a, b = r["a"], r["b"]
    assert_allclose(r["sum"], a + b)
    assert_allclose(r["diff"], a - b)
    assert_allclose(r["combo"], 2 * a - 3 * b)
    assert_allclose(r["scaled"], 0.5 * a)
    assert_allclose(r["neg"], -a)
    assert_allclose(r["complex"], 1j * a)
    assert_allclose(r["inplace"], a + 2 * (3 * (a + b)))
    # every rank wrote its part of one shared array (threads, or MPI ranks of one node),
    # gathered without a copy; results are shared by default on threads only
    assert all(x["shared_no_copy"] for x in results)
    assert all(x["default_shared"] for x in results) == (spmd.backend != "mpi")
    assert not any(x["not_shared"] for x in results)


def test_add_rejects_mismatched_shapes(spmd):
    def body(comm):
        a = DistributedMatrix.zeros((3, 4), comm)
        b = DistributedMatrix.zeros((4, 3), comm)
        with pytest.raises(LinalgError, match="shapes"):
            add(a, b)
        return True

    assert all(spmd(body))


# -- multiplication ------------------------------------------------------------------------------


@THREADS
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matmul_summa_from_root(spmd, shape, dtype):
    a, b = _inputs(*shape, dtype)

    def body(comm):
        return matmul(a if comm.rank == 0 else None, b if comm.rank == 0 else None, comm)

    results = spmd(body)
    _assert_product(results[0], a, b)
    assert all(r is None for r in results[1:])


@pytest.mark.threads(1, 4, 9)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_matmul_cannon_from_root(spmd, shape, dtype):
    if not _is_square(spmd.size):
        pytest.skip("cannon needs a square rank count")
    a, b = _inputs(*shape, dtype)

    def body(comm):
        return matmul(a if comm.rank == 0 else None, b if comm.rank == 0 else None, comm,
                      algo="cannon")

    results = spmd(body)
    _assert_product(results[0], a, b)


@pytest.mark.threads(2, 3, 6)
def test_cannon_on_non_square_rank_count_fails_on_every_rank(spmd):
    if _is_square(spmd.size):
        pytest.skip("a square rank count is valid for cannon")
    a, b = _inputs(4, 4, 4, np.float64)

    def body(comm):
        try:
            matmul(a if comm.rank == 0 else None, b if comm.rank == 0 else None, comm,
                   algo="cannon")
        except LinalgError as exc:
            return str(exc)
        return "no error"

    messages = spmd(body)
    assert len(set(messages)) == 1
    assert "square" in messages[0] and "summa" in messages[0]


@THREADS
@pytest.mark.parametrize("algo", ["summa", "cannon"])
@pytest.mark.parametrize("shape", [(7, 11, 13), (2, 3, 2), (40, 17, 1)])
def test_distributed_end_to_end_and_comm_bytes(spmd, algo, shape):
    if algo == "cannon" and not _is_square(spmd.size):
        pytest.skip("cannon needs a square rank count")
    m, k, n = shape

    def body(comm):
        grid = ProcessGrid.square(comm) if algo == "cannon" else ProcessGrid(comm)
        a = DistributedMatrix.random((m, k), grid, seed=3)
        b = DistributedMatrix.fromfunction(lambda i, j: np.cos(i + 2.0 * j), (k, n), grid)
        counter = CommCounter()
        if algo == "cannon":
            c = cannon(a, b, counter=counter)
        else:
            c = summa(a, b, panel=2, counter=counter)
        most = grid.comm.allreduce(counter.received, op=mpiml.MAX)
        return a.gather(), b.gather(), c.gather(), (a @ b).gather(), most, grid.shape

    results = spmd(body)
    a, b, c, c_default, most, grid = results[0]
    _assert_product(c, a, b)
    _assert_product(c_default, a, b)
    model = (cannon_comm_model(m, k, n, grid[0], 8) if algo == "cannon"
             else summa_comm_model(m, k, n, grid, 8))
    assert most == model


@THREADS
@pytest.mark.parametrize("use_blas", [True, False])
@pytest.mark.parametrize("panel", [1, 3, None])
@pytest.mark.parametrize("grid_kind", ["column", "row", "default"])
def test_summa_on_any_grid_and_panel(spmd, panel, grid_kind, use_blas, monkeypatch):
    if not use_blas:   # the numpy fallback: scratch product, then add
        monkeypatch.setattr(gemm_module, "_KERNELS", {})
    m, k, n = 23, 19, 17

    def body(comm):
        shape = {"column": (comm.size, 1), "row": (1, comm.size), "default": None}[grid_kind]
        grid = ProcessGrid(comm, shape)
        a = DistributedMatrix.random((m, k), grid, seed=7, dtype=np.complex128)
        b = DistributedMatrix.random((k, n), grid, seed=8, dtype=np.complex128)
        out = DistributedMatrix.empty((m, n), grid, np.complex128, shared=True)
        summa(a, b, out=out, panel=panel)
        return a.gather(), b.gather(), out.gather()

    a, b, c = spmd(body)[0]
    assert_allclose(c, a @ b, rtol=1e-12, atol=1e-12)


def test_multiply_rejects_bad_operands(spmd):
    def body(comm):
        a = DistributedMatrix.zeros((3, 4), comm)
        b = DistributedMatrix.zeros((5, 2), comm)
        errors = []
        for call in (lambda: summa(a, b), lambda: summa(a, a.copy(), panel=0),
                     lambda: matmul(None, None, comm, algo="strassen")):
            try:
                call()
            except LinalgError as exc:
                errors.append(str(exc))
        return errors

    for errors in spmd(body):
        assert len(errors) == 3
        assert "inner dimensions" in errors[0] and "panel" in errors[1] and "strassen" in errors[2]


def test_calls_with_a_communicator_make_its_grid_once(spmd, monkeypatch):
    # MPI has a few thousand communicators: a grid (three of them) per call runs out
    made = []
    make_grid = ProcessGrid.__init__

    def counting(self, comm, shape=None):
        made.append(comm)
        make_grid(self, comm, shape)

    monkeypatch.setattr(ProcessGrid, "__init__", counting)
    full = np.arange(12.0).reshape(3, 4)

    def body(comm):
        a = DistributedMatrix.random((5, 3), comm, seed=1)
        b = DistributedMatrix.fromfunction(lambda i, j: i - j, (3, 4), comm)
        c = a @ b
        for _ in range(3):
            matmul(full[:, :3] if comm.rank == 0 else None, full if comm.rank == 0 else None,
                   comm)
        return a.grid is b.grid is c.grid, sum(m is comm for m in made)

    for same_grid, grids_made in spmd(body):
        assert same_grid and grids_made <= 1


def test_workspace_is_reused_until_released():
    def body(comm):
        grid = ProcessGrid(comm)
        first = grid.workspace("x", 100, np.float64)
        again = grid.workspace("x", 50, np.float64)
        other_dtype = grid.workspace("x", 50, np.float32)
        grid.release_workspace()
        fresh = grid.workspace("x", 50, np.float32)
        return (np.shares_memory(first, again), np.shares_memory(first, other_dtype),
                np.shares_memory(other_dtype, fresh), again.size, fresh.dtype)

    assert mpiml.run(body, threads=1)[0] == (True, False, False, 50, np.float32)
