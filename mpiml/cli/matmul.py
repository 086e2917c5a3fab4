"""Distributed dense matrices: C = A @ B with SUMMA or Cannon, or C = A + B.

    mpiexec -n 4 mpiml matmul                  # 2048^3 float64, SUMMA
    mpiml matmul --threads 4 --algo cannon --n 4096 --check
    mpiexec -n 6 mpiml matmul --m 3000 --k 500 --n 7001 --dtype float32 --json
    mpiexec -n 4 mpiml matmul --op add --n 8192 --shared --json

With ``--shared`` the ranks of a node hold A, B and C in one array per node (an MPI-3
shared window; one numpy array with ``--threads``) instead of private blocks; with
``--op add`` rank 0 then gathers C without a copy. ``--json`` also reports each rank's
resident memory (``rss_bytes``, ``pss_bytes``) and each node's total (``node_pss_bytes``:
shared pages counted once), measured when A, B and C (and, for ``add``, the gathered C)
are all held.

A and B are random (standard normal, seeded), created in place on every rank: no
rank ever holds a whole matrix (except rank 0 with ``--check``, which gathers A, B
and C to compare with numpy). The time is that of the multiplication alone, the
slowest rank's, the best of ``--repeat`` runs; GFLOP/s counts ``2 m k n`` flops (``8 m k n``
for complex dtypes). The JSON also gives ``cpu_seconds``, the
CPU time of all ranks together in that run: on a loaded machine it shows the work done,
where the wall-clock time also shows the waiting for a core.
"""

import argparse
import json
import sys
import time

import numpy as np

from mpiml import MAX
from mpiml.cli import add_launch_arguments, launch, positive_int
from mpiml.comm import node_memory
from mpiml.errors import MpimlError
from mpiml.linalg import (ALGORITHMS, CommCounter, DistributedMatrix, ProcessGrid,
                          add, check_algo, comm_model, gemm, multiply)
from mpiml.run import under_mpiexec

DTYPES = ("float64", "float32", "complex128", "complex64")
OPS = ("matmul", "add")
DEFAULT_SIZE = 2048


class _Parser(argparse.ArgumentParser):
    """Bad flags: one line on stderr (rank 0 only under mpiexec) and exit status 2."""

    def error(self, message):
        _fail(message)


def _fail(message):
    if _rank() == 0:
        sys.stdout.flush()
        print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _rank():
    import os
    for var in ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK"):
        if var in os.environ and under_mpiexec():
            return int(os.environ[var])
    return 0


def build_parser(prog="mpiml matmul"):
    parser = _Parser(prog=prog, description="Multiply (C = A @ B) or add (C = A + B) two random "
                                 "matrices across ranks.")
    parser.add_argument("--op", choices=OPS, default="matmul",
                        help="matmul: C = A @ B; add: C = A + B, gathered on rank 0 "
                             "(default matmul)")
    parser.add_argument("--m", type=positive_int, help="rows of A and C (default: --n)")
    parser.add_argument("--k", type=positive_int,
                        help="matmul: columns of A, rows of B (default: --n)")
    parser.add_argument("--n", type=positive_int,
                        help=f"columns of B and C; alone it means square (default {DEFAULT_SIZE})")
    parser.add_argument("--algo", choices=ALGORITHMS,
                        help="matmul: summa (any rank count) or cannon (a square rank count; "
                             "default summa)")
    parser.add_argument("--shared", action="store_true",
                        help="A, B and C in one shared array per node instead of private blocks")
    parser.add_argument("--dtype", choices=DTYPES, default="float64")
    parser.add_argument("--repeat", type=positive_int, default=1, metavar="R",
                        help="multiply R times, report the best time (default 1)")
    parser.add_argument("--panel", type=positive_int, metavar="W",
                        help="SUMMA: largest panel width (default: an owner's whole range)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random matrices")
    parser.add_argument("--check", action="store_true",
                        help="gather to rank 0 and compare with numpy (relative Frobenius error)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object on the last line of rank 0's output")
    add_launch_arguments(parser)
    return parser


def _rank_count(args):
    if args.threads is not None:
        return args.threads
    if under_mpiexec():
        from mpiml.comm import world
        return world().size
    return 1


