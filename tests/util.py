"""Helpers for tests that start subprocesses: apps, mpiexec, servers."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MPIEXEC = str(BIN / "mpiexec") if (BIN / "mpiexec").exists() else "mpiexec"


def mpi_env(**extra):
    """Environment for a child process: the venv first on PATH, idle MPICH ranks yield,
    and no launcher variables of ours (a nested mpiexec must not think it is our rank)."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["MPIR_CVAR_CH4_PROGRESS_THROTTLE"] = "1"
    for var in [v for v in env if v.startswith(("PMI_", "PMIX_", "OMPI_", "MPI_LOCAL", "HYDRA"))]:
        del env[var]
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_app(args, ranks=None, threads=None, timeout=120, **kwargs):
    """Run ``python apps/...`` (``args[0]`` is the script) under ``mpiexec -n ranks`` or
    with ``--threads``; returns the CompletedProcess (text mode, output captured)."""
    cmd = [sys.executable, *map(str, args)]
    if threads is not None:
        cmd += ["--threads", str(threads)]
    if ranks is not None:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env=mpi_env(), cwd=ROOT, **kwargs)


def rank_rows(comm, n, empty_rank=False):
    """This rank's contiguous block ``(start, stop)`` of ``n`` rows; with ``empty_rank``
    rank 1 (or 0 alone) holds none."""
    from mpiml.comm.partition import block_range
    if not empty_rank or comm.size == 1:
        return block_range(n, comm.size, comm.rank)
    others = [r for r in range(comm.size) if r != 1]
    if comm.rank == 1:
        start = block_range(n, len(others), 1)[0]
        return start, start
    return block_range(n, len(others), others.index(comm.rank))
