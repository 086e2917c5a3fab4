"""Distributed dense linear algebra: block matrices on process grids, parallel
addition, and matrix multiplication with SUMMA (any grid) or Cannon (square grids).

Quick start (every rank runs this)::

    from mpiml.linalg import DistributedMatrix, ProcessGrid, summa
    grid = ProcessGrid(comm)                         # most square pr x pc grid
    A = DistributedMatrix.random((m, k), grid, seed=1)
    B = DistributedMatrix.random((k, n), grid, seed=2)
    C = summa(A, B)                                  # or A @ B
    full = C.gather()                                # ndarray on rank 0

Or with whole matrices on rank 0: ``C = mpiml.linalg.matmul(A, B, comm)``.
"""

from .cannon import cannon, cannon_comm_model
from .blas import gemm
from .grid import LinalgError, ProcessGrid, check_cannon_ranks, default_grid, grid_shape
from .matmul import ALGORITHMS, check_algo, comm_model, matmul, multiply
from .matrix import DTYPES, CommCounter, DistributedMatrix, add, scale
from .summa import summa, summa_comm_model, summa_panels

__all__ = [
    "DistributedMatrix", "ProcessGrid", "CommCounter", "LinalgError", "DTYPES",
    "add", "scale", "matmul", "multiply", "summa", "cannon", "gemm",
    "grid_shape", "default_grid", "check_cannon_ranks", "check_algo", "comm_model", "ALGORITHMS",
    "summa_comm_model", "cannon_comm_model", "summa_panels",
]