def validate(args):
    """Everything that can be checked before any message is sent; the same on every rank."""
    n = args.n if args.n is not None else DEFAULT_SIZE
    m = args.m if args.m is not None else n
    k = args.k if args.k is not None else n
    if args.seed < 0:
        raise MpimlError(f"--seed must be >= 0, got {args.seed}")
    if args.op == "add":
        for flag, value in (("--k", args.k), ("--algo", args.algo), ("--panel", args.panel)):
            if value is not None:
                raise MpimlError(f"{flag} applies to --op matmul only")
        # row blocks: each rank's block is contiguous, in a node's array too
        k, grid = n, (_rank_count(args), 1)
    else:
        algo = args.algo or "summa"
        if args.panel is not None and algo != "summa":
            raise MpimlError("--panel applies to --algo summa only")
        grid = check_algo(algo, _rank_count(args))
    return {"op": args.op, "m": m, "k": k, "n": n, "grid": grid,
            "algo": None if args.op == "add" else args.algo or "summa", "dtype": args.dtype,
            "shared": args.shared, "repeat": args.repeat, "panel": args.panel,
            "seed": args.seed, "check": args.check}


def run_matmul(comm, cfg):
    """The SPMD body: returns the report on rank 0, ``None`` elsewhere."""
    try:
        return _run_add(comm, cfg) if cfg["op"] == "add" else _run_matmul(comm, cfg)
    except MemoryError as exc:   # sizes too large for this machine: a user error
        raise MpimlError(f"not enough memory: {exc}; use more ranks or smaller --m --k --n"
                         ) from exc


def _run_matmul(comm, cfg):
    m, k, n, dtype = cfg["m"], cfg["k"], cfg["n"], np.dtype(cfg["dtype"])
    grid = ProcessGrid(comm, cfg["grid"])
    a, b, c = _operands(grid, cfg, (m, k), (k, n), (m, n), dtype)
    small = np.ones((256, 256), dtype)
    gemm(small, small, small.copy())                     # BLAS sets up its buffers here
    times, cpu_times, received = [], [], 0
    for rep in range(cfg["repeat"]):
        counter = CommCounter()
        grid.comm.Barrier()
        start, cpu_start = time.perf_counter(), time.thread_time()
        multiply(a, b, cfg["algo"], out=c, panel=cfg["panel"], counter=counter)
        cpu = time.thread_time() - cpu_start
        times.append(grid.comm.allreduce(time.perf_counter() - start, op=MAX))
        cpu_times.append(grid.comm.allreduce(cpu))
        if rep == 0:
            received = grid.comm.allreduce(counter.received, op=MAX)
    report = None
    if grid.rank == 0:
        seconds = min(times)
        flops = (8 if dtype.kind == "c" else 2) * m * k * n
        report = {"algo": cfg["algo"], "backend": comm.backend, "ranks": comm.size,
                  "grid": list(grid.shape), "m": m, "k": k, "n": n, "dtype": dtype.name,
                  "seconds": seconds, "gflops": flops / seconds / 1e9 if seconds > 0 else 0.0,
                  "repeat": cfg["repeat"], "times": times,
                  "cpu_seconds": cpu_times[times.index(seconds)], "comm_bytes": received,
                  "comm_bytes_model": comm_model(cfg["algo"], m, k, n, grid.shape,
                                                 dtype.itemsize)}
    memory = node_memory(comm)          # A, B and C held: before --check gathers copies
    if grid.rank == 0:
        report.update(op="matmul", shared=cfg["shared"], **memory)
    if cfg["check"]:
        full_a, full_b, full_c = a.gather(), b.gather(), c.gather()
        if grid.rank == 0:
            report["rel_err"] = relative_error(full_c, full_a @ full_b)
    return report


def _operands(grid, cfg, a_shape, b_shape, c_shape, dtype):
    """A and B random (seeded), C zeros (touched: no page faults timed), shared or not."""
    seed, shared = cfg["seed"], cfg["shared"]
    a = DistributedMatrix.random(a_shape, grid, seed=seed, dtype=dtype, shared=shared)
    b = DistributedMatrix.random(b_shape, grid, seed=seed + 1, dtype=dtype, shared=shared)
    c = DistributedMatrix.zeros(c_shape, grid, dtype, shared=shared)
    return a, b, c


