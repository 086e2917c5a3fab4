"""Distributed dense matrix multiplication: C = A @ B with SUMMA or Cannon.

    mpiexec -n 4 python apps/matmul.py                  # 2048^3 float64, SUMMA
    python apps/matmul.py --threads 4 --algo cannon --n 4096 --check
    mpiexec -n 6 python apps/matmul.py --m 3000 --k 500 --n 7001 --dtype float32 --json

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
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from mpiml import MAX  # noqa: E402
from mpiml.cli import add_launch_arguments, launch, positive_int  # noqa: E402
from mpiml.errors import MpimlError  # noqa: E402
from mpiml.linalg import (ALGORITHMS, CommCounter, DistributedMatrix, ProcessGrid,  # noqa: E402
                          check_algo, comm_model, gemm, multiply)
from mpiml.run import under_mpiexec  # noqa: E402

DTYPES = ("float64", "float32", "complex128", "complex64")
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


def build_parser():
    parser = _Parser(description="Multiply two random matrices across ranks: C = A @ B.")
    parser.add_argument("--m", type=positive_int, help="rows of A and C (default: --n)")
    parser.add_argument("--k", type=positive_int, help="columns of A, rows of B (default: --n)")
    parser.add_argument("--n", type=positive_int,
                        help=f"columns of B and C; alone it means square (default {DEFAULT_SIZE})")
    parser.add_argument("--algo", choices=ALGORITHMS, default="summa",
                        help="summa: any rank count; cannon: a square rank count (default summa)")
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
    if args.panel is not None and args.algo != "summa":
        raise MpimlError("--panel applies to --algo summa only")
    grid = check_algo(args.algo, _rank_count(args))
    return {"m": m, "k": k, "n": n, "grid": grid, "algo": args.algo, "dtype": args.dtype,
            "repeat": args.repeat, "panel": args.panel, "seed": args.seed, "check": args.check}


def run_matmul(comm, cfg):
    """The SPMD body: returns the report on rank 0, ``None`` elsewhere."""
    try:
        return _run_matmul(comm, cfg)
    except MemoryError as exc:   # sizes too large for this machine: a user error
        raise MpimlError(f"not enough memory: {exc}; use more ranks or smaller --m --k --n"
                         ) from exc


def _run_matmul(comm, cfg):
    m, k, n, dtype = cfg["m"], cfg["k"], cfg["n"], np.dtype(cfg["dtype"])
    grid = ProcessGrid(comm, cfg["grid"])
    a = DistributedMatrix.random((m, k), grid, seed=cfg["seed"], dtype=dtype)
    b = DistributedMatrix.random((k, n), grid, seed=cfg["seed"] + 1, dtype=dtype)
    c = DistributedMatrix.zeros((m, n), grid, dtype)   # touched: no page faults timed
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
    if cfg["check"]:
        full_a, full_b, full_c = a.gather(), b.gather(), c.gather()
        if grid.rank == 0:
            report["rel_err"] = relative_error(full_c, full_a @ full_b)
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
    if "rel_err" in report:
        lines.append(f"  check: relative error {report['rel_err']:.3e}")
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
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