def _run_add(comm, cfg):
    """C = A + B in place, then C gathered on rank 0 (no copy when shared on one node)."""
    m, n, dtype = cfg["m"], cfg["n"], np.dtype(cfg["dtype"])
    grid = ProcessGrid(comm, cfg["grid"])
    a, b, c = _operands(grid, cfg, (m, n), (m, n), (m, n), dtype)
    times, cpu_times = [], []
    for _ in range(cfg["repeat"]):
        grid.comm.Barrier()
        start, cpu_start = time.perf_counter(), time.thread_time()
        add(a, b, out=c)
        cpu = time.thread_time() - cpu_start
        times.append(grid.comm.allreduce(time.perf_counter() - start, op=MAX))
        cpu_times.append(grid.comm.allreduce(cpu))
    grid.comm.Barrier()
    start = time.perf_counter()
    full_c = c.gather()
    gather_seconds = grid.comm.allreduce(time.perf_counter() - start, op=MAX)
    memory = node_memory(comm)          # A, B, C and the gathered C held
    report = None
    if grid.rank == 0:
        seconds = min(times)
        moved = 3 * m * n * dtype.itemsize
        report = {"op": "add", "algo": None, "backend": comm.backend, "ranks": comm.size,
                  "grid": list(grid.shape), "m": m, "k": n, "n": n, "dtype": dtype.name,
                  "shared": cfg["shared"], "seconds": seconds, "repeat": cfg["repeat"],
                  "times": times, "cpu_seconds": cpu_times[times.index(seconds)],
                  "gflops": m * n / seconds / 1e9 if seconds > 0 else 0.0,
                  "gbytes_per_s": moved / seconds / 1e9 if seconds > 0 else 0.0,
                  "gather_seconds": gather_seconds,
                  "gather_copied": not (cfg["shared"] and full_c is c.storage), **memory}
    if cfg["check"]:
        full_a, full_b = a.gather(), b.gather()
        if grid.rank == 0:
            report["rel_err"] = relative_error(full_c, full_a + full_b)
    return report


def relative_error(c, reference):
    """Frobenius norm of ``c - reference`` over that of ``reference``."""
    scale = np.linalg.norm(reference)
    diff = np.linalg.norm(c - reference)
    return float(diff / scale) if scale > 0 else float(diff)


def tolerance(dtype, k):
    """Largest acceptable ``rel_err``: a generous multiple of the rounding error of a
    length-``k`` dot product."""
    return 10.0 * max(k, 1) * float(np.finfo(np.dtype(dtype)).eps)


def summary(report):
    if report.get("op") == "add":
        return _add_summary(report)
    mb = 1e6
    lines = [
        f"matmul: {report['algo']} on {report['ranks']} rank(s) ({report['backend']}), "
        f"grid {report['grid'][0]}x{report['grid'][1]}",
        f"  C({report['m']}x{report['n']}) = A({report['m']}x{report['k']}) @ "
        f"B({report['k']}x{report['n']}), {report['dtype']}",
        f"  time {report['seconds']:.4f} s (best of {report['repeat']}), "
        f"{report['gflops']:.1f} GFLOP/s",
        f"  received by the busiest rank: {report['comm_bytes'] / mb:.2f} MB "
        f"(model {report['comm_bytes_model'] / mb:.2f} MB)",
    ]
    lines.append(_memory_line(report))
    if "rel_err" in report:
        lines.append(f"  check: relative error {report['rel_err']:.3e}")
    return "\n".join(lines)


def _add_summary(report):
    blocks = "one shared array per node" if report["shared"] else "private blocks"
    lines = [
        f"add: on {report['ranks']} rank(s) ({report['backend']}), grid "
        f"{report['grid'][0]}x{report['grid'][1]}, {blocks}",
        f"  C({report['m']}x{report['n']}) = A + B, {report['dtype']}",
        f"  time {report['seconds']:.4f} s (best of {report['repeat']}), "
        f"{report['gbytes_per_s']:.2f} GB/s; gather to rank 0 {report['gather_seconds']:.4f} s"
        f" ({'a copy' if report['gather_copied'] else 'no copy'})",
        _memory_line(report),
    ]
    if "rel_err" in report:
        lines.append(f"  check: relative error {report['rel_err']:.3e}")
    return "\n".join(lines)


def _memory_line(report):
    nodes = ", ".join(f"{total / 2 ** 20:.0f}" for total in report["node_pss_bytes"])
    ranks = ", ".join(f"{pss / 2 ** 20:.0f}" for pss in report["pss_bytes"])
    return f"  memory (PSS, MiB): node total {nodes}; per rank {ranks}"


def main(argv=None, prog="mpiml matmul"):
    args = build_parser(prog).parse_args(argv)
    try:
        cfg = validate(args)
    except MpimlError as exc:
        _fail(str(exc))
    report = launch(run_matmul, args, cfg)
    if report is None:
        return 0
    print(json.dumps(report) if args.json else summary(report), flush=True)
    if "rel_err" in report and not report["rel_err"] <= tolerance(report["dtype"], report["k"]):
        print(f"error: check failed: relative error {report['rel_err']:.3e} exceeds "
              f"{tolerance(report['dtype'], report['k']):.1e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
